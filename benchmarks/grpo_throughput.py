"""GRPO throughput at the real size: Qwen2-VL-2B's dimensions (random weights, built on the GPU), real-size images,
the paper's batch (32 prompts × G 8), fixed-length completions, through the same TRL trainer, recipe and rewards as
``sgglib.train.grpo``.

    python benchmarks/grpo_throughput.py                              # GPU: 2B dims, the paper's batch
    python benchmarks/grpo_throughput.py --gradient-checkpointing     # the same with activation checkpointing
    python benchmarks/grpo_throughput.py --tiny                       # CPU: the embedded model, same code, seconds

The settings are :data:`sgglib.train.grpo.PAPER_GRPO`'s (lr 6e-7, temperature 1.0, top-p 0.9, top-k 50, the
``grpo`` loss, bf16 autocast over fp32 master weights, images ≤ 512·28·28 px) with HF ``generate`` instead of vLLM
and completions forced to exactly ``--completion-tokens`` tokens (``min_new_tokens``). Per optimizer step, after
``--warmup`` steps:

- ``step``: one ``on_step_end`` to the next — everything, data loading and logging included;
- ``generate``: ``model.generate`` (the rollouts);
- ``reward``: the reward functions (fed realistic completions, below);
- ``forward`` / ``backward``: the loss's forward (``trainer.compute_loss``) and its backward
  (``accelerator.backward``), each between CUDA synchronisations;
- ``optimizer``: clipping and AdamW (``on_pre_optimizer_step`` → ``on_optimizer_step``);
- ``other``: the rest (image preprocessing, tokenisation, advantages, bookkeeping, logging).

Throughput per GPU: completion tokens/s and total tokens/s (prompt, image tokens included, plus completion — what
EasyR1 counts), end to end. MFU of the update: the model FLOPs of the loss's forward and backward
(:func:`update_flops`: 3 × forward; no credit for recomputed checkpointed activations) / (forward + backward time),
against the spec sheet's dense bf16 peak and against a bf16 matmul peak measured on the device. On a CPU the peak is
a measured fp32 matmul rate, so CPU MFU is only indicative.

Realistic rewards: a random model with Qwen2-VL's 151,936-token table samples ids that the embedded 3.9k-token
tokenizer decodes to nothing, so its completions would be empty and the rewards would cost microseconds. Each reward
call is therefore fed one VG-sized completion per sample instead (20 objects, 15 relations; the generator of
``benchmarks/rewards_speed.py``), against its own ground truth.

Each distinct prompt runs once per group in the loss (``share_prompt``, the default; ``--no-share-prompt`` for TRL's
G full sequences). Writes ``reports/bench/grpo_throughput[-tiny][-gc][-unshared].json`` (with the device, versions
and settings) unless ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import random
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from transformers import PrinterCallback, TrainerCallback  # noqa: E402

from rewards_speed import make_completion, make_gt  # noqa: E402
from sgglib import prompts  # noqa: E402
from sgglib.embedded.model import QWEN2_VL_2B, TinyModelConfig, ensure_tiny_init, model_config  # noqa: E402
from sgglib.models import load_processor  # noqa: E402
from sgglib.runs import reports_dir, write_json  # noqa: E402
from sgglib.train.common import use_bf16  # noqa: E402
from sgglib.train.grpo import PAPER_GRPO, build_rewards, trainer_class, trl_args  # noqa: E402

# dense bf16 spec-sheet peaks by device name (whole words: "A10" is not an "A10G"; an H100 PCIe is slower than SXM)
SPEC_BF16_DENSE = {"H200": 989e12, "H100 80GB HBM3": 989e12, "H100 SXM": 989e12, "H100 PCIe": 756e12,
                   "H100 NVL": 835e12, "A100": 312e12, "L40S": 362e12}


def build_model(dims: TinyModelConfig, tokenizer, device: str):
    """A randomly initialised Qwen2-VL with ``dims``, its fp32 weights created directly on ``device``."""
    hf_config, model_cls, _ = model_config(dims, tokenizer)
    torch.manual_seed(0)
    with torch.device(device):
        return model_cls._from_config(hf_config, dtype=torch.float32)


def make_rows(n: int, width: int, height: int):
    """GRPO rows: textured random images of the given size, the closed-style prompt, a placeholder ground truth."""
    import datasets

    rng = np.random.default_rng(0)
    gt = {"objects": [{"id": "person.1", "bbox": [0.1, 0.1, 0.5, 0.9]}], "relationships": []}
    rows = [{"image": Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)),
             "prompt": prompts.prompt_messages(prompts.open_prompt(), prompts.RL_SYSTEM_PROMPT),
             "solution": json.dumps(gt), "box_scale": [1000.0, 1000.0]} for _ in range(n)]
    return datasets.Dataset.from_list(rows)


class Timed:
    """Wrap a callable: add its wall time (between synchronisations) to ``bucket[name]``."""

    def __init__(self, fn, bucket: dict, name: str, sync=lambda: None):
        self.fn, self.bucket, self.name, self.sync = fn, bucket, name, sync
        self.__name__ = getattr(fn, "__name__", name)

    def __call__(self, *args, **kwargs):
        self.sync()
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.sync()
            self.bucket[self.name] = self.bucket.get(self.name, 0.0) + time.perf_counter() - t0


class RealisticInputs:
    """A reward function called on VG-sized completions and their ground truths instead of the policy's own."""

    def __init__(self, fn, pool: list[tuple[str, dict]]):
        self.fn, self.pool, self.__name__ = fn, pool, fn.__name__

    def __call__(self, completions, solution=None, box_scale=None, **kwargs):
        picked = [self.pool[i % len(self.pool)] for i in range(len(completions))]
        return self.fn([c for c, _ in picked], solution=[s for _, s in picked], box_scale=None, **kwargs)


