"""What a run's outputs are made of — the analyses the paper lacks. Reads run directories (:class:`analysis.Run`) and
ground-truth rows only; never loads a model.

* :func:`answer_kind` — what one completion is: a failure by reason, or a valid graph by size and relations;
* :func:`output_stats` — per run: relations and objects per valid answer, repeated ids, relations to undefined ids,
  self-relations, truncated and other failed answers;
* :func:`complete_graph_scores` — against the synthetic world's *complete* graph (every relation that holds, which
  nothing trains on): are a model's relations beyond the annotation true, or hallucinated? Precision and recall
  against the complete graph beside precision against the annotation;
* :func:`recall_split` — a change of Recall split into *failures removed* (more valid answers, at the old recall per
  valid answer) and *better valid answers*: ``R = (1 − FR) · R_valid``, so
  ``ΔR = ΔV · R_valid,before + V_after · ΔR_valid``;
* :func:`sampling_headroom` — best-of-k against mean-sample recall, from a run's ``metrics.json`` (``best_of``);
* :func:`answer_changes` — how many of one run's greedy answers another run left as they were: the whole text, the
  object list, the relation set;
* :func:`sample_divergence` — where a run's samples part from each other and from its greedy answer.

All percentages. The hit test is the metric's own (:func:`sgglib.matching.triplet_scores`, IoU ≥ 0.5).
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

from .analysis import Run
from .graph import SceneGraph
from .matching import triplet_scores
from .parse import Failure, completion_text, parse_completion
from .prompts import solution
from .rewards import EdgeHardReward
from .runs import read_predictions
from .viz import prediction_in_pixels


def _records(run: Run) -> dict[str, dict]:
    return {str(r["image_id"]): r for r in run.records() if r.get("sample", 0) == 0}


def answer_kind(text: str | None) -> str:
    """What a completion is, as a label: ``"failure: <reason>"``, or ``"valid, <size>, with|no relations"`` with
    size 1 object, 2 objects, 3 objects or 4+ objects."""
    result = parse_completion(text)
    if not result.ok:
        return f"failure: {result.failure.value}"
    n = len(result.graph.objects)
    size = "1 object" if n == 1 else "4+ objects" if n >= 4 else f"{n} objects"
    return f"valid, {size}, {'with' if result.graph.relations else 'no'} relations"


def output_stats(run: Run) -> dict[str, float]:
    """Structure of a run's greedy answers (``predictions.jsonl``): failure and truncation rates (% of answers), and
    per valid answer the mean numbers of objects, relations, repeated ids, relations to undefined ids and
    self-relations."""
    results = [parse_completion(r.get("completion")) for r in _records(run).values()]
    valid = [r for r in results if r.ok]
    n, v = max(1, len(results)), max(1, len(valid))
    return {
        "answers": len(results),
        "failure_rate": 100 * (len(results) - len(valid)) / n,
        "truncated": 100 * sum(r.failure is Failure.TRUNCATED for r in results) / n,
        "objects_per_answer": sum(len(r.graph.objects) for r in valid) / v,
        "relations_per_answer": sum(len(r.graph.relations) for r in valid) / v,
        "repeated_ids_per_answer": sum(r.duplicate_ids for r in valid) / v,
        "dangling_per_answer": sum(r.dangling_relations for r in valid) / v,
        "self_relations_per_answer": sum(sum(x.subject == x.object for x in r.graph.relations) for r in valid) / v,
    }


def _triplet(relation) -> tuple[str, str, str]:
    return relation.subject, relation.predicate, relation.object


def answer_changes(before: Run, after: Run, rows: Sequence[Mapping[str, Any]] | None = None) -> dict[str, float]:
    """Of the images both runs answered greedily, the % whose answer ``after`` left unchanged: the identical text,
    the same object ids in the same order, the same set of relation triplets (subject id, predicate, object id);
    and, as ``changed_boxes_only``, the % whose ids and triplets stayed while a box moved. A failed answer counts as
    unchanged only if both texts are identical. With the ground-truth ``rows``, the images whose relation set changed
    are counted by what that did to their Hard Recall (the reward's per-image recall): rose, fell or held."""
    a, b = _records(before), _records(after)
    shared = sorted(set(a) & set(b))
    same = {"text": 0, "objects": 0, "relations": 0, "boxes_only": 0}
    changed = []
    for image in shared:
        ta, tb = a[image].get("completion"), b[image].get("completion")
        ga, gb = parse_completion(ta).graph, parse_completion(tb).graph
        same["text"] += ta == tb
        if ga is None or gb is None:
            same["objects"] += ta == tb
            same["relations"] += ta == tb
            if ta != tb:
                changed.append(image)
            continue
        objects = [o.id for o in ga.objects] == [o.id for o in gb.objects]
        relations = sorted(map(_triplet, ga.relations)) == sorted(map(_triplet, gb.relations))
        same["objects"] += objects
        same["relations"] += relations
        same["boxes_only"] += objects and relations and [o.bbox for o in ga.objects] != [o.bbox for o in gb.objects]
        if not relations:
            changed.append(image)
    n = max(1, len(shared))
    out = {"answers": len(shared), **{f"unchanged_{k}": 100 * v / n for k, v in same.items() if k != "boxes_only"},
           "changed_boxes_only": 100 * same["boxes_only"] / n}
    if rows is not None and changed:
        solutions = {str(r["image_id"]): solution(r) for r in rows}
        changed = [i for i in changed if i in solutions]
        recall = [EdgeHardReward()([x[i].get("completion") for i in changed], [solutions[i] for i in changed],
                                   [x[i].get("box_scale") for i in changed]) for x in (a, b)]
        out["relations_changed_recall"] = {"rose": sum(y > x for x, y in zip(*recall)),
                                           "fell": sum(y < x for x, y in zip(*recall)),
                                           "held": sum(y == x for x, y in zip(*recall))}
    return out


def complete_graph_scores(run: Run, rows: Sequence[Mapping[str, Any]], iou_threshold: float = 0.5
                          ) -> dict[str, float] | None:
    """Pooled over the images of ``rows`` that carry ``complete_relationships`` (None if none do) and that the run
    answered: precision of the
    predicted relations against the complete graph and against the annotation, and recall of the complete graph.
    A predicted relation is *true* when the complete graph holds a relation it hits (same predicate and categories,
    both boxes IoU ≥ ``iou_threshold`` — the Hard Recall rule, symmetric); failed answers predict nothing."""
    records = _records(run)
    predicted = true_complete = true_annotated = complete = complete_hit = 0
    seen = False
    for row in rows:
        if "complete_relationships" not in row:
            continue
        seen = True
        record = records.get(str(row["image_id"]))
        if record is None:  # an image this run did not answer (a smaller validation set)
            continue
        full = SceneGraph.from_dict({"objects": row["objects"], "relationships": row["complete_relationships"]})
        annotated = SceneGraph.from_dict(row)
        complete += len(full.relations)
        pred = prediction_in_pixels(record, row["width"], row["height"])[1]
        if pred is None:
            continue
        ids = pred.object_map()
        valid = [r for r in pred.relations if r.subject in ids and r.object in ids]
        predicted += len(valid)
        if valid:
            true_complete += int((triplet_scores(full, pred, iou_threshold=iou_threshold) > 0.5).sum())
            true_annotated += int((triplet_scores(annotated, pred, iou_threshold=iou_threshold) > 0.5).sum())
        if full.relations:
            complete_hit += int((triplet_scores(pred, full, iou_threshold=iou_threshold) > 0.5).sum())
    if not seen:
        return None
    nan = math.nan
    return {"predicted_relations": predicted,
            "precision_complete": 100 * true_complete / predicted if predicted else nan,
            "precision_annotated": 100 * true_annotated / predicted if predicted else nan,
            "recall_complete": 100 * complete_hit / complete if complete else nan}


def recall_split(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, float]:
    """Split ``after["recall"] − before["recall"]`` (metrics dicts: ``recall``, ``failure_rate``, %) into failures
    removed and better valid answers (module docstring); the two parts sum to the change.

    The paper's 2B row (SFT FR 72.42 / Recall 5.47, R1-SGG 0.10 / 21.09): 14.3 of the 15.6 points are failures
    removed.

    >>> split = recall_split({"recall": 5.47, "failure_rate": 72.42}, {"recall": 21.09, "failure_rate": 0.10})
    >>> round(split["failures_removed"], 1), round(split["better_valid_answers"], 1)
    (14.3, 1.3)
    """
    v_b, v_a = 1 - before["failure_rate"] / 100, 1 - after["failure_rate"] / 100
    r_b = before["recall"] / v_b if v_b else 0.0
    r_a = after["recall"] / v_a if v_a else 0.0
    removed = (v_a - v_b) * r_b
    return {"recall_change": after["recall"] - before["recall"], "failures_removed": removed,
            "better_valid_answers": after["recall"] - before["recall"] - removed,
            "recall_per_valid_before": r_b, "recall_per_valid_after": r_a}


def sampling_headroom(run: Run) -> dict[str, float] | None:
    """``best_of_k_recall``, ``mean_sample_recall`` and the sampled failure rate recorded at the end of a run with
    ``best_of`` > 0, beside its greedy Recall on the same images' split; None if the run did not sample."""
    sampling = run.metrics.get("sampling")
    if not sampling:
        return None
    return {**sampling, "greedy_recall": run.metrics.get("recall", math.nan)}


def sample_divergence(run: Run) -> dict[str, float] | None:
    """Where a run's sampled answers (``samples.jsonl``, written with ``best_of``) part from each other and from its
    greedy answer. Per image: the share of its samples' text that lies inside the prefix all of them share — where a
    GRPO group's advantages sum to zero and its update cancels. Per sample: whether it first leaves the image's greedy
    answer inside the object list or after the ``"relationships"`` key, or equals it. Characters, not tokens. None if
    the run kept no samples."""
    path = run.path / "samples.jsonl"
    if not path.exists():
        return None
    groups: dict[str, list[str]] = {}
    for record in read_predictions(path):
        groups.setdefault(str(record["image_id"]), []).append(completion_text(record.get("completion")))
    greedy = {k: completion_text(r.get("completion")) for k, r in _records(run).items()}
    shared, leaves = [], {"objects": 0, "relations": 0, "identical": 0}
    for image, texts in groups.items():
        prefix = os.path.commonprefix(texts)
        shared.append(len(prefix) * len(texts) / max(1, sum(map(len, texts))))
        if image not in greedy:
            continue
        for text in texts:
            if text == greedy[image]:
                leaves["identical"] += 1
            else:
                left = os.path.commonprefix([text, greedy[image]])
                leaves["relations" if '"relationships"' in left else "objects"] += 1
    n = max(1, sum(leaves.values()))
    return {"images": len(groups), "samples": sum(leaves.values()),
            "shared_prefix_share": 100 * sum(shared) / max(1, len(shared)),
            "samples_leaving_greedy_in_objects": 100 * leaves["objects"] / n,
            "samples_leaving_greedy_in_relations": 100 * leaves["relations"] / n,
            "samples_equal_to_greedy": 100 * leaves["identical"] / n}


def study_table(runs: Mapping[str, Run], rows: Sequence[Mapping[str, Any]] | None = None) -> str:
    """One Markdown line per run: Recall, recall per valid answer, the structure of its answers, precision against
    the complete graph (when ``rows`` carry it) and the sampling headroom (when recorded)."""
    head = ["run", "FR", "Recall", "R per valid", "rel/answer", "repeated ids", "self-rel", "truncated",
            "P(complete)", "P(annotated)", "R(complete)", "best-of-k", "mean sample"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for label, run in runs.items():
        stats = output_stats(run)
        m = run.metrics
        valid = 1 - m.get("failure_rate", math.nan) / 100
        scores = complete_graph_scores(run, rows) if rows is not None else None
        head_room = sampling_headroom(run) or {}
        cells = [m.get("failure_rate"), m.get("recall"), m.get("recall", math.nan) / valid if valid else math.nan,
                 stats["relations_per_answer"], stats["repeated_ids_per_answer"], stats["self_relations_per_answer"],
                 stats["truncated"], *((scores or {}).get(k) for k in ("precision_complete", "precision_annotated",
                                                                      "recall_complete")),
                 head_room.get("best_of_k_recall"), head_room.get("mean_sample_recall")]
        lines.append(f"| {label} | " + " | ".join("–" if c is None or c != c else f"{c:.2f}" for c in cells) + " |")
    return "\n".join(lines)
