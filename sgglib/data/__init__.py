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

- ``"synthetic"`` (the default): the embedded world of :mod:`sgglib.data.synthetic`, generated from ``world`` and
  ``seed``; split sizes default to :data:`SYNTHETIC_SIZES`. Or a world's folder (:func:`synthetic_dir`, what
  notebook 01 writes): the world and seed saved there;
- a directory with the raw VG150 files (:mod:`sgglib.data.vg150`), or a ``psg.json`` path with ``image_root``
  (:mod:`sgglib.data.psg`);
- a hub id of the reference's datasets (``JosephZ/vg150_train_sgg_prompt``, ``JosephZ/psg_train_sg``, …), whose
  JSON-string ``objects``/``relationships`` are decoded (:mod:`sgglib.data.hub`). Needs a reachable hub.

Everything is cached under ``data/`` with ``save_to_disk`` (key: source + options + :data:`CACHE_VERSION`), with a
``vocabulary.json`` beside it (read it with :func:`vocabulary`) and, for converted data, a ``report-<split>.json``
of what was skipped or repaired. Real images are cached as file paths, not copied.

Bad input never passes silently: :class:`~sgglib.data.schema.DataError` (naming source and image id) for malformed
annotations, or a skip counted in the :class:`~sgglib.data.schema.LoadReport`, which is saved and also emitted as a
warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runs import data_dir, write_json
from .hub import load_hub
from .psg import convert_psg, psg_vocabulary
from .schema import DataError, LoadReport, Vocabulary, features
from .synthetic import WorldConfig, background_mean, generate
from .vg150 import convert_vg150, vg150_vocabulary

__all__ = ["CACHE_VERSION", "SPLITS", "SYNTHETIC_SIZES", "DataConfig", "DataError", "LoadReport", "Vocabulary",
           "WorldConfig", "graph_stats", "load_sgg", "synthetic_dir", "vocabulary", "world_of"]

CACHE_VERSION = 2  # bump when a generator or converter changes what it writes (2: complete_relationships)
SYNTHETIC_SIZES = {"train": 4000, "val": 200, "test": 500}
SPLITS = ("train", "val", "test")


# -- caching ----------------------------------------------------------------------------------------------------
def _key(*parts: Any) -> str:
    return hashlib.sha1(json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str).encode()).hexdigest()[:12]


def _from_rows(rows: list[dict[str, Any]], image_as_path: bool, complete: bool = False):
    import datasets as hf

    schema = features(image_as_path, complete)
    cols = {k: [r[k] for r in rows] for k in schema.keys()}
    return hf.Dataset.from_dict(cols, features=schema)


def _cached(folder: Path, build, image_as_path: bool = False, complete: bool = False):
    """Load ``folder`` if saved, else ``build()`` → rows, save, load. Paths are cast to images after loading."""
    import datasets as hf

    if not (folder / "dataset_info.json").exists():
        rows = build()
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        _from_rows(rows, image_as_path, complete).save_to_disk(str(tmp))
        if folder.exists():  # a concurrent writer won; keep theirs
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
    return _cached(folder / f"{split}-{n}", lambda: list(generate(world, n, seed, split)), complete=True)


def world_of(source: str | Path) -> tuple[WorldConfig, int] | None:
    """``(world, seed)`` if ``source`` is a synthetic world's folder (:func:`synthetic_dir`, which holds its
    ``config.json``), else None. Notebook 01 hands such a folder to 03–05, so the knobs it set reach them."""
    path = Path(source)
    config = path / "config.json"
    if not (path.is_dir() and config.is_file()):
        return None
    saved = json.loads(config.read_text())
    if not isinstance(saved, dict) or "world" not in saved:
        return None
    return WorldConfig(**saved["world"]), int(saved.get("seed", 0))


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
    if (saved := world_of(source)) is not None:  # a world folder: its own knobs and seed, cached beside it
        return _load_synthetic(split, saved[0], num_images, saved[1], Path(source).parent)
    path = Path(source)
    if path.is_dir():
        kind, convert, vocab = "vg150", lambda: convert_vg150(path, split, num_val=num_val), vg150_vocabulary(path)
    elif path.suffix == ".json" and path.is_file():
        root = Path(image_root) if image_root else path.parent
        kind, convert, vocab = "psg", lambda: convert_psg(path, split, image_root=root), psg_vocabulary(path)
    elif "/" in source and not path.exists():
        return load_hub(source, split, num_images, cache_dir)
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


def vocabulary(source: str = "synthetic", *, world: WorldConfig | None = None, seed: int = 0,
               cache_dir: str | Path | None = None) -> Vocabulary:
    """Categories and predicates of a source: the world's lists, the raw files' class lists, or (hub) the names
    seen in the split loaded first."""
    if source == "synthetic" or (saved := world_of(source)) is not None:
        world = (world or WorldConfig()) if source == "synthetic" else saved[0]
        return Vocabulary(tuple(world.categories), tuple(world.predicates))
    path = Path(source)
    if path.is_dir():
        return vg150_vocabulary(path)
    if path.suffix == ".json" and path.is_file():
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
    num_images: int = 0
    """Synthetic split size, or the first rows of a real split; 0 = the default size / all rows."""
    seed: int = 0
    """Synthetic world seed."""
    image_root: str = ""
    """PSG image folder ("" = next to ``psg.json``)."""
    world: WorldConfig = field(default_factory=WorldConfig)
    """Synthetic difficulty knobs (ignored by real sources)."""

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"DataConfig: split must be one of {SPLITS}, got {self.split!r}")
        if self.num_images < 0:
            raise ValueError("DataConfig: num_images must be >= 0 (0 = the default size / all rows)")

    def load(self, cache_dir: str | Path | None = None):
        return load_sgg(self.source, self.split, world=self.world, num_images=self.num_images or None,
                        seed=self.seed, image_root=self.image_root or None, cache_dir=cache_dir)

    def vocabulary(self, cache_dir: str | Path | None = None) -> Vocabulary:
        return vocabulary(self.source, world=self.world, seed=self.seed, cache_dir=cache_dir)

    def dataset(self, cache_dir: str | Path | None = None) -> str:
        """What training and analysis configs should name as their ``dataset``: a synthetic world's folder (so
        its knobs and seed travel with it), else the source itself."""
        return str(synthetic_dir(self.world, self.seed, cache_dir)) if self.source == "synthetic" else self.source


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
