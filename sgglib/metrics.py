"""Scene-graph evaluation: failure rate, AP@50, four Recall variants, R@K / mR@K / zR@K, F@100; and a table.

Semantics follow the reference evaluator (``src/vg150_eval.py`` of gpt4vision/R1-SGG; ``docs/method.md#metrics``).

**Units.** Every rate, recall and AP is a percentage in [0, 100], as in the paper's tables; counts are ints. A value
with nothing to average (no GT relation at all, no zero-shot triplet) is NaN, never a made-up 0.

**Box frames.** All comparisons happen with boxes normalised to [0, 1] by the *original* image size (the rewards'
frame, ``docs/method.md#box-conventions``); IoU is invariant to per-axis scaling, so the numbers equal those in
pixels.
Ground truth states its frame: a mapping with ``width``/``height`` (the loaders' row schema) holds original-image
pixels; a :class:`SceneGraph` or a mapping without a size must be normalised already (a coordinate > 1 raises).
Predictions need ``pred_box_scale`` (no default: frames are where the reference had its bugs); boxes are divided
by it: ``"qwen2vl"`` → (1000, 1000); ``"pixels"`` → the GT (width, height); ``"normalized"`` → (1, 1); a pair
``(sx, sy)``; or a mapping image id → ``(sx, sy)`` (e.g. Qwen2.5-VL's resized input W', H'). A frame that looks
wrong (most boxes far outside the image, or all squeezed into its corner) raises a ``UserWarning``.

**Metrics.** A missing/None prediction or one :func:`~sgglib.parse.parse_completion` rejects is a failure: zero
recall, no boxes for AP. A GT triplet is recalled if some predicted relation has the same predicate, the same
subject/object categories and both IoU ≥ 0.5, not one-to-one: :func:`sgglib.matching.triplet_scores`, the Hard
Recall reward's own hit test. ``recall`` = mean per-image recall over images with GT relations (the reference skips
the others); ``recall_pooled`` = hits / GT triplets; ``mean_recall`` = per-predicate pooled recall averaged over
the GT's predicates; ``mean_recall_per_image`` = per predicate, mean per-image recall over images holding it, then
averaged. ``R@K``/``mR@K`` use the first K predicted relations (output order) with the per-image rules, as
Scene-Graph-Benchmark does; ``F@100`` = harmonic mean of R@100 and mR@100. ``zero_shot_recall``/``zR@K``: the
per-image recall of GT triplets ``(subject category, predicate, object category)`` absent from ``train_triplets``.
``ap50``: COCO box AP at IoU 0.5 (pycocotools), categories = GT names, every box scored 1.0 like the reference
(ties broken by sorted image id, then output order); ``ap50_ranked`` scores a box 1 / (1 + its output rank).
``vocabulary=`` adds ``mapped/…`` keys: names mapped to their nearest vocabulary entry by ``similarity`` (MiniLM
by default) if it reaches ``map_threshold``, else dropped; the exact keys are never replaced.

**Deliberate differences** from the reference evaluator, all small, are listed in
``docs/method.md#deviations-from-the-reference-code``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import time
import warnings
from typing import Any, Hashable, Iterable, Mapping, Sequence

import numpy as np

from .graph import Relation, SceneGraph, SGObject, normalize_name
from .matching import EXACT, triplet_scores
from .parse import ParseResult, parse_completion
from .similarity import Similarity, get_similarity

KS = (20, 50, 100)
BOX_FORMATS = {"qwen2vl": (1000.0, 1000.0), "normalized": (1.0, 1.0), "pixels": None}  # None: GT (width, height)
NAN = float("nan")


# -- inputs ---------------------------------------------------------------------------------------------------------
def ground_truth_graph(image_id: Hashable, value: Any) -> tuple[SceneGraph, tuple[float, float] | None]:
    """One GT image → (graph normalised to [0, 1], original (width, height) or None)."""
    size = None
    if isinstance(value, Mapping):
        value = dict(value)
        for key in ("objects", "relationships"):  # HF rows store these as JSON strings
            if isinstance(value.get(key), str):
                value[key] = json.loads(value[key])
        if value.get("width") is not None or value.get("height") is not None:
            size = (float(value["width"]), float(value["height"]))
            if not (size[0] > 0 and size[1] > 0):
                raise ValueError(f"ground truth {image_id!r}: width/height must be positive, got {size}")
    try:
        graph = value if isinstance(value, SceneGraph) else SceneGraph.from_dict(value)
    except ValueError as err:
        raise ValueError(f"ground truth {image_id!r}: {err}") from err
    ids = {o.id for o in graph.objects}
    for r in graph.relations:
        if r.subject not in ids or r.object not in ids:
            raise ValueError(f"ground truth {image_id!r}: relation {r.subject} -{r.predicate}-> {r.object} "
                             "refers to an id that is not among its objects")
    if size is not None:
        return graph.scaled(*size), size
    top = max((abs(v) for o in graph.objects for v in o.bbox), default=0.0)
    if top > 1.01:
        raise ValueError(f"ground truth {image_id!r} has box coordinates up to {top:g} but no width/height: "
                         "pixel boxes need 'width' and 'height'; otherwise normalise them to [0, 1]")
    return graph, None


def _pred_scale(image_id: Hashable, pred_box_scale: Any, size: tuple[float, float] | None) -> tuple[float, float]:
    if isinstance(pred_box_scale, str):
        if pred_box_scale not in BOX_FORMATS:
            raise ValueError(f"pred_box_scale={pred_box_scale!r}: use one of {sorted(BOX_FORMATS)}, (sx, sy) "
                             "or a mapping image id -> (sx, sy)")
        scale = BOX_FORMATS[pred_box_scale]
        if scale is None:
            if size is None:
                raise ValueError(f"pred_box_scale='pixels' needs the GT image size, and {image_id!r} has none")
            scale = size
    elif isinstance(pred_box_scale, Mapping):
        if image_id not in pred_box_scale:
            raise ValueError(f"pred_box_scale has no entry for image {image_id!r}")
        scale = pred_box_scale[image_id]
    else:
        scale = pred_box_scale
    sx, sy = (float(v) for v in scale)
    if not (sx > 0 and sy > 0 and math.isfinite(sx) and math.isfinite(sy)):
        raise ValueError(f"box scale for image {image_id!r} must be two positive numbers, got {scale!r}")
    return sx, sy


def _pred_entry(value: Any) -> ParseResult:
    if value is None:
        return ParseResult(None, None, detail="missing")
    if isinstance(value, ParseResult):
        return value
    if isinstance(value, SceneGraph):
        return ParseResult(value, None)
    return parse_completion(value)


def _check_frame(raw_max: list[float], norm_max: list[float], scales: set[tuple[float, float]]) -> float:
    """Warn when predicted boxes look like they live in another frame; return % of boxes outside the image."""
    if not norm_max:
        return 0.0
    outside = float(np.mean(np.asarray(norm_max) > 1.05)) * 100
    if len(norm_max) >= 20 and outside > 50:
        warnings.warn(f"{outside:.0f}% of predicted boxes fall outside the image after dividing by the box "
                      "scale: is pred_box_scale right?", UserWarning, stacklevel=3)
    elif len(raw_max) >= 20 and max(raw_max) <= 1.0 and min(min(s) for s in scales) >= 10:
        warnings.warn("every predicted coordinate is <= 1 but the box scale is large: predictions look "
                      "normalised already; use pred_box_scale='normalized'", UserWarning, stacklevel=3)
    return outside


# -- vocabulary mapping ---------------------------------------------------------------------------------------------
def _name_map(names: Iterable[str], vocab: Sequence[str], sim: Similarity, threshold: float) -> dict[str, str | None]:
    names = sorted(set(names))
    if not names:
        return {}
    m = np.asarray(sim.matrix(names, list(vocab)), dtype=float)
    best, score = m.argmax(1), m.max(1)
    return {n: (vocab[b] if s >= threshold else None) for n, b, s in zip(names, best, score)}


def map_graph(graph: SceneGraph, objects: Mapping[str, str | None], predicates: Mapping[str, str | None]) -> SceneGraph:
    """Rename categories and predicates by the given maps; drop what maps to None (and relations touching it).

    Ids become ``"<mapped name>.<position>"`` so two names mapped to one category cannot collide.
    """
    new_id: dict[str, str] = {}
    objs = []
    for i, o in enumerate(graph.objects):
        name = objects.get(o.category)
        if name is not None:
            new_id[o.id] = f"{name}.{i + 1}"
            objs.append(SGObject(new_id[o.id], o.bbox))
    rels = tuple(Relation(new_id[r.subject], predicates[r.predicate], new_id[r.object]) for r in graph.relations
                 if r.subject in new_id and r.object in new_id and predicates.get(r.predicate) is not None)
    return SceneGraph(tuple(objs), rels)


# -- recall ---------------------------------------------------------------------------------------------------------
def _image_hits(pred: SceneGraph | None, gt: SceneGraph, iou_threshold: float) -> dict[int | None, np.ndarray]:
    """Per GT relation, hit or not, using all predicted relations (None) and the first K."""
    if pred is None:
        zero = np.zeros(len(gt.relations), bool)
        return {k: zero for k in (None, *KS)}
    out = {None: triplet_scores(pred, gt, EXACT, iou_threshold) > 0.5}
    for k in KS:  # the cut changes nothing unless the output has more than K relations
        out[k] = (triplet_scores(pred, gt, EXACT, iou_threshold, max_pred_relations=k) > 0.5
                  if len(pred.relations) > k else out[None])
    return out


def _group_mean(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique keys and the mean of ``values`` per key."""
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inv, values) / np.bincount(inv)


