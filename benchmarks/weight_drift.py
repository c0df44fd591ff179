"""How far training moved the weights, against how far steps of an Adam-sized length would move them at random.

Adam gives each parameter a step of about ``lr`` whatever its gradient says, so ``n`` steps of a model with ``N``
parameters are ``lr·√N`` long each. Steps that all point the same way end ``n·lr·√N`` from the start; steps in
independent random directions end about ``√n·lr·√N`` away (a random walk). A run's distance from its start, set
between those two, says how much of its path was direction and how much was noise:

    .venv/bin/python benchmarks/weight_drift.py --start reports/study/control-seed0/sft \\
        reports/study/control-seed0/grpo-real-curve reports/study/control-seed0/grpo-placebo \\
        reports/study/control-seed0/sft-more-12min --out reports/reference/study/weight-drift-control-seed0.json

Each run directory's ``final/`` holds its weights, its ``config.json`` the learning rate and optimizer and its
``metrics.json`` the steps. The step length ``lr·√N`` is Adam's nominal one (bias-corrected, before its epsilon): a
yardstick, not a measurement of each step. Plain SGD's steps are measured: each is ``lr`` times the step's gradient
norm (``train/grad_norm`` in the run's ``metrics.csv``, clipped at ``max_grad_norm``), so its random walk is
``lr·√Σ‖g‖²`` and its straight line ``lr·Σ‖g‖``. Both yardsticks take the learning rate as constant, as GRPO's and
the compute-matched SFT's are; a run with a schedule, or another optimizer, gets its distance and no yardstick.
Each run's distance is also split by :func:`~sgglib.models.parameter_group` (the vision tower, the token embedding
tied to the LM head, the language layers), with Adam's yardstick for each group's own parameters; with
``--answer-rows N`` the embedding's distance is split again into the rows of the tokens that the answers (the SFT
targets of N training images) use and the rows of every other token. Where the start and the run both kept the
greedy answers of their final validation (``predictions.jsonl``), the row also says how many of those answers the
run left unchanged, and whether the answers whose relations changed gained or lost Hard Recall against the start's
validation rows (:func:`sgglib.diagnostics.answer_changes`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgglib import diagnostics  # noqa: E402
from sgglib.analysis import load_run  # noqa: E402
from sgglib.models import PARAMETER_GROUPS, parameter_group  # noqa: E402
from sgglib.runs import read_json, read_metrics_csv, write_json  # noqa: E402


def weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted((run_dir / "final").glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{run_dir / 'final'} holds no *.safetensors: is {run_dir} a finished run?")
    out = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def distance(a: dict, b: dict, group: str | None = None) -> tuple[float, int]:
    """The L2 distance between two state dicts over their shared floating-point tensors (those of one
    :func:`~sgglib.models.parameter_group` if ``group``), and their size."""
    keys = [k for k in a if k in b and a[k].is_floating_point() and a[k].shape == b[k].shape
            and (group is None or parameter_group(k) == group)]
    if not keys and group is None:
        raise ValueError("the two models share no floating-point tensor: not the same architecture")
    total = sum(float(((b[k].double() - a[k].double()) ** 2).sum()) for k in keys)
    return math.sqrt(total), sum(a[k].numel() for k in keys)


def answer_token_ids(start: Path, images: int) -> set[int]:
    """The token ids that the SFT targets of the first ``images`` training rows of ``start``'s dataset use."""
    from sgglib import data, prompts
    from sgglib.models import box_convention, load_processor

    processor = load_processor(start / "final")
    convention = box_convention(processor)
    rows = data.load_sgg(read_json(start / "config.json")["dataset"], split="train")
    ids: set[int] = set()
    for i in range(min(images, len(rows))):
        ids.update(processor.tokenizer(prompts.sft_target(rows[i], convention)).input_ids)
    return ids


def embedding_rows(a: dict, b: dict, ids: set[int]) -> dict:
    """The token embedding's distance split into the rows of ``ids`` and the rest."""
    key = next(k for k in a if parameter_group(k) == "embedding" and a[k].dim() == 2)
    rows = (b[key].double() - a[key].double()).pow(2).sum(1)
    mask = torch.zeros(len(rows), dtype=torch.bool)
    mask[sorted(i for i in ids if i < len(rows))] = True
    return {"answer_tokens": int(mask.sum()), "vocabulary": len(rows),
            "answer_rows_distance": float(rows[mask].sum()) ** 0.5,
            "other_rows_distance": float(rows[~mask].sum()) ** 0.5}


def validation_rows(start: Path) -> list | None:
    """The ground-truth rows of ``start``'s validation split, where its ``predictions.jsonl`` answered them."""
    config = read_json(start / "config.json")
    if not (start / "predictions.jsonl").exists() or "dataset" not in config:
        return None
    from sgglib import data

    return list(data.load_sgg(config["dataset"], split=config.get("val_split", "val")))


