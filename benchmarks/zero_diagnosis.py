"""Why R1-SGG-Zero collapses: who gets a positive advantage at its first step.

Samples ``--group`` answers per image from the base model (``tiny-base``) on ``--images`` training images, with the
GRPO defaults' prompt, system turn and temperature, scores them with a reward preset (``hard``: format + Hard Recall
+ the size guard), and computes GRPO's advantage per sample ((r − group mean) / (group std + 1e-4), as TRL does).
Then it groups the samples by what they are — a parse failure (by reason) or a valid graph (by its number of
objects, with or without relations) — and reports, per kind, how many there are, their mean reward components and
their mean advantage; and how many samples try to write a relation (a ``"predicate"`` key anywhere in the text),
how many of those parse as a graph with relations, and their mean advantage; and, read out of the text whether it
parses or not, how many whole relation entries the attempts hold and the share of those that are annotated
triplets, ids included (what the format rule throws away). Writes
``reports/bench/zero_diagnosis.json``; ``--model`` may be a run's ``final/`` (what the samples became after GRPO).

    .venv/bin/python benchmarks/zero_diagnosis.py [--images 16] [--group 8] [--temperature 0.7] [--rewards hard] \
        [--guard strict] [--seed 0] [--model tiny-base] [--out F]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgglib import data, prompts, rewards  # noqa: E402
from sgglib.diagnostics import answer_kind  # noqa: E402
from sgglib.models import load_model_and_processor, predict  # noqa: E402
from sgglib.runs import reports_dir, write_json  # noqa: E402

TRIPLET = re.compile(r'\{"subject": "([^"]*)", "predicate": "([^"]*)", "object": "([^"]*)"\}')
"""a whole relation entry as the bases write it, found anywhere in a sample's text, parsed or not"""


def diagnose(texts: list[str], sols: list[dict], group: int, preset: str, guard: str) -> dict:
    """Score ``texts`` (consecutive groups of ``group`` samples, each beside its ground truth in ``sols``) with the
    ``preset``'s weights and the ``guard``, and say who gets a positive advantage and what the relation attempts
    hold (the module docstring's list)."""
    weights = rewards.reward_weights(preset)
    fns = rewards.make_rewards(list(weights), format_strict=False, guard=guard)
    parts = {f.__name__: np.array(f(texts, sols)) for f in fns}
    total = sum(weights[name] * values for name, values in parts.items())
    recall = np.array(rewards.make_rewards(["edge_hard_reward"])[0](texts, sols))  # Hard Recall, whatever the preset
    groups = total.reshape(-1, group)
    advantage = ((groups - groups.mean(1, keepdims=True)) / (groups.std(1, ddof=1, keepdims=True) + 1e-4)).ravel()
    by_kind: dict[str, list[int]] = defaultdict(list)
    kinds = [answer_kind(text) for text in texts]
    for i, k in enumerate(kinds):
        by_kind[k].append(i)
    writes = np.array(['"predicate"' in text for text in texts])
    attempts = [k for k, w in zip(kinds, writes) if w]
    # what the attempts would say if their triplets were read out of the broken text: ids exactly as annotated
    written = [set(TRIPLET.findall(text)) for text in texts]
    truth = [{(r["subject"], r["predicate"], r["object"]) for r in sol["relationships"]} for sol in sols]
    salvaged = sum(len(w) for w in written)
    table = {k: {"samples": len(ix), "share": len(ix) / len(texts), "mean_advantage": float(advantage[ix].mean()),
                 "mean_reward": float(total[ix].mean()),
                 **{f"mean_{name}": float(values[ix].mean()) for name, values in parts.items()}}
             for k, ix in sorted(by_kind.items(), key=lambda kv: -len(kv[1]))}
    return {"rewards": weights, "zero_variance_groups": float((groups.std(1) == 0).mean()),
            "guard": guard, "groups_with_any_recall": float((recall.reshape(-1, group) > 0).any(1).mean()),
            "relation_attempts": len(attempts) / len(texts),
            "relation_attempts_valid": sum(k.endswith("with relations") for k in attempts) / max(1, len(attempts)),
            "relation_attempts_mean_advantage": float(advantage[writes].mean()) if writes.any() else None,
            "salvaged_triplets_per_attempt": salvaged / max(1, len(attempts)),
            "salvaged_triplet_precision": sum(len(w & t) for w, t in zip(written, truth)) / max(1, salvaged),
            "by_kind": table}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny-base")
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--rewards", default="hard")
    ap.add_argument("--guard", default="strict", choices=("strict", "budget"), help="the size guard (GRPO's guard)")
    ap.add_argument("--max-new-tokens", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0, help="torch's seed for the sampling")
    ap.add_argument("--out", default=str(reports_dir("bench", "zero_diagnosis.json")))
    args = ap.parse_args(argv)

    rows = data.load_sgg("synthetic", split="train")
    rows = [rows[i] for i in range(args.images)]
    vocab = data.vocabulary("synthetic")
    model, processor = load_model_and_processor(args.model)
    torch.manual_seed(args.seed)
    records = predict(model, processor, rows, prompts.user_prompt(vocab), batch_size=max(1, 32 // args.group),
                      max_new_tokens=args.max_new_tokens, do_sample=True, temperature=args.temperature,
                      num_return_sequences=args.group, progress=False)
    texts = [r["completion"] for r in records]
    solutions = {str(r["image_id"]): prompts.solution(r) for r in rows}
    sols = [solutions[r["image_id"]] for r in records]
    result = {"model": args.model, "images": args.images, "group": args.group, "temperature": args.temperature,
              "seed": args.seed, **diagnose(texts, sols, args.group, args.rewards, args.guard),
              "command": " ".join(["python"] + sys.argv)}
    table = result["by_kind"]
    write_json(args.out, result)
    for k, row in table.items():
        print(f"{k:<40} {row['samples']:>4}  advantage {row['mean_advantage']:+.2f}  reward {row['mean_reward']:.2f}")
    print(f"zero-variance groups {result['zero_variance_groups']:.0%}, groups with any recall "
          f"{result['groups_with_any_recall']:.0%}, samples writing a relation {result['relation_attempts']:.0%} "
          f"(valid graphs: {result['relation_attempts_valid']:.0%} of them, mean advantage "
          f"{result['relation_attempts_mean_advantage'] or 0:+.2f}; {result['salvaged_triplets_per_attempt']:.1f} "
          f"whole triplets each, {result['salvaged_triplet_precision']:.0%} of them annotated)")
    return result


if __name__ == "__main__":
    main()
