"""Per-triplet credit for GRPO's advantages (``GRPORunConfig.credit``, ``docs/method.md#per-triplet-credit``).

GRPO gives every token of a sample the sample's one advantage. A scene graph is a list of triplets, and the Hard
Recall reward is a sum over them: a sample that scores above its group's mean still holds triplets that hit nothing,
and one that scores below still holds triplets that hit. Two ways to give a triplet's tokens their own credit, and an
ablation, all with the reward unchanged:

* ``credit="triplet"`` (a mask): a triplet's tokens keep the sample's advantage only when the triplet agrees with
  its sign. Advantage > 0: the tokens of the sample's triplets that hit no ground-truth triplet get 0; advantage < 0:
  the tokens of its triplets that hit get 0. Every other token keeps the sample's advantage. No token is pushed
  against its sample's advantage, but the expected gradient is no longer GRPO's: a miss is only ever pushed down.
* ``credit="causal"`` (reward-to-go): a token cannot change what the triplets written before it earned, so its
  advantage leaves that out. From the sample's reward it subtracts the Hard Recall (weighted) that the sample's
  entries completed before the token earned, and adds back the mean over the group of what each sample's first as
  many entries earned. Both terms are fixed before the token is drawn, so the expected gradient is GRPO's; only the
  noise changes. Tokens before the first triplet (the objects) keep the sample's advantage.
* ``credit="relations"`` (an ablation): the tokens before the ``"relationships"`` key (the object list, its names
  and boxes) get 0; the rest keeps the sample's advantage. Hard Recall pays for an object only through the triplets
  that use it, so this asks what GRPO's update of the object tokens costs or brings.

A triplet "hits" when it matches some ground-truth triplet by the Hard Recall test (same categories and predicate,
both boxes IoU ≥ 0.5); a repeat of an earlier triplet of the same sample, and a relation to an undefined id, earn
nothing. A sample that does not parse keeps its advantage on every token.

:func:`credit_trainer` subclasses TRL's ``GRPOTrainer`` for it; TRL's loss takes advantages of shape (samples,
tokens) from a subclass. :mod:`sgglib.train.grpo` uses it when the config asks."""

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


def _graphs(text: str, solution: Any, box_scale: Sequence[float] | None):
    """The completion's parsed graph and the ground truth, both in [0, 1] (as the rewards see them), or None when
    the completion does not parse into a graph."""
    result = parse_completion(text)
    if result.graph is None:
        return None
    sx, sy = QWEN2_VL_SCALE if box_scale is None else (float(box_scale[0]), float(box_scale[1]))
    gt = solution if isinstance(solution, SceneGraph) else SceneGraph.from_dict(
        json.loads(solution) if isinstance(solution, str) else solution)
    return result.graph.scaled(sx, sy), gt


def triplet_hits(text: str, solution: Any, box_scale: Sequence[float] | None = None,
                 iou_threshold: float = 0.5) -> list[tuple[int, int, bool]] | None:
    """``(start, end, hit)`` for each relationship entry of a completion (:func:`relation_spans`), or None when it
    does not parse into a graph. ``hit``: the entry is a triplet of the parsed graph that matches a ground-truth
    triplet by the Hard Recall test, and no earlier entry wrote the same triplet. ``solution`` and ``box_scale`` are
    a GRPO row's (the rewards' inputs)."""
    graphs = _graphs(text, solution, box_scale)
    if graphs is None:
        return None
    pred, gt = graphs
    # the hit test is symmetric: scoring the prediction's relations against the GT's gives one value per predicted
    # relation, in the graph's order (relations to undefined ids were dropped by the parser)
    scores = triplet_scores(gt, pred, iou_threshold=iou_threshold)
    hit_keys = {(r.subject, r.predicate, r.object) for r, s in zip(pred.relations, scores) if s >= 1.0}
    out, seen = [], set()
    for start, end, key in relation_spans(text):
        out.append((start, end, key in hit_keys and key not in seen))
        seen.add(key)
    return out


