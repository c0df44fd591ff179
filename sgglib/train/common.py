"""What SFT and GRPO share: the rows they read, the run directory they write, and TRL callbacks on its public hooks.

* :func:`load_rows` — training and validation rows of a run config (``dataset``, splits, limits);
* :class:`CSVLogger` — every ``trainer.log`` record as a namespaced ``metrics.csv`` row (:func:`metric_key`);
* :class:`GreedyValidation` — greedy decode + metrics every ``eval_steps`` (and, for GRPO, at step 0), one printed
  line each; :func:`greedy_validation` is the same measurement on demand;
* :class:`Progress` — a console line every ``every_s`` seconds: step/total, elapsed, ETA and the last validation
  (what ``make demo`` streams while a stage trains);
* :class:`TimeBudget` — stop (and save) after ``max_minutes``;
* :func:`finish_run` — ``final/`` (:func:`save_final`), the final validation into ``predictions.jsonl`` and
  ``metrics.json``, and ``curves.png``.

Logging, validation and final writes happen on the main process only, so ``accelerate launch`` runs write one
run directory.
"""

from __future__ import annotations

import copy
import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from transformers import TrainerCallback

from .. import data, prompts, viz
from ..models import decode_and_score
from ..runs import read_metrics_csv, write_json

EVAL_KEYS = ("failure_rate", "ap50", "recall", "mean_recall", "recall_pooled")
"""the greedy-validation metrics logged as ``eval/<key>`` (the paper's table columns first)"""


@dataclass
class TrainConfig:
    """The fields every training run shares (SFT, GRPO): data, prompt, optimisation, precision, LoRA, validation,
    checkpoints, budget. :class:`~sgglib.train.sft.SFTRunConfig` and :class:`~sgglib.train.grpo.GRPORunConfig` add
    their own and set their own defaults (the embedded world and tiny model on 2 CPU cores)."""

    dataset: str = "synthetic"
    """:func:`sgglib.data.load_sgg` source: ``synthetic``, a VG150 directory, a ``psg.json``, a hub id"""
    train_split: str = "train"
    """split to train on (GRPO draws its prompts from it)"""
    val_split: str = "val"
    """split for periodic and final greedy validation"""
    train_limit: int = 0
    """cap on training images (0 = the whole split)"""
    val_limit: int = 64
    """validation images decoded at each evaluation (0 = no validation)"""
    prompt: str = "closed"
    """``closed`` (vocabulary listed; the paper's main setting) or ``open`` (SFT also takes ``mixed``)"""
    system_prompt: str = "sft"
    """system turn: ``sft`` (the reference's SFT prompt, "You are a helpful and multimodal AI assistant."), ``rl``
    (the paper's R1-style think/answer prompt), ``none`` (the chat template's default) or the text itself"""
    max_steps: int = 300
    """optimizer steps; -1 = the epochs of the run (the paper)"""
    grad_accum: int = 1
    """gradient accumulation: micro-batches per optimizer step"""
    learning_rate: float = 2e-5
    """peak AdamW learning rate"""
    lr_scheduler: str = "constant"
    """transformers scheduler name"""
    warmup_ratio: float = 0.0
    """fraction of steps warming up"""
    max_grad_norm: float = 1.0
    """gradient clipping"""
    dtype: str = "float32"
    """weights dtype when loading (``bfloat16`` on GPU)"""
    bf16: bool = False
    """bf16 mixed precision (GPU)"""
    attn_implementation: str = "sdpa"
    """``sdpa``, ``eager`` or ``flash_attention_2`` (GPU)"""
    gradient_checkpointing: bool = False
    """trade compute for memory; TRL turns it on by default, which only slows the tiny CPU model"""
    lora_r: int = 0
    """LoRA rank; 0 = full fine-tuning. ``final/`` holds the merged model either way (adapters in
    ``final/adapter/``)"""
    lora_alpha: int = 16
    """LoRA scaling"""
    lora_dropout: float = 0.0
    """LoRA dropout"""
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """modules that get adapters"""
    logging_steps: int = 1
    """write a ``train/…`` row every N steps (TRL averages its metrics over them)"""
    eval_steps: int = 50
    """greedy validation every N steps (0 = only at the end)"""
    eval_batch_size: int = 32
    """images per generate() call during validation"""
    eval_max_new_tokens: int = 400
    """generation budget during validation (the paper: 2048; answers of the default world take 75–250 tokens of
    the tiny tokenizer, and a budget that cuts an answer makes it a ``truncated`` failure)"""
    save_steps: int = 100
    """checkpoint every N steps"""
    save_total_limit: int = 2
    """checkpoints kept"""
    resume: bool = True
    """resume from the newest checkpoint in the run directory if there is one"""
    max_minutes: float = 0.0
    """stop training after this many minutes of wall time (0 = no limit); the checkpoint and final validation still
    happen"""
    seed: int = 0
    """seed for data order, sampling, dropout and the prompt mix"""
    run_dir: str = ""
    """run directory (relative paths go under reports/); "" = reports/<kind>-<timestamp>"""

    def check(self):
        """Raise ``ValueError`` for an impossible setting; returns the config."""
        if self.max_steps == 0 or self.grad_accum < 1:
            raise ValueError("max_steps must be -1 or positive and grad_accum >= 1")
        if self.learning_rate <= 0 or not 0 <= self.warmup_ratio < 1:
            raise ValueError("learning_rate > 0 and 0 <= warmup_ratio < 1 required")
        return self


