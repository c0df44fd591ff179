"""Supervised fine-tuning through stock TRL ``SFTTrainer`` in its vision-language mode (``docs/method.md#training-recipes``).

Rows of a scene-graph dataset (:func:`sgglib.data.load_sgg`) become TRL prompt-completion examples
(:func:`sgglib.prompts.sft_example`); TRL's own ``DataCollatorForVisionLanguageModeling`` tokenises them and, with
``completion_only_loss=True``, masks everything but the answer (and its ``<|im_end|>``). Deliberate difference: the
reference's SFT trained on the whole sequence, prompt included; we follow TRL's default for prompt-completion data
and learn the answer only.

What a run writes into its directory: ``config.json``, ``metrics.csv`` (``train/…`` rows every ``logging_steps``,
``eval/…`` rows every ``eval_steps``), ``checkpoints/checkpoint-N`` (resumable), ``final/`` (the model + processor,
loadable by :func:`sgglib.models.load_model_and_processor`), ``predictions.jsonl`` and ``metrics.json`` of the final
validation, and ``curves.png``.

The same function trains the embedded *base* model on auxiliary tasks (:mod:`sgglib.embedded.pretrain` passes its
own ``examples`` transform).

Command line (every field of :class:`SFTRunConfig` is a flag; ``--help`` lists them)::

    python -m sgglib.train.sft --run-dir sft-ref --max-steps 1000
    python -m sgglib.train.sft reports/sft-ref/config.json --max-steps 2000   # a saved run's config, changed
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from transformers import PrinterCallback, TrainerCallback

from .. import data, prompts
from ..config import parse_cli
from ..models import box_convention, load_model_and_processor, pixel_bounds
from ..runs import write_json
from .callbacks import callbacks
from .common import (EVAL_KEYS, TrainConfig, check_master_weights, finish_run, load_rows, lora_config,
                     shared_run_dir, train_resuming, trainer_kwargs, use_bf16)


@dataclass
class SFTRunConfig(TrainConfig):
    """One SFT run: the shared :class:`~sgglib.train.common.TrainConfig` fields and SFT's own. Defaults: the embedded
    world and tiny model on 2 CPU cores (:data:`PAPER_SFT` holds the paper's real-path parameters)."""

    model: str = "tiny-base"
    """hub id, local directory, or an embedded name (``tiny-base``, ``tiny-init``)"""
    prompt: str = "closed"
    """``open``, ``closed`` (vocabulary listed) or ``mixed`` (each example picks one at random)"""
    max_steps: int = 1000
    """optimizer steps; -1 = run ``num_train_epochs``"""
    num_train_epochs: float = 1.0
    """epochs when ``max_steps`` is -1"""
    batch_size: int = 16
    """per-device batch size (effective batch = batch_size × grad_accum × devices)"""
    learning_rate: float = 2e-3
    """peak AdamW learning rate (2e-3 suits the 1 M tiny model; the paper used 1e-5 for 2B/7B)"""
    lr_scheduler: str = "cosine"
    """transformers scheduler name"""
    warmup_ratio: float = 0.05
    """fraction of steps spent warming up"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    max_length: int | None = None
    """truncate sequences (prompt + image tokens + answer) to this many tokens; None = never (a cut can split an
    image's tokens, which TRL reports as "image features and image tokens do not match")"""
    lora_dropout: float = 0.05
    """LoRA dropout"""
    logging_steps: int = 10
    """log train loss / lr / grad norm every N steps"""
    eval_steps: int = 200
    """greedy-decode ``val_limit`` images and score them every N steps (0 = only at the end)"""
    save_steps: int = 500
    """checkpoint every N steps, and at the last step (0 = no checkpoints; ``final/`` is written either way)"""
    dataloader_num_workers: int = 0
    """collation workers (0 = in the training process)"""

    def check(self) -> "SFTRunConfig":
        """Raise ``ValueError`` for an impossible setting; returns the config."""
        super().check()
        if self.prompt not in ("open", "closed", "mixed"):
            raise ValueError(f"prompt must be open, closed or mixed, got {self.prompt!r}")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        return self


# The paper's SFT (docs/method.md#training-recipes; the reference's scripts/sft/2B_sgg.sh): Qwen2-VL-2B-Instruct,
# VG150 train, open prompt, 3 epochs, effective batch 128 (per device 8 × accumulation 4 × 4 GPUs; on one GPU use grad_accum=16), AdamW lr
# 1e-5, warmup 0.05, max_grad_norm 0.3, bf16 (autocast over fp32 master weights), flash-attention 2 where installed,
# seed 42. The transformers default (linear) scheduler. Images at most 1024·28·28 pixels, the reference's SFT and
# evaluation bound (the checkpoint's own maximum is 16384·28·28).
PAPER_SFT = SFTRunConfig(
    model="Qwen/Qwen2-VL-2B-Instruct", dataset="vg150", prompt="open", max_steps=-1, num_train_epochs=3,
    batch_size=8, grad_accum=4, learning_rate=1e-5, lr_scheduler="linear", warmup_ratio=0.05, max_grad_norm=0.3,
    dtype="float32", bf16=True, attn_implementation="auto", gradient_checkpointing=True, max_pixels=1024 * 28 * 28,
    eval_steps=0, eval_max_new_tokens=2048, save_steps=100, seed=42, val_limit=5000, max_length=None,
)


# -- examples ---------------------------------------------------------------------------------------------------------
class SFTExamples:
    """A ``datasets`` transform turning stored rows into TRL examples on the fly (images stay encoded on disk):
    :func:`sgglib.prompts.sft_example` with the run's prompt (``mixed``: each example draws open or closed) and the
    model's box convention; Qwen2.5-VL targets are written in the resized frame its processor will produce."""

    def __init__(self, prompt: str = "closed", system: str | None = prompts.SFT_SYSTEM_PROMPT, vocabulary=None,
                 seed: int = 0, convention: str = "qwen2vl", pixels: tuple[int, int] | None = None):
        self.prompt, self.system, self.vocabulary = prompt, system, vocabulary
        self.convention, self.pixels, self.rng = convention, pixels, random.Random(seed)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        examples = []
        for values in zip(*batch.values()):
            r = dict(zip(batch, values))
            closed = self.prompt == "closed" or (self.prompt == "mixed" and self.rng.random() < 0.5)
            resized = None
            if self.convention != "qwen2vl":  # Qwen2.5-VL writes pixels of its resized input
                resized = prompts.resized_size(r["width"], r["height"], min_pixels=self.pixels[0],
                                               max_pixels=self.pixels[1])
            examples.append(prompts.sft_example(r, self.vocabulary if closed else None, self.system,
                                                self.convention, resized))
        return {k: [e[k] for e in examples] for k in ("images", "prompt", "completion")}


def trl_args(cfg: SFTRunConfig, output_dir: Path):
    """The TRL ``SFTConfig`` for a run (kept separate so tests and notebooks can inspect it)."""
    from trl import SFTConfig

    return SFTConfig(
        **trainer_kwargs(cfg, output_dir),
        num_train_epochs=cfg.num_train_epochs,
        per_device_train_batch_size=cfg.batch_size,
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,
        completion_only_loss=True,  # loss on the answer tokens only
        eval_strategy="no",
        dataloader_num_workers=cfg.dataloader_num_workers,
    )


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()


def _plain_loss_trainer_class():
    """``SFTTrainer`` whose loss is a plain cross-entropy over the answer tokens.

    TRL 1.16's SFT loss runs a fused, chunked LM head built for GPUs (Triton); on a CPU its torch fallback loops over
    tiles and recomputes them in the backward. Profiling the embedded model's SFT with py-spy put ~66% of each step in
    that kernel. This subclass overrides only ``compute_loss`` (a public ``Trainer`` hook): the backbone's hidden
    states at the answer positions go through the LM head once and into ``F.cross_entropy``, the same quantity (the
    mean NLL of the answer tokens) that the fused head computes. Used when no GPU is present.
    """
    import torch
    import torch.nn.functional as F
    from trl import SFTTrainer

    class PlainLossSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            core = model.get_base_model() if hasattr(model, "get_base_model") else model
            labels = inputs["labels"][:, 1:]
            hidden = core.model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
            keep = labels != -100
            logits = core.lm_head(hidden.last_hidden_state[:, :-1][keep])
            targets = labels[keep]
            total = F.cross_entropy(logits.float(), targets, reduction="sum")
            denom = torch.as_tensor(num_items_in_batch if num_items_in_batch is not None else keep.sum())
            loss = total / denom.to(total.device).clamp(min=1)
            mode = "train" if model.training else "eval"
            with torch.no_grad():
                acc = (logits.argmax(-1) == targets).float().mean().item() if targets.numel() else 0.0
            self._metrics[mode]["mean_token_accuracy"].append(acc)
            if return_outputs:
                raise ValueError("PlainLossSFTTrainer does not return logits; use the stock SFTTrainer")
            return loss

    return PlainLossSFTTrainer


CURVE_PANELS = ("train/loss", "eval/recall", "eval/mean_recall", "eval/ap50", "eval/failure_rate",
                "train/mean_token_accuracy")
"""the panels of an SFT run's ``curves.png``"""


def train_sft(cfg: SFTRunConfig, train_rows=None, val_rows=None, vocabulary=None,
              extra_callbacks: Sequence[TrainerCallback] = (),
              examples: Callable[[dict[str, list]], dict[str, list]] | None = None) -> dict[str, Any]:
    """Run SFT end to end; returns ``{"run_dir", "global_step", "metrics"}``.

    ``train_rows``/``val_rows`` default to :func:`sgglib.data.load_sgg` of ``cfg.dataset``; pass datasets to reuse
    them (tests, notebooks). ``examples`` replaces the scene-graph examples with another ``datasets`` transform of
    the rows into TRL prompt-completion examples (the embedded base's auxiliary tasks).
    """
    import torch
    from accelerate import PartialState
    from trl import SFTTrainer

    cfg.check()
    if PartialState().num_processes > 1 and cfg.max_minutes:
        raise ValueError("max_minutes would stop ranks at different steps; use max_steps with several processes")
    run_dir = shared_run_dir(cfg.run_dir, "sft")
    if PartialState().is_main_process:
        write_json(run_dir / "config.json", cfg)
    train_rows, val_rows = load_rows(cfg, train_rows, val_rows)
    if vocabulary is None and cfg.prompt != "open":
        vocabulary = data.vocabulary(cfg.dataset)
    torch.manual_seed(cfg.seed)
    model, processor = load_model_and_processor(cfg.model, dtype=cfg.dtype, attn_implementation=cfg.attn_implementation,
                                                 min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels,
                                                 autocast=use_bf16(cfg.bf16))
    if examples is None:
        examples = SFTExamples(cfg.prompt, prompts.system_prompt(cfg.system_prompt), vocabulary, cfg.seed,
                               box_convention(processor), pixel_bounds(processor))
    logger, validation, cbs = callbacks(cfg, "sft", run_dir, processor, val_rows, vocabulary,
                                        max_minutes=cfg.max_minutes)
    trainer_cls = SFTTrainer if _has_accelerator() else _plain_loss_trainer_class()
    trainer = trainer_cls(model=model, args=trl_args(cfg, run_dir / "checkpoints"),
                          train_dataset=train_rows.with_transform(examples), processing_class=processor,
                          peft_config=lora_config(cfg), callbacks=cbs + list(extra_callbacks))
    trainer.remove_callback(PrinterCallback)  # a dict per log step; metrics.csv holds them, Progress prints a line
    check_master_weights(cfg, trainer)
    train_resuming(trainer, run_dir, cfg.resume)
    metrics = finish_run(trainer, processor, run_dir, cfg, val_rows, vocabulary, logger, validation,
                         CURVE_PANELS)
    return {"run_dir": run_dir, "global_step": trainer.state.global_step, "metrics": metrics}


def main(argv: Sequence[str] | None = None) -> None:
    cfg = parse_cli(SFTRunConfig, argv, description=__doc__.split("\n")[0])
    result = train_sft(cfg)
    print(json.dumps({k: result["metrics"].get(k) for k in ("global_step",) + EVAL_KEYS}, indent=2))


if __name__ == "__main__":
    main()
