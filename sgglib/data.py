"""One entry point for every scene-graph dataset: :func:`load_sgg` → a ``datasets.Dataset`` of one row schema.

Row schema (the reference's hub rows, with the graph decoded; prompts are built by :mod:`sgglib.prompts`):

================  ===================================================================================
``image_id``      str
``image``         PIL image (``datasets.Image`` feature)
``width``         int, original image width
``height``        int, original image height
``objects``       list of ``{"id": "name.N", "bbox": [x1, y1, x2, y2]}``, floats in original pixels
``relationships`` list of ``{"subject": id, "predicate": str, "object": id}``
================  ===================================================================================

``source`` is one of:

- ``"synthetic"`` (the default): the embedded world of :mod:`sgglib.synthetic`, generated from ``world`` and
  ``seed``; split sizes default to :data:`SYNTHETIC_SIZES`.
- a directory with the raw VG150 files (:mod:`sgglib.vg150`), or a ``psg.json`` path with ``image_root``
  (:mod:`sgglib.psg`);
- a hub id of the reference's datasets (``JosephZ/vg150_train_sgg_prompt``, ``JosephZ/psg_train_sg``, …), whose
  JSON-string ``objects``/``relationships`` are decoded (:func:`from_reference_row`). Needs a reachable hub.

Everything is cached under ``data/`` with ``save_to_disk`` (key: source + options + :data:`CACHE_VERSION`), with a
``vocabulary.json`` beside it (read it with :func:`vocabulary`) and, for converted data, a ``report-<split>.json``
of what was skipped or repaired. Real images are cached as file paths, not copied.

Bad input never passes silently: :class:`DataError` (naming source and image id) for malformed annotations, or a
skip counted in the :class:`LoadReport`, which is saved and also emitted as a warning.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .runs import data_dir, write_json
from .synthetic import WorldConfig, background_mean, generate

CACHE_VERSION = 1  # bump when a generator or converter changes what it writes
SYNTHETIC_SIZES = {"train": 4000, "val": 200, "test": 500}
SPLITS = ("train", "val", "test")


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


# -- caching ----------------------------------------------------------------------------------------------------
def _features(image_as_path: bool = False):
    import datasets as hf

    return hf.Features({
        "image_id": hf.Value("string"),
        "image": hf.Value("string") if image_as_path else hf.Image(),
        "width": hf.Value("int32"),
        "height": hf.Value("int32"),
        "objects": [{"id": hf.Value("string"), "bbox": hf.List(hf.Value("float64"))}],
        "relationships": [{"subject": hf.Value("string"), "predicate": hf.Value("string"),
                           "object": hf.Value("string")}],
    })


def _key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str).encode()).hexdigest()[:12]


def _from_rows(rows: list[dict[str, Any]], image_as_path: bool):
    import datasets as hf

    cols = {k: [r[k] for r in rows] for k in _features().keys()}
    return hf.Dataset.from_dict(cols, features=_features(image_as_path))


def _cached(folder: Path, build, image_as_path: bool = False):
    """Load ``folder`` if saved, else ``build()`` → rows, save, load. Paths are cast to images after loading."""
    import datasets as hf

    if not (folder / "dataset_info.json").exists():
        rows = build()
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        _from_rows(rows, image_as_path).save_to_disk(str(tmp))
        if folder.exists():  # a concurrent writer won; keep theirs
            import shutil
            shutil.rmtree(tmp)
        else:
            tmp.rename(folder)
    ds = hf.load_from_disk(str(folder))
    return ds.cast_column("image", hf.Image()) if image_as_path else ds


def synthetic_dir(world: WorldConfig | None = None, seed: int = 0, cache_dir: str | Path | None = None) -> Path:
    """The cache folder of one synthetic world + seed (holds ``config.json``, ``vocabulary.json``, splits)."""
    world = world or WorldConfig()
    root = Path(cache_dir) if cache_dir else data_dir("synthetic")
    return root / f"world-{_key(world.to_dict(), seed)}"


def _load_synthetic(split: str, world: WorldConfig | None, num_images: int | None, seed: int,
                    cache_dir: str | Path | None):
    world = world or WorldConfig()
    if split not in SYNTHETIC_SIZES:
        raise ValueError(f"synthetic: unknown split {split!r}; use one of {SPLITS}")
    n = SYNTHETIC_SIZES[split] if num_images is None else int(num_images)
    folder = synthetic_dir(world, seed, cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", {"world": world, "seed": seed, "background_mean": background_mean(world)})
    write_json(folder / "vocabulary.json", Vocabulary(tuple(world.categories), tuple(world.predicates)).to_dict())
    return _cached(folder / f"{split}-{n}", lambda: list(generate(world, n, seed, split)))


# -- entry points -----------------------------------------------------------------------------------------------
def load_sgg(source: str = "synthetic", split: str = "train", *, world: WorldConfig | None = None,
             num_images: int | None = None, seed: int = 0, image_root: str | Path | None = None,
             num_val: int = 5000, cache_dir: str | Path | None = None):
    """Load one split of a scene-graph dataset in the common row schema (module docstring).

    ``num_images``: the synthetic split's size, or the first ``num_images`` rows of a real split.
    ``num_val``: VG150's val = the first ``num_val`` filtered train images (the standard protocol; 5,000).
    ``image_root``: PSG's image folder (default: the folder of ``psg.json``). ``cache_dir``: instead of ``data/``.
    """
    if source == "synthetic":
        return _load_synthetic(split, world, num_images, seed, cache_dir)
    path = Path(source)
    if path.is_dir():
        from .vg150 import convert_vg150, vg150_vocabulary
        kind, convert, vocab = "vg150", lambda: convert_vg150(path, split, num_val=num_val), vg150_vocabulary(path)
    elif path.suffix == ".json" and path.is_file():
        from .psg import convert_psg, psg_vocabulary
        root = Path(image_root) if image_root else path.parent
        kind, convert, vocab = "psg", lambda: convert_psg(path, split, image_root=root), psg_vocabulary(path)
    elif "/" in source and not path.exists():
        return _load_hub(source, split, num_images, cache_dir)
    else:
        raise ValueError(f"unknown source {source!r}: 'synthetic', a VG150 directory, a psg.json file or a hub id")
    folder = (Path(cache_dir) if cache_dir else data_dir(kind)) / f"{kind}-{_key(str(path.resolve()), image_root, num_val)}"
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "vocabulary.json", vocab.to_dict())

    def build():
        rows, report = convert()
        write_json(folder / f"report-{split}.json", report.to_dict())
        return rows

    ds = _cached(folder / split, build, image_as_path=True)
    report = json.loads((folder / f"report-{split}.json").read_text())
    if report["counts"]:  # on every load, cached or not: a skip is never silent
        saved = LoadReport(report["source"], split, Counter(report["counts"]), report["examples"])
        warnings.warn(f"{saved} (saved in {folder / f'report-{split}.json'})", stacklevel=2)
    return ds.select(range(min(num_images, len(ds)))) if num_images is not None else ds


def _load_hub(hub_id: str, split: str, num_images: int | None, cache_dir: str | Path | None):
    """A reference hub dataset (only with network access; never used by the tests)."""
    import datasets as hf

    folder = (Path(cache_dir) if cache_dir else data_dir("hub")) / hub_id.replace("/", "--") / split
    if not (folder / "dataset_info.json").exists():
        raw = hf.load_dataset(hub_id, split=split)
        ds = raw.map(lambda r: from_reference_row(r, hub_id), remove_columns=raw.column_names,
                     features=_features())
        ds.save_to_disk(str(folder))
        cats = sorted({o["id"].rsplit(".", 1)[0] for g in ds["objects"] for o in g})
        preds = sorted({r["predicate"] for g in ds["relationships"] for r in g})
        write_json(folder.parent / "vocabulary.json", Vocabulary(tuple(cats), tuple(preds)).to_dict())
    ds = hf.load_from_disk(str(folder))
    return ds.select(range(min(num_images, len(ds)))) if num_images is not None else ds


def vocabulary(source: str = "synthetic", *, world: WorldConfig | None = None, seed: int = 0,
               cache_dir: str | Path | None = None) -> Vocabulary:
    """Categories and predicates of a source: the world's lists, the raw files' class lists, or (hub) the names
    seen in the split loaded first."""
    if source == "synthetic":
        world = world or WorldConfig()
        return Vocabulary(tuple(world.categories), tuple(world.predicates))
    path = Path(source)
    if path.is_dir():
        from .vg150 import vg150_vocabulary
        return vg150_vocabulary(path)
    if path.suffix == ".json" and path.is_file():
        from .psg import psg_vocabulary
        return psg_vocabulary(path)
    saved = (Path(cache_dir) if cache_dir else data_dir("hub")) / source.replace("/", "--") / "vocabulary.json"
    if not saved.exists():
        raise FileNotFoundError(f"no vocabulary for {source!r} yet: load one of its splits first ({saved})")
    d = json.loads(saved.read_text())
    return Vocabulary(tuple(d["categories"]), tuple(d["predicates"]))


# -- typed config and statistics (notebook 01) ------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    """The arguments of :func:`load_sgg` as one typed record a notebook validates and saves to its run dir."""

    source: str = "synthetic"
    """``"synthetic"``, a VG150 directory, a ``psg.json`` path, or a reference hub id."""
    split: str = "train"
    """``train``, ``val`` or ``test``."""
    num_images: int | None = None
    """Synthetic split size, or the first rows of a real split; None = default / all."""
    seed: int = 0
    """Synthetic world seed."""
    image_root: str | None = None
    """PSG image folder (None = next to ``psg.json``)."""
    world: WorldConfig = field(default_factory=WorldConfig)
    """Synthetic difficulty knobs (ignored by real sources)."""

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"DataConfig: split must be one of {SPLITS}, got {self.split!r}")
        if self.num_images is not None and self.num_images < 1:
            raise ValueError("DataConfig: num_images must be >= 1 or None")

    def load(self, cache_dir: str | Path | None = None):
        return load_sgg(self.source, self.split, world=self.world, num_images=self.num_images, seed=self.seed,
                        image_root=self.image_root, cache_dir=cache_dir)

    def vocabulary(self, cache_dir: str | Path | None = None) -> Vocabulary:
        return vocabulary(self.source, world=self.world, seed=self.seed, cache_dir=cache_dir)


def graph_stats(ds) -> dict[str, Any]:
    """What a researcher checks first: objects and relations per image, predicate and category counts."""
    objects, relations = ds["objects"], ds["relationships"]
    n_obj = [len(o) for o in objects]
    n_rel = [len(r) for r in relations]
    return {
        "images": len(n_obj),
        "objects_per_image": n_obj,
        "relations_per_image": n_rel,
        "mean_objects": sum(n_obj) / max(1, len(n_obj)),
        "mean_relations": sum(n_rel) / max(1, len(n_rel)),
        "predicates": Counter(r["predicate"] for rels in relations for r in rels),
        "categories": Counter(o["id"].rsplit(".", 1)[0] for objs in objects for o in objs),
    }