# -- rows ---------------------------------------------------------------------------------------------------------
def load_rows(cfg: TrainConfig, train_rows=None, val_rows=None) -> tuple[Any, list[dict] | None]:
    """``(training rows, validation rows)``: loaded from ``cfg.dataset`` unless given, the training rows capped at
    ``train_limit`` (0 = all), the first ``val_limit`` validation rows as a list (None when ``val_limit`` is 0)."""
    if train_rows is None:
        train_rows = data.load_sgg(cfg.dataset, split=cfg.train_split)
    if cfg.train_limit:
        train_rows = train_rows.select(range(min(cfg.train_limit, len(train_rows))))
    if not cfg.val_limit:
        return train_rows, None
    if val_rows is None:
        val_rows = data.load_sgg(cfg.dataset, split=cfg.val_split)
    return train_rows, [val_rows[i] for i in range(min(cfg.val_limit, len(val_rows)))]


def trainer_kwargs(cfg: TrainConfig, output_dir: Path) -> dict[str, Any]:
    """The ``transformers.TrainingArguments`` fields both TRL configs take from a :class:`TrainConfig` (the rest is
    each trainer's own): optimisation, precision, logging, checkpoints, seeds; no tqdm (:class:`Progress` prints)."""
    import torch

    return dict(
        output_dir=str(output_dir),
        max_steps=cfg.max_steps,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        max_grad_norm=cfg.max_grad_norm,
        bf16=cfg.bf16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        remove_unused_columns=False,  # the row transforms need every stored column; GRPO's rewards read them
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        seed=cfg.seed,
        data_seed=cfg.seed,
        report_to="none",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )


def lora_config(cfg: TrainConfig):
    """The PEFT ``LoraConfig`` of a run, or None for full fine-tuning (``lora_r`` 0)."""
    if not cfg.lora_r:
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=list(cfg.lora_target_modules), task_type="CAUSAL_LM")


# -- metrics.csv ----------------------------------------------------------------------------------------------------
_RENAMES = {"completions/mean_length": "train/completion_length", "clip_ratio/region_mean": "train/clip_ratio",
            "completions/clipped_ratio": "train/truncated_ratio"}
MEASURE_ONLY = "sampled_stats"
"""the name of GRPO's weight-0 measuring "reward" (:class:`sgglib.train.grpo.SampledStats`); its column is dropped"""


def metric_key(key: str) -> str | None:
    """A TRL log key → our namespaced CSV column (``loss`` → ``train/loss``, ``rewards/edge_hard_reward/mean`` →
    ``train/reward_edge_hard``); None drops it."""
    if key.startswith("rewards/"):
        _, name, stat = key.split("/", 2)
        if name == MEASURE_ONLY:
            return None
        return f"train/reward_{name.removesuffix('_reward')}" + ("" if stat == "mean" else f"_{stat}")
    if key in _RENAMES:
        return _RENAMES[key]
    return key if key.startswith(("train/", "eval/")) else f"train/{key}"


