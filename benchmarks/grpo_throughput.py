"""GRPO throughput of the real path: Qwen2-VL-2B's dimensions, randomly initialised from a config (no hub), real-size
images, G = 8, fixed-length completions, through the same TRL trainer and rewards as ``sgglib.train.grpo``.

    python benchmarks/grpo_throughput.py                 # GPU: 2B dims, 640×480 images, 512-token completions
    python benchmarks/grpo_throughput.py --tiny          # CPU: the tiny dims, same code path, seconds

Reports (JSON to ``reports/bench/grpo_throughput[-tiny].json``, with the device that produced it):
completion tokens/s/GPU and completions/s/GPU end to end; the time split per step — generate (``model.generate``),
reward (the sgglib reward functions), optimizer (``on_pre_optimizer_step`` → ``on_optimizer_step``) and
forward-backward (the rest of the step: log-probs, loss, backward, TRL's bookkeeping); peak memory; MFU of the update
= 6 · (LLM params × LLM tokens + vision params × patches) / forward-backward time / peak FLOP/s (bf16 dense peak of a
known GPU; on CPU a measured fp32 matmul rate, so CPU MFU is only indicative). Completions are forced to exactly
``--completion-tokens`` tokens with ``min_new_tokens`` (EOS suppressed until then). The first ``--warmup`` steps are
excluded. Anchors: the reference ≈ 0.65 completions/s/GPU on A100 (2B); EasyR1 1,600–2,000 tokens/s/GPU at
16–23% MFU (7B, H100).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import AutoConfig, Qwen2VLForConditionalGeneration, TrainerCallback  # noqa: E402

from sgglib import prompts  # noqa: E402
from sgglib.embedded.model import ensure_tiny_init  # noqa: E402
from sgglib.models import load_processor  # noqa: E402
from sgglib.train.grpo import GRPORunConfig, build_rewards, trl_args  # noqa: E402
from sgglib.runs import reports_dir, write_json  # noqa: E402

# Qwen2-VL-2B-Instruct's config.json (text + vision tower); vocab as the real tokenizer's embedding table.
QWEN2_VL_2B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                   num_key_value_heads=2, vocab_size=151936, rope_theta=1e6, mrope_section=[16, 24, 24],
                   vision=dict(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, hidden_size=1536))
TINY = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=None, rope_theta=1e4, mrope_section=[4, 6, 6],
            vision=dict(depth=2, embed_dim=64, num_heads=4, mlp_ratio=4, hidden_size=128))
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


def build_model(dims: dict, dtype: torch.dtype):
    """A randomly initialised Qwen2-VL with ``dims``; special-token ids from the embedded tokenizer's config."""
    config = AutoConfig.from_pretrained(ensure_tiny_init())
    text, vision = config.text_config, config.vision_config
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads"):
        setattr(text, key, dims[key])
    text.layer_types = ["full_attention"] * dims["num_hidden_layers"]
    text.vocab_size = dims["vocab_size"] or text.vocab_size
    text.rope_parameters = {"rope_type": "default", "rope_theta": dims["rope_theta"],
                            "mrope_section": dims["mrope_section"]}
    for key, value in dims["vision"].items():
        setattr(vision, key, value)
    torch.manual_seed(0)
    return Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype)


def make_rows(n: int, width: int, height: int):
    """GRPO rows with textured random images (real-size input) and a small ground truth for the rewards."""
    import datasets

    rng = np.random.default_rng(0)
    gt = {"objects": [{"id": "person.1", "bbox": [0.1, 0.1, 0.5, 0.9]}, {"id": "bike.1", "bbox": [0.3, 0.5, 0.9, 0.95]}],
          "relationships": [{"subject": "person.1", "predicate": "riding", "object": "bike.1"}]}
    rows = [{"image": Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)),
             "prompt": prompts.prompt_messages(prompts.open_prompt(), prompts.RL_SYSTEM_PROMPT),
             "solution": json.dumps(gt), "box_scale": [1000.0, 1000.0]} for _ in range(n)]
    return datasets.Dataset.from_list(rows)


class Timed:
    """Wrap a callable and add its wall time to ``bucket[name]``."""

    def __init__(self, fn, bucket: dict, name: str):
        self.fn, self.bucket, self.name = fn, bucket, name
        self.__name__ = getattr(fn, "__name__", name)

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.bucket[self.name] = self.bucket.get(self.name, 0.0) + time.perf_counter() - t0


class StepTimer(TrainerCallback):
    """Per step: total wall time and the optimizer's share (transformers' public optimizer-step events)."""

    def __init__(self, bucket: dict, sync):
        self.bucket, self.sync, self.steps = bucket, sync, []

    def on_step_begin(self, args, state, control, **kwargs):
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
        total = time.perf_counter() - self.t0
        parts = {k: self.bucket.get(k, 0.0) for k in ("generate", "reward", "optimizer")}
        parts["forward_backward"] = total - sum(parts.values())
        self.steps.append({"total": total, **parts})


