"""Where GRPO's learning signal is for a checkpoint: its greedy answers against G samples per image.

    .venv/bin/python benchmarks/grpo_headroom.py --init reports/sft-ref [--images 48] [--group-size 8] \
        [--temperatures 0.3 0.5 0.7 1.0] [--out reports/bench/grpo_headroom.json]

On the first ``--images`` training images (the prompts GRPO draws from), for the greedy answer and for each
sampling temperature:
- Hard Recall: the samples' mean, and the best sample of each group of G (what picking among the samples could
  reach; GRPO's advantage pushes towards those);
- the failure rate and the structure breaks: relations naming an undefined id (``dangling``), self-relations,
  duplicate ids;
- how the within-group variance of the ``hard`` preset's weighted reward (what the advantage sees) splits among
  the format reward, Hard Recall and the size guard, with the strict guard (the default) and, from the same
  samples, with ``guard="budget"`` (``within_group_variance_by_component_budget_guard``).

It also checks that TRL's training forward pairs each completion with its own image: one GRPO step's batch is
scored under its own images and under another prompt's images (mean token log-prob of the completions). A bug
there would make GRPO learn noise. A few minutes on a CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from sgglib import data, prompts, rewards
from sgglib.models import load_model_and_processor, predict
from sgglib.train.grpo import GRPORunConfig, resolve_init, train_grpo
from sgglib.parse import parse_completion
from sgglib.runs import repo_path, write_json

WEIGHTS = rewards.PRESETS["hard"]


def _components(completions, solutions, scales) -> dict[str, np.ndarray]:
    kw = dict(solution=solutions, box_scale=scales)
    return {
        "format_reward": np.array(rewards.FormatReward(strict=False)(completions, **kw)),
        "edge_hard_reward": np.array(rewards.EdgeHardReward()(completions, **kw)),
        "size_penalty_reward": np.array(rewards.SizePenaltyReward()(completions, **kw)),
        "size_penalty_reward_budget": np.array(rewards.SizePenaltyReward(charge_items=False)(completions, **kw)),
    }


def _variance_split(comp: dict[str, np.ndarray], g: int, guard: str) -> tuple[float, dict[str, float]]:
    """The mean within-group variance of the weighted ``hard`` reward, and that of each weighted component (they
    need not add up: the components covary), with the ``strict`` or the ``budget`` size guard."""
    parts = {k: comp[k + ("_budget" if guard == "budget" and k == "size_penalty_reward" else "")] for k in WEIGHTS}
    total = sum(WEIGHTS[k] * v for k, v in parts.items()).reshape(-1, g)
    return float(total.var(1).mean()), {k: float((WEIGHTS[k] * v.reshape(-1, g)).var(1).mean())
                                        for k, v in parts.items()}


def _structure(completions) -> dict[str, float]:
    results = [parse_completion(c) for c in completions]
    ok = [r for r in results if r.ok]
    rels = sum(len(r.graph.relations) for r in ok)
    return {
        "failure_rate": 100.0 * (len(results) - len(ok)) / len(results),
        "relations_per_answer": rels / max(1, len(ok)),
        "self_relations_pct_of_relations": 100.0 * sum(x.subject == x.object for r in ok for x in r.graph.relations)
        / max(1, rels),
        "answers_with_dangling_pct": 100.0 * sum(r.dangling_relations > 0 for r in ok) / max(1, len(ok)),
        "answers_with_duplicate_ids_pct": 100.0 * sum(r.duplicate_ids > 0 for r in ok) / max(1, len(ok)),
    }


def headroom(model_dir: str, images: int, group_size: int, temperatures, seed: int = 0) -> dict:
    model, processor = load_model_and_processor(model_dir, dtype="float32")
    vocab = data.vocabulary("synthetic")
    train = data.load_sgg("synthetic", split="train")
    rows = [train[i] for i in range(images)]
    solutions = {str(r["image_id"]): prompts.solution(r) for r in rows}
    out: dict = {}
    for temperature in [0.0, *temperatures]:
        torch.manual_seed(seed)
        g = group_size if temperature > 0 else 1
        recs = predict(model, processor, rows, prompts.user_prompt(vocab), batch_size=8, max_new_tokens=400,
                       do_sample=temperature > 0, temperature=temperature or 1.0, num_return_sequences=g,
                       progress=False)
        completions = [r["completion"] for r in recs]
        comp = _components(completions, [solutions[r["image_id"]] for r in recs], [r["box_scale"] for r in recs])
        recall = comp["edge_hard_reward"].reshape(-1, g)
        entry = {"samples": len(recs), "recall_mean": 100.0 * recall.mean(), **_structure(completions)}
        if g > 1:
            entry[f"recall_best_of_{g}"] = 100.0 * recall.max(1).mean()
            entry["groups_with_recall_spread_pct"] = 100.0 * float((recall.std(1) > 0).mean())
            for guard, suffix in (("strict", ""), ("budget", "_budget_guard")):
                total, split = _variance_split(comp, g, guard)
                entry["within_group_reward_variance" + suffix] = total
                entry["within_group_variance_by_component" + suffix] = split
        out["greedy" if temperature == 0 else f"T={temperature}"] = entry
        print(("greedy" if temperature == 0 else f"T={temperature}"),
              json.dumps({k: round(v, 2) for k, v in entry.items() if isinstance(v, float)}))
    return out


@contextlib.contextmanager
def _capture_first_batch(store: dict):
    """Patch ``GRPOTrainer.compute_loss`` for the duration: on the first call, score the batch's completions under
    their own images and under the images rolled by one prompt group."""
    import trl

    original = trl.GRPOTrainer.compute_loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        if not store:
            ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
            mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
            keep = inputs["completion_ids"].size(1)
            kw = {k: inputs[k] for k in ("pixel_values", "image_grid_thw", "num_images", "mm_token_type_ids")
                  if k in inputs}
            pv, n = kw["pixel_values"], ids.size(0)
            g = self.num_generations
            rolled = {**kw, "pixel_values": torch.roll(pv.view(n, -1, pv.size(-1)), g, 0).reshape(pv.shape)}
            w = inputs["completion_mask"].float()
            with torch.no_grad():
                own = self._get_per_token_logps_and_entropies(model, ids, mask, keep, **kw)[0]
                other = self._get_per_token_logps_and_entropies(model, ids, mask, keep, **rolled)[0]
            own, other = ((x * w).sum(1) / w.sum(1) for x in (own, other))
            store.update(completions=n, mean_token_logp_own_image=own.mean().item(),
                         mean_token_logp_other_image=other.mean().item(),
                         own_higher_pct=100.0 * (own > other).float().mean().item())
        return original(self, model, inputs, *args, **kwargs)

    trl.GRPOTrainer.compute_loss = compute_loss
    try:
        yield store
    finally:
        trl.GRPOTrainer.compute_loss = original


def image_pairing(init: str) -> dict:
    """One GRPO step (4 prompts × 8) with the batch scored under own and rolled images (see the module docstring).
    All images in this world share one size, so rolling the flat pixel rows by a group is a valid swap."""
    store: dict = {}
    with tempfile.TemporaryDirectory() as tmp, _capture_first_batch(store):
        train_grpo(GRPORunConfig(init=init, run_dir=str(Path(tmp) / "run"), max_steps=1, eval_steps=0,
                                 val_limit=4, resume=False))
    print("image pairing", json.dumps(store))
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--init", default="reports/sft-ref", help="a model or run directory (GRPO's init)")
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.3, 0.5, 0.7, 1.0])
    ap.add_argument("--out", type=Path, default=repo_path("reports", "bench", "grpo_headroom.json"))
    args = ap.parse_args()
    init = resolve_init(args.init)
    if not (Path(init) / "config.json").exists():
        raise SystemExit(f"{args.init} is not a checkpoint or run directory with final/: train one first "
                         "(notebook 03, or `python -m sgglib.train.sft --run-dir sft-ref --max-steps 1000`)")
    result = {"init": args.init, "images": args.images, "group_size": args.group_size,
              "weights": WEIGHTS, "by_decoding": headroom(init, args.images, args.group_size, args.temperatures),
              "image_pairing": image_pairing(init)}
    write_json(args.out, result)


if __name__ == "__main__":
    main()
