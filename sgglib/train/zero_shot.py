"""Zero-shot baselines: a model asked for scene graphs with no training on the task (the paper's first rows).

Command line (every field of :class:`ZeroShotConfig` is a flag)::

    python -m sgglib.train.zero_shot --model tiny-base --run-dir zero-shot-ref
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .. import data
from ..config import parse_cli
from ..models import DEFAULT_MODEL, decode_and_score, load_model_and_processor
from ..runs import make_run_dir, write_json

PROMPT_KINDS = ("open", "closed")


@dataclass
class ZeroShotConfig:
    """Zero-shot baselines: one model, each prompt kind, one split."""

    model: str = DEFAULT_MODEL
    """hub id, local directory, or an embedded name (``tiny-base``)"""
    dataset: str = "synthetic"
    """:func:`sgglib.data.load_sgg` source"""
    split: str = "val"
    """split to evaluate"""
    limit: int = 200
    """images evaluated (0 = the whole split)"""
    prompts: list[str] = field(default_factory=lambda: list(PROMPT_KINDS))
    """prompt kinds to compare: ``open`` (no vocabulary) and/or ``closed`` (the dataset's names listed)"""
    batch_size: int = 32
    """images per generate() call"""
    max_new_tokens: int = 400
    """generation budget (the paper used 2048 for the 2B/7B models on VG150)"""
    dtype: str = "auto"
    """weights dtype (``auto``: the checkpoint's — bfloat16 for the hub models, float32 for the embedded one)"""
    device: str = "auto"
    """where the model runs: ``auto`` (the GPU if there is one), ``cpu``, ``cuda``, ``cuda:1``…"""
    min_pixels: int = 0
    """smallest image area the processor resizes to (0 = the checkpoint's)"""
    max_pixels: int = 0
    """largest image area the processor resizes to (0 = the checkpoint's; the paper evaluates at 1024·28·28)"""
    run_dir: str = ""
    """run directory (relative paths go under reports/); "" = reports/zero-shot-<timestamp>"""

    def check(self) -> "ZeroShotConfig":
        """Raise ``ValueError`` for an impossible setting; returns the config."""
        bad = [p for p in self.prompts if p not in PROMPT_KINDS]
        if bad or not self.prompts:
            raise ValueError(f"prompts must be a non-empty subset of {PROMPT_KINDS}, got {self.prompts!r}")
        if self.limit < 0 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("limit >= 0, batch_size >= 1 and max_new_tokens >= 1 required")
        return self


def zero_shot(cfg: ZeroShotConfig, run_dir: str | Path | None = None, rows=None) -> dict[str, dict[str, Any]]:
    """Evaluate ``cfg.model`` with each prompt kind; writes ``config.json``, ``predictions-<kind>.jsonl``,
    ``metrics-<kind>.json`` and ``metrics.json`` (all kinds) into ``run_dir`` (default: ``cfg.run_dir``); returns
    ``{kind: metrics}``."""
    cfg.check()
    run_dir = make_run_dir(run_dir or cfg.run_dir or None, kind="zero-shot")
    write_json(run_dir / "config.json", cfg)
    if rows is None:
        rows = data.load_sgg(cfg.dataset, split=cfg.split)
    n = len(rows) if not cfg.limit else min(cfg.limit, len(rows))
    rows = [rows[i] for i in range(n)]
    model, processor = load_model_and_processor(cfg.model, dtype=cfg.dtype, device=cfg.device,
                                                 min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
    results = {}
    for kind in cfg.prompts:
        vocab = data.vocabulary(cfg.dataset) if kind == "closed" else None
        metrics = decode_and_score(model, processor, rows, vocab, out_path=run_dir / f"predictions-{kind}.jsonl",
                                   batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, progress=True)
        write_json(run_dir / f"metrics-{kind}.json", metrics)
        results[kind] = metrics
    write_json(run_dir / "metrics.json", results)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    results = zero_shot(parse_cli(ZeroShotConfig, argv, description=__doc__.split("\n")[0]))
    keys = ("failure_rate", "ap50", "recall", "mean_recall")
    print(json.dumps({kind: {k: m.get(k) for k in keys} for kind, m in results.items()}, indent=2))


if __name__ == "__main__":
    main()
