"""Pre-train the embedded base model (``tiny-base``), the stand-in for Qwen2-VL-Instruct.

``tiny-init`` (random weights, :mod:`sgglib.embedded.model`) trains on the auxiliary tasks of
:mod:`sgglib.embedded.aux_tasks` — list the objects, ground one, detect them as JSON, describe the relations in
words or as JSON without objects — through the same :func:`sgglib.train.sft.train_sft` as the scene-graph SFT. The
result knows the images, the names, the 0–1000 grid and JSON, but has never been asked for a whole scene graph.
What it does zero-shot, and how fragile that is: ``docs/findings.md#zero-shot-base``.

The committed ``data/models/tiny-base`` lets ``make demo`` skip this step; ``pretrain_config.json`` beside it
records how it was made. Regenerate it (seeded; ~7 min on 2 cores)::

    python -m sgglib.embedded.pretrain
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .. import data, prompts
from ..config import parse_cli
from ..models import resolve_model
from ..runs import data_dir, write_json
from ..train.sft import SFTRunConfig, train_sft
from .aux_tasks import AuxExamples
from .model import ensure_tiny_init

PRETRAIN_STEPS = 2500
"""base pre-training steps of the committed ``data/models/tiny-base`` (~7 min on 2 cores; aux-task loss 0.31)"""


@dataclass
class PretrainConfig:
    """How the base model is pre-trained (the committed ``tiny-base``: the defaults)."""

    max_steps: int = PRETRAIN_STEPS
    """optimizer steps of the auxiliary-task SFT"""
    seed: int = 0
    """data order and task draws"""
    long_forms: bool = False
    """also draw the long-form detect / describe / relate prompts written like the scene-graph prompt (needs the
    vocabulary). Off for the committed base: it was pre-trained on the short prompts only (the vocabulary never
    reached the tasks then), and the default keeps ``make demo`` reproducible"""
    transcribe: bool = False
    """add the ``transcribe`` task (:func:`~sgglib.embedded.aux_tasks.transcribe_example`: a random scene described
    in words, written as a scene graph, on a blank image): the schema without the images. Off for the committed
    base"""
    unstated_relations: float = 0.0
    """with ``transcribe``: the share of its descriptions that name the objects only while the answer still lists
    the relations (guessed: the base learns that a scene graph has relations even where its input names none)"""
    out_dir: str = ""
    """where the base is written ("" = data/models/tiny-base)"""
    run_dir: str = ""
    """the pre-training run directory under reports/ ("" = pretrain-base-seed<seed>)"""


def pretrain_base(cfg: PretrainConfig | None = None, train_rows=None, **overrides) -> Path:
    """Pre-train ``tiny-init`` on the auxiliary tasks into ``cfg.out_dir``; returns that path. ``overrides`` are
    :class:`~sgglib.train.sft.SFTRunConfig` fields (tests shrink the batch)."""
    cfg = cfg or PretrainConfig()
    out = Path(cfg.out_dir) if cfg.out_dir else data_dir("models", "tiny-base")
    sft = SFTRunConfig(model=str(ensure_tiny_init()), max_steps=cfg.max_steps, seed=cfg.seed, eval_steps=0,
                       val_limit=0, run_dir=cfg.run_dir or f"pretrain-base-seed{cfg.seed}", save_steps=100,
                       **overrides)
    vocabulary = data.vocabulary("synthetic", seed=cfg.seed)
    examples = AuxExamples(prompts.system_prompt(sft.system_prompt), vocabulary if cfg.long_forms else None, cfg.seed,
                           transcribe=vocabulary if cfg.transcribe else None,
                           unstated_relations=cfg.unstated_relations)
    result = train_sft(sft, train_rows=train_rows, examples=examples)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(Path(result["run_dir"]) / "final", out, ignore=shutil.ignore_patterns("training_args.bin"))
    flags = (f" --max-steps {cfg.max_steps} --seed {cfg.seed}" + (" --long-forms" if cfg.long_forms else "")
             + (" --transcribe" if cfg.transcribe else "")
             + (f" --unstated-relations {cfg.unstated_relations}" if cfg.unstated_relations else ""))
    record = {**dataclasses.asdict(sft), "model": "tiny-init", "run_dir": None, "global_step": result["global_step"],
              "long_forms": cfg.long_forms, "transcribe": cfg.transcribe, "unstated_relations": cfg.unstated_relations,
              "command": "python -m sgglib.embedded.pretrain" + flags}
    write_json(out / "pretrain_config.json", record)
    return out


def ensure_base_model(model: str, max_steps: int = 0, log: Callable[[str], None] = print) -> None:
    """Pre-train ``tiny-base`` if ``model`` is it and it is missing (once per clone; ``max_steps`` 0 = the
    committed checkpoint's :data:`PRETRAIN_STEPS`). Other models are left to the loader."""
    if model != "tiny-base":
        return
    try:
        resolve_model(model)
    except FileNotFoundError:
        steps = max_steps or PRETRAIN_STEPS
        log(f"[base] data/models/tiny-base is missing: pre-training it ({steps} steps, once per clone)")
        t0 = time.time()
        pretrain_base(PretrainConfig(max_steps=steps))
        log(f"[base] done in {time.time() - t0:.0f} s")


def main(argv: Sequence[str] | None = None) -> None:
    print(pretrain_base(parse_cli(PretrainConfig, argv, description=__doc__.split("\n")[0])))


if __name__ == "__main__":
    main()