def drift(start: Path, run: Path, start_weights: dict | None = None, answer_ids: set[int] | None = None,
          rows: list | None = None, start_run=None) -> dict:
    """``run``'s distance from ``start`` and the two yardsticks for its steps and learning rate."""
    start_weights = start_weights if start_weights is not None else weights(start)
    run_weights = weights(run)
    moved, n_params = distance(start_weights, run_weights)
    parts = {g: distance(start_weights, run_weights, g) for g in PARAMETER_GROUPS}
    config = read_json(run / "config.json")
    lr, optim = float(config["learning_rate"]), str(config.get("optim", "adamw_torch_fused"))
    steps = int(read_json(run / "metrics.json")["global_step"])
    row = {"run": str(run), "steps": steps, "learning_rate": lr, "optim": optim, "parameters": n_params,
           "distance": moved,
           "groups": {g: {"parameters": n, "distance": d,
                          # Adam's yardstick for the group's own parameters (None where it does not apply)
                          "distance_over_random_walk": d / (lr * math.sqrt(n * steps))
                          if optim.startswith("adam") and n and steps
                          and config.get("lr_scheduler", "constant") == "constant" else None}
                      for g, (d, n) in parts.items()}}
    if answer_ids:
        row["groups"]["embedding"].update(embedding_rows(start_weights, run_weights, answer_ids))
    if (start / "predictions.jsonl").exists() and (run / "predictions.jsonl").exists():
        # what the move did to the greedy answers of the final validations
        row["greedy_answers"] = diagnostics.answer_changes(start_run or load_run(start.resolve()),
                                                           load_run(run.resolve()), rows)
    if config.get("lr_scheduler", "constant") != "constant":
        return {**row, "random_walk": None, "straight_line": None, "distance_over_random_walk": None}
    if optim.startswith("adam"):
        lengths = [lr * math.sqrt(n_params)] * steps
    elif optim == "sgd":
        clip = float(config.get("max_grad_norm") or math.inf)
        norms = [min(float(r["train/grad_norm"]), clip) for r in read_metrics_csv(run / "metrics.csv")
                 if r.get("train/grad_norm") not in (None, "")]
        if len(norms) != steps:
            raise ValueError(f"{run}: {len(norms)} logged gradient norms for {steps} steps; SGD's steps need one "
                             "per step (logging_steps 1)")
        lengths = [lr * g for g in norms]
    else:
        return {**row, "random_walk": None, "straight_line": None, "distance_over_random_walk": None}
    walk = math.sqrt(sum(x * x for x in lengths))
    return {**row, "random_walk": walk, "straight_line": sum(lengths), "distance_over_random_walk": moved / walk}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--start", required=True, help="the run directory every run started from")
    ap.add_argument("runs", nargs="+", help="run directories that trained from --start's final/")
    ap.add_argument("--out", required=True, help="the JSON to write")
    ap.add_argument("--answer-rows", type=int, default=0, metavar="IMAGES",
                    help="split the token embedding's distance into the rows of the tokens that the SFT targets of "
                         "this many training images use, and the rest (0 = off)")
    args = ap.parse_args(argv)
    start = Path(args.start)
    start_weights = weights(start)
    ids = answer_token_ids(start, args.answer_rows) if args.answer_rows else None
    truth = validation_rows(start)
    start_run = load_run(start.resolve())
    rows = [drift(start, Path(r), start_weights, ids, truth, start_run) for r in args.runs]
    write_json(Path(args.out), {"start": str(start), "runs": rows, "command": " ".join(["python"] + sys.argv)})
    for r in rows:
        line = f"{Path(r['run']).name:>24}: {r['steps']:>5} steps, moved {r['distance']:.3f}"
        if r["random_walk"] is not None:
            line += (f"; random walk {r['random_walk']:.3f}, straight line {r['straight_line']:.1f} "
                     f"(x{r['distance_over_random_walk']:.2f})")
        print(line + f" [{r['optim']}]; by group: " + ", ".join(
            f"{g} {v['distance']:.3f}" + (f" (x{v['distance_over_random_walk']:.2f})"
                                          if v["distance_over_random_walk"] is not None else "")
            for g, v in r["groups"].items()))
        if "greedy_answers" in r:
            print(" " * 26 + "greedy answers unchanged: " + ", ".join(
                f"{k.removeprefix('unchanged_')} {v:.0f} %" for k, v in r["greedy_answers"].items()
                if k.startswith("unchanged_")) + "; where the relations changed, recall "
                + ", ".join(f"{k} {v}" for k, v in r["greedy_answers"].get("relations_changed_recall", {}).items()))


if __name__ == "__main__":
    main()
