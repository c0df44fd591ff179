"""The reference code's hub datasets (``JosephZ/vg150_train_sgg_prompt``, ``JosephZ/psg_train_sg``, …): rows whose
``objects``/``relationships`` are JSON strings, decoded into the common schema. Needs a reachable hub; the tests and
the embedded default never use it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Mapping

from ..runs import data_dir, write_json
from .schema import DataError, LoadReport, Vocabulary, clean_graph, features, require


def from_reference_row(row: Mapping[str, Any], source: str = "hub") -> dict[str, Any]:
    """A reference hub row (JSON strings ``objects``/``relationships``, boxes in original pixels) → our schema."""
    image_id = row.get("image_id", "?")
    require(row, ("image_id", "image", "objects", "relationships"), source, image_id)
    try:
        objs = json.loads(row["objects"]) if isinstance(row["objects"], str) else row["objects"]
        rels = json.loads(row["relationships"]) if isinstance(row["relationships"], str) else row["relationships"]
    except json.JSONDecodeError as err:
        raise DataError(f"{source}: image {image_id}: objects/relationships are not JSON ({err})") from err
    width, height = row["image"].size
    index = {o["id"]: i for i, o in enumerate(objs)}
    report = LoadReport(source, "?")
    graph = clean_graph([o["id"].rsplit(".", 1)[0] for o in objs], [o["bbox"] for o in objs],
                        [(index.get(r["subject"]), r["predicate"], index.get(r["object"])) for r in rels],
                        width, height, str(image_id), report)
    if report.counts:
        warnings.warn(str(report), stacklevel=2)
    graph = graph or {"objects": [], "relationships": []}
    return {"image_id": str(image_id), "image": row["image"], "width": width, "height": height, **graph}


def load_hub(hub_id: str, split: str, num_images: int | None, cache_dir: str | Path | None):
    """A reference hub dataset (only with network access; never used by the tests)."""
    import datasets as hf

    folder = (Path(cache_dir) if cache_dir else data_dir("hub")) / hub_id.replace("/", "--") / split
    if not (folder / "dataset_info.json").exists():
        raw = hf.load_dataset(hub_id, split=split)
        ds = raw.map(lambda r: from_reference_row(r, hub_id), remove_columns=raw.column_names,
                     features=features())
        ds.save_to_disk(str(folder))
        cats = sorted({o["id"].rsplit(".", 1)[0] for g in ds["objects"] for o in g})
        preds = sorted({r["predicate"] for g in ds["relationships"] for r in g})
        write_json(folder.parent / "vocabulary.json", Vocabulary(tuple(cats), tuple(preds)).to_dict())
    ds = hf.load_from_disk(str(folder))
    return ds.select(range(min(num_images, len(ds)))) if num_images is not None else ds