def _recalls(img: np.ndarray, pred: np.ndarray, hits: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """The four recall variants from flat per-GT-triplet arrays (image index, predicate index, hit)."""
    if not len(hits):
        return {"recall": NAN, "recall_pooled": NAN, "mean_recall": NAN, "mean_recall_per_image": NAN,
                "per_predicate_recall": {}, "per_predicate_count": {}}
    hits = hits.astype(float)
    _, per_image = _group_mean(img, hits)
    preds, per_pred = _group_mean(pred, hits)
    pair = img.astype(np.int64) * len(names) + pred
    pairs, per_pair = _group_mean(pair, hits)
    _, per_pred_img = _group_mean(pairs % len(names), per_pair)
    counts = np.bincount(pred, minlength=len(names))
    return {
        "recall": 100 * float(per_image.mean()),
        "recall_pooled": 100 * float(hits.mean()),
        "mean_recall": 100 * float(per_pred.mean()),
        "mean_recall_per_image": 100 * float(per_pred_img.mean()),
        "per_predicate_recall": {names[p]: 100 * float(r) for p, r in zip(preds, per_pred)},
        "per_predicate_count": {names[p]: int(counts[p]) for p in preds},
    }


def _recall_metrics(preds: list[SceneGraph | None], gts: list[SceneGraph], iou_threshold: float,
                    train_triplets: set[tuple[str, str, str]] | None) -> dict[str, Any]:
    img, names, keys, hits = [], [], [], {k: [] for k in (None, *KS)}
    for i, (p, g) in enumerate(zip(preds, gts)):
        if not g.relations:
            continue
        objs = g.object_map()
        for r in g.relations:
            img.append(i)
            names.append(r.predicate)
            keys.append((objs[r.subject].category, r.predicate, objs[r.object].category))
        for k, h in _image_hits(p, g, iou_threshold).items():
            hits[k].append(h)
    vocab = sorted(set(names))
    img_a = np.asarray(img, dtype=np.int64)
    pred_a = np.searchsorted(vocab, names).astype(np.int64) if names else np.zeros(0, np.int64)
    flat = {k: np.concatenate(v) if v else np.zeros(0, bool) for k, v in hits.items()}
    out = _recalls(img_a, pred_a, flat[None], vocab)
    for k in KS:
        r = _recalls(img_a, pred_a, flat[k], vocab)
        out[f"R@{k}"], out[f"mR@{k}"] = r["recall"], r["mean_recall_per_image"]
    r, mr = out["R@100"], out["mR@100"]
    out["F@100"] = NAN if math.isnan(r + mr) else (2 * r * mr / (r + mr) if r + mr > 0 else 0.0)
    if train_triplets is not None:
        zs = np.fromiter((t not in train_triplets for t in keys), bool, len(keys))
        out["num_zero_shot_triplets"] = int(zs.sum())
        for k in (None, *KS):
            z = flat[k][zs].astype(float)
            per_image = 100 * float(_group_mean(img_a[zs], z)[1].mean()) if len(z) else NAN
            out["zero_shot_recall" if k is None else f"zR@{k}"] = per_image
            if k is None:
                out["zero_shot_recall_pooled"] = 100 * float(z.mean()) if len(z) else NAN
    return out


# -- AP@50 ----------------------------------------------------------------------------------------------------------
def _sparse_cocoeval():
    """A ``COCOeval`` whose ``evaluate`` visits only the (image, category) pairs holding a GT box or a detection.

    Stock pycocotools visits every pair (5,000 images × 150 names = 750k calls) to return None for nearly all of
    them; the per-pair results and their layout in ``evalImgs`` are the same, so ``accumulate`` gives the same
    numbers (checked against the stock class in tests/test_metrics.py and benchmarks/metrics_speed.py).
    """
    from pycocotools.cocoeval import COCOeval

    class SparseCOCOeval(COCOeval):
        def evaluate(self) -> None:
            p = self.params
            p.imgIds, p.catIds, p.maxDets = list(np.unique(p.imgIds)), list(np.unique(p.catIds)), sorted(p.maxDets)
            self._prepare()
            pairs = [k for k, v in self._gts.items() if v] + [k for k, v in self._dts.items() if v]
            pairs = list(dict.fromkeys(pairs))
            self.ious = {k: self.computeIoU(*k) for k in pairs}
            n_img, n_area = len(p.imgIds), len(p.areaRng)
            img_pos = {i: n for n, i in enumerate(p.imgIds)}
            cat_pos = {c: n for n, c in enumerate(p.catIds)}
            self.evalImgs = [None] * (len(p.catIds) * n_area * n_img)
            for img, cat in pairs:
                for a, area in enumerate(p.areaRng):
                    pos = (cat_pos[cat] * n_area + a) * n_img + img_pos[img]
                    self.evalImgs[pos] = self.evaluateImg(img, cat, area, p.maxDets[-1])
            self._paramsEval = copy.deepcopy(p)

    return SparseCOCOeval


def box_ap(preds: Sequence[SceneGraph | None], gts: Sequence[SceneGraph], iou_threshold: float = 0.5) -> dict[str, float]:
    """COCO box AP (%) at one IoU threshold by pycocotools, categories = the GT object names, as two keys.

    ``ap50``: every predicted box scores 1.0 (the reference). ``ap50_ranked``: a box scores ``1 / (1 + its rank in
    the output)``. Both orders sort each image's boxes the same way (output order), so the per-image matching is
    shared and only the accumulation runs twice. Only the work AP@50 needs is done: one IoU threshold, one area
    range, maxDets 100 (what COCO's ``stats[1]`` reads), and only the (image, category) pairs holding a box; the
    number equals the full COCO evaluation's.
    """
    from pycocotools.coco import COCO

    cats = sorted({o.category for g in gts for o in g.objects})
    if not cats:
        return {"ap50": NAN, "ap50_ranked": NAN}
    cat_id = {c: i + 1 for i, c in enumerate(cats)}
    anns, dets, ranked = [], [], [0.0]  # ranked[det id]
    for img, (p, g) in enumerate(zip(preds, gts), start=1):
        for o in g.objects:
            x1, y1, x2, y2 = o.bbox
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": cat_id[o.category],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        for rank, o in enumerate(p.objects if p is not None else ()):
            cat = cat_id.get(o.category)
            if cat is not None:  # other names cannot match any GT box: skip the work
                x1, y1, x2, y2 = o.bbox
                dets.append({"id": len(dets) + 1, "image_id": img, "category_id": cat, "iscrowd": 0,
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "score": 1.0})
                ranked.append(1.0 / (1 + rank))
    if not dets:
        return {"ap50": 0.0, "ap50_ranked": 0.0}
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt, coco_dt = COCO(), COCO()  # built directly: what loadRes adds (polygons) bbox AP never reads
        for coco, items in ((coco_gt, anns), (coco_dt, dets)):
            coco.dataset = {"images": [{"id": i + 1} for i in range(len(gts))], "annotations": items,
                            "categories": [{"id": i, "name": c} for c, i in cat_id.items()]}
            coco.createIndex()
        ev = _sparse_cocoeval()(coco_gt, coco_dt, "bbox")
        ev.params.iouThrs = np.array([iou_threshold])
        ev.params.areaRng, ev.params.areaRngLbl = [[-np.inf, np.inf]], ["all"]
        ev.params.maxDets = [100]
        ev.evaluate()
        for key in ("ap50", "ap50_ranked"):
            if key == "ap50_ranked":
                for e in filter(None, ev.evalImgs):
                    e["dtScores"] = [ranked[i] for i in e["dtIds"]]
            ev.accumulate()
            prec = ev.eval["precision"][0, :, :, 0, 0]  # recall points × categories
            # rounded: pycocotools divides by tp + fp + eps, so a perfect detector would read 99.99999999999999
            out[key] = round(100 * float(prec[prec > -1].mean()), 9)
    return out


# -- the evaluator --------------------------------------------------------------------------------------------------
def _sort_key(image_id: Hashable) -> tuple:
    return (0, image_id, "") if isinstance(image_id, (int, float)) and not isinstance(image_id, bool) \
        else (1, 0, str(image_id))


def compute_metrics(
    predictions: Mapping[Hashable, Any],
    ground_truths: Mapping[Hashable, Any],
    *,
    pred_box_scale: str | tuple[float, float] | Mapping[Hashable, tuple[float, float]],
    train_triplets: Iterable[Sequence[str]] | None = None,
    vocabulary: Any = None,
    similarity: Similarity | str = "embedding",
    map_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    timings: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Score ``predictions`` (image id → completion text, parsed :class:`SceneGraph`, or None) against
    ``ground_truths`` (image id → GT graph) over the GT images. See the module docstring for frames and units.

    An image without a prediction is a failure (``failures["missing"]``); a prediction for an image that is not in
    the ground truth raises ``ValueError`` (usually an id-type mix-up: ``"42"`` vs ``42``). ``train_triplets`` are
    ``(subject category, predicate, object category)`` names. ``vocabulary`` is a :class:`sgglib.data.Vocabulary`
    or a mapping with its ``categories`` and ``predicates`` (the loaders' ``vocabulary.json``). ``timings``, if
    given, receives the seconds spent in each stage (``parse``, ``recall``, ``ap``, ``mapped``).

    >>> gt = {1: {"width": 200, "height": 100, "objects": [{"id": "man.1", "bbox": [0, 0, 100, 100]},
    ...       {"id": "horse.1", "bbox": [100, 0, 200, 100]}],
    ...       "relationships": [{"subject": "man.1", "predicate": "riding", "object": "horse.1"}]}}
    >>> pred = {1: '{"objects": [{"id": "man.1", "bbox": [0, 0, 500, 1000]}, {"id": "horse.1", '
    ...            '"bbox": [500, 0, 1000, 1000]}], "relationships": [{"subject": "man.1", '
    ...            '"predicate": "riding", "object": "horse.1"}]}'}
    >>> m = compute_metrics(pred, gt, pred_box_scale="qwen2vl")
    >>> m["recall"], m["ap50"], m["failure_rate"]
    (100.0, 100.0, 0.0)
    """
    timings = {} if timings is None else timings
    extra = [k for k in predictions if k not in ground_truths]
    if extra:
        raise ValueError(f"{len(extra)} predictions for images not in the ground truth, e.g. {extra[:3]!r} "
                         f"(ground-truth ids look like {list(ground_truths)[:3]!r})")
    t0 = time.perf_counter()
    ids = sorted(ground_truths, key=_sort_key)
    gts, preds, failures = [], [], {}
    dangling = duplicates = 0
    raw_max, norm_max, scales = [], [], set()
    for image_id in ids:
        gt, size = ground_truth_graph(image_id, ground_truths[image_id])
        gts.append(gt)
        result = _pred_entry(predictions.get(image_id))
        if result.graph is None:
            reason = result.failure.value if result.failure is not None else "missing"
            failures[reason] = failures.get(reason, 0) + 1
            preds.append(None)
            continue
        dangling += result.dangling_relations
        duplicates += result.duplicate_ids
        scale = _pred_scale(image_id, pred_box_scale, size)
        scales.add(scale)
        graph = result.graph.scaled(*scale)
        raw_max.extend(max(map(abs, o.bbox)) for o in result.graph.objects)
        norm_max.extend(max(map(abs, o.bbox)) for o in graph.objects)
        preds.append(graph)
    n = len(ids)
    num_failures = sum(failures.values())
    out: dict[str, Any] = {
        "num_images": n,
        "num_gt_objects": sum(len(g.objects) for g in gts),
        "num_gt_relations": sum(len(g.relations) for g in gts),
        "num_failures": num_failures,
        "failure_rate": 100 * num_failures / n if n else NAN,
        "failures": dict(sorted(failures.items())),
        "dangling_relations": dangling,
        "duplicate_ids": duplicates,
        "pred_boxes_outside_image": _check_frame(raw_max, norm_max, scales),
    }
    t1 = time.perf_counter()
    zs = {tuple(normalize_name(x) for x in t) for t in train_triplets} if train_triplets is not None else None
    out.update(_recall_metrics(preds, gts, iou_threshold, zs))
    t2 = time.perf_counter()
    out.update(box_ap(preds, gts, iou_threshold))
    t3 = time.perf_counter()
    if vocabulary is not None:
        out.update(_mapped_metrics(preds, gts, vocabulary, similarity, map_threshold, iou_threshold, zs))
    timings.update(parse=t1 - t0, recall=t2 - t1, ap=t3 - t2, mapped=time.perf_counter() - t3)
    return out


def _mapped_metrics(preds, gts, vocabulary, similarity, threshold, iou_threshold, zs) -> dict[str, Any]:
    get = vocabulary.get if isinstance(vocabulary, Mapping) else lambda key: getattr(vocabulary, key)
    cats, predicates = (tuple(normalize_name(n) for n in get(key)) for key in ("categories", "predicates"))
    unknown = sorted({o.category for g in gts for o in g.objects} - set(cats)
                     | {r.predicate for g in gts for r in g.relations} - set(predicates))
    if unknown:
        raise ValueError(f"ground-truth names missing from the vocabulary: {unknown[:10]}")
    sim = get_similarity(similarity)
    valid = [p for p in preds if p is not None]
    obj_map = _name_map((o.category for p in valid for o in p.objects), cats, sim, threshold)
    pred_map = _name_map((r.predicate for p in valid for r in p.relations), predicates, sim, threshold)
    mapped = [map_graph(p, obj_map, pred_map) if p is not None else None for p in preds]
    n_obj = sum(len(p.objects) for p in valid)
    out = _recall_metrics(mapped, gts, iou_threshold, zs)
    out.update(box_ap(mapped, gts, iou_threshold))
    out["objects_dropped"] = 100 * (n_obj - sum(len(p.objects) for p in mapped if p)) / n_obj if n_obj else 0.0
    return {f"mapped/{k}": v for k, v in out.items()}


# -- printing -------------------------------------------------------------------------------------------------------
_ROWS = [("failure_rate", "Failure rate"), ("ap50", "AP@50"), ("ap50_ranked", "AP@50 (ranked by output order)"),
         ("recall", "Recall (mean per image)"), ("recall_pooled", "Recall (pooled)"),
         ("mean_recall", "mRecall (pooled per predicate)"), ("mean_recall_per_image", "mRecall (per image)"),
         *((f"R@{k}", f"R@{k}") for k in KS), *((f"mR@{k}", f"mR@{k}") for k in KS), ("F@100", "F@100"),
         ("zero_shot_recall", "zero-shot Recall"), ("zero_shot_recall_pooled", "zero-shot Recall (pooled)"),
         *((f"zR@{k}", f"zR@{k}") for k in KS)]


def format_table(metrics: Mapping[str, Any], per_predicate: int = 10) -> str:
    """A plain-text table of :func:`compute_metrics`'s result (percentages), with the ``mapped/`` column if present."""
    mapped = any(k.startswith("mapped/") for k in metrics)
    lines = [f"{metrics['num_images']} images, {metrics['num_gt_objects']} GT objects, "
             f"{metrics['num_gt_relations']} GT relations   (all values in %)",
             f"{'metric':<34}{'exact':>9}" + (f"{'mapped':>9}" if mapped else ""), "-" * (43 + 9 * mapped)]
    for key, label in _ROWS:
        if key in metrics or f"mapped/{key}" in metrics:
            cells = [metrics.get(key)] + ([metrics.get(f"mapped/{key}")] if mapped else [])
            lines.append(f"{label:<34}" + "".join(f"{v:>9.2f}" if v is not None else f"{'':>9}" for v in cells))
    if mapped:
        lines.append(f"{'objects dropped by the mapping':<34}{'':>9}{metrics['mapped/objects_dropped']:>9.2f}")
    fails = ", ".join(f"{k} {v}" for k, v in metrics["failures"].items()) or "none"
    lines += ["", f"failures: {metrics['num_failures']} ({fails}); relations to unknown ids dropped: "
              f"{metrics['dangling_relations']}; repeated ids dropped: {metrics['duplicate_ids']}"]
    counts = metrics.get("per_predicate_count", {})
    if per_predicate and counts:
        top = sorted(counts, key=lambda p: (-counts[p], p))[:per_predicate]
        lines += ["", f"per-predicate recall (pooled), {len(top)} most frequent of {len(counts)}:"]
        lines += [f"  {p:<24}{metrics['per_predicate_recall'][p]:>8.2f}  (n={counts[p]})" for p in top]
    return "\n".join(lines)
