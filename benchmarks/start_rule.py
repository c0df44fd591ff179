"""Where R1-SGG starts: does the ``best-of-k`` rule (``sgglib.train.start``) pick the SFT checkpoint from which GRPO
ends best?

For each start candidate of an SFT run (its kept checkpoints and ``final/``): the signals the rule reads (best-of-G
and mean-sample Hard Recall of G samples per image on the first ``--images`` training rows, at the rollout
temperature and budget), then GRPO from it for a fixed ``--steps`` (the world study's recipe: G 8 × 4 prompts,
lr 2e-5, T 0.7, 250-token budget), then greedy validation on 200 images. Writes ``reports/reference/start_rule.json``
(per candidate: its step, the signals, the SFT's and R1-SGG's greedy metrics) and marks the rule's pick. A GRPO run
whose ``metrics.json`` exists is not run again. Run directories: ``reports/start-rule/<candidate>/``.

    .venv/bin/python benchmarks/start_rule.py --sft reports/study/control-seed0/sft      # the control world's SFT
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgglib import data  # noqa: E402
from sgglib.runs import read_json, reports_dir, write_json  # noqa: E402
from sgglib.train.grpo import GRPORunConfig, train_grpo  # noqa: E402
from sgglib.train.start import best_of_k_pick, start_candidates, start_signals  # noqa: E402

KEYS = ("failure_rate", "ap50", "recall", "mean_recall")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sft", required=True, help="an SFT run directory (checkpoints/ and final/)")
    ap.add_argument("--steps", type=int, default=40, help="GRPO steps from each candidate")
    ap.add_argument("--images", type=int, default=48, help="training rows the rule samples")
    ap.add_argument("--runs", default=str(reports_dir("start-rule")))
    ap.add_argument("--out", default=str(reports_dir("reference", "start_rule.json")))
    args = ap.parse_args(argv)
    sft_cfg = read_json(Path(args.sft) / "config.json")
    base = GRPORunConfig(dataset=sft_cfg["dataset"], seed=sft_cfg["seed"], val_limit=200, eval_max_new_tokens=250,
                         max_completion_length=250, max_steps=args.steps, max_minutes=0, best_of=8,
                         best_of_images=args.images,
                         eval_steps=10 ** 9)  # validation at step 0 only: the start's own metrics ("initial")
    rows = data.load_sgg(base.dataset, split="train")
    vocabulary = data.vocabulary(base.dataset)
    table = []
    for candidate in start_candidates(Path(args.sft) / "final"):
        signals = start_signals(candidate, [rows[i] for i in range(args.images)], base, vocabulary)
        run_dir = Path(args.runs) / candidate.name
        if not (run_dir / "metrics.json").exists():
            cfg = dataclasses.replace(base, init=str(candidate), run_dir=str(run_dir))
            train_grpo(cfg, vocabulary=vocabulary)
        metrics = read_json(run_dir / "metrics.json")
        step = int(candidate.name.rsplit("-", 1)[1]) if candidate.name != "final" else read_json(
            Path(args.sft) / "metrics.json")["global_step"]
        row = {"model": str(candidate), "sft_step": step, "signals": signals,
               "sft": {k: metrics["initial"][k] for k in KEYS}, "r1sgg": {k: metrics[k] for k in KEYS},
               "r1sgg_steps": metrics["global_step"]}
        table.append(row)
        print(f"{candidate.name}: best-of-{signals['best_of_k']} {signals['best_of_k_recall']:.1f}, mean sample "
              f"{signals['mean_sample_recall']:.1f}; SFT Recall {row['sft']['recall']:.2f} -> R1-SGG "
              f"{row['r1sgg']['recall']:.2f}", flush=True)
    pick = best_of_k_pick([row["signals"]["best_of_k_recall"] for row in table])
    best = max(range(len(table)), key=lambda i: table[i]["r1sgg"]["recall"])
    result = {"sft": args.sft, "steps": args.steps, "candidates": table, "rule_pick": table[pick]["model"],
              "best_r1sgg": table[best]["model"], "grpo_config": dataclasses.asdict(base),
              "command": " ".join(["python"] + sys.argv)}
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
