"""Where things live: the repo's data/ and reports/ folders, and one directory per run.

Paths resolve against the repository (this package's parent), never the working directory, so a notebook behaves
the same under ``papermill notebooks/04_grpo.ipynb …`` from the repo root and from ``notebooks/``.

A run directory holds everything one run writes: ``config.json``, ``metrics.csv`` (namespaced rows: ``train/…``
every logging step, ``eval/…`` every validation), ``metrics.json``, ``predictions.jsonl``, checkpoints, ``final/``,
figures. Training writes it; analysis only reads it, with the readers here (one for each file kind).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import json
from pathlib import Path
from typing import Any, Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]


def repo_path(*parts: str | Path) -> Path:
    """A path inside the repository; absolute paths are returned unchanged."""
    path = Path(*parts)
    return path if path.is_absolute() else REPO_ROOT / path


def data_dir(*parts: str) -> Path:
    return repo_path("data", *parts)


def reports_dir(*parts: str) -> Path:
    return repo_path("reports", *parts)


def make_run_dir(run_dir: str | Path | None = None, kind: str = "run") -> Path:
    """Create (if needed) and return a run directory.

    ``run_dir`` relative paths are taken under ``reports/``; ``None`` makes ``reports/<kind>-<timestamp>``.
    """
    if run_dir is None:
        run_dir = f"{kind}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path = Path(run_dir)
    path = path if path.is_absolute() else reports_dir() / path
    path.mkdir(parents=True, exist_ok=True)
    return path


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | Path, value: Any) -> Path:
    """Write ``value`` (dataclasses, Paths and tuples allowed) as indented JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(value), indent=2, sort_keys=False) + "\n")
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line of a JSON Lines file; ``ValueError`` naming ``file:line``
    for a line that is not JSON."""
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: not valid JSON ({err.msg}, column {err.colno})") from err


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``predictions.jsonl`` (:func:`sgglib.models.predict`: ``image_id``, ``completion``,
    ``box_scale``, ``sample``)."""
    return [row for _, row in iter_jsonl(path)]


def read_metrics_csv(path: str | Path) -> list[dict[str, float]]:
    """A run's ``metrics.csv`` as one dict per row, numbers only (integers stay ints; a row's empty cells — other
    rows' columns — are left out)."""
    rows = []
    with open(path, newline="") as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, float] = {}
            for key, value in raw.items():
                try:
                    row[key] = int(value)
                except (TypeError, ValueError):
                    try:
                        row[key] = float(value)
                    except (TypeError, ValueError):  # an empty cell
                        continue
            rows.append(row)
    return rows
