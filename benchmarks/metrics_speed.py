"""Speed of the evaluator: 5,000 images of VG150-like size, all metric keys, target ≤ 15 s on 2 cores.

Synthetic but shaped like VG150 val: ~12 GT objects and ~6 GT relations per image over 150 object names and 50
predicates; predictions are Qwen2-VL completion strings (0-1000 grid) with ~20 objects (jittered GT boxes, some
renamed or displaced, plus extras) and ~15 relations, and ~3% failures (truncated or broken JSON). Prints the
per-stage split (parse, recall, AP) and writes ``reports/bench/metrics_speed.json``. It also checks, on a sample,
that the trimmed pycocotools run gives the same AP@50 as the full COCO evaluation (``stats[1]``).

    python benchmarks/metrics_speed.py [--images 5000] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import random
import time
from pathlib import Path

import numpy as np

from sgglib.graph import SceneGraph
from sgglib.metrics import box_ap, compute_metrics

ROOT = Path(__file__).resolve().parents[1]
OBJECTS = [f"object {i}" for i in range(150)]  # 150 names, as VG150; the names themselves do not matter here
PREDICATES = [f"predicate {i}" for i in range(50)]
# VG's predicate distribution is long-tailed: draw with Zipf-like weights
PRED_WEIGHTS = np.array([1 / (i + 1) for i in range(50)]) / sum(1 / (i + 1) for i in range(50))


def make_image(rng: random.Random, image_id: int) -> tuple[dict, str]:
    w, h = rng.randint(500, 1024), rng.randint(375, 1024)
    objs = []
    for k in range(max(2, int(rng.gauss(12, 4)))):
        bw, bh = rng.uniform(0.05, 0.5) * w, rng.uniform(0.05, 0.5) * h
        x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        objs.append({"id": f"{rng.choice(OBJECTS)}.{k + 1}", "bbox": [round(x), round(y), round(x + bw), round(y + bh)]})
    rels = []
    for _ in range(max(1, int(rng.gauss(6, 2)))):
        s, o = rng.sample(range(len(objs)), 2)
        p = PREDICATES[int(np.searchsorted(np.cumsum(PRED_WEIGHTS), rng.random()))]
        rels.append({"subject": objs[s]["id"], "predicate": p, "object": objs[o]["id"]})
    gt = {"image_id": image_id, "width": w, "height": h, "objects": objs, "relationships": rels}

    pred_objs = []
    for k, o in enumerate(objs):
        x1, y1, x2, y2 = o["bbox"]
        j = 0.05 if rng.random() < 0.7 else 0.4  # most boxes close, some displaced
        dx, dy = rng.gauss(0, j) * (x2 - x1), rng.gauss(0, j) * (y2 - y1)
        name = o["id"].rsplit(".", 1)[0] if rng.random() < 0.8 else rng.choice(OBJECTS)
        box = [int((x1 + dx) / w * 1000), int((y1 + dy) / h * 1000), int((x2 + dx) / w * 1000), int((y2 + dy) / h * 1000)]
        pred_objs.append({"id": f"{name}.{k + 1}", "bbox": box})
    for k in range(len(objs), len(objs) + max(0, int(rng.gauss(8, 3)))):
        x, y = rng.randint(0, 800), rng.randint(0, 800)
        pred_objs.append({"id": f"{rng.choice(OBJECTS)}.{k + 1}", "bbox": [x, y, x + rng.randint(20, 200), y + rng.randint(20, 200)]})
    pred_rels = []
    for r in rels:
        if rng.random() < 0.7:
            s, o = (int(r[x].rsplit(".", 1)[1]) - 1 for x in ("subject", "object"))
            p = r["predicate"] if rng.random() < 0.6 else rng.choice(PREDICATES)
            pred_rels.append({"subject": pred_objs[s]["id"], "predicate": p, "object": pred_objs[o]["id"]})
    while len(pred_rels) < 15:
        s, o = rng.sample(range(len(pred_objs)), 2)
        pred_rels.append({"subject": pred_objs[s]["id"], "predicate": rng.choice(PREDICATES), "object": pred_objs[o]["id"]})
    text = "<answer>```json\n" + json.dumps({"objects": pred_objs, "relationships": pred_rels}) + "\n```</answer>"
    u = rng.random()
    if u < 0.02:
        text = text[: len(text) // 2]  # cut off by the length limit
    elif u < 0.03:
        text = text.replace('"relationships"', "'relationships'")  # broken JSON
    return gt, text


def full_coco_ap50(preds, gts, ranked: bool) -> float:
    """AP@50 by the untrimmed pycocotools pipeline (stock COCOeval, default params, stats[1]), same frame."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cats = {c: i + 1 for i, c in enumerate(sorted({o.category for g in gts for o in g.objects}))}
    anns, dets = [], []
    for img, (p, g) in enumerate(zip(preds, gts), 1):
        for o in g.objects:
            b = o.bbox
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": cats[o.category], "iscrowd": 0,
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])})
        for rank, o in enumerate(p.objects if p else ()):
            if o.category in cats:
                b = o.bbox
                dets.append({"image_id": img, "category_id": cats[o.category], "score": 1 / (1 + rank) if ranked else 1.0,
                             "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": [{"id": i + 1} for i in range(len(gts))], "annotations": anns,
                      "categories": [{"id": i, "name": c} for c, i in cats.items()]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return 100 * float(ev.stats[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench" / "metrics_speed.json"))
    args = ap.parse_args()

    rng = random.Random(args.seed)
    rows = [make_image(rng, i) for i in range(args.images)]
    gts = {gt["image_id"]: gt for gt, _ in rows}
    preds = {gt["image_id"]: text for gt, text in rows}
    train = {(f"object {i}", PREDICATES[j], f"object {k}") for i in range(150) for j in range(10) for k in range(150)
             if (i + j + k) % 3}  # two thirds of the head-predicate triplets "seen in training"

    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    m = compute_metrics(preds, gts, pred_box_scale="qwen2vl", train_triplets=train, timings=stages)
    total = time.perf_counter() - t0

    # the trimmed AP equals the full COCO evaluation (checked on a sample, the full run is slow)
    sample = sorted(gts)[:500]
    g_s = [SceneGraph.from_dict(gts[i]).scaled(gts[i]["width"], gts[i]["height"]) for i in sample]
    from sgglib.parse import parse_completion
    p_s = [(r.graph.scaled(1000, 1000) if r.ok else None) for r in (parse_completion(preds[i]) for i in sample)]
    trimmed = box_ap(p_s, g_s)
    full = {"ap50": full_coco_ap50(p_s, g_s, False), "ap50_ranked": full_coco_ap50(p_s, g_s, True)}
    equal = all(abs(trimmed[k] - full[k]) < 1e-6 for k in full)

    result = {
        "images": args.images, "seconds_total": round(total, 3),
        "seconds_per_stage": {k: round(v, 3) for k, v in stages.items()},
        "target_seconds": 15.0, "within_target": total <= 15.0,
        "ap50_check_500_images": {"trimmed": trimmed, "full_pycocotools": full, "equal": equal},
        "metrics": {k: m[k] for k in ("failure_rate", "ap50", "ap50_ranked", "recall", "recall_pooled", "mean_recall",
                                      "mean_recall_per_image", "R@20", "mR@20", "R@100", "mR@100", "F@100",
                                      "zero_shot_recall", "num_gt_relations")},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": "python benchmarks/metrics_speed.py --images %d --seed %d" % (args.images, args.seed),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    split = ", ".join(f"{k} {v:.2f} s" for k, v in stages.items())
    print(f"{args.images} images evaluated in {total:.2f} s ({split}); target ≤ 15 s: "
          f"{'ok' if total <= 15 else 'MISSED'}")
    print(f"AP@50 trimmed {trimmed} vs stock pycocotools {full} on 500 images: {'equal' if equal else 'DIFFERENT'}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
