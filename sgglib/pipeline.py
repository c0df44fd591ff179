"""The whole study in one command (``make demo``): notebooks 01 → 05 under papermill into ``reports/<run_id>/``.

    python -m sgglib.pipeline --run-id demo                     # the embedded default
    python -m sgglib.pipeline --run-id smoke --smoke            # tiny sizes: checks the plumbing in minutes
    python -m sgglib.pipeline --run-id x -p 03.max_steps=300 -p limit=50   # override any notebook parameter

What lands in ``reports/<run_id>/``:

- ``notebooks/NN_*.ipynb`` — each executed notebook, and ``html/NN_*.html`` — its HTML export (nbconvert);
- ``runs/<stage>/`` — each notebook's run directory (``data``, ``zero-shot``, ``sft``, ``grpo-zero``, ``grpo``,
  ``sft-matched``);
- ``metrics.json``, ``table.md``, ``figures/`` — notebook 05's comparison table and plots;
- ``pipeline.json`` — what ran, with which parameters, how long it took, what was skipped and why.

While a stage runs, what its notebook prints streams to the console as it happens (indented under the stage's
line): training stages print a progress line every 30 s (step/total, elapsed, ETA) and one line per validation.

Parameters reach a notebook only if its ``parameters`` cell declares them (papermill's ``inspect_notebook``), so a
notebook may drop or rename one without breaking the driver; ``-p name=value`` goes to every notebook declaring
``name``, ``-p 03.name=value`` to notebook 03 only. A notebook that does not exist yet is skipped with a message,
and a notebook that fails stops the stages after it except 05, which reports whatever runs exist.

The compute-matched control (stage ``03-matched``, run ``sft-matched``) is notebook 03 again: the SFT model trained
on with SFT for R1-SGG's minutes, at R1-SGG's learning rate with a constant schedule (:func:`matched_sft`), so the
table shows what the same CPU time buys without RL. It runs after R1-SGG and is skipped when there is no finished
R1-SGG run to match; the "03" settings (batch size, validation) reach it, ``-p 03-matched.name=value`` alone overrides
what it matches.

The real path is the same command with the model and data switched, on a GPU machine with the hub:
``--model Qwen/Qwen2-VL-2B-Instruct -p source=<VG150 dir>`` (notebook 01 hands the dataset on; bf16 autocast over
float32 weights is the default on a GPU)
(``--model`` sets 02/03's ``model`` and 04's ``model_id``).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .embedded.pretrain import ensure_base_model
from .runs import read_json, read_metrics_csv, repo_path, reports_dir, write_json


@dataclass
class Stage:
    """One notebook run: its key (``-p KEY.name=value``), file, run directory name and parameters."""

    key: str
    notebook: str
    run: str
    params: Callable[[Path], dict[str, Any]] = field(repr=False)
    """run directories of the pipeline (``reports/<run_id>/runs``) → parameters"""
    matched: Callable[[Path], dict[str, Any]] | None = field(default=None, repr=False)
    """run directories → parameters taken from an earlier stage's finished run; they beat the budget table and the
    notebook-wide ``-p`` (not ``-p <key>.name``), and the stage is skipped while that run is missing"""


def _stages(model: str) -> list[Stage]:
    def r(runs: Path, name: str) -> str:
        return str(runs / name)

    def world(runs: Path) -> dict[str, str]:
        # the dataset notebook 01 prepared (a synthetic world's folder carries its knobs): 02-04 train and evaluate
        # on that world, not on the default one
        record = runs / "data" / "dataset.json"
        return {"dataset": json.loads(record.read_text())["dataset"]} if record.exists() else {}

    return [
        Stage("01", "01_data_prep.ipynb", "data", lambda runs: {"run_dir": r(runs, "data")}),
        Stage("02", "02_zero_shot_baselines.ipynb", "zero-shot",
              lambda runs: {"run_dir": r(runs, "zero-shot"), "model": model, **world(runs)}),
        Stage("03", "03_sft.ipynb", "sft",
              lambda runs: {"run_dir": r(runs, "sft"), "model": model, **world(runs),  # 02 may not have run
                            "zero_shot_run": r(runs, "zero-shot") if (runs / "zero-shot" / "metrics.json").exists()
                            else ""}),
        # R1-SGG-Zero: GRPO straight from the base model; R1-SGG: from the SFT checkpoint
        Stage("04-zero", "04_grpo.ipynb", "grpo-zero",
              lambda runs: {"run_dir": r(runs, "grpo-zero"), "init": "base", "model_id": model, **world(runs)}),
        Stage("04", "04_grpo.ipynb", "grpo",  # init: a run directory resolves to its final/ checkpoint
              lambda runs: {"run_dir": r(runs, "grpo"), "init": r(runs, "sft"), "model_id": model, **world(runs)}),
        # the compute-matched control: SFT trained on for R1-SGG's minutes
        Stage("03-matched", "03_sft.ipynb", "sft-matched",
              lambda runs: {"run_dir": r(runs, "sft-matched"), **world(runs)},
              matched=lambda runs: matched_sft(runs / "sft", runs / "grpo")),
        Stage("05", "05_analysis.ipynb", "analysis",
              lambda runs: {"zero_shot_run": r(runs, "zero-shot"), "sft_run": r(runs, "sft"),
                            "grpo_zero_run": r(runs, "grpo-zero"), "grpo_run": r(runs, "grpo"),
                            "sft_matched_run": r(runs, "sft-matched"),
                            "ablation_runs": r(runs, "ablation-*"), "report_dir": str(runs.parent)}),
    ]


def matched_sft(sft: Path, grpo: Path) -> dict[str, Any]:
    """Notebook 03's parameters for the compute-matched control of the R1-SGG run ``grpo`` started from ``sft``:
    continue ``sft``'s final model for as many minutes as R1-SGG trained, at R1-SGG's learning rate with a constant
    schedule and no warm-up; the budget, not a step count, ends it. R1-SGG's minutes are the time its log spans, first
    to last step plus one step — the clock of its time budget, which starts at the first step and counts the
    validations during training — or its time budget if it logged fewer than two steps. Raises
    ``FileNotFoundError`` while ``grpo`` has not finished."""
    if not (grpo / "metrics.json").exists():
        raise FileNotFoundError(f"no finished R1-SGG run to match: {grpo / 'metrics.json'} is missing")
    config = read_json(grpo / "config.json")
    times = {int(r["step"]): r["time_s"] for r in read_metrics_csv(grpo / "metrics.csv") if "train/loss" in r}
    if len(times) >= 2:
        minutes = (times[max(times)] - times[min(times)]) * len(times) / (len(times) - 1) / 60
    elif config.get("max_minutes"):
        minutes = float(config["max_minutes"])
    else:
        raise FileNotFoundError(f"{grpo / 'metrics.csv'} logs fewer than two training steps: nothing to match")
    return {"model": str(sft / "final"), "max_minutes": round(minutes, 3), "max_steps": 100_000,
            "learning_rate": config["learning_rate"], "lr_scheduler": "constant", "warmup_ratio": 0.0}


# Tiny sizes for a smoke run: every notebook top to bottom in a few minutes on 2 cores; the numbers mean nothing.
SMOKE = {
    "01": {"split": "val", "num_images": 12, "max_objects": 6, "num_examples": 2},
    "02": {"limit": 3, "max_new_tokens": 6, "batch_size": 2, "num_examples": 1, "num_failures_shown": 2},
    "03": {"train_limit": 8, "max_steps": 2, "batch_size": 2, "eval_steps": 1, "val_limit": 2,
           "eval_max_new_tokens": 6, "save_steps": 2, "num_examples": 1},
    "04": {"max_steps": 2, "group_size": 2, "prompts_per_step": 1, "max_completion_length": 6, "val_limit": 2,
           "eval_steps": 1, "eval_max_new_tokens": 6, "save_steps": 2, "train_limit": 4, "num_examples": 1},
    "05": {"num_panels": 1, "viewer_images": 5},
}


# The default run's budget (the whole study in <= 20 minutes on 2 cores once installed). SFT runs 1,000
# steps (~7 min here at 2.2-2.4 steps/s; 2-core machines differ up to 2x) so that its cosine schedule anneals;
# the time budgets are a guard for SFT and bound GRPO (G=8, 4 prompts: 1.6-3.2 s/step). Longer reference runs:
# reports/reference/. R1-SGG-Zero validates only at its end, to spend its minutes on steps (the base's failed
# answers run long, so its greedy validations are slow). SFT and R1-SGG end by sampling 8 answers on 48 validation
# images, for notebook 05's best-of-k against greedy before and after RL (after training: no step is lost); the
# compute-matched control and R1-SGG-Zero do not. Notebook defaults stay as they are for interactive use.
DEMO = {
    "03": {"max_steps": 1000, "max_minutes": 8.0, "eval_steps": 500, "val_limit": 200, "best_of": 8},
    "03-matched": {"best_of": 0},
    "04": {"max_steps": 1000, "max_minutes": 2.5, "eval_steps": 50, "val_limit": 200, "best_of": 8},
    "04-zero": {"eval_steps": 0, "val_limit": 200, "best_of": 0},
}


def parse_overrides(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["03.max_steps=2", "limit=5"]`` → ``{"03": {"max_steps": 2}, "*": {"limit": 5}}``; values are Python
    literals when they parse as one, else strings."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise ValueError(f"override {item!r} is not name=value or NN.name=value")
        key, _, name = name.rpartition(".") if "." in name else ("*", "", name)
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        out.setdefault(key, {})[name] = value
    return out


def _for_stage(table: Mapping[str, Mapping[str, Any]], key: str) -> dict[str, Any]:
    # "04" settings apply to both GRPO stages ("04-zero" and "04"); "04-zero" ones to that stage only
    merged = dict(table.get("*", {}))
    merged.update(table.get(key.split("-")[0], {}))
    merged.update(table.get(key, {}) if "-" in key else {})
    return merged


def stage_parameters(stage: Stage, runs: Path, model: str, smoke: bool = False,
                     overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """What a stage is asked to run with: its run-directory wiring, then the budget table (:data:`SMOKE`, or
    :data:`DEMO` for the embedded model only — a hub or local model keeps the notebooks' own defaults), then the
    user's ``-p`` overrides, which win however specific the table's key."""
    table = SMOKE if smoke else DEMO if model in ("tiny-base", "tiny-init") else {}
    params = {**stage.params(runs), **_for_stage(table, stage.key), **_for_stage(overrides or {}, stage.key)}
    if stage.matched is not None:  # what it matches beats the family's settings, not its own -p KEY.name
        params.update(stage.matched(runs), **(overrides or {}).get(stage.key, {}))
    return params


def export_html(notebook: Path, out: Path) -> Path:
    """nbconvert's HTML export of an executed notebook (outputs included)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(notebook))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body, encoding="utf-8")
    return out


class _Indented:
    """A text stream that indents each line it passes on (a notebook's streamed output under its stage's line)."""

    def __init__(self, stream, prefix: str = "    │ "):
        self.stream, self.prefix, self.at_line_start = stream, prefix, True

    def write(self, text: str) -> int:
        for piece in text.splitlines(keepends=True):
            if self.at_line_start:
                self.stream.write(self.prefix)
            self.stream.write(piece)
            self.at_line_start = piece.endswith("\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def run_pipeline(run_id: str, *, model: str = "tiny-base", smoke: bool = False, stages: Sequence[str] = (),
                 overrides: Mapping[str, Mapping[str, Any]] | None = None, pretrain_steps: int | None = None,
                 notebooks_dir: str | Path | None = None, out_root: str | Path | None = None,
                 progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the stages in order into ``<out_root or reports/>/<run_id>/``; returns (and writes) ``pipeline.json``.
    ``progress``: stream each notebook's printed output to the console while it runs."""
    import papermill as pm

    nb_dir = Path(notebooks_dir) if notebooks_dir else repo_path("notebooks")
    root = (Path(out_root) if out_root else reports_dir()) / run_id
    runs = root / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in _stages(model) if not stages or s.key in stages or s.key.split("-")[0] in stages]
    record: dict[str, Any] = {"run_id": run_id, "model": model, "smoke": smoke, "stages": []}
    failed = None
    if any(s.key in ("02", "03", "04", "04-zero") and (nb_dir / s.notebook).exists() for s in chosen):
        ensure_base_model(model, pretrain_steps or 0, log)
    t_all = time.time()
    for n, stage in enumerate(chosen, start=1):
        entry: dict[str, Any] = {"stage": stage.key, "notebook": stage.notebook}
        record["stages"].append(entry)
        head = f"[{n}/{len(chosen)}] {stage.key} {stage.notebook}"
        src = nb_dir / stage.notebook
        if not src.exists():
            entry.update(status="skipped", reason=f"{src} does not exist (yet)")
            log(f"{head}: SKIPPED, {src.name} does not exist yet; its runs will be missing from the report")
            continue
        if failed is not None and stage.key != "05":
            entry.update(status="skipped", reason=f"stage {failed} failed")
            log(f"{head}: SKIPPED, stage {failed} failed")
            continue
        declared = pm.inspect_notebook(str(src))
        try:
            wanted = stage_parameters(stage, runs, model, smoke, overrides)
        except FileNotFoundError as err:  # a stage matching an earlier run that is missing
            entry.update(status="skipped", reason=str(err))
            log(f"{head}: SKIPPED, {err}")
            continue
        params = {k: v for k, v in wanted.items() if k in declared}
        entry.update(parameters=params, ignored=sorted(set(wanted) - set(params)))
        unknown = sorted(set(_for_stage({k: v for k, v in (overrides or {}).items() if k != "*"}, stage.key))
                         - set(declared))
        if unknown:  # a -p NN.name the notebook does not declare: say so rather than run without it
            log(f"{head}: NOT PASSED, not parameters of {stage.notebook}: {', '.join(unknown)}")
        out_nb = root / "notebooks" / f"{stage.key}_{stage.notebook.split('_', 1)[1]}"
        out_nb.parent.mkdir(parents=True, exist_ok=True)
        shown = ", ".join(f"{k}={v}".replace(f"{root}/", "") for k, v in params.items())  # paths relative to root
        log(f"{head}: running → {out_nb.relative_to(root)}  ({shown})")
        t0 = time.time()
        try:
            pm.execute_notebook(str(src), str(out_nb), parameters=params, kernel_name="python3",
                                cwd=str(nb_dir), progress_bar=False,
                                stdout_file=_Indented(sys.stdout) if progress else None)
            entry["status"] = "ok"
        except pm.PapermillExecutionError as err:
            entry.update(status="failed", error=f"{err.ename}: {err.evalue}"[:500])
            failed = failed or stage.key
        entry["seconds"] = round(time.time() - t0, 1)
        entry["html"] = str(export_html(out_nb, root / "html" / out_nb.with_suffix(".html").name).relative_to(root))
        log(f"{head}: {entry['status']} in {entry['seconds']:.0f} s" + (f" — {entry['error']}" if failed == stage.key
                                                                         and "error" in entry else ""))
    record["seconds"] = round(time.time() - t_all, 1)
    record["ok"] = failed is None
    write_json(root / "pipeline.json", record)
    summary = root / "table.md"
    log(f"done in {record['seconds']:.0f} s → {root}" + (f"\n{summary.read_text()}" if summary.exists() else ""))
    return record


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sgglib.pipeline", description=__doc__.splitlines()[0])
    ap.add_argument("--run-id", default="demo", help="report folder name under reports/ (default: demo)")
    ap.add_argument("--model", default="tiny-base", help="model for 02-04 (default: the embedded tiny-base)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: check the plumbing, not the numbers")
    ap.add_argument("--stages", default="", help="comma-separated stage keys to run (default: all), e.g. 01,05")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="[NN.]NAME=VALUE",
                    help="notebook parameter override (repeatable)")
    ap.add_argument("--pretrain-steps", type=int, default=None,
                    help="steps to pre-train tiny-base if it is missing (default: its PRETRAIN_STEPS)")
    ap.add_argument("--out-root", default="", help="folder holding <run_id>/ (default: reports/)")
    args = ap.parse_args(argv)
    try:
        overrides = parse_overrides(args.param)
    except ValueError as err:
        ap.error(str(err))
    record = run_pipeline(args.run_id, model=args.model, smoke=args.smoke,
                          stages=[s for s in args.stages.split(",") if s], overrides=overrides,
                          pretrain_steps=args.pretrain_steps, out_root=args.out_root or None)
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
