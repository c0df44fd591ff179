"""A GRPO run against its placebo (``shuffle_rewards``, ``docs/method.md#the-placebo-control``): the two runs' greedy
validation at each evaluated step, the real run's lead over the placebo (what GRPO's reward signal did) and the
placebo's change from the start (what GRPO's updates do without it), their sampled statistics and update sizes, as
JSON and a figure. Both runs come from the world study with the same cell, seed, steps and ``eval_steps``:

    .venv/bin/python benchmarks/world_study.py --cells control --grpo-minutes 12 -g max_steps=359 \\
        -g max_minutes=40 -g eval_steps=60 --tag real-curve
    .venv/bin/python benchmarks/world_study.py --cells control --grpo-minutes 12 -g max_steps=359 \\
        -g max_minutes=40 -g eval_steps=60 -g shuffle_rewards=true --tag placebo
    .venv/bin/python benchmarks/placebo.py --real reports/study/control-seed0/grpo-real-curve \\
        --placebo reports/study/control-seed0/grpo-placebo --out reports/reference/study/placebo-control-seed0

writes ``<out>.json`` and ``<out>.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgglib import viz  # noqa: E402
from sgglib.runs import read_json, read_metrics_csv, write_json  # noqa: E402

EVAL_KEYS = ("eval/recall", "eval/ap50", "eval/mean_recall", "eval/failure_rate")
TRAIN_KEYS = ("train/sampled_recall", "train/sampled_failure_rate", "train/reward", "train/grad_norm")


def evaluations(rows) -> dict[int, dict[str, float]]:
    """``{step: {eval key: value}}`` of a run's validations."""
    return {int(r["step"]): {k: r[k] for k in EVAL_KEYS} for r in rows if "eval/recall" in r}


def train_means(rows, first: int, last: int) -> dict[str, float]:
    """Each of :data:`TRAIN_KEYS` averaged over the training rows with ``first <= step <= last``."""
    part = [r for r in rows if "train/reward" in r and first <= int(r["step"]) <= last]
    return {k: sum(r[k] for r in part) / len(part) for k in TRAIN_KEYS if part and all(k in r for r in part)}


def compare(real_dir: Path, placebo_dir: Path) -> dict:
    real, placebo = read_metrics_csv(real_dir / "metrics.csv"), read_metrics_csv(placebo_dir / "metrics.csv")
    ev_real, ev_placebo = evaluations(real), evaluations(placebo)
    steps = sorted(set(ev_real) & set(ev_placebo))
    if not steps or steps[0] != 0:
        raise ValueError(f"{real_dir} and {placebo_dir} share no validation at step 0; run both with the same "
                         "eval_steps from the same start")
    start = ev_real[0]
    if any(abs(start[k] - ev_placebo[0][k]) > 1e-9 for k in EVAL_KEYS):
        raise ValueError("the two runs' step-0 validations differ: they did not start from the same model")
    last = max(steps)
    thirds = [(1, last // 3), (last - last // 3 + 1, last)]
    return {
        "real": str(real_dir), "placebo": str(placebo_dir),
        "configs": {"real": read_json(real_dir / "config.json"), "placebo": read_json(placebo_dir / "config.json")},
        "greedy": [{"step": s, "real": ev_real[s], "placebo": ev_placebo[s],
                    "signal": {k: ev_real[s][k] - ev_placebo[s][k] for k in EVAL_KEYS},
                    "placebo_change": {k: ev_placebo[s][k] - start[k] for k in EVAL_KEYS}} for s in steps],
        "training_first_last_third": {"steps": thirds,
                                      "real": [train_means(real, *t) for t in thirds],
                                      "placebo": [train_means(placebo, *t) for t in thirds]},
    }, {"GRPO": real, "placebo (shuffled rewards)": placebo}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", required=True, help="the GRPO run directory")
    ap.add_argument("--placebo", required=True, help="its placebo's run directory (shuffle_rewards=true)")
    ap.add_argument("--out", required=True, help="output path without suffix: <out>.json and <out>.png")
    args = ap.parse_args(argv)
    summary, curves = compare(Path(args.real), Path(args.placebo))
    out = Path(args.out)
    write_json(out.with_suffix(".json"), {**summary, "command": " ".join(["python"] + sys.argv)})
    fig = viz.plot_curves(curves, ["eval/recall", "eval/ap50", "eval/mean_recall", "train/sampled_recall",
                                   "train/reward", "train/grad_norm"], smooth=20)
    viz.save_figure(fig, out.parent, out.name)
    for row in summary["greedy"]:
        print(f"step {row['step']:4d}  Recall real {row['real']['eval/recall']:5.2f}  placebo "
              f"{row['placebo']['eval/recall']:5.2f}  signal {row['signal']['eval/recall']:+5.2f}")


if __name__ == "__main__":
    main()