def cpu_peak_flops(n: int = 1024, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny dims, small images, short completions (CPU)")
    parser.add_argument("--steps", type=int, default=None, help="measured steps (default 5, tiny 3)")
    parser.add_argument("--warmup", type=int, default=1, help="steps excluded from the averages")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=None, help="prompts per step (default 2, tiny 2)")
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--completion-tokens", type=int, default=None, help="forced length (default 512, tiny 32)")
    parser.add_argument("--image-size", default=None, help="WxH (default 640x480, tiny 112x112)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--out", default=None, help="JSON path (default reports/bench/grpo_throughput[-tiny].json)")
    args = parser.parse_args(argv)
    tiny = args.tiny
    steps = args.steps or (3 if tiny else 5)
    prompts_per_step = args.prompts or 2
    length = args.completion_tokens or (32 if tiny else 512)
    width, height = (int(v) for v in (args.image_size or ("112x112" if tiny else "640x480")).split("x"))
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda and not tiny else torch.float32
    device_name = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()}, " \
                                                               f"{torch.get_num_threads()} threads)"

    model = build_model(TINY if tiny else QWEN2_VL_2B, dtype)
    n_vis = sum(p.numel() for p in model.model.visual.parameters())
    n_llm = sum(p.numel() for p in model.parameters()) - n_vis
    processor = load_processor(ensure_tiny_init(), max_pixels=512 * 28 * 28)  # the paper's GRPO max_pixels
    timings: dict[str, float] = {}
    model.generate = Timed(model.generate, timings, "generate")
    cfg = GRPORunConfig(group_size=args.group_size, prompts_per_step=prompts_per_step, grad_accum=args.grad_accum,
                        max_steps=args.warmup + steps, max_completion_length=length, learning_rate=1e-6,
                        bf16=dtype == torch.bfloat16, gradient_checkpointing=args.gradient_checkpointing,
                        logging_steps=1, save_steps=10 ** 6,
                        extra={"generation_kwargs": {"min_new_tokens": length}, "save_strategy": "no"})
    funcs, _ = build_rewards(cfg)
    funcs = [Timed(f, timings, "reward") for f in funcs]
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    timer = StepTimer(timings, sync)
    from trl import GRPOTrainer

    out_dir = reports_dir("bench", "grpo-throughput-tmp")
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=trl_args(cfg, out_dir), callbacks=[timer],
                          train_dataset=make_rows(prompts_per_step * (args.warmup + steps) * 2, width, height),
                          processing_class=processor)
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()

    measured = timer.steps[args.warmup:] or timer.steps
    mean = {k: float(np.mean([s[k] for s in measured])) for k in measured[0]}
    completions = prompts_per_step * args.group_size
    tokens = completions * length
    grid = processor.image_processor.preprocess([Image.new("RGB", (width, height))], return_tensors="pt")[
        "image_grid_thw"][0]
    patches = int(grid.prod())
    text = processor.apply_chat_template(make_rows(1, 8, 8)[0]["prompt"], tokenize=False, add_generation_prompt=True)
    prompt_tokens = len(processor.tokenizer(text)["input_ids"]) - 1 + patches // 4  # one pad → patches/4 tokens
    llm_tokens = completions * (prompt_tokens + length)
    flops = 6 * (n_llm * llm_tokens + n_vis * patches * completions)
    peak = next((v for k, v in PEAK_BF16.items() if cuda and k in device_name), None)
    peak_source = "bf16 dense spec" if peak else None
    if not cuda:
        peak, peak_source = cpu_peak_flops(), "measured fp32 1024² matmul on this CPU"
    result = {
        "device": device_name, "gpu": cuda, "tiny": tiny, "dtype": str(dtype).removeprefix("torch."),
        "params_llm": n_llm, "params_vision": n_vis, "image_size": [width, height], "image_patches": patches,
        "group_size": args.group_size, "prompts_per_step": prompts_per_step, "completion_tokens": length,
        "prompt_tokens_incl_image": prompt_tokens, "steps_measured": len(measured), "warmup_steps": args.warmup,
        "seconds_per_step": mean,
        "time_split_percent": {k: round(100 * v / mean["total"], 1) for k, v in mean.items() if k != "total"},
        "completion_tokens_per_s_per_gpu": tokens / mean["total"],
        "completions_per_s_per_gpu": completions / mean["total"],
        "update_flops_per_step": flops, "peak_flops": peak, "peak_flops_source": peak_source,
        "mfu_update": flops / mean["forward_backward"] / peak if peak else None,
        "peak_memory_gib": (torch.cuda.max_memory_allocated() if cuda else
                            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2 ** 30,
        "peak_memory_kind": "torch.cuda.max_memory_allocated" if cuda else "process max RSS",
        "torch": torch.__version__, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = Path(args.out) if args.out else reports_dir("bench", f"grpo_throughput{'-tiny' if tiny else ''}.json")
    write_json(out, result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
