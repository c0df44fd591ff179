"""The real path's checks on a GPU machine, one section after another, each timed and recorded even if another fails.

    python benchmarks/gpu_check.py --out <folder>          # run by benchmarks/gpu_check.sh

Sections (each writes ``<folder>/<section>.json``):

- ``versions``: Python, torch, CUDA, transformers, TRL, accelerate, datasets, peft, torchvision, flash-attn, the GPU;
- ``load``: the committed ``tiny-base`` through the processor path this machine takes (the stock one where
  torchvision works), greedy decodes on the GPU; and the attention implementation ``auto`` picks;
- ``recipes``: a model with Qwen2-VL-2B's dimensions (random weights) trained through ``sgglib.train`` with the
  paper's SFT recipe (3 steps) and GRPO recipe (2 steps) — fp32 master weights, bf16 autocast, lr 1e-5 and 6e-7 —
  recording how many weights each run moved (the pure-bf16 trap trains nothing, silently);
- the throughput benchmark and the tests run from ``gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import platform
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

WATCHED = ("model.language_model.layers.0.mlp.down_proj.weight", "model.visual.blocks.0.mlp.fc1.weight",
           "model.language_model.layers.0.self_attn.q_proj.weight")


def versions() -> dict:
    import accelerate
    import peft
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "transformers": transformers.__version__, "accelerate": accelerate.__version__, "peft": peft.__version__,
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "bf16_supported": torch.cuda.is_available() and torch.cuda.is_bf16_supported()}
    for name in ("trl", "datasets", "torchvision", "pycocotools", "flash_attn", "vllm", "deepspeed"):
        if importlib.util.find_spec(name) is None:
            out[name] = None
            continue
        try:
            module = __import__(name)
            out[name] = getattr(module, "__version__", "installed")
        except (ImportError, RuntimeError, OSError) as err:
            out[name] = f"import failed: {err}"[:200]
    return out


def load() -> dict:
    from sgglib import data, prompts
    from sgglib.models import attention_implementation, has_torchvision, load_model_and_processor, predict

    model, processor = load_model_and_processor("tiny-base", device="auto")
    rows = data.load_sgg("synthetic", split="val", num_images=8)
    t0 = time.perf_counter()
    records = predict(model, processor, [rows[i] for i in range(8)], prompts.user_prompt(data.vocabulary()),
                      max_new_tokens=64, progress=False)
    return {"torchvision": has_torchvision(), "processor": type(processor).__name__,
            "model_device": str(next(model.parameters()).device), "attn_auto": attention_implementation("auto"),
            "greedy_8_images_64_tokens_s": time.perf_counter() - t0, "first_completion": records[0]["completion"]}


class Moved(TrainerCallback):
    """The share of each watched tensor's elements that changed between the start and the end of training."""

    def __init__(self):
        self.before, self.moved = {}, {}

    def _tensors(self, model):
        params = dict(model.named_parameters())
        return {k: params[k].detach().float().cpu().clone() for k in WATCHED if k in params}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = self._tensors(model)
        self.dtypes = {k: str(p.dtype) for k, p in model.named_parameters() if k in WATCHED}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        after = self._tensors(model)
        self.moved = {k: float((after[k] != v).float().mean()) for k, v in self.before.items()}


def recipes(work: Path) -> dict:
    from sgglib import data, prompts
    from sgglib.embedded.model import QWEN2_VL_2B, build_tiny_model
    from sgglib.train.grpo import PAPER_GRPO, train_grpo
    from sgglib.train.sft import PAPER_SFT, train_sft

    rows = data.load_sgg("synthetic", split="train", num_images=16)
    texts = [prompts.sft_target(rows[i]) for i in range(16)] + [prompts.open_prompt(), prompts.RL_SYSTEM_PROMPT]
    t0 = time.perf_counter()
    model_dir = build_tiny_model(work / "qwen2-vl-2b-dims", QWEN2_VL_2B, texts=texts * 5)
    out = {"build_and_save_s": time.perf_counter() - t0}
    common = dict(dataset="synthetic", val_limit=0, eval_steps=0, save_steps=10 ** 6, prompt="open", max_pixels=0)
    sft_moved = Moved()
    sft_cfg = dataclasses.replace(PAPER_SFT, model=str(model_dir), max_steps=3, batch_size=2, grad_accum=1,
                                  run_dir=str(work / "sft"), **common)
    t0 = time.perf_counter()
    result = train_sft(sft_cfg, train_rows=rows, extra_callbacks=[sft_moved])
    out["sft"] = {"steps": result["global_step"], "seconds": time.perf_counter() - t0, "lr": sft_cfg.learning_rate,
                  "weights_dtype": sft_moved.dtypes, "share_of_weights_moved": sft_moved.moved}
    grpo_moved = Moved()
    grpo_cfg = dataclasses.replace(PAPER_GRPO, init=str(model_dir), max_steps=2, group_size=4, prompts_per_step=2,
                                   max_completion_length=32, use_vllm=False, run_dir=str(work / "grpo"),
                                   system_prompt="rl", **common)
    t0 = time.perf_counter()
    result = train_grpo(grpo_cfg, train_rows=rows, extra_callbacks=[grpo_moved])
    out["grpo"] = {"steps": result["global_step"], "seconds": time.perf_counter() - t0, "lr": grpo_cfg.learning_rate,
                   "weights_dtype": grpo_moved.dtypes, "share_of_weights_moved": grpo_moved.moved}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--sections", default="versions,load,recipes")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/gpu-check")
    failed = 0
    sections = {"versions": versions, "load": load, "recipes": lambda: recipes(work)}
    unknown = [s for s in args.sections.split(",") if s not in sections]
    if unknown:
        ap.error(f"unknown sections {unknown}; choose from {sorted(sections)}")
    for section in args.sections.split(","):
        t0 = time.perf_counter()
        try:
            result = {"ok": True, **sections[section]()}
        except Exception as err:  # noqa: BLE001 - a section's failure is recorded and the next one still runs
            result = {"ok": False, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-4000:]}
            failed += 1
        result["seconds"] = round(time.perf_counter() - t0, 1)
        (out / f"{section}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"[gpu_check] {section}: {'ok' if result['ok'] else 'FAILED ' + result['error'][:300]} "
              f"({result['seconds']} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