def triplet_contributions(text: str, solution: Any, box_scale: Sequence[float] | None = None,
                          iou_threshold: float = 0.5) -> tuple[list[tuple[int, int, int]], int] | None:
    """``(entries, gt_relations)``: ``(start, end, new_hits)`` for each relationship entry of a completion, in
    order, where ``new_hits`` counts the ground-truth triplets this entry hits and no earlier entry hit (0 for a
    relation to an undefined id), so that the entries' ``new_hits`` sum to the Hard Recall reward's hits; and the
    number of ground-truth relations. None when the completion does not parse into a graph, or when its entries do
    not line up with the parsed relations.

    >>> sol = {"objects": [{"id": "a.1", "bbox": [0, 0, .5, .5]}, {"id": "b.1", "bbox": [.5, .5, 1, 1]}],
    ...        "relationships": [{"subject": "a.1", "predicate": "on", "object": "b.1"}]}
    >>> text = json.dumps({"objects": [{"id": "a.1", "bbox": [0, 0, 500, 500]},
    ...                                {"id": "b.1", "bbox": [500, 500, 1000, 1000]}],
    ...                    "relationships": [{"subject": "a.1", "predicate": "on", "object": "b.1"}] * 2})
    >>> [hits for *_, hits in triplet_contributions(text, sol)[0]]
    [1, 0]
    """
    graphs = _graphs(text, solution, box_scale)
    if graphs is None:
        return None
    pred, gt = graphs
    # hits after the first k parsed relations, for k = 0..n: the reward's own matching, one relation more each time
    hits = [int(triplet_scores(pred, gt, iou_threshold=iou_threshold, max_pred_relations=k).sum())
            for k in range(len(pred.relations) + 1)]
    ids = {o.id for o in pred.objects}
    entries, k = [], 0
    for start, end, (subject, _, obj) in relation_spans(text):
        new = 0
        if subject in ids and obj in ids:  # the parser kept it: the next parsed relation
            k += 1
            if k > len(pred.relations):
                return None
            new = hits[k] - hits[k - 1]
        entries.append((start, end, new))
    return (entries, len(gt.relations)) if k == len(pred.relations) else None


def causal_offsets(earned: Sequence[Sequence[float]], group_size: int) -> list[list[float]]:
    """For each sample (groups of ``group_size`` consecutive samples) and each n = 0 … its number of entries: the
    reward its first n entries earned, minus the mean over its group of what each sample's first n entries earned
    (all of a sample's entries when it has fewer). ``earned[i]``: the reward of each of sample i's entries, in order.

    >>> causal_offsets([[1.0, 0.0], [0.0]], 2)
    [[0.0, 0.5, 0.5], [0.0, -0.5]]
    """
    cumulative = []
    for contributions in earned:
        c = [0.0]
        for x in contributions:
            c.append(c[-1] + x)
        cumulative.append(c)
    out = []
    for i, c in enumerate(cumulative):
        group = cumulative[i - i % group_size: i - i % group_size + group_size]
        out.append([c[n] - sum(g[min(n, len(g) - 1)] for g in group) / len(group) for n in range(len(c))])
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


def relations_start(text: str) -> int | None:
    """Where a completion's ``"relationships"`` key begins (its characters), or None when it writes none.

    >>> relations_start('{"objects": [], "relationships": []}')
    16
    """
    start = text.find('"relationships"')
    return None if start < 0 else start


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


def causal_shifts(offsets: Sequence[Sequence[float]], rewards: Sequence[float], group_size: int,
                  scale: str = "group") -> list[list[float]]:
    """:func:`causal_offsets` in advantage units: divided as TRL divides each sample's reward minus its group's mean
    (``scale``: TRL's ``scale_rewards``; ``group`` the group's std + 1e-4, ``batch`` the batch's, ``none`` 1).
    ``rewards``: every sample's weighted total. A group whose rewards are all equal has advantage 0 under TRL and no
    scale to divide by; its shifts are 0 too (divided by TRL's 1e-4 they would be enormous).

    >>> shifts = causal_shifts([[0.0, 1.0], [0.0, -1.0], [0.0, 1.0], [0.0, -1.0]], [1.0, 3.0, 2.0, 2.0], 2)
    >>> [[round(x, 3) + 0.0 for x in s] for s in shifts]  # the first group's std is 1.414; the second's is 0
    [[0.0, 0.707], [0.0, -0.707], [0.0, 0.0], [0.0, 0.0]]
    """
    import torch
    from trl.trainer.utils import nanstd

    total = torch.tensor(rewards, dtype=torch.float64)
    if scale == "none":
        divisor = torch.ones_like(total)
    elif scale == "batch":
        divisor = (nanstd(total) + 1e-4).expand_as(total)
    elif scale == "group":
        std = nanstd(total.view(-1, group_size), dim=1).repeat_interleave(group_size)
        divisor = torch.where(torch.isclose(std, torch.zeros_like(std)), torch.inf, std + 1e-4)
    else:
        raise ValueError(f"scale must be group, batch or none, got {scale!r}")
    return [[o / d for o in offs] for offs, d in zip(offsets, divisor.tolist(), strict=True)]


CREDIT_MODES = ("triplet", "causal", "relations")  # beside GRPO's own "sequence" (GRPORunConfig.credit)


