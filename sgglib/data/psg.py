"""PSG (panoptic scene graphs, Yang et al. 2022) from ``psg.json`` + an image folder (``docs/method.md#data-sources``).

``psg.json`` holds ``data`` (one record per image: ``file_name``, ``height``, ``width``, ``image_id``,
``annotations`` [{``bbox`` xyxy in pixels, ``category_id``}], ``relations`` [[subject, object, predicate]] with
subject/object indexing ``annotations``), ``thing_classes``, ``stuff_classes``, ``predicate_classes`` (all 0-based;
a ``category_id`` indexes ``thing_classes + stuff_classes``) and ``test_image_ids``.

Splits: ``test`` = the records whose ``image_id`` is in ``test_image_ids``, ``train`` = the rest (PSG has no val).
Boxes are already xyxy in original pixels. Objects keep the annotation order; ids number each category in that
order. Names pass through :func:`sgglib.graph.normalize_name` (``"wall-other-merged"`` → ``"wall other merged"``),
as the parser does with predictions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..graph import normalize_name
from .schema import DataError, LoadReport, Vocabulary, check_image, clean_graph, require

TOP_KEYS = ("data", "thing_classes", "stuff_classes", "predicate_classes", "test_image_ids")


def _read(path: Path) -> dict[str, Any]:
    d = json.loads(Path(path).read_text())
    require(d, TOP_KEYS, f"psg {path}", "-")
    return d


def _vocab(d: dict[str, Any]) -> Vocabulary:
    cats = tuple(normalize_name(c) for c in d["thing_classes"] + d["stuff_classes"])
    return Vocabulary(cats, tuple(normalize_name(p) for p in d["predicate_classes"]))


def psg_vocabulary(path: str | Path) -> Vocabulary:
    """The 133 categories (things then stuff) and 56 predicates, in index order."""
    return _vocab(_read(Path(path)))


def convert_psg(path: str | Path, split: str, image_root: str | Path) -> tuple[list[dict[str, Any]], LoadReport]:
    """Rows of the common schema (``image`` as a file path) and the report of what was skipped."""
    if split not in ("train", "test"):
        raise ValueError(f"psg: unknown split {split!r}; PSG has train and test only")
    path, image_root = Path(path), Path(image_root)
    source = f"psg {path}"
    d = _read(path)
    vocab = _vocab(d)
    test_ids = {str(i) for i in d["test_image_ids"]}
    report = LoadReport(source, split)
    rows = []
    for k, rec in enumerate(d["data"]):
        image_id = str(rec.get("image_id", f"#{k}"))
        if (image_id in test_ids) != (split == "test"):
            continue
        require(rec, ("file_name", "height", "width", "image_id", "annotations", "relations"), source, image_id)
        width, height = int(rec["width"]), int(rec["height"])
        names, boxes = [], []
        for j, ann in enumerate(rec["annotations"]):
            require(ann, ("bbox", "category_id"), source, f"{image_id} annotation {j}")
            cid = ann["category_id"]
            if not (isinstance(cid, int) and 0 <= cid < len(vocab.categories)):
                raise DataError(f"{source}: image {image_id}: category_id {cid!r} outside the "
                                f"{len(vocab.categories)} thing+stuff classes")
            names.append(vocab.categories[cid])
            boxes.append(ann["bbox"])
        rels = []
        for rel in rec["relations"]:
            if not (isinstance(rel, (list, tuple)) and len(rel) == 3):
                raise DataError(f"{source}: image {image_id}: relation {rel!r} is not [subject, object, predicate]")
            s, o, p = rel
            if not (isinstance(p, int) and 0 <= p < len(vocab.predicates)):
                raise DataError(f"{source}: image {image_id}: predicate index {p!r} outside predicate_classes")
            rels.append((s, vocab.predicates[p], o))
        file = image_root / rec["file_name"]
        if not check_image(file, width, height, image_id, report):
            continue
        graph = clean_graph(names, boxes, rels, width, height, image_id, report)
        if graph is not None:
            rows.append({"image_id": image_id, "image": str(file), "width": width, "height": height, **graph})
    return rows, report
