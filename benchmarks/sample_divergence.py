"""Where a run's sampled answers part from each other and from its greedy answer (:func:`sgglib.diagnostics.
sample_divergence`), for runs that kept their end-of-run samples (``best_of``: ``samples.jsonl``).

    .venv/bin/python benchmarks/sample_divergence.py reports/study/control-seed0/sft \\
        reports/study/control-seed0/grpo-real-curve --out reports/reference/study/sample-divergence-control-seed0.json

For each run: the share of an image's sample text inside the prefix all its samples share (where a GRPO group's
advantages sum to zero, so its update cancels), and the share of samples that first leave the greedy answer inside
the object list, after the ``"relationships"`` key, or not at all.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgglib import diagnostics  # noqa: E402
from sgglib.analysis import load_run  # noqa: E402
from sgglib.runs import write_json  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="run directories with samples.jsonl and predictions.jsonl")
    ap.add_argument("--out", required=True, help="the JSON to write")
    args = ap.parse_args(argv)
    rows = {}
    for run in map(Path, args.runs):
        result = diagnostics.sample_divergence(load_run(run.resolve()))
        if result is None:
            raise FileNotFoundError(f"{run} kept no samples.jsonl: run it with best_of > 0")
        rows[str(run)] = result
        print(f"{run.name:>24}: shared prefix {result['shared_prefix_share']:.0f} %; samples leave the greedy answer "
              f"in the objects {result['samples_leaving_greedy_in_objects']:.0f} %, in the relations "
              f"{result['samples_leaving_greedy_in_relations']:.0f} %, equal it {result['samples_equal_to_greedy']:.0f} %")
    out = {"runs": rows, "command": " ".join(["python"] + sys.argv), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(Path(args.out), out)
    return out


if __name__ == "__main__":
    main()
