"""GRPO step time with one prompt pass per group (``share_prompt=True``) against TRL's G full sequences, measured on
a real run's recipe: the ``config.json`` of a GRPO run (its SFT start, world and settings), ``--steps`` optimizer
steps each, the two settings alternating ``--repeats`` times so that drifts in the machine's speed hit both alike.
Both runs of a pair draw the same prompts and, from the same start, sample the same first completions. The step
time is TRL's ``train/step_time`` (rollouts, rewards, the loss's forward and backward, the optimizer), averaged
over the steps after the first.

    .venv/bin/python benchmarks/shared_prompt.py --config reports/study/dense-seed0/grpo-shared/config.json

Writes ``reports/bench/shared_prompt.json`` unless ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgglib.runs import read_json, read_metrics_csv, reports_dir, write_json  # noqa: E402
from sgglib.train.grpo import GRPORunConfig, train_grpo  # noqa: E402


def step_times(cfg: GRPORunConfig) -> dict:
    """Run ``cfg`` in a temporary directory; its logged step times and per-step statistics."""
    tmp = Path(tempfile.mkdtemp(prefix="shared-prompt-"))
    try:
        train_grpo(dataclasses.replace(cfg, run_dir=str(tmp / "run")))
        rows = [r for r in read_metrics_csv(tmp / "run" / "metrics.csv") if r.get("train/step_time") not in (None, "")]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    times = [float(r["train/step_time"]) for r in rows]
    return {"step_time": times, "mean_step_time_after_first": sum(times[1:]) / max(1, len(times) - 1),
            "max_completion_length": [float(r["train/completions/max_length"]) for r in rows],
            "rows_per_prompt_pass": [float(r["train/prompt_share"]) for r in rows
                                     if r.get("train/prompt_share") not in (None, "")]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="a GRPO run's config.json (its init, dataset and settings)")
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="pairs of runs, alternating the two settings")
    parser.add_argument("--out", default=None, help="JSON path (default reports/bench/shared_prompt.json)")
    args = parser.parse_args(argv)
    fields = {f.name for f in dataclasses.fields(GRPORunConfig)}
    recipe = {k: v for k, v in read_json(Path(args.config)).items() if k in fields}
    base = dataclasses.replace(GRPORunConfig(**recipe), max_steps=args.steps, max_minutes=0.0, val_limit=2,
                               eval_max_new_tokens=16, best_of=0, save_steps=0, resume=False)
    runs = []
    for i in range(args.repeats):
        for share in ((True, False) if i % 2 else (False, True)):
            runs.append({"share_prompt": share, **step_times(dataclasses.replace(base, share_prompt=share))})
            print(f"[shared-prompt] share_prompt={share}: {runs[-1]['mean_step_time_after_first']:.2f} s/step",
                  flush=True)

    def mean(share):
        values = [r["mean_step_time_after_first"] for r in runs if r["share_prompt"] is share]
        return sum(values) / len(values)

    result = {
        "config": args.config, "init": base.init, "dataset": base.dataset, "steps": args.steps,
        "repeats": args.repeats, "group_size": base.group_size, "prompts_per_step": base.prompts_per_step,
        "max_completion_length": base.max_completion_length,
        "mean_step_time": {"shared": mean(True), "unshared": mean(False)},
        "step_time_ratio_shared_over_unshared": mean(True) / mean(False),
        "runs": runs, "device": f"CPU ({platform.machine()})",
        "command": "python benchmarks/shared_prompt.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = Path(args.out) if args.out else reports_dir("bench", "shared_prompt.json")
    write_json(out, result)
    print(json.dumps({k: result[k] for k in ("mean_step_time", "step_time_ratio_shared_over_unshared")}, indent=2))
    return result


if __name__ == "__main__":
    main()
