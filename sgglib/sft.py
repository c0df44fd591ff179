"""Supervised fine-tuning (PAPER.md §3) through stock TRL ``SFTTrainer`` in its vision-language mode.

Rows of a scene-graph dataset (``sgglib.data.load_sgg``) become TRL prompt-completion examples
``{"images": [img], "prompt": [user turn], "completion": [assistant turn]}``; TRL's own
``DataCollatorForVisionLanguageModeling`` tokenises them and, with ``completion_only_loss=True``, masks everything
but the answer (and its ``<|im_end|>``). Deliberate difference: the reference's SFT trained on the whole sequence,
prompt included (its collator masked only padding and image tokens); we follow TRL's default for prompt-completion
data and learn the answer only.

What a run writes into its directory (STYLE.md §3): ``config.json``, ``metrics.csv`` (``train/…`` rows every
``logging_steps``, ``eval/…`` rows every ``eval_steps``), ``checkpoints/checkpoint-N`` (resumable), ``final/`` (the
model + processor, loadable by :func:`sgglib.models.load_model_and_processor`), ``predictions.jsonl`` and
``metrics.json`` of the final validation, and ``curves.png``.

The same machinery pre-trains the embedded *base* model on auxiliary tasks (:func:`sgglib.tiny.pretrain_base`); it
plays the role of Qwen2-VL-Instruct: it knows the images, the names and the box grid, but has never seen the
scene-graph task.

Command line: ``python -m sgglib.sft --pretrain-base`` builds ``data/models/tiny-base``;
``python -m sgglib.sft --run-dir sft-ref --max-steps 1500`` runs SFT with the embedded defaults.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from transformers import Qwen2_5_VLProcessor, TrainerCallback

from . import prompts
from .models import evaluate_model, load_model_and_processor, save_final
from .prompts import SFT_SYSTEM_PROMPT
from .runs import make_run_dir, write_json


@dataclass
class SFTRunConfig:
    """One SFT run. Defaults: the embedded world and tiny model on 2 CPU cores (see :data:`PAPER_SFT` for the
    paper's real-path parameters)."""

    model: str = "tiny-base"
    """hub id, local directory, or an embedded name (``tiny-base``, ``tiny-init``)"""
    dataset: str = "synthetic"
    """dataset name for ``sgglib.data.load_sgg`` (``synthetic``, ``vg150``, ``psg``)"""
    train_split: str = "train"
    """split to train on"""
    val_split: str = "val"
    """split for periodic and final validation"""
    train_limit: int | None = None
    """cap on training images (None = the whole split)"""
    val_limit: int = 64
    """validation images decoded at each evaluation"""
    prompt: str = "closed"
    """``open``, ``closed`` (vocabulary listed) or ``mixed`` (each example picks one at random)"""
    system_prompt: str | None = SFT_SYSTEM_PROMPT
    """system turn (the reference's SFT: "You are a helpful and multimodal AI assistant."); None = the chat
    template's default"""
    run_dir: str | None = None
    """run directory (relative paths go under reports/); None = reports/sft-<timestamp>"""
    max_steps: int = 1000
    """optimizer steps; -1 = run ``num_train_epochs``"""
    num_train_epochs: float = 1.0
    """epochs when ``max_steps`` is -1"""
    batch_size: int = 16
    """per-device batch size"""
    grad_accum: int = 1
    """gradient accumulation steps (effective batch = batch_size × grad_accum × devices)"""
    learning_rate: float = 2e-3
    """peak AdamW learning rate (2e-3 suits the 0.6 M tiny model; the paper used 1e-5 for 2B/7B)"""
    lr_scheduler: str = "cosine"
    """transformers scheduler name"""
    warmup_ratio: float = 0.05
    """fraction of steps spent warming up"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    max_grad_norm: float = 1.0
    """gradient clipping (the paper: 0.3)"""
    max_length: int | None = 2048
    """truncate sequences (prompt + image tokens + answer) to this many tokens"""
    dtype: str = "float32"
    """model weights dtype when loading (``bfloat16`` on GPU)"""
    bf16: bool = False
    """bf16 mixed precision (GPU)"""
    attn_implementation: str = "sdpa"
    """``sdpa``, ``eager`` or ``flash_attention_2`` (GPU)"""
    gradient_checkpointing: bool = False
    """trade compute for memory; TRL turns it on by default, which only slows the tiny CPU model (FACTS.md)"""
    lora_r: int = 0
    """LoRA rank; 0 = full fine-tuning. ``final/`` holds the merged model either way (adapters in
    ``final/adapter/``)"""
    lora_alpha: int = 16
    """LoRA scaling"""
    lora_dropout: float = 0.05
    """LoRA dropout"""
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """modules that get adapters"""
    logging_steps: int = 10
    """log train loss / lr / grad norm every N steps"""
    eval_steps: int = 200
    """greedy-decode ``val_limit`` images and score them every N steps (0 = only at the end)"""
    eval_batch_size: int = 32
    """images per generate() call during validation"""
    eval_max_new_tokens: int = 400
    """generation budget during validation (answers of the default world take 75–250 tokens of the tiny
    tokenizer; a budget that cuts an answer makes it a ``truncated`` failure)"""
    save_steps: int = 500
    """checkpoint every N steps"""
    save_total_limit: int = 2
    """checkpoints kept"""
    resume: bool = True
    """resume from the newest checkpoint in the run directory if there is one"""
    max_minutes: float | None = None
    """stop training after this many minutes of wall time (the checkpoint and final evaluation still happen)"""
    seed: int = 0
    """seed for data order, dropout and the prompt mix"""
    dataloader_num_workers: int = 0
    """collation workers (0 = in the training process)"""

    def validate(self) -> "SFTRunConfig":
        if self.prompt not in ("open", "closed", "mixed"):
            raise ValueError(f"prompt must be open, closed or mixed, got {self.prompt!r}")
        if self.max_steps == 0 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("max_steps must be -1 or positive; batch_size and grad_accum >= 1")
        if self.learning_rate <= 0 or not 0 <= self.warmup_ratio < 1:
            raise ValueError("learning_rate > 0 and 0 <= warmup_ratio < 1 required")
        return self


# The paper's SFT (PAPER.md §3; reference scripts/sft/2B_sgg.sh): Qwen2-VL-2B-Instruct, VG150 train, open prompt,
# 3 epochs, effective batch 128 (per device 8 × accumulation 4 × 4 GPUs; on one GPU use grad_accum=16), AdamW lr
# 1e-5, warmup 0.05, max_grad_norm 0.3, bf16, flash-attention 2, seed 42. The transformers default (linear)
# scheduler. min/max pixels 3136 / 1024·28·28 are the processor's defaults for that checkpoint.
PAPER_SFT = SFTRunConfig(
    model="Qwen/Qwen2-VL-2B-Instruct", dataset="vg150", prompt="open", max_steps=-1, num_train_epochs=3,
    batch_size=8, grad_accum=4, learning_rate=1e-5, lr_scheduler="linear", warmup_ratio=0.05, max_grad_norm=0.3,
    dtype="bfloat16", bf16=True, attn_implementation="flash_attention_2", gradient_checkpointing=True,
    eval_steps=0, eval_max_new_tokens=2048, save_steps=100, seed=42, val_limit=5000, max_length=None,
)


# -- examples ---------------------------------------------------------------------------------------------------------
def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def sft_example(row: dict, vocabulary=None, system: str | None = SFT_SYSTEM_PROMPT, convention: str = "qwen2vl",
                resized: tuple[int, int] | None = None) -> dict:
    """A TRL prompt-completion example: the task prompt (closed iff ``vocabulary``) with the image, and the fenced
    JSON answer in the model's box convention (:func:`sgglib.prompts.sft_target`)."""
    return {
        "images": [row["image"].convert("RGB")],
        "prompt": prompts.prompt_messages(prompts.user_prompt(vocabulary), system),
        "completion": _assistant(prompts.sft_target(row, convention, resized)),
    }


class _Examples:
    """A ``datasets`` transform turning stored rows into TRL examples on the fly (images stay encoded on disk)."""

    def __init__(self, kind: str, prompt: str = "closed", system: str | None = SFT_SYSTEM_PROMPT, vocabulary=None,
                 seed: int = 0, convention: str = "qwen2vl"):
        self.kind, self.prompt, self.system, self.vocabulary = kind, prompt, system, vocabulary
        self.convention, self.rng = convention, random.Random(seed)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        if self.kind == "aux":
            from .tiny import aux_examples

            examples = [self.rng.choice(aux_examples(r, self.rng, self.system, vocabulary=self.vocabulary))
                        for r in rows]
        else:
            examples = []
            for r in rows:
                closed = self.prompt == "closed" or (self.prompt == "mixed" and self.rng.random() < 0.5)
                resized = None
                if self.convention != "qwen2vl":  # Qwen2.5-VL writes pixels of its resized input
                    resized = prompts.resized_size(r["width"], r["height"])
                examples.append(sft_example(r, self.vocabulary if closed else None, self.system, self.convention,
                                            resized))
        return {k: [e[k] for e in examples] for k in ("images", "prompt", "completion")}


def make_train_dataset(rows, kind: str = "sgg", prompt: str = "closed", system: str | None = SFT_SYSTEM_PROMPT,
                       vocabulary=None, seed: int = 0, convention: str = "qwen2vl"):
    """Wrap a ``datasets.Dataset`` of scene-graph rows for ``SFTTrainer`` (``kind``: ``sgg`` or ``aux``)."""
    return rows.with_transform(_Examples(kind, prompt, system, vocabulary, seed, convention))


# -- logging, validation, plotting ------------------------------------------------------------------------------------
class CSVLogger(TrainerCallback):
    """Append every ``trainer.log`` record to ``metrics.csv`` with namespaced keys (``train/loss``, ``eval/recall``),
    rewriting the file when a new column appears so it always has one header."""

    def __init__(self, path: Path):
        self.path, self.t0 = path, time.time()
        self.rows: list[dict[str, Any]] = []
        if path.exists():  # resuming: keep what the interrupted run logged
            with open(path) as fh:
                self.rows = list(csv.DictReader(fh))

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        columns = list(dict.fromkeys(k for r in self.rows for k in r))
        with open(self.path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.time()

    def elapsed(self) -> float:
        return round(time.time() - self.t0, 1)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        row: dict[str, Any] = {"step": state.global_step, "time_s": self.elapsed()}
        for key, value in logs.items():
            if isinstance(value, (int, float)):
                row[key if "/" in key else f"train/{key}"] = value
        self.add(row)


def validate(model, processor, rows, cfg: SFTRunConfig, out_path: Path | None = None,
             vocabulary=None) -> dict[str, Any]:
    """Greedy validation with the run's prompt (``mixed`` validates on the closed prompt)."""
    return evaluate_model(model, processor, rows, vocabulary if cfg.prompt != "open" else None, cfg.system_prompt,
                          out_path, cfg.eval_batch_size, cfg.eval_max_new_tokens)


EVAL_KEYS = ("failure_rate", "ap50", "recall", "mean_recall", "recall_pooled")


class ValidationCallback(TrainerCallback):
    """Every ``eval_steps``: greedy decode + metrics on the validation rows, logged as ``eval/…`` to the CSV."""

    def __init__(self, processor, rows, cfg: SFTRunConfig, logger: CSVLogger, vocabulary=None):
        self.processor, self.rows, self.cfg, self.logger, self.vocabulary = processor, rows, cfg, logger, vocabulary

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.cfg.eval_steps and state.global_step % self.cfg.eval_steps == 0 and model is not None:
            was_training = model.training
            metrics = validate(model, self.processor, self.rows, self.cfg, vocabulary=self.vocabulary)
            model.train(was_training)
            self.record(state.global_step, metrics)

    def record(self, step: int, metrics: dict[str, Any]) -> None:
        """One ``eval/…`` row in the CSV (also used for the final evaluation, so curves end where the run ends)."""
        if any(r.get("step") == step and "eval/recall" in r for r in self.logger.rows):
            return
        row = {"step": step, "time_s": self.logger.elapsed()}
        row.update({f"eval/{k}": metrics[k] for k in EVAL_KEYS if k in metrics})
        self.logger.add(row)


class TimeBudget(TrainerCallback):
    """Stop (and save) once ``minutes`` of wall time have passed since training began."""

    def __init__(self, minutes: float):
        self.seconds, self.t0 = 60 * minutes, time.time()

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds and time.time() - self.t0 > self.seconds:
            control.should_training_stop = True
            control.should_save = True


def plot_curves(csv_path: str | Path):
    """Training loss and validation metrics against steps, from a run's ``metrics.csv``; returns the Figure."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))

    def series(key):
        pts = [(float(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot(*series("train/loss"), label="train loss")
    ax_loss.set(xlabel="step", ylabel="loss", yscale="log", title="SFT loss (answer tokens)")
    for key in EVAL_KEYS[:4]:
        xs, ys = series(f"eval/{key}")
        if xs:
            ax_eval.plot(xs, ys, marker="o", label=key)
    ax_eval.set(xlabel="step", ylabel="%", title="greedy validation")
    if ax_eval.lines:
        ax_eval.legend()
    fig.tight_layout()
    return fig


# -- the run ----------------------------------------------------------------------------------------------------------
def trl_args(cfg: SFTRunConfig, output_dir: Path):
    """The TRL ``SFTConfig`` for a run (kept separate so tests and notebooks can inspect it)."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(output_dir),
        max_steps=cfg.max_steps,
        num_train_epochs=cfg.num_train_epochs,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        max_length=cfg.max_length,
        bf16=cfg.bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        completion_only_loss=True,  # loss on the answer tokens only
        remove_unused_columns=False,  # the transform needs every stored column
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="no",
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=cfg.dataloader_num_workers,
        report_to="none",
        disable_tqdm=True,
        use_cpu=not _has_accelerator(),
    )


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()


def _lora_config(cfg: SFTRunConfig):
    if not cfg.lora_r:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_target_modules), task_type="CAUSAL_LM")


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


