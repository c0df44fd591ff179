"""How well the embedded base's pre-training covers the scene-graph prompt's tokens, and what the tokenizer costs.

    .venv/bin/python benchmarks/tokenizer_coverage.py [--model data/models/tiny-base] [--out reports/bench/...]

Prints and writes (``reports/bench/tokenizer_coverage.json``): the closed prompt's length in tokens, the tokens of
it that no auxiliary-task prompt or answer of 1,000 training images contains (the base never trained them; with
many, its zero-shot answers degenerate — ``docs/findings.md#the-embedded-tokenizer``), and the mean SFT answer length
on the validation split. The auxiliary tasks are drawn as the base's pre-training drew them: with the long-form
prompts only if its ``pretrain_config.json`` says ``long_forms`` (the committed base: short forms only). Seconds on
a CPU; no model weights are loaded.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

from transformers import AutoTokenizer

from sgglib import data, prompts
from sgglib.embedded.aux_tasks import aux_examples
from sgglib.runs import read_json, repo_path, write_json


def coverage(model: str, n_images: int = 1000, seed: int = 0) -> dict:
    tok = AutoTokenizer.from_pretrained(repo_path(model))
    record = repo_path(model) / "pretrain_config.json"
    long_forms = bool(read_json(record).get("long_forms", False)) if record.exists() else False
    vocab = data.vocabulary("synthetic", seed=seed)
    train, val = (data.load_sgg("synthetic", split=s, seed=seed) for s in ("train", "val"))
    closed = tok(prompts.closed_prompt(vocab.categories, vocab.predicates))["input_ids"]
    seen: set[int] = set()
    rng = random.Random(seed)
    for i in range(min(n_images, len(train))):
        for ex in aux_examples(train[i], rng, vocabulary=vocab if long_forms else None):
            seen.update(tok(ex["prompt"][-1]["content"][-1]["text"])["input_ids"])
            seen.update(tok(ex["completion"][0]["content"][0]["text"])["input_ids"])
    unseen = [tok.decode([t]) for t in closed if t not in seen]
    return {"model": str(model), "aux_long_forms": long_forms, "closed_prompt_tokens": len(closed), "unseen_by_aux_tasks": len(unseen),
            "unseen_tokens": unseen, "longest_prompt_token_chars": max(len(tok.decode([t])) for t in closed),
            "mean_sft_answer_tokens": statistics.fmean(len(tok(prompts.sft_target(val[i]))["input_ids"])
                                                       for i in range(len(val))),
            "val_images": len(val), "aux_images": min(n_images, len(train))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="data/models/tiny-base", help="a model directory (relative: to the repo)")
    ap.add_argument("--out", type=Path, default=repo_path("reports", "bench", "tokenizer_coverage.json"))
    args = ap.parse_args()
    result = coverage(args.model)
    write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "unseen_tokens"}, indent=1))


if __name__ == "__main__":
    main()
