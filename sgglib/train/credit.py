"""Per-triplet credit for GRPO's advantages (``GRPORunConfig.credit="triplet"``,
``docs/method.md#per-triplet-credit``).

GRPO gives every token of a sample the sample's one advantage. A scene graph is a list of triplets, and the Hard
Recall reward is a sum over them: a sample that scores above its group's mean still holds triplets that hit nothing,
and one that scores below still holds triplets that hit. With ``credit="triplet"``, a triplet's tokens keep the
sample's advantage only when the triplet agrees with its sign:

* advantage > 0: the tokens of the sample's triplets that hit no ground-truth triplet get advantage 0;
* advantage < 0: the tokens of its triplets that hit get advantage 0;
* every other token (the objects and their boxes, the JSON around them) keeps the sample's advantage.

So no token is ever pushed against its sample's advantage, the reward is unchanged, and the triplets that did not earn
a sample's reward (or its penalty) are left out of its update. A triplet "hits" when it matches some ground-truth
triplet by the Hard Recall test (same categories and predicate, both boxes IoU ≥ 0.5); a repeat of an earlier triplet
of the same sample, and a relation to an undefined id, hit nothing. A sample that does not parse keeps its advantage
on every token.

:func:`triplet_credit_trainer` subclasses TRL's ``GRPOTrainer`` for it; TRL's loss takes advantages of shape
(samples, tokens) from a subclass. :mod:`sgglib.train.grpo` uses it when the config asks."""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from ..graph import SceneGraph, normalize_name
from ..matching import triplet_scores
from ..parse import completion_text, parse_completion
from ..rewards import QWEN2_VL_SCALE

# a relationship entry: a flat JSON object (an object entry holds its bbox list, so brackets rule it out)
_FLAT_OBJECT = re.compile(r"\{[^{}\[\]]*\}")


def relation_spans(text: str) -> list[tuple[int, int, tuple[str, str, str]]]:
    """``(start, end, (subject, predicate, object))`` of each relationship entry written in ``text``, in order:
    every flat JSON object with three string fields ``subject``, ``predicate`` and ``object`` (names normalised as
    the parser does).

    >>> relation_spans('{"relationships": [{"subject": "cup.1", "predicate": "on", "object": "Table.2"}]}')
    [(19, 79, ('cup.1', 'on', 'table.2'))]
    """
    out = []
    for m in _FLAT_OBJECT.finditer(text):
        try:
            entry = json.loads(m.group())
        except json.JSONDecodeError:
            continue
        fields = [entry.get(k) for k in ("subject", "predicate", "object")] if isinstance(entry, dict) else []
        if len(fields) == 3 and all(isinstance(f, str) for f in fields):
            out.append((m.start(), m.end(), tuple(normalize_name(f) for f in fields)))
    return out


def triplet_hits(text: str, solution: Any, box_scale: Sequence[float] | None = None,
                 iou_threshold: float = 0.5) -> list[tuple[int, int, bool]] | None:
    """``(start, end, hit)`` for each relationship entry of a completion (:func:`relation_spans`), or None when it
    does not parse into a graph. ``hit``: the entry is a triplet of the parsed graph that matches a ground-truth
    triplet by the Hard Recall test, and no earlier entry wrote the same triplet. ``solution`` and ``box_scale`` are
    a GRPO row's (the rewards' inputs)."""
    result = parse_completion(text)
    if result.graph is None:
        return None
    sx, sy = QWEN2_VL_SCALE if box_scale is None else (float(box_scale[0]), float(box_scale[1]))
    pred = result.graph.scaled(sx, sy)
    gt = solution if isinstance(solution, SceneGraph) else SceneGraph.from_dict(
        json.loads(solution) if isinstance(solution, str) else solution)
    # the hit test is symmetric: scoring the prediction's relations against the GT's gives one value per predicted
    # relation, in the graph's order (relations to undefined ids were dropped by the parser)
    scores = triplet_scores(gt, pred, iou_threshold=iou_threshold)
    hit_keys = {(r.subject, r.predicate, r.object) for r, s in zip(pred.relations, scores) if s >= 1.0}
    out, seen = [], set()
    for start, end, key in relation_spans(text):
        out.append((start, end, key in hit_keys and key not in seen))
        seen.add(key)
    return out


