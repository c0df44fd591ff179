"""The row schema every source converts into, and the checks and repairs shared by the real-data converters.

A row (what :func:`sgglib.data.load_sgg` returns, one per image): ``image_id`` (str), ``image`` (PIL), ``width``
and ``height`` (original pixels), ``objects`` (``{"id": "name.N", "bbox": [x1, y1, x2, y2]}`` in original pixels),
``relationships`` (``{"subject": id, "predicate": str, "object": id}``: the annotation, what training and the
metrics see); the synthetic world also gives ``complete_relationships`` (every relation that holds; analysis only). Bad input never passes silently: a
:class:`DataError` names the source and the image, or a skip is counted in a :class:`LoadReport`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping


class DataError(ValueError):
    """Annotations that cannot be converted; the message names the source and the image id."""


@dataclass(frozen=True)
class Vocabulary:
    """The closed vocabulary of a dataset: what closed prompts list and what mRecall averages over."""

    categories: tuple[str, ...]
    predicates: tuple[str, ...]

    def to_dict(self) -> dict[str, list[str]]:
        return {"categories": list(self.categories), "predicates": list(self.predicates)}


@dataclass
class LoadReport:
    """What a converter skipped or repaired: counts per reason and a few image ids per reason."""

    source: str
    split: str
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, image_id: str, n: int = 1) -> None:
        self.counts[reason] += n
        ids = self.examples.setdefault(reason, [])
        if len(ids) < 10 and image_id not in ids:
            ids.append(image_id)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "split": self.split, "counts": dict(self.counts), "examples": self.examples}

    def __str__(self) -> str:
        if not self.counts:
            return f"{self.source} [{self.split}]: nothing skipped"
        parts = ", ".join(f"{k}: {v} (e.g. {', '.join(self.examples.get(k, [])[:3])})" for k, v in
                          sorted(self.counts.items()))
        return f"{self.source} [{self.split}]: {parts}"


# -- validation shared by every real source ---------------------------------------------------------------------
def number_ids(names: Iterable[str]) -> list[str]:
    """``name.N`` ids numbering each name from 1 in the given order."""
    seen: Counter = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(f"{name}.{seen[name]}")
    return out


def clean_graph(names: list[str], boxes: list[Any], relations: list[tuple[Any, str, Any]], width: int, height: int,
                image_id: str, report: LoadReport) -> dict[str, list[dict[str, Any]]] | None:
    """Build a row's graph from names, xyxy boxes and index relations ``(s, predicate, o)``; repair or skip.

    - a box is clipped to the image (``boxes_clipped``); one that is not 4 finite numbers or has no area inside the
      image is dropped (``objects_dropped_bad_box``) with its relations (``relations_dropped_bad_box``);
    - a relation whose index names no object is dropped (``relations_dropped_unknown_object``); exact duplicate
      triplets are dropped (``relations_dropped_duplicate``);
    - the image is skipped (``None``; ``images_skipped_no_relations``) when no relation is left, as the standard
      VG150/PSG protocol filters images without relations.
    """
    keep: dict[int, int] = {}  # original index -> kept position
    kept_names, kept_boxes = [], []
    for i, (name, box) in enumerate(zip(names, boxes)):
        try:
            x1, y1, x2, y2 = (float(v) for v in box)
        except (TypeError, ValueError):
            report.add("objects_dropped_bad_box", image_id)
            continue
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            report.add("objects_dropped_bad_box", image_id)
            continue
        c = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
        if c[2] <= c[0] or c[3] <= c[1]:
            report.add("objects_dropped_bad_box", image_id)
            continue
        if c != (x1, y1, x2, y2):
            report.add("boxes_clipped", image_id)
        keep[i] = len(kept_names)
        kept_names.append(name)
        kept_boxes.append(list(c))
    ids = number_ids(kept_names)
    rels, seen = [], set()
    for s, pred, o in relations:
        if not (isinstance(s, int) and isinstance(o, int) and 0 <= s < len(names) and 0 <= o < len(names)):
            report.add("relations_dropped_unknown_object", image_id)
            continue
        if s not in keep or o not in keep:
            report.add("relations_dropped_bad_box", image_id)
            continue
        triplet = (ids[keep[s]], pred, ids[keep[o]])
        if triplet in seen:
            report.add("relations_dropped_duplicate", image_id)
            continue
        seen.add(triplet)
        rels.append({"subject": triplet[0], "predicate": pred, "object": triplet[2]})
    if not rels:
        report.add("images_skipped_no_relations", image_id)
        return None
    return {"objects": [{"id": i, "bbox": b} for i, b in zip(ids, kept_boxes)], "relationships": rels}


def check_image(path: Path, width: int, height: int, image_id: str, report: LoadReport) -> bool:
    """True if the image opens and has the annotated size; else a counted skip (``images_skipped_unreadable`` /
    ``images_skipped_size_mismatch``). Reads only the header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            size = img.size
    except (OSError, UnidentifiedImageError):  # missing, truncated header, not an image
        report.add("images_skipped_unreadable", image_id)
        return False
    if size != (width, height):
        report.add("images_skipped_size_mismatch", image_id)
        return False
    return True


def require(record: Mapping[str, Any], keys: Iterable[str], source: str, image_id: Any) -> None:
    """Raise :class:`DataError` naming the source, the image and the missing keys."""
    missing = [k for k in keys if k not in record]
    if missing:
        raise DataError(f"{source}: image {image_id}: missing key(s) {missing}")


def features(image_as_path: bool = False, complete: bool = False):
    """The ``datasets.Features`` of the row schema; ``image_as_path`` stores real images as file paths; ``complete``
    adds the synthetic world's ``complete_relationships`` (every relation that holds, for analysis only)."""
    import datasets as hf

    relation = [{"subject": hf.Value("string"), "predicate": hf.Value("string"), "object": hf.Value("string")}]
    columns = {
        "image_id": hf.Value("string"),
        "image": hf.Value("string") if image_as_path else hf.Image(),
        "width": hf.Value("int32"),
        "height": hf.Value("int32"),
        "objects": [{"id": hf.Value("string"), "bbox": hf.List(hf.Value("float64"))}],
        "relationships": relation,
    }
    if complete:
        columns["complete_relationships"] = relation
    return hf.Features(columns)