class StepTimer(TrainerCallback):
    """Per step, the wall time from the previous ``on_step_end`` (``on_train_begin`` for the first) and the timed
    parts collected since; the optimizer's share from transformers' optimizer-step events."""

    def __init__(self, bucket: dict, sync):
        self.bucket, self.sync, self.steps = bucket, sync, []

    def on_train_begin(self, args, state, control, **kwargs):
        self.sync()
        self.bucket.clear()
        self.t0 = time.perf_counter()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.sync()
        self.t_opt = time.perf_counter()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.sync()
        self.bucket["optimizer"] = self.bucket.get("optimizer", 0.0) + time.perf_counter() - self.t_opt

    def on_step_end(self, args, state, control, **kwargs):
        self.sync()
        now = time.perf_counter()
        parts = {k: self.bucket.get(k, 0.0) for k in ("generate", "reward", "forward", "backward", "optimizer")}
        parts["other"] = now - self.t0 - sum(parts.values())
        self.steps.append({"step": now - self.t0, **parts})
        self.bucket.clear()
        self.t0 = now


def update_flops(dims: TinyModelConfig, vocab: int, prompt_tokens: int, completion_tokens: int, patches: int,
                 sequences: int) -> dict[str, float]:
    """Model FLOPs of the loss's forward + backward (3 × forward) for ``sequences`` sequences of ``prompt_tokens``
    (image tokens included) + ``completion_tokens`` tokens, each with one image of ``patches`` 14-px patches.

    Text: 2 × non-embedding parameters per token, the LM head (2 × vocab × hidden) on completion tokens only (TRL
    computes logits for those), causal attention 2 × seq² × hidden per layer (QKᵀ and AV, half masked). Vision:
    2 × parameters per patch and full attention 4 × patches² × width per block. Embedding lookups cost nothing."""
    h, layers, inter = dims.hidden_size, dims.num_layers, dims.intermediate_size
    kv = h // dims.num_heads * dims.num_kv_heads
    layer = 2 * h * h + 2 * h * kv + 3 * h * inter  # q, o; k, v; gate, up, down
    seq = prompt_tokens + completion_tokens
    text_fwd = 2 * layers * layer * seq + 2 * layers * seq ** 2 * h + 2 * vocab * h * completion_tokens
    w = dims.vision_embed_dim
    vis_block = 4 * w * w + 2 * w * 4 * w  # qkv + proj, fc1 + fc2 (mlp ratio 4)
    merger = (4 * w) * (4 * w) + (4 * w) * h  # 2×2 patches merged: ln, fc 4w→4w, fc 4w→hidden
    vis_fwd = 2 * (dims.vision_depth * vis_block * patches + merger * patches // 4) + \
        4 * dims.vision_depth * patches ** 2 * w
    return {"text": 3.0 * text_fwd * sequences, "vision": 3.0 * vis_fwd * sequences,
            "total": 3.0 * (text_fwd + vis_fwd) * sequences}


def measured_peak(cuda: bool) -> tuple[float, str]:
    """The device's matmul rate: bf16 8192³ on a GPU (best of 10 after 3 warm-ups), fp32 1024³ on a CPU."""
    n, dtype = (8192, torch.bfloat16) if cuda else (1024, torch.float32)
    dev = "cuda" if cuda else "cpu"
    a, b = torch.randn(n, n, dtype=dtype, device=dev), torch.randn(n, n, dtype=dtype, device=dev)
    times = []
    for i in range(13):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if cuda:
            torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    kind = f"measured {'bf16' if cuda else 'fp32'} {n}³ matmul, best of 10"
    return 2 * n ** 3 / min(times), kind


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="the embedded model's dims, small images, short completions")
    parser.add_argument("--steps", type=int, default=None, help="measured steps (default 3, tiny 3)")
    parser.add_argument("--warmup", type=int, default=1, help="steps excluded from the averages")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=None, help="prompts per step (default 32, the paper; tiny 2)")
    parser.add_argument("--micro-batch", type=int, default=None,
                        help="completions per forward/backward (default 16, tiny 16); sets grad_accum")
    parser.add_argument("--completion-tokens", type=int, default=None, help="forced length (default 512, tiny 32)")
    parser.add_argument("--image-size", default=None, help="WxH (default 640x480, tiny 112x112)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--no-share-prompt", action="store_true",
                        help="TRL's G full sequences per prompt in the loss (share_prompt=False; suffix -unshared)")
    parser.add_argument("--out", default=None, help="JSON path (default reports/bench/grpo_throughput[-tiny][-gc].json)")
    args = parser.parse_args(argv)
    tiny = args.tiny
    steps = args.steps or 3
    prompts_per_step = args.prompts or (2 if tiny else 32)
    micro = args.micro_batch or 16
    length = args.completion_tokens or (32 if tiny else 512)
    width, height = (int(v) for v in (args.image_size or ("112x112" if tiny else "640x480")).split("x"))
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    device_name = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()}, " \
                                                               f"{torch.get_num_threads()} threads)"
    completions = prompts_per_step * args.group_size
    if completions % micro:
        raise SystemExit(f"--micro-batch {micro} must divide prompts × group size = {completions}")

    processor = load_processor(ensure_tiny_init(), max_pixels=PAPER_GRPO.max_pixels)
    dims = TinyModelConfig() if tiny else QWEN2_VL_2B
    t_build = time.perf_counter()
    model = build_model(dims, processor.tokenizer, device)
    build_s = time.perf_counter() - t_build
    vocab = model.config.text_config.vocab_size
    n_vis = sum(p.numel() for p in model.model.visual.parameters())
    n_llm = sum(p.numel() for p in model.parameters()) - n_vis
    timings: dict[str, float] = {}
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model.generate = Timed(model.generate, timings, "generate", sync)
    cfg = dataclasses.replace(
        PAPER_GRPO, group_size=args.group_size, prompts_per_step=prompts_per_step, grad_accum=completions // micro,
        max_steps=args.warmup + steps, max_completion_length=length, bf16=None,
        gradient_checkpointing=args.gradient_checkpointing, use_vllm=False, logging_steps=1,
        share_prompt=not args.no_share_prompt,
        extra=json.dumps({"generation_kwargs": {"min_new_tokens": length}, "save_strategy": "no"}))
    rng = random.Random(0)
    pool = [(make_completion(rng, gt), gt) for gt in (make_gt(rng) for _ in range(completions))]
    funcs, _ = build_rewards(cfg)
    funcs = [Timed(RealisticInputs(f, pool), timings, "reward") for f in funcs]
    timer = StepTimer(timings, sync)
    out_dir = reports_dir("bench", "grpo-throughput-tmp")
    trainer = trainer_class(cfg)(model=model, reward_funcs=funcs, args=trl_args(cfg, out_dir), callbacks=[timer],
                          train_dataset=make_rows(prompts_per_step * (args.warmup + steps) * 2, width, height),
                          processing_class=processor)
    trainer.remove_callback(PrinterCallback)
    trainer.compute_loss = Timed(trainer.compute_loss, timings, "forward", sync)
    trainer.accelerator.backward = Timed(trainer.accelerator.backward, timings, "backward", sync)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()

    measured = timer.steps[args.warmup:] or timer.steps
    mean = {k: float(np.mean([s[k] for s in measured])) for k in measured[0]}
    grid = processor.image_processor.preprocess([Image.new("RGB", (width, height))], return_tensors="pt")[
        "image_grid_thw"][0]
    patches = int(grid.prod())
    text = processor.apply_chat_template(make_rows(1, 8, 8)[0]["prompt"], tokenize=False, add_generation_prompt=True)
    prompt_tokens = len(processor.tokenizer(text)["input_ids"]) - 1 + patches // 4  # one pad → patches/4 tokens
    flops = update_flops(dims, vocab, prompt_tokens, length, patches, completions)
    update_s = mean["forward"] + mean["backward"]
    spec = next((v for k, v in SPEC_BF16_DENSE.items() if cuda and re.search(rf"\b{re.escape(k)}\b", device_name)),
                None)
    peak, peak_kind = measured_peak(cuda)
    import transformers
    import trl

    result = {
        "device": device_name, "gpu": cuda, "tiny": tiny, "weights": "float32 master weights",
        "bf16_autocast": use_bf16(cfg.bf16), "gradient_checkpointing": args.gradient_checkpointing,
        "share_prompt": cfg.share_prompt,
        "rows_per_prompt_pass": float(np.mean([h["prompt_share"] for h in trainer.state.log_history
                                               if "prompt_share" in h] or [1.0])),
        "attn_implementation": model.config._attn_implementation,
        "params_llm": n_llm, "params_vision": n_vis, "vocab": vocab, "model_build_s": build_s,
        "image_size": [width, height], "image_patches": patches, "image_tokens": patches // 4,
        "group_size": args.group_size, "prompts_per_step": prompts_per_step, "completions_per_step": completions,
        "micro_batch": micro, "grad_accum": cfg.grad_accum, "completion_tokens": length,
        "prompt_tokens_incl_image": prompt_tokens, "steps_measured": len(measured), "warmup_steps": args.warmup,
        "seconds_per_step": mean,
        "time_split_percent": {k: round(100 * v / mean["step"], 1) for k, v in mean.items() if k != "step"},
        "completion_tokens_per_s_per_gpu": completions * length / mean["step"],
        "total_tokens_per_s_per_gpu": completions * (prompt_tokens + length) / mean["step"],
        "completions_per_s_per_gpu": completions / mean["step"],
        "update_flops_per_step": flops,
        "update_flops_count": "every row's full prompt and completion, the unshared work: with share_prompt the "
                              "MFU figures are effective rates",
        "mfu_update_vs_spec": flops["total"] / update_s / spec if spec else None, "spec_peak_flops": spec,
        "mfu_update_vs_measured": flops["total"] / update_s / peak, "measured_peak_flops": peak,
        "measured_peak_kind": peak_kind,
        "peak_memory_gib": (torch.cuda.max_memory_allocated() if cuda else
                            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2 ** 30,
        "peak_memory_kind": "torch.cuda.max_memory_allocated" if cuda else "process max RSS",
        "rewards_fed": "VG-sized completions (20 objects, 15 relations), one per sample",
        "settings": "sgglib.train.grpo.PAPER_GRPO with HF generate (no vLLM), forced completion length",
        "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    suffix = ("-tiny" if tiny else "") + ("-gc" if args.gradient_checkpointing else "") + \
        ("-unshared" if args.no_share_prompt else "")
    out = Path(args.out) if args.out else reports_dir("bench", f"grpo_throughput{suffix}.json")
    write_json(out, result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