class CSVLogger(TrainerCallback):
    """Append every ``trainer.log`` record to ``metrics.csv`` with :func:`metric_key` names, rewriting the file when
    a new column appears so it always has one header. Main process only; a resumed run keeps the earlier rows."""

    def __init__(self, path: Path):
        self.path, self.t0 = Path(path), time.time()
        self.rows: list[dict[str, Any]] = read_metrics_csv(self.path) if self.path.exists() else []

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        columns = list(dict.fromkeys(k for r in self.rows for k in r))
        with open(self.path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)

    def elapsed(self) -> float:
        return round(time.time() - self.t0, 1)

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        row: dict[str, Any] = {"step": state.global_step, "time_s": self.elapsed()}
        for key, value in logs.items():
            name = metric_key(key)
            if name is not None and isinstance(value, (int, float)):
                row[name] = value
        self.add(row)


# -- greedy validation ---------------------------------------------------------------------------------------------
def greedy_validation(model, processor, rows, cfg: TrainConfig, vocabulary=None,
                      out_path: Path | None = None) -> dict[str, Any]:
    """Greedy decode ``rows`` with the run's prompt and system turn, and score them (``mixed`` prompts validate on
    the closed prompt)."""
    return decode_and_score(model, processor, rows, vocabulary if cfg.prompt != "open" else None,
                            prompts.system_prompt(cfg.system_prompt), out_path, cfg.eval_batch_size,
                            cfg.eval_max_new_tokens)


def eval_line(step: int, metrics: dict[str, Any]) -> str:
    """One line of greedy-validation progress."""
    shown = "  ".join(f"{k} {float(metrics[k]):6.2f}" for k in EVAL_KEYS[:4] if k in metrics)
    return f"step {step:>5}  greedy val: {shown}"


