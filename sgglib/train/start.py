"""Where R1-SGG starts: the SFT checkpoint GRPO trains from, chosen by a stated rule (``GRPORunConfig.start``).

* ``final`` (the default): the SFT run's ``final/`` model, as the paper and ``make demo`` do.
* ``best-of-k``: of the SFT run's kept checkpoints (``checkpoints/checkpoint-<step>/``) and its ``final/``, the one
  whose samples reach the highest best-of-k Hard Recall on the first ``best_of_images`` training rows, sampled as
  GRPO's groups are (k = ``group_size``, the rollout temperature and budget): the checkpoint whose groups hold the
  best answers for GRPO to reinforce. Ties go to the later checkpoint.

What the rule measured, and why ``final`` stays the default: ``docs/findings.md#where-r1-sgg-starts``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

from ..models import load_model_and_processor
from ..runs import read_json
from .common import sample_and_score

START_RULES = ("final", "best-of-k")


def start_candidates(model_dir: str | Path) -> list[Path]:
    """The models an SFT run offers GRPO, oldest first: its kept ``checkpoints/checkpoint-<step>/`` and the
    ``final/`` that ``model_dir`` names; the checkpoint of the run's last step (its ``metrics.json``
    ``global_step``) is ``final/`` itself and is left out. Raises ``ValueError`` when ``model_dir`` is not a run's
    ``final/``."""
    final = Path(model_dir)
    if final.name != "final" or not (final / "config.json").exists():
        raise ValueError(f"start='best-of-k' chooses among an SFT run's checkpoints; {final} is not a run's final/ "
                         "(pass init=<SFT run directory>, or start='final')")
    metrics = final.parent / "metrics.json"
    last = read_json(metrics).get("global_step") if metrics.exists() else None
    kept = sorted((p for p in (final.parent / "checkpoints").glob("checkpoint-*") if (p / "config.json").exists()),
                  key=lambda p: int(p.name.rsplit("-", 1)[1]))
    return [*(p for p in kept if int(p.name.rsplit("-", 1)[1]) != last), final]


def model_sampling(model_dir: str | Path, rows: Sequence[dict], cfg, vocabulary=None) -> dict[str, Any]:
    """Load the model in ``model_dir`` as ``cfg`` loads a run's and score its samples on ``rows`` with ``cfg``'s
    ``best_of`` settings (:func:`sgglib.train.common.sample_and_score`), as the end of a run scores its own."""
    model, processor = load_model_and_processor(str(model_dir), dtype=cfg.dtype,
                                                min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels)
    return sample_and_score(model, processor, rows, cfg, vocabulary)


def start_signals(model_dir: str | Path, rows: Sequence[dict], cfg, vocabulary=None) -> dict[str, Any]:
    """Sample ``cfg.group_size`` answers per row at the rollout temperature and budget, as GRPO's groups are, and
    score them (:func:`model_sampling`): best-of-k and mean-sample Hard Recall (%), sampled failure rate."""
    like_groups = dataclasses.replace(cfg, best_of=cfg.group_size, best_of_temperature=cfg.temperature,
                                      eval_max_new_tokens=cfg.max_completion_length)
    return model_sampling(model_dir, rows, like_groups, vocabulary)


def best_of_k_pick(best_of_k_recalls: Sequence[float]) -> int:
    """The ``best-of-k`` rule on the candidates' best-of-k recalls, oldest first: the index of the highest, the later
    on a tie."""
    return max(range(len(best_of_k_recalls)), key=lambda i: (best_of_k_recalls[i], i))


def choose_start(model_dir: str | Path, cfg, train_rows: Sequence[dict], vocabulary=None,
                 log: Callable[[str], None] = print) -> tuple[str, list[dict[str, Any]]]:
    """The model GRPO starts from under ``cfg.start`` and, for ``best-of-k``, each candidate's signals on the first
    ``cfg.best_of_images`` training rows (``{"model", "chosen", best_of_k_recall, …}``, oldest first)."""
    if cfg.start == "final":
        return str(model_dir), []
    rows = [train_rows[i] for i in range(min(cfg.best_of_images, len(train_rows)))]
    table = []
    for candidate in start_candidates(model_dir):
        signals = start_signals(candidate, rows, cfg, vocabulary)
        log(f"[start] {candidate.name}: best-of-{signals['best_of_k']} recall {signals['best_of_k_recall']:.1f}, "
            f"mean sample {signals['mean_sample_recall']:.1f}, sampled FR {signals['sampled_failure_rate']:.1f}")
        table.append({"model": str(candidate), **signals})
    best = best_of_k_pick([row["best_of_k_recall"] for row in table])
    for i, row in enumerate(table):
        row["chosen"] = i == best
    log(f"[start] GRPO starts from {Path(table[best]['model']).name}")
    return table[best]["model"], table
