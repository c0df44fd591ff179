"""Which part of the network carries a run's change: its start with one part of the run's weights spliced in.

For each run trained from ``--start``, the start's model takes the run's weights for one group of parameters at a
time (:func:`sgglib.models.parameter_group`: the vision tower, the token embedding tied to the LM head, the
language layers), then for the vision tower and the language layers together (``body``), and each model is decoded
greedily on the validation images as the runs' own validations are (the run's prompt, system turn and decoding
budget). The rows ``none`` (the start) and ``all`` (the run) frame them: if the parts' changes added up, each
part's row would show its share of the run's change.

    .venv/bin/python benchmarks/splice.py --start reports/study/control-seed0/sft \\
        reports/study/control-seed0/sft-more-12min reports/study/control-seed0/grpo-real-curve \\
        --out reports/reference/study/splice-control-seed0.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgglib import data  # noqa: E402
from sgglib.config import parse_cli  # noqa: E402
from sgglib.models import PARAMETER_GROUPS, load_model_and_processor, parameter_group  # noqa: E402
from sgglib.runs import write_json  # noqa: E402
from sgglib.train.common import TrainConfig, greedy_validation, load_rows  # noqa: E402

SPLICES = {"none": (), **{g: (g,) for g in PARAMETER_GROUPS}, "body": ("vision", "language"),
           "all": PARAMETER_GROUPS}
KEYS = ("failure_rate", "ap50", "recall", "mean_recall")


def splice(model, start_state: dict, run_model, groups) -> None:
    """Set ``model``'s parameters to ``start_state``, then to ``run_model``'s for the parameters of ``groups``."""
    import torch

    with torch.no_grad():
        model.load_state_dict(start_state)
        theirs = dict(run_model.named_parameters())
        for name, param in model.named_parameters():
            if parameter_group(name) in groups:
                param.copy_(theirs[name])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--start", required=True, help="the run directory the runs started from (its final/)")
    ap.add_argument("runs", nargs="+", help="run directories trained from --start")
    ap.add_argument("--val-limit", type=int, default=0, help="validation images (0 = the runs' own val_limit)")
    ap.add_argument("--out", required=True, help="the JSON to write")
    args = ap.parse_args(argv)
    start = Path(args.start)
    model, processor = load_model_and_processor(start / "final", dtype="float32")
    model.eval()
    start_state = {k: v.clone() for k, v in model.state_dict().items()}
    results = []
    for run in map(Path, args.runs):
        cfg = parse_cli(TrainConfig, [str(run / "config.json")])
        cfg = dataclasses.replace(cfg, val_limit=args.val_limit or cfg.val_limit)
        _, val_rows = load_rows(cfg)
        if not val_rows:
            raise ValueError(f"{run} validated no images (val_limit 0): pass --val-limit N")
        vocabulary = data.vocabulary(cfg.dataset) if cfg.prompt != "open" else None
        run_model, _ = load_model_and_processor(run / "final", dtype="float32")
        if [n for n, _ in run_model.named_parameters()] != [n for n, _ in model.named_parameters()]:
            raise ValueError(f"{run} and {start} are not the same architecture")
        row = {"run": str(run), "images": len(val_rows), "splices": {}}
        for label, groups in SPLICES.items():
            t0 = time.time()
            splice(model, start_state, run_model, groups)
            metrics = greedy_validation(model, processor, val_rows, cfg, vocabulary)
            row["splices"][label] = {k: metrics[k] for k in KEYS}
            print(f"{run.name:>24} {label:>9}: " + "  ".join(f"{k} {metrics[k]:6.2f}" for k in KEYS)
                  + f"  ({time.time() - t0:.0f} s)", flush=True)
        results.append(row)
        del run_model
    out = {"start": str(start), "runs": results, "command": " ".join(["python"] + sys.argv),
           "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(Path(args.out), out)
    return out


if __name__ == "__main__":
    main()