def token_char_ends(decode, ids: Sequence[int]) -> list[int] | None:
    """The end (in characters of ``decode(ids)``) of each token's text: ``len(decode(ids[:k + 1]))``. None when a
    prefix's text is not a prefix of the whole text (a tokenizer whose decoding is not incremental), so that no
    token is credited with the wrong span."""
    full = decode(list(ids))
    ends = []
    for k in range(len(ids)):
        prefix = decode(list(ids[:k + 1]))
        if not full.startswith(prefix) or (ends and len(prefix) < ends[-1]):
            return None
        ends.append(len(prefix))
    return ends


def credit_mask(advantage: float, spans: list[tuple[int, int, bool]], ends: list[int], length: int) -> list[bool]:
    """Which of a completion's ``length`` tokens keep the sample's ``advantage`` (True) under per-triplet credit:
    a token overlapping a triplet's span ``[start, end)`` is dropped when the triplet disagrees with the sign
    (a miss under a positive advantage, a hit under a negative one). ``ends``: :func:`token_char_ends`.

    >>> credit_mask(1.0, [(2, 4, False), (4, 6, True)], [2, 4, 6], 3)
    [True, False, True]
    >>> credit_mask(-1.0, [(2, 4, False), (4, 6, True)], [2, 4, 6], 3)
    [True, True, False]
    """
    keep = [True] * length
    if advantage == 0:
        return keep
    for start, end, hit in spans:
        if hit == (advantage > 0):
            continue
        for k in range(min(length, len(ends))):
            if (ends[k - 1] if k else 0) < end and ends[k] > start:
                keep[k] = False
    return keep


def triplet_credit_trainer(base):
    """A subclass of TRL's ``GRPOTrainer`` class ``base`` with per-triplet credit (module docstring). It keeps each
    training step's completions from ``_calculate_rewards`` and, after TRL's ``_generate_and_score_completions``,
    turns that step's advantages (whatever baseline made them) into a (samples, tokens) tensor with the dropped
    tokens at 0. It logs ``train/credit_dropped`` (% of completion tokens set to 0) and ``train/credit_unaligned``
    (% of parsed samples whose decoded tokens do not reproduce the text the rewards scored; they keep their
    advantage)."""

    class TripletCreditGRPOTrainer(base):
        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            self._credit_batch = (inputs, completions, completion_ids_list)
            return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)

        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            if not self.model.training:
                return output
            rows, completions, ids_list = self._credit_batch
            advantages = output["advantages"]
            mask = output["completion_mask"]
            per_token = advantages.unsqueeze(1).expand_as(mask).clone().to(advantages.dtype)
            decode = lambda ids: self.processing_class.decode(ids, skip_special_tokens=True)  # noqa: E731
            parsed = unaligned = 0
            for i, (row, completion, ids) in enumerate(zip(rows, completions, ids_list, strict=True)):
                text = completion_text(completion)
                spans = triplet_hits(text, row["solution"], row.get("box_scale"))
                if not spans:
                    parsed += spans is not None
                    continue
                parsed += 1
                ends = token_char_ends(decode, ids) if decode(list(ids)) == text else None
                if ends is None:
                    unaligned += 1
                    continue
                keep = credit_mask(float(advantages[i]), spans, ends, per_token.shape[1])
                per_token[i, [k for k, kept in enumerate(keep) if not kept]] = 0.0
            active = mask.sum().clamp(min=1)
            dropped = ((per_token == 0) & (advantages.unsqueeze(1) != 0) & mask.bool()).sum()
            self._metrics["train"]["credit_dropped"].append(100.0 * (dropped / active).item())
            self._metrics["train"]["credit_unaligned"].append(100.0 * unaligned / max(1, parsed))
            output["advantages"] = per_token
            return output

    TripletCreditGRPOTrainer.__qualname__ = TripletCreditGRPOTrainer.__name__ = f"TripletCredit{base.__name__}"
    return TripletCreditGRPOTrainer
