"""sgglib — scene-graph generation with multimodal LLMs (R1-SGG), one module per concept.

=================  =====================================================================================
module             what it holds
=================  =====================================================================================
``graph``          the :class:`SceneGraph` type every other module shares
``parse``          :func:`parse_completion`: model text → graph or a named :class:`Failure`
``boxes``          IoU / GIoU / L1 on xyxy boxes
``similarity``     exact and MiniLM-embedding name similarity
``rewards``        the GRPO reward functions (TRL contract) and ``REWARD_FUNCS``
``metrics``        :func:`evaluate`: failure rate, AP@50, Recall, mRecall, R@K, F@K
``evaluate``       the command line: ``python -m sgglib.evaluate --pred p.jsonl --gt g.jsonl``
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
