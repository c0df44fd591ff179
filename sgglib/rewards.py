"""GRPO reward functions for scene graphs, TRL contract, and a guard against reward hacking.

Formulas, the reference code's semantics and every deliberate deviation from it: ``docs/method.md#rewards`` and
``docs/method.md#deviations-from-the-reference-code`` (each deviation is pinned by a test in
``tests/test_rewards.py``).

Every reward is a callable ``f(completions, solution, box_scale=None, **kwargs) -> list[float]``:

* ``completions`` — strings, or TRL's chat form ``[[{"role": "assistant", "content": ...}], ...]``;
* ``solution`` — per sample, the GT graph (a dict in the JSON schema, its JSON string, or a :class:`SceneGraph`)
  with boxes normalised to [0, 1] by the original image size;
* ``box_scale`` — per sample ``(sx, sy)`` dividing the completion's coordinates into [0, 1]: ``(1000, 1000)`` for
  Qwen2-VL (the default when the column is absent), the resized input ``(W', H')`` for Qwen2.5-VL.

Each completion is parsed once by :func:`sgglib.parse.parse_completion` (cached) and a failed parse scores 0 in every
reward. Rewards are **unweighted** (each in [0, 1], the guard in [−1, 0]); the weights live in one place, a
``{reward name: weight}`` mapping — :data:`PRESETS` or a GRPO config's ``rewards`` — that TRL applies as
``reward_weights`` and :func:`total_reward` applies here. Rewards are small picklable callable classes;
``__name__`` is what TRL logs. The module-level functions are default instances (exact-match similarity):

==========================  ============================================================  ================  ======
name                        value (per sample)                                            range             weight
==========================  ============================================================  ================  ======
``format_reward``           1 if ``<think>…</think><answer>graph</answer>`` and valid     {0, ½, 1}         1
``node_acc_reward``         Σ_matched sim(category) / #GT objects (Hungarian)              [0, 1]            2
``node_box_reward``         Σ_matched (2·IoU + 5·exp(−L1)) / 7 / #GT objects                [0, 1]            2
``edge_soft_reward``        Σ sim·sim·sim over GT relations on mapped pairs / #GT rels     [0, 1]            5
``edge_hard_reward``        Hard-Recall hits / max(1, #GT rels)                            [0, 1]            5
``edge_relax_reward``       Σ best sim·sim·sim with both IoU ≥ 0.5 / max(1, #GT rels)      [0, 1]            5
``size_penalty_reward``     −min(1, excess): the guard (``docs/method.md#the-size-guard``)  [−1, 0]           5 / 9
==========================  ============================================================  ================  ======

Matching is :mod:`sgglib.matching`, the metrics' own code: Hard Recall and Relax are ``triplet_scores`` with exact /
another similarity (``sim="embedding"``: all-MiniLM-L6-v2); the soft rewards share one Hungarian matching.

>>> ok = ('<think>a</think><answer>{"objects": [{"id": "cat.1", "bbox": [0, 0, 500, 500]}, '
...       '{"id": "mat.1", "bbox": [0, 500, 1000, 1000]}], '
...       '"relationships": [{"subject": "cat.1", "predicate": "on", "object": "mat.1"}]}</answer>')
>>> gt = {"objects": [{"id": "cat.1", "bbox": [0, 0, .5, .5]}, {"id": "mat.1", "bbox": [0, .5, 1, 1]}],
...       "relationships": [{"subject": "cat.1", "predicate": "on", "object": "mat.1"}]}
>>> format_reward([ok, "no graph"]), edge_hard_reward([ok], [gt]), node_box_reward([ok], [gt])
([1.0, 0.0], [1.0], [1.0])
>>> total_reward([ok], [gt], weights="soft")
[10.0]
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from functools import lru_cache
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .boxes import iou_matrix, iou_pairs, l1_matrix
from .graph import SceneGraph, category_of
from .matching import hungarian_match, triplet_scores
from .parse import ParseResult, completion_text, parse_completion
from .parse import clear_cache as clear_parse_cache
from .similarity import ExactSimilarity, Similarity, get_similarity

RewardFn = Callable[..., list[float]]
QWEN2_VL_SCALE = (1000.0, 1000.0)
EXACT = ExactSimilarity()


# -- inputs: parse once, normalise once ----------------------------------------------------------------------------
class _Sample:
    """A graph in [0, 1] (a parsed completion or a ground truth) and values derived from it once. Hashed by identity:
    cache keys stay cheap (hashing a SceneGraph walks every object and relation)."""

    __slots__ = ("graph", "result")

    def __init__(self, graph: SceneGraph | None, result: ParseResult | None = None):
        self.graph, self.result = graph, result


@lru_cache(maxsize=8192)
def _prediction(text: str, sx: float, sy: float) -> _Sample:
    """One completion, parsed, with its graph in [0, 1] (``graph`` None if the parse failed)."""
    result = parse_completion(text)
    return _Sample(result.graph.scaled(sx, sy) if result.graph is not None else None, result)


# One GRPO step hands every reward the same ``solution`` objects; converting each once per step (not once per
# reward) saves ~20 µs per completion and reward. Keyed by identity, holding a reference so that an id is never
# reused while cached: solution dicts are treated as immutable.
_GT_CACHE: OrderedDict[int, tuple[Any, _Sample]] = OrderedDict()
_GT_CACHE_SIZE = 4096


def _gt_sample(solution: Any) -> _Sample:
    hit = _GT_CACHE.get(id(solution))
    if hit is not None and hit[0] is solution:
        return hit[1]
    if isinstance(solution, SceneGraph):
        graph = solution
    else:
        graph = SceneGraph.from_dict(json.loads(solution) if isinstance(solution, str) else solution)
    _GT_CACHE[id(solution)] = (solution, _Sample(graph))
    if len(_GT_CACHE) > _GT_CACHE_SIZE:
        _GT_CACHE.popitem(last=False)
    return _GT_CACHE[id(solution)][1]


def _scales(box_scale: Sequence | None, n: int) -> list[tuple[float, float]]:
    if box_scale is None:
        return [QWEN2_VL_SCALE] * n
    out = []
    for s in box_scale:
        sx, sy = QWEN2_VL_SCALE if s is None else (float(s[0]), float(s[1]))
        if not (sx > 0 and sy > 0 and math.isfinite(sx) and math.isfinite(sy)):
            raise ValueError(f"box_scale must be positive finite (sx, sy), got {s!r}")
        out.append((sx, sy))
    return out


def clear_caches() -> None:
    """Forget every cached parse, ground truth and matching (benchmarks time each reward from cold)."""
    clear_parse_cache()
    _prediction.cache_clear()
    _soft_terms.cache_clear()
    _near_duplicates.cache_clear()
    _GT_CACHE.clear()


# -- base class ----------------------------------------------------------------------------------------------------
def _similarity(sim: "str | Similarity") -> Similarity:
    return EXACT if sim == "exact" else get_similarity(sim)


class GraphReward:
    """An unweighted per-sample reward of a parsed completion against its GT, both in [0, 1]; 0 for failed parses."""

    name = "graph_reward"
    uses_sim = False

    def __init__(self, sim: "str | Similarity" = "exact"):
        self.sim = _similarity(sim)
        self.__name__ = self.name  # TRL logs rewards/<__name__>

    def score(self, pred: _Sample, gt: _Sample) -> float:
        raise NotImplementedError

    def __call__(self, completions: Sequence, solution: Sequence, box_scale: Sequence | None = None,
                 **kwargs: Any) -> list[float]:
        out = []
        for completion, sol, (sx, sy) in zip(completions, solution, _scales(box_scale, len(completions)),
                                             strict=True):
            pred = _prediction(completion_text(completion), sx, sy)
            out.append(float(self.score(pred, _gt_sample(sol))) if pred.graph is not None else 0.0)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sim={self.sim!r})" if self.uses_sim else f"{type(self).__name__}()"


# -- format ----------------------------------------------------------------------------------------------------------
class FormatReward(GraphReward):
    """1 for a valid graph inside ``<think>…</think><answer>…</answer>``, else 0 (the reference's intent; its own
    format reward was 0 for every graph, ``docs/method.md#format``).

    ``strict=False`` gives 0.5 to a valid graph without the tags (the reference's unused non-strict mode).
    Needs no ``solution``.
    """

    name = "format_reward"

    def __init__(self, strict: bool = True):
        super().__init__()
        self.strict = strict

    def __call__(self, completions: Sequence, solution: Sequence | None = None, box_scale: Sequence | None = None,
                 **kwargs: Any) -> list[float]:
        out = []
        for completion in completions:
            result = parse_completion(completion_text(completion))
            if not result.ok or result.dangling_relations:
                out.append(0.0)  # the reference's validity: a parsed graph whose relations name listed ids
            elif result.strict_format or not self.strict:
                out.append(1.0 if result.strict_format else 0.5)
            else:
                out.append(0.0)
        return out

    def __repr__(self) -> str:
        return f"FormatReward(strict={self.strict})"


# -- Hard Recall, Relax ----------------------------------------------------------------------------------------------
class EdgeHardReward(GraphReward):
    """Hard Recall (the paper's main reward): the fraction of GT triplets hit by some predicted triplet with the same
    predicate and categories and IoU ≥ ``iou_threshold`` for both boxes (not one-to-one).

    ``predicate_weights`` (an extension, off by default = the reference): a GT triplet counts with the weight of its
    predicate (missing predicates: 1), so the reward is a weighted recall — still in [0, 1] — that pays more for
    finding rare predicates (:func:`rare_predicate_weights`; the RL lever for mRecall). ``dangling="zero"``: a
    completion with a relation to an undefined id scores 0, the reference's semantics; the default ``"drop"``
    scores the rest of its graph.
    """

    name = "edge_hard_reward"

    def __init__(self, iou_threshold: float = 0.5, predicate_weights: Mapping[str, float] | None = None,
                 dangling: str = "drop"):
        super().__init__()
        if dangling not in ("drop", "zero"):
            raise ValueError(f"dangling must be 'drop' or 'zero', got {dangling!r}")
        self.iou_threshold, self.dangling = iou_threshold, dangling
        self.predicate_weights = dict(predicate_weights) if predicate_weights else None

    def score(self, pred: _Sample, gt: _Sample) -> float:
        if self.dangling == "zero" and pred.result.dangling_relations:
            return 0.0  # the reference: a relation to an undefined id raised KeyError and zeroed the sample
        hits = triplet_scores(pred.graph, gt.graph, self.sim, self.iou_threshold)
        if self.predicate_weights is None:
            return float(hits.sum()) / max(1, len(gt.graph.relations))
        w = np.array([self.predicate_weights.get(r.predicate, 1.0) for r in gt.graph.relations], dtype=float)
        return float((hits * w).sum()) / max(float(w.sum()), 1e-12) if len(w) else 0.0


class EdgeRelaxReward(EdgeHardReward):
    """Hard Recall + Relax: per GT triplet the best ``sim(subj)·sim(obj)·sim(pred)`` among predicted triplets whose
    two boxes reach IoU ≥ ``iou_threshold``. Equals :class:`EdgeHardReward` with exact similarity."""

    name = "edge_relax_reward"
    uses_sim = True

    def __init__(self, sim: "str | Similarity" = "exact", iou_threshold: float = 0.5,
                 predicate_weights: Mapping[str, float] | None = None, dangling: str = "drop"):
        super().__init__(iou_threshold, predicate_weights, dangling)
        self.sim = _similarity(sim)


def rare_predicate_weights(counts: Mapping[str, int], power: float = 0.5) -> dict[str, float]:
    """Per predicate ``(max count / count) ** power``: 1 for the most frequent, larger for rarer ones; ``power`` 0
    weighs all alike (plain Hard Recall), 1 makes every predicate count equally in expectation (like mRecall).

    >>> rare_predicate_weights({"on": 100, "near": 25}, power=0.5)
    {'on': 1.0, 'near': 2.0}
    """
    if power < 0:
        raise ValueError(f"power must be >= 0, got {power}")
    top = max(counts.values(), default=0)
    return {p: float((top / c) ** power) for p, c in counts.items() if c > 0}


# -- Soft Recall: node_acc, node_box, edge_soft (one Hungarian matching between them) -------------------------------
@lru_cache(maxsize=4096)
def _soft_terms(pred_sample: _Sample, gt_sample: _Sample, sim: Similarity) -> tuple[float, float, float]:
    """Unweighted (node accuracy, node box, soft edge) fractions of one completion, each in [0, 1]."""
    pred, gt = pred_sample.graph, gt_sample.graph
    rows, cols = hungarian_match(pred, gt, sim)
    if not len(rows):
        return 0.0, 0.0, 0.0
    p_objs = [pred.objects[i] for i in rows]
    g_objs = [gt.objects[j] for j in cols]
    cat_sim = _pair_sims(sim, [o.category for o in p_objs], [o.category for o in g_objs])
    pb = np.array([o.bbox for o in p_objs])
    gb = np.array([o.bbox for o in g_objs])
    # exp(-L1) of absurd boxes underflows to exactly 0, as it should
    box = (2.0 * iou_pairs(pb, gb) + 5.0 * np.exp(-l1_matrix(pb, gb).diagonal())) / 7.0
    n_gt = len(gt.objects)

    # reference: map_obj[gt id] = pred id; pred_triplets = {(subj, obj): predicate} — the last relation per pair wins
    mapped = {g.id: p for p, g in zip(p_objs, g_objs)}
    last = {(r.subject, r.object): r.predicate for r in pred.relations}
    a, b = [], []
    for r in gt.relations:
        ps, po = mapped.get(r.subject), mapped.get(r.object)
        predicate = last.get((ps.id, po.id)) if ps is not None and po is not None else None
        if predicate is not None:
            a += [category_of(r.subject), category_of(r.object), r.predicate]
            b += [ps.category, po.category, predicate]
    edge = float(_pair_sims(sim, a, b).reshape(-1, 3).prod(axis=1).sum()) if a else 0.0
    return float(cat_sim.sum()) / n_gt, float(box.sum()) / n_gt, edge / max(1, len(gt.relations))


def _pair_sims(sim: Similarity, a: list[str], b: list[str]) -> np.ndarray:
    """``sim(a[i], b[i])`` for each i."""
    if isinstance(sim, ExactSimilarity):
        return np.array([1.0 if x == y else 0.0 for x, y in zip(a, b)])
    return sim.matrix(a, b).diagonal()


class _SoftReward(GraphReward):
    uses_sim = True
    term = 0

    def score(self, pred: _Sample, gt: _Sample) -> float:
        return _soft_terms(pred, gt, self.sim)[self.term]


class NodeAccReward(_SoftReward):
    """Soft Recall, nodes: the mean over GT objects of sim(category) with its Hungarian match."""

    name, term = "node_acc_reward", 0


class NodeBoxReward(_SoftReward):
    """Soft Recall, boxes: the mean over GT objects of ``(2·IoU + 5·exp(−L1))/7`` with its match."""

    name, term = "node_box_reward", 1


class EdgeSoftReward(_SoftReward):
    """Soft Recall, edges: the mean over GT relations of ``sim(subj)·sim(obj)·sim(pred)`` with the predicted
    relation between the two matched objects (the last one listed for that pair, as the reference: taking the best
    would pay for listing every predicate on a pair)."""

    name, term = "edge_soft_reward", 2


# -- the guard -----------------------------------------------------------------------------------------------------
@lru_cache(maxsize=4096)  # keyed by the boxes: the G completions of a prompt share their GT's count
def _near_duplicates(boxes: tuple[tuple[float, ...], ...], iou: float) -> int:
    """Boxes with IoU ≥ ``iou`` with an earlier listed box (whatever the category)."""
    if len(boxes) < 2:
        return 0
    return int(np.triu(iou_matrix(boxes, boxes) >= iou, k=1).any(axis=0).sum())


class SizePenaltyReward(GraphReward):
    """Penalty in ``[−1, 0]`` for padded outputs; 0 for failed parses (which already score 0 everywhere).

    Recall never penalises extras, so a policy could spam objects, relations and predicates. This is 0 for any graph
    of plausible size and falls to −1 as the output gets padded: ``−min(1, excess)``, where ``excess`` adds the share
    of objects beyond ``obj_factor × #GT objects + obj_slack`` and of relations beyond ``rel_factor × #GT rels +
    rel_slack``, and — unless ``charge_items=False`` — duplicate ids and near-duplicate boxes (IoU ≥ ``dup_iou``,
    beyond the GT's own) per GT object, and repeated triplets and self-relations per GT relation
    (``docs/method.md#the-size-guard``). The presets weigh it like the recall rewards it protects, so a fully padded
    output can never beat a correct one. With ``charge_items=False`` only the padding beyond the budget is charged:
    a slip earns no recall and costs nothing, and padding can tie a small GT's correct graph but never beat it.
    """

    name = "size_penalty_reward"

    def __init__(self, obj_factor: float = 2.0, obj_slack: float = 10.0, rel_factor: float = 3.0,
                 rel_slack: float = 10.0, dup_iou: float = 0.9, charge_items: bool = True):
        super().__init__()
        self.charge_items = charge_items
        if obj_slack <= 0 or rel_slack <= 0:
            raise ValueError("budgets need positive slack")
        self.obj_factor, self.obj_slack = obj_factor, obj_slack
        self.rel_factor, self.rel_slack = rel_factor, rel_slack
        self.dup_iou = dup_iou

    def excess(self, pred: _Sample, gt: _Sample) -> float:
        """The unclipped ``excess`` of the module docstring's formula (0 for an output of plausible size)."""
        result, rels = pred.result, pred.graph.relations
        n_gt_obj, n_gt_rel = len(gt.graph.objects), len(gt.graph.relations)
        obj_budget = self.obj_factor * n_gt_obj + self.obj_slack
        rel_budget = self.rel_factor * n_gt_rel + self.rel_slack
        over = (max(0.0, len(pred.graph.objects) + result.duplicate_ids - obj_budget) / obj_budget
                + max(0.0, len(rels) + result.dangling_relations - rel_budget) / rel_budget)
        if not self.charge_items:
            return over
        near = max(0, _near_duplicates(tuple(o.bbox for o in pred.graph.objects), self.dup_iou)
                   - _near_duplicates(tuple(o.bbox for o in gt.graph.objects), self.dup_iou))
        triplets = [(r.subject, r.predicate, r.object) for r in rels]
        degenerate = len(triplets) - len(set(triplets)) + sum(r.subject == r.object for r in rels)
        return over + (result.duplicate_ids + near) / max(1, n_gt_obj) + degenerate / max(1, n_gt_rel)

    def score(self, pred: _Sample, gt: _Sample) -> float:
        return -min(1.0, self.excess(pred, gt))

    def __repr__(self) -> str:
        return (f"SizePenaltyReward(obj_factor={self.obj_factor}, obj_slack={self.obj_slack}, "
                f"rel_factor={self.rel_factor}, rel_slack={self.rel_slack}, dup_iou={self.dup_iou}, "
                f"charge_items={self.charge_items})")


# -- registry and presets ------------------------------------------------------------------------------------------
format_reward = FormatReward()
node_acc_reward = NodeAccReward()
node_box_reward = NodeBoxReward()
edge_soft_reward = EdgeSoftReward()
edge_hard_reward = EdgeHardReward()
edge_relax_reward = EdgeRelaxReward()
size_penalty_reward = SizePenaltyReward()

REWARD_FUNCS: dict[str, RewardFn] = {
    f.__name__: f
    for f in (format_reward, node_acc_reward, node_box_reward, edge_soft_reward, edge_hard_reward,
              edge_relax_reward, size_penalty_reward)
}
REWARD_CLASSES: dict[str, type[GraphReward]] = {
    c.name: c
    for c in (FormatReward, NodeAccReward, NodeBoxReward, EdgeSoftReward, EdgeHardReward, EdgeRelaxReward,
              SizePenaltyReward)
}

# name → {reward name: weight}: the one place reward weights live. The paper's three reward sets (format 1, node 2,
# edge 5; docs/method.md#reward-weights-and-presets), each with the guard weighted like the recall rewards it
# protects.
PRESETS: dict[str, dict[str, float]] = {
    "hard": {"format_reward": 1.0, "edge_hard_reward": 5.0, "size_penalty_reward": 5.0},
    "relax": {"format_reward": 1.0, "edge_relax_reward": 5.0, "size_penalty_reward": 5.0},
    "soft": {"format_reward": 1.0, "node_acc_reward": 2.0, "node_box_reward": 2.0, "edge_soft_reward": 5.0,
             "size_penalty_reward": 9.0},
}
DEFAULT_PRESET = "hard"  # the paper's main reward (best Recall/mRecall in its ablation)


def reward_weights(spec: "str | Mapping[str, float]" = DEFAULT_PRESET) -> dict[str, float]:
    """``{reward name: weight}`` from a preset name, a ``"format_reward:1,edge_hard_reward:5"`` string or a mapping.

    >>> reward_weights("format_reward:1, edge_hard_reward:5")
    {'format_reward': 1.0, 'edge_hard_reward': 5.0}
    """
    if isinstance(spec, str) and spec in PRESETS:
        return dict(PRESETS[spec])
    if isinstance(spec, str):
        try:
            spec = {k.strip(): float(v) for k, v in (item.split(":") for item in spec.split(",") if item.strip())}
        except ValueError as err:
            raise ValueError(f"rewards must be a preset {sorted(PRESETS)} or 'name:weight,…', got {spec!r}") from err
    unknown = [k for k in spec if k not in REWARD_CLASSES]
    if unknown or not spec:
        raise ValueError(f"unknown rewards {unknown}; choose from {sorted(REWARD_CLASSES)}")
    return {k: float(v) for k, v in spec.items()}


def make_rewards(names: "Sequence[str]", sim: "str | Similarity" = "exact", format_strict: bool = True,
                 predicate_weights: Mapping[str, float] | None = None, guard: str = "strict",
                 dangling: str = "drop") -> list[GraphReward]:
    """The reward functions named, in order: one ``sim`` shared by those that take one, ``format_strict`` for the
    format reward, ``predicate_weights`` and ``dangling`` for the edge rewards that take them (Hard Recall, Relax),
    ``guard`` for the size guard (``strict``: every duplicate and degenerate relation charged; ``budget``: only
    padding beyond the budget, :class:`SizePenaltyReward` ``charge_items=False``)."""
    if guard not in ("strict", "budget"):
        raise ValueError(f"guard must be 'strict' or 'budget', got {guard!r}")
    sim = _similarity(sim)
    out: list[GraphReward] = []
    for name in names:
        cls = REWARD_CLASSES[name]
        if cls is FormatReward:
            out.append(FormatReward(strict=format_strict))
        elif issubclass(cls, EdgeHardReward):
            kw = {"sim": sim} if cls.uses_sim else {}
            out.append(cls(predicate_weights=predicate_weights, dangling=dangling, **kw))
        elif cls is SizePenaltyReward:
            out.append(SizePenaltyReward(charge_items=guard == "strict"))
        else:
            out.append(cls(sim=sim) if cls.uses_sim else cls())
    return out


def total_reward(completions: Sequence, solution: Sequence, box_scale: Sequence | None = None,
                 weights: "str | Mapping[str, float]" = DEFAULT_PRESET, sim: "str | Similarity" = "exact",
                 **kwargs: Any) -> list[float]:
    """Per completion, the weighted sum of the rewards in ``weights`` (a preset name or ``{name: weight}``): what
    GRPO's advantage sees."""
    weights = reward_weights(weights)
    fns = make_rewards(list(weights), sim)
    per_fn = [[w * v for v in f(completions, solution=solution, box_scale=box_scale, **kwargs)]
              for f, w in zip(fns, weights.values())]
    return [float(sum(v)) for v in zip(*per_fn)] if per_fn else [0.0] * len(completions)
