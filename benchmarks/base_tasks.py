"""What a base model can do under its own pre-training prompts, beside what it does under the scene-graph prompt.

Greedy-decodes ``--images`` validation images of the synthetic world three times:

* the short ``detect`` prompt (boxes as ``[x1, y1, x2, y2]``), scored like a scene graph: AP@50 of its boxes and
  the failure rate (a detect answer is a valid graph with no relations);
* the short ``relate`` prompt: the share of ground-truth triplets written exactly, ids included (``red circle.1``
  numbered in reading order, as the world numbers them), and the share of written triplets that are right;
* the closed scene-graph prompt: the paper's metrics, and what kind each answer is (a failure by reason, or a
  valid graph by its number of objects and whether it has relations).

A base is a fair stand-in for an Instruct model when it grounds and relates under its own prompts and answers the
scene-graph prompt badly but in its schema. Writes ``reports/bench/base_tasks-<model name>.json``; seconds per model.

    .venv/bin/python benchmarks/base_tasks.py [--model tiny-base] [--images 200]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgglib import data, prompts  # noqa: E402
from sgglib.diagnostics import answer_kind  # noqa: E402
from sgglib.embedded.aux_tasks import DETECT_PROMPT, RELATE_PROMPT  # noqa: E402
from sgglib.metrics import compute_metrics  # noqa: E402
from sgglib.models import load_model_and_processor, predict  # noqa: E402
from sgglib.parse import answer_region  # noqa: E402
from sgglib.runs import reports_dir, write_json  # noqa: E402


def written_triplets(text: str) -> set[tuple[str, str, str]]:
    """The exact (subject, predicate, object) triplets of a relate answer (``{"relationships": [...]}``, fenced or
    not); an answer that is not that shape writes none."""
    try:
        items = json.loads(answer_region(text))["relationships"]
        return {(r["subject"], r["predicate"], r["object"]) for r in items}
    except (json.JSONDecodeError, KeyError, TypeError):  # not a relate answer: it wrote no triplet
        return set()


def relate_scores(completions: list[str], rows: list[dict]) -> dict[str, float]:
    """Triplet recall and precision of relate answers at the level of ids, in %, and triplets per answer."""
    hits = total = written = 0
    for text, row in zip(completions, rows):
        truth = {(r["subject"], r["predicate"], r["object"]) for r in row["relationships"]}
        guess = written_triplets(text)
        hits, total, written = hits + len(truth & guess), total + len(truth), written + len(guess)
    return {"triplet_recall": 100 * hits / max(1, total), "triplet_precision": 100 * hits / max(1, written),
            "triplets_per_answer": written / max(1, len(rows))}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny-base")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--out", default="", help="default: reports/bench/base_tasks-<model directory name>.json")
    args = ap.parse_args(argv)

    rows = data.load_sgg("synthetic", split="val")
    rows = [rows[i] for i in range(min(args.images, len(rows)))]
    model, processor = load_model_and_processor(args.model)
    gts = {str(r["image_id"]): {k: r[k] for k in ("width", "height", "objects", "relationships")} for r in rows}

    def greedy(prompt: str) -> tuple[list[str], dict]:
        records = predict(model, processor, rows, prompt, batch_size=32, max_new_tokens=400, progress=False)
        metrics = compute_metrics({r["image_id"]: r["completion"] for r in records}, gts, similarity="exact",
                                  pred_box_scale={r["image_id"]: tuple(r["box_scale"]) for r in records})
        return [r["completion"] for r in records], metrics

    _, detect = greedy(DETECT_PROMPT.format(box_words="[x1, y1, x2, y2]"))
    relate, _ = greedy(RELATE_PROMPT)
    closed_texts, closed = greedy(prompts.user_prompt(data.vocabulary("synthetic")))
    result = {"model": args.model, "images": len(rows),
              "detect": {k: detect[k] for k in ("failure_rate", "ap50")},
              "relate": relate_scores(relate, rows),
              "closed": {k: closed[k] for k in ("failure_rate", "ap50", "recall", "mean_recall")},
              "closed_answers": dict(Counter(map(answer_kind, closed_texts)).most_common()),
              "command": " ".join(["python"] + sys.argv)}
    out = args.out or str(reports_dir("bench", f"base_tasks-{Path(args.model).name}.json"))
    write_json(out, result)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
