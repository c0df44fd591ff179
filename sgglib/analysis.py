"""Analysis of finished runs: reads run directories only, never loads a model.

A run directory (:mod:`sgglib.runs`) holds ``config.json``, ``metrics.json`` (the final greedy validation),
``metrics.csv`` (namespaced rows: ``train/…`` every logging step, ``eval/…`` every validation) and
``predictions.jsonl``. Zero-shot runs (notebook 02) hold one ``metrics-<prompt>.json`` and
``predictions-<prompt>.jsonl`` per prompt kind and a ``metrics.json`` keyed by kind; :func:`load_run` reads the
paper's setting, the closed prompt, unless told otherwise.

Everything here tolerates missing runs: :func:`collect_runs` returns the runs it could read and one line per run it
could not, and every plot says what it lacks instead of raising.

>>> runs, missing = collect_runs({"SFT": "", "R1-SGG": "/nonexistent"})
>>> runs, missing
({}, ['SFT: not given', 'R1-SGG: /nonexistent does not exist'])
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import data, viz
from .boxes import iou_matrix
from .graph import SceneGraph
from .matching import triplet_scores
from .parse import parse_completion
from .runs import read_json, read_metrics_csv, read_predictions, reports_dir
from .viz import new_figure, prediction_in_pixels

# The paper's Table 1 columns plus F@100: metric key → column name; values in %.
TABLE_COLUMNS = (("failure_rate", "FR"), ("ap50", "AP@50"), ("recall", "Recall"), ("mean_recall", "mRecall"),
                 ("F@100", "F@100"))
# Config fields that distinguish the GRPO ablations (group size, reward variant, the KL coefficient β).
ABLATION_PARAMS = ("group_size", "rewards", "beta")


@dataclass
class Run:
    """What one run directory says about itself."""

    label: str
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    """final validation metrics (:func:`sgglib.metrics.compute_metrics`'s keys)"""
    curves: list[dict[str, float]] = field(default_factory=list)
    """``metrics.csv`` rows as numbers (empty cells dropped)"""
    predictions_file: Path | None = None

    def records(self) -> list[dict[str, Any]]:
        """The ``predictions.jsonl`` records (empty if the run saved none)."""
        return read_predictions(self.predictions_file) if self.predictions_file is not None else []

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """``(steps, values)`` of one ``metrics.csv`` column."""
        pts = [(r.get("step", i), r[key]) for i, r in enumerate(self.curves) if key in r]
        return [p[0] for p in pts], [p[1] for p in pts]

    @property
    def split(self) -> str:
        return self.config.get("val_split") or self.config.get("split") or "val"


def resolve_run_dir(path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else reports_dir() / path  # relative run dirs live under reports/


def load_run(path: str | Path, label: str | None = None, prompt: str = "closed") -> Run:
    """Read one run directory; ``FileNotFoundError`` (with the reason) if it holds no final metrics."""
    path = resolve_run_dir(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist")
    config = read_json(path / "config.json") if (path / "config.json").exists() else {}
    per_prompt = path / f"metrics-{prompt}.json"
    if per_prompt.exists():  # a zero-shot run (notebook 02)
        metrics, preds = read_json(per_prompt), path / f"predictions-{prompt}.jsonl"
        config = {**config, "prompt": prompt}
    elif (path / "metrics.json").exists():
        metrics, preds = read_json(path / "metrics.json"), path / "predictions.jsonl"
    else:
        raise FileNotFoundError(f"{path} has no metrics.json (did the run finish?)")
    curves = read_metrics_csv(path / "metrics.csv") if (path / "metrics.csv").exists() else []
    return Run(label or path.name, path, config, metrics, curves, preds if preds.exists() else None)


def collect_runs(spec: Mapping[str, str | Path], prompt: str = "closed") -> tuple[dict[str, Run], list[str]]:
    """``{label: run dir}`` → (the runs that could be read, one line per run that could not). Empty = not given."""
    runs, missing = {}, []
    for label, path in spec.items():
        if not str(path).strip():
            missing.append(f"{label}: not given")
            continue
        try:
            runs[label] = load_run(path, label, prompt)
        except FileNotFoundError as err:
            missing.append(f"{label}: {err}")
    return runs, missing


def find_runs(pattern: str) -> dict[str, Path]:
    """Run directories matching a glob (``"demo/runs/ablation-*"``, relative to reports/, or absolute), by name."""
    if not pattern:
        return {}
    import glob

    return {Path(p).name: Path(p) for p in sorted(glob.glob(str(resolve_run_dir(pattern)))) if Path(p).is_dir()}


MATCHED = "SFT, compute-matched"
"""the row of the SFT model trained on with SFT for R1-SGG's minutes (``make demo``'s ``sft-matched`` run)"""


def run_spec(zero_shot: str = "", sft: str = "", grpo_zero: str = "", grpo: str = "",
             ablations: str = "", sft_matched: str = "") -> dict[str, str]:
    """The paper's rows in its order, then the compute-matched control (:data:`MATCHED`) when given, then
    ``ablation <name>`` for each directory matching the glob ``ablations`` that is not one of the main runs. Values
    are paths ("" = not given)."""
    spec = {"zero-shot base": zero_shot, "SFT": sft, "R1-SGG-Zero": grpo_zero, "R1-SGG": grpo}
    if sft_matched:
        spec[MATCHED] = sft_matched
    main = {resolve_run_dir(p) for p in spec.values() if p}
    spec.update({f"ablation {name}": str(path) for name, path in find_runs(ablations).items() if path not in main})
    return spec


# -- the table ---------------------------------------------------------------------------------------------------------
def results_table(runs: Mapping[str, Run]) -> list[dict[str, Any]]:
    """One row per run with the Table 1 columns (NaN where a run lacks a metric)."""
    return [{"run": label, **{col: float(run.metrics.get(key, math.nan)) for key, col in TABLE_COLUMNS},
             "images": run.metrics.get("num_images")} for label, run in runs.items()]


SUMMARY_KEYS = (("failure_rate", "FR"), ("ap50", "AP@50"), ("recall", "Recall"), ("mean_recall", "mRecall"))


def summary_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """One plain-text line per named result (``{"open": metrics, …}``): FR / AP@50 / R / mR (%), the paper's
    table layout."""
    width = max([len(k) for k in results] + [5])
    lines = [f"{'':<{width}}" + "".join(f"{label:>9}" for _, label in SUMMARY_KEYS)]
    for name, m in results.items():
        lines.append(f"{name:<{width}}" + "".join(f"{m.get(k, float('nan')):>9.2f}" for k, _ in SUMMARY_KEYS))
    return "\n".join(lines)


def failure_examples(records: Sequence[Mapping[str, Any]], n: int = 5, chars: int = 160) -> list[dict[str, str]]:
    """The first ``n`` completions that do not parse, with the parser's named reason and detail."""
    out = []
    for r in records:
        result = parse_completion(r["completion"])
        if result.failure is not None:
            text = r["completion"]
            out.append({"image_id": r["image_id"], "failure": result.failure.value, "detail": result.detail,
                        "completion": text[:chars] + ("…" if len(text) > chars else "")})
            if len(out) == n:
                break
    return out


def format_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """The table as Markdown, values in % with two decimals (the paper's layout)."""
    cols = [c for _, c in TABLE_COLUMNS]
    lines = ["| run | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for r in rows:
        cells = ["–" if math.isnan(r[c]) else f"{r[c]:.2f}" for c in cols]
        lines.append(f"| {r['run']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(runs: Mapping[str, Run], missing: Sequence[str] = ()) -> dict[str, Any]:
    """What a report's ``metrics.json`` holds: the table, where each run lives, what was missing."""
    return {"table": results_table(runs), "runs": {k: str(r.path) for k, r in runs.items()}, "missing": list(missing)}


# -- curves ------------------------------------------------------------------------------------------------------------
def curve_keys(runs: Mapping[str, Run]) -> dict[str, list[str]]:
    """The ``metrics.csv`` columns worth plotting, by panel: reward components, sampled failure rate, validation."""
    keys = sorted({k for run in runs.values() for row in run.curves for k in row})
    rewards = [k for k in keys if k.startswith("train/") and "reward" in k and "std" not in k]
    # GRPO's measurements of its own samples (sgglib.grpo: train/sampled_failure_rate, train/sampled_recall)
    failure = [k for k in keys if k.startswith("train/sampled_") or (k.startswith("train/") and "fail" in k)]
    val = [k for k in ("eval/recall", "eval/mean_recall", "eval/failure_rate", "eval/ap50") if k in keys]
    return {"reward components": rewards, "sampled failure rate and recall": failure, "validation": val}


def plot_curves(runs: Mapping[str, Run], figsize_per_panel: tuple[float, float] = (4.2, 3.2)):
    """Training curves across runs (:func:`sgglib.viz.plot_curves`): one panel per :func:`curve_keys` column, one
    line per run, from ``metrics.csv`` only."""
    panels = [k for keys in curve_keys(runs).values() for k in keys]
    return viz.plot_curves({label: run.curves for label, run in runs.items()}, panels, smooth=1,
                           panel_size=figsize_per_panel)


def _run_colors(runs: Mapping[str, Run]) -> dict[str, Any]:
    """One colour per run, the same in every panel (matplotlib's cycle restarts in each axes)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {label: cmap(i % 10) for i, label in enumerate(runs)}


# -- long tail ---------------------------------------------------------------------------------------------------------
def plot_long_tail(runs: Mapping[str, Run], figsize: tuple[float, float] = (10, 3.6)):
    """Per-predicate recall (pooled, %) with predicates sorted by their GT frequency, one bar group per run: how far
    down the tail each model reaches (the gap between Recall and mRecall)."""
    fig = new_figure(figsize)
    ax = fig.add_subplot()
    counts: dict[str, int] = {}
    for run in runs.values():
        for p, n in run.metrics.get("per_predicate_count", {}).items():
            counts[p] = max(counts.get(p, 0), int(n))
    if not counts:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no per-predicate recall in these runs", ha="center", va="center")
        return fig
    order = sorted(counts, key=lambda p: (-counts[p], p))
    width = 0.8 / max(1, len(runs))
    for j, (label, run) in enumerate(runs.items()):
        rec = run.metrics.get("per_predicate_recall", {})
        ax.bar([i + j * width for i in range(len(order))], [rec.get(p, 0.0) for p in order], width=width, label=label,
               color=_run_colors(runs)[label])
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(order))], [f"{p} ({counts[p]})" for p in order],
                  rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("recall (%)")
    ax.set_title("per-predicate recall, predicates by GT frequency (n)", fontsize=10)
    ax.legend(fontsize=8)
    return fig


# -- ablations ---------------------------------------------------------------------------------------------------------
def _value(run: Run, param: str) -> str:
    v = run.config.get(param)
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else str(v)


def ablation_params(runs: Mapping[str, Run]) -> list[str]:
    """The :data:`ABLATION_PARAMS` that take two or more values among the runs that have them."""
    return [p for p in ABLATION_PARAMS
            if len({_value(r, p) for r in runs.values() if p in r.config}) >= 2]


def plot_ablation(runs: Mapping[str, Run], param: str, metrics: Sequence[str] = ("recall", "mean_recall"),
                  figsize: tuple[float, float] = (10, 3.4)):
    """Final metrics by ``param`` value (left) and validation recall over steps (right), runs having ``param``."""
    chosen = {k: r for k, r in runs.items() if param in r.config}
    fig = new_figure(figsize)
    ax_bar, ax_curve = fig.subplots(1, 2)
    groups = sorted(chosen.items(), key=lambda kv: (_num(kv[1].config[param]), _value(kv[1], param)))
    width = 0.8 / max(1, len(metrics))
    for j, key in enumerate(metrics):
        ax_bar.bar([i + j * width for i in range(len(groups))],
                   [float(r.metrics.get(key, math.nan)) for _, r in groups], width=width, label=key)
    ax_bar.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))],
                      [f"{param}={_value(r, param)}\n{label}" for label, r in groups], fontsize=7)
    ax_bar.set_ylabel("%")
    ax_bar.set_title(f"ablation: {param}", fontsize=10)
    ax_bar.legend(fontsize=8)
    for label, run in groups:
        xs, ys = run.series("eval/recall")
        if xs:
            ax_curve.plot(xs, ys, marker="o", markersize=3, label=f"{param}={_value(run, param)}")
    ax_curve.set(xlabel="step", ylabel="validation recall (%)")
    if ax_curve.lines:
        ax_curve.legend(fontsize=8)
    return fig


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.inf


# -- best / worst images -----------------------------------------------------------------------------------------------
def per_image_recall(run: Run, rows) -> list[tuple[str, float]]:
    """``(image id, recall %)`` for each image of ``rows`` (loaders' schema) with GT relations and a prediction
    record, by the Hard Recall rule (:func:`sgglib.matching.triplet_scores`, as the metric); failures score 0."""
    records = {str(r["image_id"]): r for r in run.records() if r.get("sample", 0) == 0}
    out = []
    for row in rows:
        record = records.get(str(row["image_id"]))
        if record is None or not row["relationships"]:
            continue
        _, pred = prediction_in_pixels(record, row["width"], row["height"])
        hits = triplet_scores(pred, _gt(row)) > 0.5 if pred is not None else [0.0]
        out.append((str(row["image_id"]), 100.0 * float(sum(hits)) / len(row["relationships"])))
    return out


MISS_REASONS = ("hit", "wrong predicate", "pair missed", "object missed", "no graph")


def miss_reasons(run: Run, rows, iou_threshold: float = 0.5) -> dict[str, dict[str, int]]:
    """Why each GT relation of ``rows`` was recalled or not, by GT predicate (plus ``"all"``): counts of
    :data:`MISS_REASONS`. An object is *found* when a predicted object has its category and IoU ≥ ``iou_threshold``
    (the Hard Recall rule). ``hit``: a found subject relates to a found object by the GT predicate; ``wrong
    predicate``: they relate, by other predicates only; ``pair missed``: both found, never related; ``object
    missed``: the subject or the object was not found; ``no graph``: no parseable prediction for the image.

    The categories tell what a training stage could still fix: a model that finds the objects but not their
    relations needs a different lesson from one that misses the objects.
    """
    records = {str(r["image_id"]): r for r in run.records() if r.get("sample", 0) == 0}
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        gt = _gt(row)
        record = records.get(str(row["image_id"]))
        pred = prediction_in_pixels(record, row["width"], row["height"])[1] if record is not None else None
        if pred is None:
            reasons = ["no graph"] * len(gt.relations)
        else:
            # hits by the metric's own test; the misses sorted by which ends were found and how they relate
            hits = triplet_scores(pred, gt, iou_threshold=iou_threshold) > 0.5 if gt.relations else []
            index = {o.id: i for i, o in enumerate(gt.objects)}  # GT ids are unique (the loaders check)
            found = np.zeros((len(gt.objects), len(pred.objects)), bool)
            if pred.objects and gt.objects:
                same = np.array([[g.category == p.category for p in pred.objects] for g in gt.objects])
                found = same & (iou_matrix(*(np.array([o.bbox for o in g.objects]) for g in (gt, pred)))
                                >= iou_threshold)
            related: dict[tuple[int, int], set[str]] = {}
            pred_index = {o.id: j for j, o in enumerate(pred.objects)}  # the parser drops repeated ids
            for r in pred.relations:
                related.setdefault((pred_index[r.subject], pred_index[r.object]), set()).add(r.predicate)
            reasons = []
            for r, hit in zip(gt.relations, hits):
                subs, objs = np.flatnonzero(found[index[r.subject]]), np.flatnonzero(found[index[r.object]])
                said = set().union(*(related.get((a, b), set()) for a in subs for b in objs))
                reasons.append("hit" if hit else "object missed" if not len(subs) or not len(objs)
                               else "wrong predicate" if said else "pair missed")
        for r, reason in zip(gt.relations, reasons):
            for key in (r.predicate, "all"):
                counts = out.setdefault(key, dict.fromkeys(MISS_REASONS, 0))
                counts[reason] += 1
    return out


def miss_reason_table(reasons: Mapping[str, Mapping[str, int]]) -> str:
    """:func:`miss_reasons` as Markdown: one row per predicate (most GT relations first, ``all`` last), % of row."""
    lines = ["| predicate | GT relations | " + " | ".join(MISS_REASONS) + " |", "|---" * (len(MISS_REASONS) + 2) + "|"]
    order = sorted((k for k in reasons if k != "all"), key=lambda k: (-sum(reasons[k].values()), k))
    for key in order + (["all"] if "all" in reasons else []):
        n = sum(reasons[key].values())
        lines.append(f"| {key} | {n} | " + " | ".join(f"{100 * reasons[key][m] / n:.0f}" for m in MISS_REASONS)
                     + " |")
    return "\n".join(lines)


def _gt(row) -> SceneGraph:
    return SceneGraph.from_dict(row)


def best_worst(run: Run, rows, n: int = 2) -> tuple[list[str], list[str]]:
    """The ``n`` images with the highest and the lowest per-image recall (ties: the most GT relations first)."""
    sizes = {str(r["image_id"]): len(r["relationships"]) for r in rows}
    scored = sorted(per_image_recall(run, rows), key=lambda t: (-t[1], -sizes[t[0]], t[0]))
    best = [i for i, _ in scored[:n]]
    worst = [i for i, _ in sorted(scored, key=lambda t: (t[1], -sizes[t[0]], t[0]))[:n] if i not in best]
    return best, worst


def gt_rows(run: Run, dataset: str = "", split: str = "", limit: int = 0):
    """The GT rows a run was validated on (its config's dataset and split unless given), as a list."""
    ds = data.load_sgg(dataset or run.config.get("dataset", "synthetic"), split=split or run.split)
    ids = {str(r["image_id"]) for r in run.records()}
    keep = [i for i, image_id in enumerate(ds["image_id"]) if str(image_id) in ids] if ids else range(len(ds))
    keep = list(keep)[:limit or None]
    return [ds[i] for i in keep]