def build_trainer(cfg: SFTRunConfig, model, processor, train_dataset, run_dir: Path, val_rows=None,
                  vocabulary=None, callbacks: Sequence[TrainerCallback] = ()):
    """A stock ``SFTTrainer`` (on CPU with the plain answer-token loss above) with our callbacks: CSV logging,
    periodic validation, time budget."""
    from trl import SFTTrainer

    trainer_cls = SFTTrainer if _has_accelerator() else _plain_loss_trainer_class()
    logger = CSVLogger(run_dir / "metrics.csv")
    cbs: list[TrainerCallback] = [logger, TimeBudget(cfg.max_minutes or 0)]
    if val_rows is not None and cfg.eval_steps:
        cbs.append(ValidationCallback(processor, val_rows, cfg, logger, vocabulary))
    return trainer_cls(model=model, args=trl_args(cfg, run_dir / "checkpoints"), train_dataset=train_dataset,
                      processing_class=processor, peft_config=_lora_config(cfg), callbacks=cbs + list(callbacks))


def _last_checkpoint(run_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    ckpt_dir = run_dir / "checkpoints"
    return get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None


def train(cfg: SFTRunConfig, train_rows=None, val_rows=None, vocabulary=None,
          callbacks: Sequence[TrainerCallback] = (), kind: str = "sgg") -> dict[str, Any]:
    """Run SFT end to end; returns ``{"run_dir", "global_step", "metrics"}``.

    ``train_rows``/``val_rows`` default to ``sgglib.data.load_sgg(cfg.dataset, split=…)``; pass datasets to reuse
    them (tests, notebooks). ``kind="aux"`` trains on the auxiliary tasks instead (see :func:`pretrain_base`).
    """
    import torch

    cfg.validate()
    run_dir = make_run_dir(cfg.run_dir, kind="sft")
    write_json(run_dir / "config.json", cfg)
    if train_rows is None or val_rows is None:
        from . import data

        train_rows = train_rows if train_rows is not None else data.load_sgg(cfg.dataset, split=cfg.train_split)
        val_rows = val_rows if val_rows is not None else data.load_sgg(cfg.dataset, split=cfg.val_split)
    if cfg.train_limit is not None:
        train_rows = train_rows.select(range(min(cfg.train_limit, len(train_rows))))
    val_rows = [val_rows[i] for i in range(min(cfg.val_limit, len(val_rows)))] if kind == "sgg" else None
    if vocabulary is None and cfg.prompt != "open" and kind == "sgg":
        from . import data

        vocabulary = data.vocabulary(cfg.dataset)
    torch.manual_seed(cfg.seed)
    model, processor = load_model_and_processor(cfg.model, dtype=cfg.dtype,
                                                 attn_implementation=cfg.attn_implementation)
    convention = "qwen2.5vl" if isinstance(processor, Qwen2_5_VLProcessor) else "qwen2vl"
    dataset = make_train_dataset(train_rows, kind, cfg.prompt, cfg.system_prompt, vocabulary, cfg.seed, convention)
    trainer = build_trainer(cfg, model, processor, dataset, run_dir, val_rows, vocabulary, callbacks)
    resume = _last_checkpoint(run_dir) if cfg.resume else None
    trainer.train(resume_from_checkpoint=resume)
    final = run_dir / "final"
    save_final(trainer, processor, final)
    metrics: dict[str, Any] = {"global_step": trainer.state.global_step}
    if val_rows:
        metrics.update(validate(trainer.model, processor, val_rows, cfg, run_dir / "predictions.jsonl", vocabulary))
        write_json(run_dir / "metrics.json", metrics)
        for cb in trainer.callback_handler.callbacks:
            if isinstance(cb, ValidationCallback):
                cb.record(trainer.state.global_step, metrics)
    if (run_dir / "metrics.csv").exists():
        fig = plot_curves(run_dir / "metrics.csv")
        fig.savefig(run_dir / "curves.png", dpi=100)
    return {"run_dir": run_dir, "global_step": trainer.state.global_step, "metrics": metrics}


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrain-base", action="store_true", help="build data/models/tiny-base and exit")
    for f in dataclasses.fields(SFTRunConfig):
        if f.type in ("int", "float", "str", "int | None", "str | None", "float | None"):
            caster = {"int": int, "float": float}.get(f.type.split(" ")[0], str)
            parser.add_argument("--" + f.name.replace("_", "-"), type=caster, default=None)
    args = vars(parser.parse_args(argv))
    pretrain = args.pop("pretrain_base")
    given = {k: v for k, v in args.items() if v is not None}
    if pretrain:
        from .tiny import pretrain_base

        print(pretrain_base(**given))
        return
    result = train(SFTRunConfig(**given))
    print(json.dumps({k: result["metrics"].get(k) for k in ("global_step",) + EVAL_KEYS}, indent=2))


if __name__ == "__main__":
    main()