def credit_trainer(base, mode: str):
    """A subclass of TRL's ``GRPOTrainer`` class ``base`` that gives each token its own advantage, ``mode``
    ``"triplet"`` or ``"causal"`` (module docstring). It keeps each training step's rewards and completions from
    ``_calculate_rewards`` and, after TRL's ``_generate_and_score_completions``, turns that step's advantages into a
    (samples, tokens) tensor. It logs ``train/credit_unaligned`` (% of parsed samples whose decoded tokens do not
    reproduce the text the rewards scored, or whose entries do not line up with the parsed relations; they keep their
    advantage) and ``train/credit_dropped`` (``triplet``: % of completion tokens set to 0) or ``train/credit_shift``
    (``causal``: the mean absolute change of a completion token's advantage). ``relations`` logs
    ``credit_dropped`` too, and counts a parsed sample without a ``"relationships"`` key as unaligned."""
    if mode not in CREDIT_MODES:
        raise ValueError(f"credit mode must be one of {CREDIT_MODES}, got {mode!r}")

    class CreditGRPOTrainer(base):
        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self._credit_batch = (inputs, completions, completion_ids_list, rewards)
            return rewards

        def _generate_and_score_completions(self, inputs):
            import torch

            output = super()._generate_and_score_completions(inputs)
            if not self.model.training:
                return output
            rows, completions, ids_list, rewards = self._credit_batch
            texts = [completion_text(c) for c in completions]
            advantages, mask = output["advantages"], output["completion_mask"]
            per_token = advantages.unsqueeze(1).expand_as(mask).clone().to(advantages.dtype)
            decode = lambda ids: self.processing_class.decode(ids, skip_special_tokens=True)  # noqa: E731
            if mode == "triplet":
                spans = [triplet_hits(t, r["solution"], r.get("box_scale")) for t, r in zip(texts, rows, strict=True)]
            elif mode == "causal":
                spans, shifts = self._causal_shifts(texts, rows, rewards)
            else:  # relations: where the object list ends
                spans = [relations_start(t) for t in texts]
            parsed = unaligned = 0
            for i, (text, ids) in enumerate(zip(texts, ids_list, strict=True)):
                if spans[i] is None:  # no graph, (causal) entries not lined up with its relations, (relations) no key
                    has_graph = parse_completion(text).graph is not None
                    parsed, unaligned = parsed + has_graph, unaligned + has_graph
                    continue
                parsed += 1
                if not spans[i]:  # no entries (triplet, causal), or the key at the start (relations)
                    continue
                ends = token_char_ends(decode, ids) if decode(list(ids)) == text else None
                if ends is None:
                    unaligned += 1
                    continue
                if mode == "triplet":
                    keep = credit_mask(float(advantages[i]), spans[i], ends, per_token.shape[1])
                    per_token[i, [k for k, kept in enumerate(keep) if not kept]] = 0.0
                elif mode == "relations":  # every token that ends before the key
                    per_token[i, [k for k, end in enumerate(ends[:per_token.shape[1]]) if end <= spans[i]]] = 0.0
                else:
                    # each token: the shift for the number of entries completed before its text begins
                    done = [sum(end <= start for _, end, _ in spans[i]) for start in [0, *ends[:-1]]]
                    per_token[i, :len(done)] -= torch.tensor([shifts[i][n] for n in done], dtype=per_token.dtype)
            active = mask.bool()
            if mode in ("triplet", "relations"):
                dropped = ((per_token == 0) & (advantages.unsqueeze(1) != 0) & active).sum()
                self._metrics["train"]["credit_dropped"].append(100.0 * dropped.item() / max(1, int(active.sum())))
            else:
                changed = (per_token - advantages.unsqueeze(1)).abs()[active]
                self._metrics["train"]["credit_shift"].append(changed.mean().item() if changed.numel() else 0.0)
            self._metrics["train"]["credit_unaligned"].append(100.0 * unaligned / max(1, parsed))
            output["advantages"] = per_token
            return output

        def _causal_shifts(self, texts, rows, rewards):
            """Per local sample: its entries (None when it does not parse or they do not line up) and, for each
            number of entries completed, what to subtract from its advantage (:func:`causal_offsets` in advantage
            units: divided as TRL divided the sample's reward)."""
            from accelerate.utils import gather_object

            edge = self.reward_func_names.index("edge_hard_reward")
            weight = float(self.reward_weights[edge])
            local = [triplet_contributions(t, r["solution"], r.get("box_scale")) for t, r in zip(texts, rows)]
            earned = [[weight * hits / max(1, c[1]) for *_, hits in c[0]] if c else [] for c in local]
            G = self.num_generations
            rank = self.accelerator.process_index
            total = (rewards * self.reward_weights.to(rewards.device).unsqueeze(0)).nansum(dim=1)
            shifts = causal_shifts(causal_offsets(gather_object(earned), G), total.tolist(), G, self.scale_rewards)
            return [c[0] if c else None for c in local], shifts[rank * len(rows):(rank + 1) * len(rows)]

    CreditGRPOTrainer.__qualname__ = CreditGRPOTrainer.__name__ = f"{mode.title()}Credit{base.__name__}"
    return CreditGRPOTrainer
