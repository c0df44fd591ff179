"""sgglib — scene-graph generation with multimodal LLMs (R1-SGG), one module per concept, layers that import one way.

==================================  ========================================================================
layer / module                      what it holds
==================================  ========================================================================
**core** (no torch)
``graph``                           the :class:`SceneGraph` type every other module shares
``boxes``                           IoU / GIoU / L1 on xyxy boxes
``parse``                           :func:`parse_completion`: model text → graph or a named :class:`Failure`
``similarity``                      exact and MiniLM-embedding name similarity
``matching``                        the Hard-Recall hit test and Hungarian matching (rewards and metrics share it)
``prompts``                         prompts, SFT/GRPO rows, box conventions (Qwen2-VL grid, Qwen2.5-VL pixels)
``config``                          config dataclasses → command lines and notebook parameters
``runs``                            repo paths, run directories and the readers of what they hold
**scoring**
``rewards``                         the GRPO rewards (TRL contract), ``REWARD_FUNCS``, ``PRESETS``, the size guard
``metrics``                         :func:`compute_metrics`: failure rate, AP@50, Recall, mRecall, R@K, F@K
``evaluate``                        the command line: ``python -m sgglib.evaluate --pred p.jsonl --gt g.jsonl``
**data**
``data``                            ``load_sgg(source, split)``: the synthetic world, VG150, PSG, hub rows
**views** (read runs; never load a model)
``viz`` / ``viewer`` / ``analysis``  drawing and curves / the ipywidgets viewer / tables and plots of runs
``diagnostics``                     answer structure, precision vs the complete graph, recall split, headroom
**models**
``models``                          load Qwen2-VL / Qwen2.5-VL (hub, local, embedded), ``predict``, scoring
**train**
``train.sft`` / ``train.grpo``      SFT and GRPO on stock TRL; ``train.zero_shot``; ``train.common``
**embedded**
``embedded``                        the tiny Qwen2-VL, its tokenizer, its auxiliary-task pre-training
**top**
``pipeline`` / ``ablation``         ``make demo`` (notebooks 01 → 05 under papermill) / GRPO ablations
==================================  ========================================================================

A module imports only from its own layer or those above it in this table (``tests/test_layers.py``). Importing
sgglib does no work: no model loads, no downloads, no environment variables read.
"""

from .graph import Relation, SceneGraph, SGObject, category_of, normalize_name
from .parse import Failure, ParseResult, parse_completion

__all__ = [
    "Failure",
    "ParseResult",
    "Relation",
    "SGObject",
    "SceneGraph",
    "category_of",
    "normalize_name",
    "parse_completion",
]
