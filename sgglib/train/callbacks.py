"""TRL callbacks on the trainers' public hooks, shared by SFT and GRPO: what a run logs and prints while it trains.

* :class:`CSVLogger` — every ``trainer.log`` record as a namespaced ``metrics.csv`` row (:func:`metric_key`);
* :class:`GreedyValidation` — greedy decode + metrics every ``eval_steps`` (and, for GRPO, at step 0), one printed
  line each;
* :class:`Progress` — a console line every ``every_s`` seconds: step/total, elapsed, ETA and the last validation's
  recall (what ``make demo`` streams while a stage trains);
* :class:`TimeBudget` — stop (and save) after ``max_minutes``.

All of them act on the main process only, so ``accelerate launch`` runs write one run directory.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any, Callable

from transformers import TrainerCallback

from ..runs import read_metrics_csv
from .common import EVAL_KEYS, TrainConfig, greedy_validation


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
    a new column appears so it always has one header. Main process only; a resumed run keeps the earlier rows up to
    its checkpoint's step and drops the later ones, which the resumed steps log again."""

    def __init__(self, path: Path):
        self.path, self.t0, self.started = Path(path), time.time(), False
        self.rows: list[dict[str, Any]] = read_metrics_csv(self.path) if self.path.exists() else []

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.write()

    def write(self) -> None:
        columns = list(dict.fromkeys(k for r in self.rows for k in r)) or ["step"]
        with open(self.path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)

    def elapsed(self) -> float:
        return round(time.time() - self.t0, 1)

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0, self.started = time.time(), False

    def on_step_begin(self, args, state, control, **kwargs):
        # the first step of this session: transformers has loaded a resumed run's state by now (not at train begin)
        if not self.started:
            self.started = True
            if state.is_world_process_zero and any(int(r["step"]) > state.global_step for r in self.rows):
                self.rows = [r for r in self.rows if int(r["step"]) <= state.global_step]
                self.write()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or not state.is_world_process_zero:
            return
        row: dict[str, Any] = {"step": state.global_step, "time_s": self.elapsed()}
        for key, value in logs.items():
            name = metric_key(key)
            if name is not None and isinstance(value, (int, float)):
                row[name] = value
        self.add(row)


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
        self.last_metrics: tuple[int, dict[str, Any]] | None = None

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
        self.last_metrics = (step, metrics)
        print(eval_line(step, metrics), flush=True)


# -- progress and budget -------------------------------------------------------------------------------------------
class Progress(TrainerCallback):
    """A console line every ``every_s`` seconds while training: ``[label] step 120/1000  0:52 elapsed, ETA 6:21``
    (the ETA is the sooner of the remaining steps at the mean pace so far and the time budget). Main process only;
    ``print`` is flushed, so papermill's streamed output and ``make demo`` show it as it happens."""

    def __init__(self, label: str, max_minutes: float = 0.0, every_s: float = 30.0, echo: Callable = print,
                 validation: "GreedyValidation | None" = None):
        self.label, self.budget_s, self.every_s, self.echo = label, 60 * (max_minutes or 0), every_s, echo
        self.validation = validation
        self.t0 = self.last = time.time()
        self.start_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = None  # the clock starts at the first step: a step-0 validation is not training time

    def on_step_begin(self, args, state, control, **kwargs):
        if self.t0 is None:
            self.t0 = self.last = time.time()
            self.start_step = state.global_step

    def line(self, step: int, max_steps: int) -> str:
        elapsed = time.time() - self.t0 if self.t0 is not None else 0.0
        done = max(step - self.start_step, 0)
        eta = (max_steps - step) * elapsed / done if done and max_steps > 0 else float("inf")
        if self.budget_s:
            eta = min(eta, max(self.budget_s - elapsed, 0.0))
        eta_text = _clock(eta) if eta != float("inf") else "?"
        line = f"[{self.label}] step {step}/{max_steps}  {_clock(elapsed)} elapsed, ETA {eta_text}"
        if self.validation is not None and self.validation.last_metrics:
            s, m = self.validation.last_metrics
            line += f"  | val @ {s}: recall {m['recall']:.2f}, failures {m['failure_rate']:.1f} %"
        return line

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
    """Stop (and save) once ``minutes`` of wall time have passed since the first training step (0 = no budget);
    validations during training count, a step-0 validation does not."""

    def __init__(self, minutes: float):
        self.seconds, self.t0 = 60 * (minutes or 0), time.time()

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = None

    def on_step_begin(self, args, state, control, **kwargs):
        if self.t0 is None:  # from the first step: a step-0 validation does not eat the budget
            self.t0 = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds and time.time() - self.t0 > self.seconds:
            control.should_training_stop = True
            control.should_save = True


def callbacks(cfg: TrainConfig, label: str, run_dir: Path, processor, val_rows, vocabulary=None,
              validate_at_start: bool = False, max_minutes: float = 0.0) -> tuple[CSVLogger, GreedyValidation,
                                                                                  list[TrainerCallback]]:
    """The logger, the validation callback (it validates during training only with validation rows and
    ``eval_steps``; the end of the run records through it either way) and the full list a trainer gets."""
    logger = CSVLogger(run_dir / "metrics.csv")
    validation = GreedyValidation(processor, val_rows or [], cfg, logger, vocabulary, at_start=validate_at_start)
    cbs: list[TrainerCallback] = [logger, Progress(label, max_minutes, validation=validation), TimeBudget(max_minutes)]
    return logger, validation, cbs + ([validation] if val_rows and cfg.eval_steps else [])