class GreedyValidation(TrainerCallback):
    """Every ``cfg.eval_steps`` (and at step 0 with ``at_start``): :func:`greedy_validation` on the validation rows,
    an ``eval/…`` row in the CSV and a printed line; main process only. The step-0 metrics stay as :attr:`initial`."""

    def __init__(self, processor, rows, cfg: TrainConfig, logger: CSVLogger, vocabulary=None, at_start: bool = False):
        self.processor, self.rows, self.cfg, self.logger, self.vocabulary = processor, rows, cfg, logger, vocabulary
        self.at_start = at_start
        self.initial: dict[str, Any] | None = None
        self.last: str = ""

    def _run(self, model, step: int) -> dict[str, Any]:
        was_training = model.training
        metrics = greedy_validation(model, self.processor, self.rows, self.cfg, self.vocabulary)
        model.train(was_training)
        self.record(step, metrics)
        return metrics

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.at_start and state.global_step == 0 and state.is_world_process_zero and model is not None:
            self.initial = self._run(model, 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if self.cfg.eval_steps and step % self.cfg.eval_steps == 0 and model is not None and state.is_world_process_zero:
            self._run(model, step)

    def record(self, step: int, metrics: dict[str, Any]) -> None:
        """One ``eval/…`` row in the CSV and a printed line (also for the final validation, so curves end where the
        run ends)."""
        if any(r.get("step") == step and "eval/recall" in r for r in self.logger.rows):
            return
        row = {"step": step, "time_s": self.logger.elapsed()}
        row.update({f"eval/{k}": metrics[k] for k in EVAL_KEYS if k in metrics})
        self.logger.add(row)
        self.last = eval_line(step, metrics)
        print(self.last, flush=True)


# -- progress and budget -------------------------------------------------------------------------------------------
class Progress(TrainerCallback):
    """A console line every ``every_s`` seconds while training: ``[label] step 120/1000  0:52 elapsed, ETA 6:21``
    (the ETA is the sooner of the remaining steps at the mean pace so far and the time budget). Main process only;
    ``print`` is flushed, so papermill's streamed output and ``make demo`` show it as it happens."""

    def __init__(self, label: str, max_minutes: float = 0.0, every_s: float = 30.0, echo: Callable = print):
        self.label, self.budget_s, self.every_s, self.echo = label, 60 * max_minutes, every_s, echo
        self.t0 = self.last = time.time()
        self.start_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = self.last = time.time()
        self.start_step = state.global_step

    def line(self, step: int, max_steps: int) -> str:
        elapsed = time.time() - self.t0
        done = max(step - self.start_step, 0)
        eta = (max_steps - step) * elapsed / done if done and max_steps > 0 else float("inf")
        if self.budget_s:
            eta = min(eta, max(self.budget_s - elapsed, 0.0))
        eta_text = _clock(eta) if eta != float("inf") else "?"
        return f"[{self.label}] step {step}/{max_steps}  {_clock(elapsed)} elapsed, ETA {eta_text}"

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and time.time() - self.last >= self.every_s:
            self.last = time.time()
            self.echo(self.line(state.global_step, state.max_steps), flush=True)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.echo(self.line(state.global_step, state.max_steps) + "  (training done)", flush=True)


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


class TimeBudget(TrainerCallback):
    """Stop (and save) once ``minutes`` of wall time have passed since training began (0 = no budget)."""

    def __init__(self, minutes: float):
        self.seconds, self.t0 = 60 * (minutes or 0), time.time()

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds and time.time() - self.t0 > self.seconds:
            control.should_training_stop = True
            control.should_save = True


def callbacks(cfg: TrainConfig, label: str, run_dir: Path, processor, val_rows, vocabulary=None,
              validate_at_start: bool = False, max_minutes: float = 0.0) -> tuple[CSVLogger, GreedyValidation | None,
                                                                                  list[TrainerCallback]]:
    """The logger, the validation callback (None without validation rows or ``eval_steps``) and the full list
    (logger, progress, budget, validation) a trainer gets."""
    logger = CSVLogger(run_dir / "metrics.csv")
    validation = None
    if val_rows and cfg.eval_steps:
        validation = GreedyValidation(processor, val_rows, cfg, logger, vocabulary, at_start=validate_at_start)
    cbs: list[TrainerCallback] = [logger, Progress(label, max_minutes), TimeBudget(max_minutes)]
    return logger, validation, cbs + ([validation] if validation is not None else [])


# -- checkpoints and the end of a run ------------------------------------------------------------------------------
def last_checkpoint(run_dir: Path) -> str | None:
    """The newest ``checkpoints/checkpoint-N`` of a run directory (to resume from), or None."""
    from transformers.trainer_utils import get_last_checkpoint

    ckpt_dir = Path(run_dir) / "checkpoints"
    return get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None


def save_final(trainer, processor, final: str | Path) -> Path:
    """Save a trainer's model and processor to ``final/`` as a plain checkpoint that
    :func:`sgglib.models.load_model_and_processor` reads. A LoRA run's adapters go to ``final/adapter/`` and a copy
    of the model with them merged into the weights goes to ``final/`` itself (``trainer.save_model`` alone would
    leave only the adapters, which no loader here reads). Under ZeRO-3 / FSDP the weights are sharded, so only the
    adapters are saved (to ``final/adapter/``); merge them afterwards with ``peft``'s ``merge_and_unload``."""
    from peft import PeftModel

    final = Path(final)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if isinstance(model, PeftModel):
        trainer.save_model(str(final / "adapter"))
        plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
        if getattr(trainer, "is_fsdp_enabled", False) or getattr(plugin, "zero_stage", 0) == 3:
            print(f"sharded LoRA run: adapters saved to {final / 'adapter'}; final/ has no merged model")
        elif trainer.is_world_process_zero():
            copy.deepcopy(model).merge_and_unload().save_pretrained(final)
    else:
        trainer.save_model(str(final))
    if trainer.is_world_process_zero():
        processor.save_pretrained(final)
        processor.tokenizer.save_pretrained(final)
    return final


def finish_run(trainer, processor, run_dir: Path, cfg: TrainConfig, val_rows, vocabulary, logger: CSVLogger,
               validation: GreedyValidation | None, curve_panels: Sequence, extra: dict[str, Any] | None = None,
               ) -> dict[str, Any]:
    """Save ``final/``; on the main process validate it into ``predictions.jsonl`` and ``metrics.json`` (with the
    step-0 validation as ``initial`` when there was one) and draw ``curves.png``. Returns the metrics."""
    save_final(trainer, processor, run_dir / "final")
    metrics: dict[str, Any] = {"global_step": trainer.state.global_step, **(extra or {})}
    if not trainer.is_world_process_zero():
        return metrics
    if val_rows:
        metrics.update(greedy_validation(trainer.model, processor, val_rows, cfg, vocabulary,
                                         run_dir / "predictions.jsonl"))
        if validation is not None and validation.initial is not None:
            metrics["initial"] = validation.initial
        write_json(run_dir / "metrics.json", metrics)
        (validation or GreedyValidation(processor, val_rows, cfg, logger)).record(trainer.state.global_step, metrics)
    if logger.rows:
        fig = viz.plot_curves({run_dir.name: read_metrics_csv(logger.path)}, curve_panels)
        fig.savefig(run_dir / "curves.png", dpi=100)
    return metrics
