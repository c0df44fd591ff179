"""sgglib — scene-graph generation with multimodal LLMs (R1-SGG), one module per concept.

=================  =====================================================================================
module             what it holds
=================  =====================================================================================
``graph``          the :class:`SceneGraph` type every other module shares
``parse``          :func:`parse_completion`: model text → graph or a named :class:`Failure`
``boxes``          IoU / GIoU / L1 on xyxy boxes
``similarity``     exact and MiniLM-embedding name similarity
``matching``       the Hard-Recall hit test and Hungarian object matching (rewards and metrics share it)
``rewards``        the GRPO reward functions (TRL contract), ``REWARD_FUNCS``, presets and the size guard
``metrics``        :func:`evaluate`: failure rate, AP@50, Recall, mRecall, R@K, F@K
``evaluate``       the command line: ``python -m sgglib.evaluate --pred p.jsonl --gt g.jsonl``
``synthetic``      the embedded synthetic scene-graph world (``WorldConfig`` difficulty knobs)
``data``           ``load_sgg(source, split)``: synthetic, VG150 (``vg150``), PSG (``psg``), hub rows
``prompts``        open/closed prompts, SFT/GRPO rows, box conventions (Qwen2-VL grid, Qwen2.5-VL pixels)
``tokenizer``      the task-trained BPE tokenizer of the embedded model
``tiny``           the embedded tiny Qwen2-VL and its base pre-training
``models``         ``load_model_and_processor`` (hub, local, embedded), ``predict``, zero-shot baselines
``sft``            SFT on stock TRL ``SFTTrainer``: run dirs, validation, resume
``grpo``           GRPO on stock TRL ``GRPOTrainer`` with the sgglib rewards
``ablation``       group-size / reward-variant GRPO ablations
``viz``            pure drawing functions (image + boxes, graph, GT-vs-prediction diff)
``viewer``         the ipywidgets viewer, a thin shell over ``viz``
``analysis``       reads run directories: Table 1, curves, long tail, ablations
``pipeline``       ``make demo``: notebooks 01 → 05 with papermill into ``reports/<run_id>/``
``runs``           repo-anchored paths and run directories
=================  =====================================================================================

Importing sgglib does no work: no model loads, no downloads, no environment variables read.
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
