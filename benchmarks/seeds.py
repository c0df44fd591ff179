"""Robustness over seeds: ``make demo``'s SFT → GRPO for several seeds, each the world's seed and the training seed.

Each seed is the demo pipeline (``sgglib.pipeline``: notebooks 01, 03, 04, 05; the zero-shot stage is left out, it
does not depend on training) into ``reports/seeds/seed<N>/``, with the demo's budget table except that its time
budgets become fixed step counts (:data:`RECIPE`): the demo's minutes buy ~2× fewer steps on a slow 2-core machine
than on a fast one, and a seed study should vary the seed, not the machine's load. SFT runs its 1,000 annealed steps,
R1-SGG 40 GRPO steps and R1-SGG-Zero 60 (about what the demo's 2.5 minutes buy at 2.2 SFT steps/s); the
compute-matched control trains SFT on for the minutes R1-SGG trained. A seed whose report exists is read, not rerun.

    .venv/bin/python benchmarks/seeds.py                      # seeds 0, 1, 2 → reports/reference/seeds.json
    .venv/bin/python benchmarks/seeds.py --seeds 3 -p 04.guard=budget --out /tmp/seeds-budget.json

``seeds.json`` holds one entry per seed, ``{seed, sft, r1sgg, r1sgg_zero, sft_matched}``, each with the demo table's
keys (FR, AP@50, Recall, mRecall, F@100, images), the run's steps and precision/recall against the world's complete
graph, and a summary: mean, sample standard deviation, min and max of each key over the seeds, and R1-SGG − SFT per
seed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgglib import diagnostics, pipeline  # noqa: E402
from sgglib.analysis import MATCHED, gt_rows, load_run  # noqa: E402
from sgglib.runs import read_json, reports_dir, write_json  # noqa: E402

RECIPE = ["03.max_minutes=0", "04.max_minutes=0", "04.max_steps=40", "04-zero.max_steps=60"]
ROWS = {"sft": "SFT", "r1sgg": "R1-SGG", "r1sgg_zero": "R1-SGG-Zero", "sft_matched": MATCHED}
RUN_DIRS = {"sft": "sft", "r1sgg": "grpo", "r1sgg_zero": "grpo-zero", "sft_matched": "sft-matched"}
KEYS = ("FR", "AP@50", "Recall", "mRecall", "F@100")


def seed_entry(seed: int, report: Path) -> dict:
    """One seed's entry from its pipeline report (``metrics.json`` of notebook 05 and the run directories)."""
    table = {row["run"]: row for row in read_json(report / "metrics.json")["table"]}
    runs = report / "runs"
    rows = gt_rows(load_run(runs / "sft"))
    entry: dict = {"seed": seed}
    for key, label in ROWS.items():
        if label not in table:
            entry[key] = None
            continue
        run = load_run(runs / RUN_DIRS[key], label)
        entry[key] = {**{k: table[label][k] for k in (*KEYS, "images")}, "steps": run.metrics.get("global_step"),
                      "complete_graph": diagnostics.complete_graph_scores(run, rows)}
    return entry


def spread(entries: list[dict]) -> dict:
    """Mean, sample standard deviation, min and max of each table key per row over the seeds, and R1-SGG − SFT."""
    out: dict = {}
    for key in ROWS:
        values = {k: [e[key][k] for e in entries if e.get(key)] for k in KEYS}
        out[key] = {k: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else math.nan,
                        "min": min(v), "max": max(v)} for k, v in values.items() if v}
    pairs = [e for e in entries if e.get("sft") and e.get("r1sgg")]
    out["r1sgg_minus_sft"] = {k: [e["r1sgg"][k] - e["sft"][k] for e in pairs] for k in KEYS}
    out["r1sgg_beats_sft_recall_every_seed"] = bool(pairs) and all(d > 0 for d in out["r1sgg_minus_sft"]["Recall"])
    matched = [e for e in pairs if e.get("sft_matched")]
    out["r1sgg_minus_sft_matched"] = {k: [e["r1sgg"][k] - e["sft_matched"][k] for e in matched] for k in KEYS}
    return out


def markdown(entries: list[dict], summary: dict) -> str:
    lines = ["| run | " + " | ".join(KEYS) + " |", "|---|" + "---:|" * len(KEYS)]
    for key, label in ROWS.items():
        if key in summary and summary[key]:
            cells = [f"{summary[key][k]['mean']:.2f} ± {summary[key][k]['std']:.2f}" for k in KEYS]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "R1-SGG − SFT Recall per seed: " + ", ".join(
        f"seed {e['seed']}: {d:+.2f}" for e, d in zip(entries, summary["r1sgg_minus_sft"]["Recall"]))]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="[NN.]NAME=VALUE",
                    help="a further notebook parameter for every seed (after the recipe), e.g. -p 04.guard=budget")
    ap.add_argument("--runs", default=str(reports_dir("seeds")), help="where the pipeline reports go (not committed)")
    ap.add_argument("--out", default=str(reports_dir("reference", "seeds.json")), help="the summary file")
    args = ap.parse_args(argv)
    entries = []
    for seed in (int(s) for s in args.seeds.split(",")):
        report = Path(args.runs) / f"seed{seed}"
        done = report / "pipeline.json"
        if not (done.exists() and read_json(done)["ok"]):
            overrides = pipeline.parse_overrides([*RECIPE, f"seed={seed}", *args.param])
            record = pipeline.run_pipeline(f"seed{seed}", stages=["01", "03", "04", "05"], overrides=overrides,
                                           out_root=args.runs)
            if not record["ok"]:
                sys.exit(f"seed {seed}: the pipeline failed, see {report / 'pipeline.json'}")
        entries.append(seed_entry(seed, report))
    summary = spread(entries)
    text = markdown(entries, summary)
    write_json(args.out, {"recipe": RECIPE + args.param, "command": " ".join(["python"] + sys.argv),
                          "seeds": entries, "summary": summary, "markdown": text})
    print(text)


if __name__ == "__main__":
    main()
