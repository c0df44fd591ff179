"""Write the small committed summary of an SFT or GRPO run directory (``reports/reference/*_summary.json``).

    python benchmarks/summarize_run.py reports/sft-ref --out reports/reference/sft_summary.json \
        --command "python -m sgglib.train.sft --run-dir sft-ref ..." [--copy-curves reports/reference/sft_curves.png]

Reads only the run directory (``config.json``, ``metrics.csv``, ``metrics.json``): the validation curve, the final
greedy metrics, for GRPO the initial ones, the deltas and the first/last 30 training rows' reward columns. A
zero-shot run directory (notebook 02: ``metrics-<kind>.json``, ``predictions-<kind>.jsonl``) gives each prompt kind's
metrics, its failure reasons and its first completions.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
from pathlib import Path

EVAL = ("failure_rate", "ap50", "recall", "recall_pooled", "mean_recall", "F@100")
TRAIN = ("train/reward", "train/reward_edge_hard", "train/reward_format", "train/reward_size_penalty",
         "train/reward_node_acc", "train/reward_node_box", "train/reward_edge_soft", "train/sampled_failure_rate",
         "train/sampled_recall", "train/sampled_objects", "train/sampled_relations", "train/completion_length")
"""the training columns summarised (those a run logged: the soft preset's node and edge terms, for one)"""


def _rows(path: Path) -> list[dict[str, float]]:
    with path.open() as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


def summarize_zero_shot(run_dir: Path, command: str, note: str = "", examples: int = 4) -> dict:
    out: dict = {"note": note, "command": command}
    for path in sorted(run_dir.glob("metrics-*.json")):
        kind = path.stem.removeprefix("metrics-")
        metrics = json.loads(path.read_text())
        preds = (run_dir / f"predictions-{kind}.jsonl").read_text().splitlines()[:examples]
        out[kind] = {"val_images": metrics.get("num_images"), **{k: metrics.get(k) for k in EVAL},
                     "failures": metrics.get("failures"),
                     "first_completions": [json.loads(line)["completion"][:300] for line in preds]}
    return out


def summarize(run_dir: Path, command: str, note: str = "") -> dict:
    if not (run_dir / "metrics.csv").exists() and any(run_dir.glob("metrics-*.json")):
        return summarize_zero_shot(run_dir, command, note)
    config = json.loads((run_dir / "config.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = _rows(run_dir / "metrics.csv")
    curve = [{"step": r["step"], "time_s": r.get("time_s"), **{k: r[f"eval/{k}"] for k in EVAL if f"eval/{k}" in r}}
             for r in rows if "eval/recall" in r]
    out = {"note": note, "command": command, "steps": metrics.get("global_step"),
           "val_images": metrics.get("num_images"), "final_greedy": {k: metrics.get(k) for k in EVAL},
           "final_per_predicate_recall": metrics.get("per_predicate_recall"),
           "per_predicate_count": metrics.get("per_predicate_count"),
           "final_structure": {k: metrics.get(k) for k in ("dangling_relations", "duplicate_ids")},
           "curve": curve, "config": config}
    initial = metrics.get("initial")
    if initial:
        out["initial_greedy"] = {k: initial.get(k) for k in EVAL}
        out["delta"] = {k: round(metrics[k] - initial[k], 2) for k in EVAL if k in metrics and k in initial}
    train = [r for r in rows if "train/reward" in r]
    if train:
        for name, part in (("train_first_30_steps", train[:30]), ("train_last_30_steps", train[-30:])):
            out[name] = {k.removeprefix("train/"): round(statistics.fmean(r[k] for r in part if k in r), 3)
                         for k in TRAIN if any(k in r for r in part)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--command", required=True, help="the command that produced the run (recorded verbatim)")
    ap.add_argument("--note", default="", help="how and where it was measured")
    ap.add_argument("--copy-curves", type=Path, help="copy the run's curves.png here")
    args = ap.parse_args()
    summary = summarize(args.run_dir, args.command, args.note)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    if args.copy_curves:
        shutil.copy(args.run_dir / "curves.png", args.copy_curves)
    print(json.dumps({k: summary.get(k) for k in ("steps", "final_greedy", "delta")}, indent=1))


if __name__ == "__main__":
    main()
