"""VG150 from its raw files (the standard split of Xu et al. 2017, as Scene-Graph-Benchmark reads it).

Files in one directory:

- ``VG-SGG-with-attri.h5``: ``labels`` (boxes × 1, 1-based class ids), ``boxes_1024`` (cx, cy, w, h with the
  image's longest side scaled to 1024), ``img_to_first_box``/``img_to_last_box`` (inclusive, −1 = none),
  ``relationships`` (rels × 2, *global* box indices), ``predicates`` (rels × 1, 1-based),
  ``img_to_first_rel``/``img_to_last_rel`` (−1 = none), ``split`` (0 train, 2 test);
- ``VG-SGG-dicts-with-attri.json``: ``idx_to_label``, ``idx_to_predicate`` (string keys "1"…);
- ``image_data.json``: one ``{image_id, width, height, …}`` per h5 image, aligned by index;
- images ``<image_id>.jpg`` in ``VG_100K/`` (or ``images/``, or the directory itself).

Conversion: box ``(cx, cy, w, h)`` → ``x1 = cx − w/2, y1 = cy − h/2, x2 = x1 + w, y2 = y1 + h`` (SGB's
``load_graphs``), then × ``max(W, H) / 1024`` into original pixels. Splits follow SGB: images of the split with at
least one box and one relation (the others are counted as skipped); ``val`` = the first ``num_val`` of those train
images and ``train`` the rest. Objects keep the file's order; ids number each category in that order. Names pass
through :func:`sgglib.graph.normalize_name`, as the parser does with predictions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..graph import normalize_name
from .schema import DataError, LoadReport, Vocabulary, check_image, clean_graph, require

H5_NAME = "VG-SGG-with-attri.h5"
DICTS_NAME = "VG-SGG-dicts-with-attri.json"
IMAGE_DATA_NAME = "image_data.json"
BOX_SCALE = 1024
H5_KEYS = ("labels", "boxes_1024", "img_to_first_box", "img_to_last_box", "relationships", "predicates",
           "img_to_first_rel", "img_to_last_rel", "split")


def _file(root: Path, name: str) -> Path:
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(f"vg150 {root}: missing {name}")
    return path


def _dicts(root: Path) -> tuple[dict[int, str], dict[int, str]]:
    d = json.loads(_file(root, DICTS_NAME).read_text())
    require(d, ("idx_to_label", "idx_to_predicate"), f"vg150 {DICTS_NAME}", "-")
    labels = {int(k): normalize_name(v) for k, v in d["idx_to_label"].items()}
    preds = {int(k): normalize_name(v) for k, v in d["idx_to_predicate"].items()}
    return labels, preds


def vg150_vocabulary(root: str | Path) -> Vocabulary:
    """The 150 categories and 50 predicates, in index order."""
    labels, preds = _dicts(Path(root))
    return Vocabulary(tuple(labels[k] for k in sorted(labels)), tuple(preds[k] for k in sorted(preds)))


def image_dir(root: Path) -> Path:
    for name in ("VG_100K", "images"):
        if (root / name).is_dir():
            return root / name
    return root


def box_to_xyxy(box_1024: Any, width: int, height: int) -> list[float]:
    """One ``boxes_1024`` row (cx, cy, w, h at longest side 1024) → xyxy in original pixels."""
    cx, cy, w, h = (float(v) for v in box_1024)
    s = max(width, height) / BOX_SCALE
    x1, y1 = cx - w / 2, cy - h / 2
    return [x1 * s, y1 * s, (x1 + w) * s, (y1 + h) * s]


def convert_vg150(root: str | Path, split: str, num_val: int = 5000) -> tuple[list[dict[str, Any]], LoadReport]:
    """Rows of the common schema (``image`` as a file path) and the report of what was skipped."""
    import h5py

    if split not in ("train", "val", "test"):
        raise ValueError(f"vg150: unknown split {split!r}; use train, val or test")
    root = Path(root)
    source = f"vg150 {root}"
    labels, preds = _dicts(root)
    image_data = json.loads(_file(root, IMAGE_DATA_NAME).read_text())
    report = LoadReport(source, split)
    with h5py.File(_file(root, H5_NAME), "r") as f:
        missing = [k for k in H5_KEYS if k not in f]
        if missing:
            raise DataError(f"{source}: {H5_NAME} lacks dataset(s) {missing}")
        h5 = {k: f[k][:] for k in H5_KEYS}
    if len(image_data) != len(h5["split"]):
        raise DataError(f"{source}: {IMAGE_DATA_NAME} has {len(image_data)} images, {H5_NAME} {len(h5['split'])}")
    in_split = np.flatnonzero(h5["split"] == (2 if split == "test" else 0))
    index = []
    for i in in_split:
        image_id = str(image_data[i].get("image_id", i))
        if h5["img_to_first_box"][i] < 0:
            report.add("images_skipped_no_boxes", image_id)
        elif h5["img_to_first_rel"][i] < 0:
            report.add("images_skipped_no_relations", image_id)
        else:
            index.append(int(i))
    if split == "val":
        index = index[:num_val]
    elif split == "train":
        index = index[num_val:]
    images = image_dir(root)
    rows = []
    for i in index:
        meta = image_data[i]
        require(meta, ("image_id", "width", "height"), source, meta.get("image_id", f"#{i}"))
        image_id, width, height = str(meta["image_id"]), int(meta["width"]), int(meta["height"])
        path = images / f"{image_id}.jpg"
        if not check_image(path, width, height, image_id, report):
            continue
        b0, b1 = int(h5["img_to_first_box"][i]), int(h5["img_to_last_box"][i])
        names = []
        for label in h5["labels"][b0:b1 + 1, 0]:
            if int(label) not in labels:
                raise DataError(f"{source}: image {image_id}: label index {int(label)} not in {DICTS_NAME}")
            names.append(labels[int(label)])
        boxes = [box_to_xyxy(b, width, height) for b in h5["boxes_1024"][b0:b1 + 1]]
        r0, r1 = int(h5["img_to_first_rel"][i]), int(h5["img_to_last_rel"][i])
        rels = []
        for (gs, go), p in zip(h5["relationships"][r0:r1 + 1], h5["predicates"][r0:r1 + 1, 0]):
            if int(p) not in preds:
                raise DataError(f"{source}: image {image_id}: predicate index {int(p)} not in {DICTS_NAME}")
            rels.append((int(gs) - b0, preds[int(p)], int(go) - b0))  # global → this image's box index
        graph = clean_graph(names, boxes, rels, width, height, image_id, report)
        if graph is not None:
            rows.append({"image_id": image_id, "image": str(path), "width": width, "height": height, **graph})
    return rows, report
