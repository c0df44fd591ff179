"""The evaluator (sgglib.metrics) and its command line (sgglib.evaluate): hand-computed cases, frames, errors."""

import contextlib
import io
import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgglib.evaluate import main
from sgglib.graph import SceneGraph
from sgglib.metrics import box_ap, compute_metrics, format_table

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "data" / "examples"


def row(objects, rels=(), w=100, h=100):
    """A GT row in the loaders' schema: pixel boxes plus the image size."""
    return {"width": w, "height": h, "objects": [{"id": i, "bbox": b} for i, b in objects],
            "relationships": [{"subject": s, "predicate": p, "object": o} for s, p, o in rels]}


def completion(objects, rels=(), scale=(1.0, 1.0)):
    """A model answer with boxes multiplied by ``scale`` (e.g. 10 turns 100-px boxes into the 0-1000 grid)."""
    objs = [{"id": i, "bbox": [b[0] * scale[0], b[1] * scale[1], b[2] * scale[0], b[3] * scale[1]]} for i, b in objects]
    body = {"objects": objs, "relationships": [{"subject": s, "predicate": p, "object": o} for s, p, o in rels]}
    return "<think>ok</think><answer>" + json.dumps(body) + "</answer>"


# Image A: 4 GT relations, 2 hit (riding; hat on man); "horse standing on street" has the wrong predicate and
# "street on man" the wrong direction.  Image B: "dog on bed" hit; "cat near dog" missed, the cat box is off
# (IoU < 0.5).  Image C: unparseable answer, 1 GT relation.  Image D: objects only (no GT relation).
A_OBJ = [("man.1", [10, 10, 40, 80]), ("horse.1", [20, 40, 90, 95]), ("hat.1", [15, 5, 30, 15]), ("street.1", [0, 80, 100, 100])]
A_REL = [("man.1", "riding", "horse.1"), ("hat.1", "on", "man.1"), ("horse.1", "on", "street.1"), ("man.1", "on", "street.1")]
A_PRED = [("man.1", "riding", "horse.1"), ("hat.1", "on", "man.1"), ("horse.1", "standing on", "street.1"), ("street.1", "on", "man.1")]
B_OBJ = [("dog.1", [10, 40, 50, 70]), ("bed.1", [0, 30, 100, 100]), ("cat.1", [60, 10, 90, 40])]
B_REL = [("dog.1", "on", "bed.1"), ("cat.1", "near", "dog.1")]
B_PRED_OBJ = B_OBJ[:2] + [("cat.1", [75, 25, 100, 55])]
C_OBJ = [("cup.1", [40, 40, 60, 60]), ("table.1", [0, 50, 100, 100])]
D_OBJ = [("clock.1", [40, 10, 60, 30])]

GTS = {"A": row(A_OBJ, A_REL), "B": row(B_OBJ, B_REL), "C": row(C_OBJ, [("cup.1", "on", "table.1")]), "D": row(D_OBJ)}
PREDS = {"A": completion(A_OBJ, A_PRED), "B": completion(B_PRED_OBJ, B_REL), "C": '<answer>{"objects": [{"id": "cu',
         "D": completion(D_OBJ)}


@pytest.fixture(scope="module")
def hand():
    return compute_metrics(PREDS, GTS, pred_box_scale="pixels", train_triplets=[("man", "riding", "horse")])


def test_recall_variants_by_hand(hand):
    # per image: A 2/4, B 1/2, C 0/1 (failure), D skipped (no GT relation, as the reference)
    assert hand["recall"] == pytest.approx(100 * (0.5 + 0.5 + 0) / 3)
    assert hand["recall_pooled"] == pytest.approx(100 * 3 / 7)
    # pooled per predicate: riding 1/1, on 2/5 (A 1/3, B 1/1, C 0/1), near 0/1 ("near" and "riding" in one image)
    assert hand["per_predicate_recall"] == pytest.approx({"riding": 100.0, "on": 40.0, "near": 0.0})
    assert hand["per_predicate_count"] == {"riding": 1, "on": 5, "near": 1}
    assert hand["mean_recall"] == pytest.approx(100 * (1 + 0.4 + 0) / 3)
    # per image then per predicate: on = mean(1/3, 1, 0) = 4/9, so mR-per-image (13/27) differs from mR (7/15)
    assert hand["mean_recall_per_image"] == pytest.approx(100 * (1 + 4 / 9 + 0) / 3)
    assert hand["num_images"] == 4 and hand["num_gt_relations"] == 7


def test_failures_count_as_zero_recall_and_are_named(hand):
    # C's JSON is cut off; a None prediction and an absent one are both "missing"
    assert hand["failure_rate"] == 25.0 and hand["failures"] == {"truncated": 1}
    m = compute_metrics({"A": None, "B": PREDS["B"]}, GTS, pred_box_scale="pixels")
    assert m["failures"] == {"missing": 3}
    assert m["recall"] == pytest.approx(100 * (0 + 0.5 + 0) / 3)


def test_k_and_f_at_100(hand):
    # fewer than 20 relations per image: every R@K equals recall, mR@K the per-image mR; F@100 = 2RM/(R+M)
    for k in (20, 50, 100):
        assert hand[f"R@{k}"] == pytest.approx(hand["recall"])
        assert hand[f"mR@{k}"] == pytest.approx(hand["mean_recall_per_image"])
    r, m = 1 / 3, 13 / 27
    assert hand["F@100"] == pytest.approx(100 * 2 * r * m / (r + m)) and hand["F@100"] == pytest.approx(100 * 234 / 594)


def test_r_at_k_cuts_by_output_order():
    # the only correct relation is the 21st written: missed by R@20, found by R@50 and by the uncut recall
    objs = [(f"box.{i}", [i * 4, 0, i * 4 + 4, 10]) for i in range(24)]
    gt = {1: row(objs[:2], [("box.0", "near", "box.1")])}
    wrong = [(f"box.{i}", "near", f"box.{i + 1}") for i in range(2, 22)]
    m = compute_metrics({1: completion(objs, wrong + [("box.0", "near", "box.1")])}, gt, pred_box_scale="pixels")
    assert (m["R@20"], m["mR@20"], m["R@50"], m["R@100"], m["recall"]) == (0.0, 0.0, 100.0, 100.0, 100.0)


def test_zero_shot_recall(hand):
    # "man riding horse" was seen in training; the other 6 GT triplets are zero-shot: A 1/3, B 1/2, C 0/1
    assert hand["num_zero_shot_triplets"] == 6
    assert hand["zero_shot_recall"] == pytest.approx(100 * (1 / 3 + 1 / 2 + 0) / 3)
    assert hand["zero_shot_recall_pooled"] == pytest.approx(100 * 2 / 6)
    assert "zero_shot_recall" not in compute_metrics(PREDS, GTS, pred_box_scale="pixels")


def interpolated_ap(hits: list[bool], n_gt: int) -> float:
    """COCO's 101-point interpolated AP for one category, written out independently of pycocotools."""
    tp = np.cumsum(hits)
    prec, rec = tp / np.arange(1, len(hits) + 1), tp / n_gt
    return float(np.mean([max([p for p, r in zip(prec, rec) if r >= t], default=0.0) for t in np.linspace(0, 1, 101)]))


def test_ap50_by_hand():
    # perfect boxes -> 100; one of two boxes wrong: 51 of COCO's 101 recall points at precision 1 -> 50.50;
    # the wrong box written first: precision 1/2 at those points -> 25.25 (every box scores 1.0: output order decides)
    gt = [SceneGraph.from_dict(row([("a.1", [0, 0, .4, .4]), ("a.2", [.5, .5, 1, 1])]))]
    good, bad = ("a.1", [0, 0, .4, .4]), ("a.2", [0, .6, .3, .9])
    as_graph = lambda objs: SceneGraph.from_dict(row(objs))
    assert box_ap([as_graph([good, ("a.2", [.5, .5, 1, 1])])], gt) == {"ap50": 100.0, "ap50_ranked": 100.0}
    assert box_ap([as_graph([good, bad])], gt)["ap50"] == pytest.approx(100 * 51 / 101)
    assert box_ap([as_graph([good, bad])], gt)["ap50"] == pytest.approx(100 * interpolated_ap([True, False], 2))
    assert box_ap([as_graph([bad, good])], gt)["ap50"] == pytest.approx(100 * interpolated_ap([False, True], 2))
    # a failed image adds GT boxes but no detections; a name absent from the GT is ignored, not a false positive
    assert box_ap([None], gt)["ap50"] == 0.0
    assert box_ap([as_graph([("zebra.1", [0, 0, 1, 1]), good])], gt)["ap50"] == pytest.approx(100 * 51 / 101)


def stock_coco_ap50(preds, gts, ranked):
    """AP@50 from the untrimmed pycocotools pipeline (default params, loadRes, stats[1])."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cats = {c: i + 1 for i, c in enumerate(sorted({o.category for g in gts for o in g.objects}))}
    xywh = lambda b: [b[0], b[1], b[2] - b[0], b[3] - b[1]]
    anns = [{"id": 0, "image_id": i, "category_id": cats[o.category], "bbox": xywh(o.bbox), "iscrowd": 0,
             "area": xywh(o.bbox)[2] * xywh(o.bbox)[3]} for i, g in enumerate(gts, 1) for o in g.objects]
    for k, a in enumerate(anns):
        a["id"] = k + 1
    dets = [{"image_id": i, "category_id": cats[o.category], "bbox": xywh(o.bbox), "score": 1 / (1 + r) if ranked else 1.0}
            for i, p in enumerate(preds, 1) if p for r, o in enumerate(p.objects) if o.category in cats]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": [{"id": i + 1} for i in range(len(gts))], "annotations": anns,
                        "categories": [{"id": v, "name": k} for k, v in cats.items()]}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    return 100 * ev.stats[1]


def test_trimmed_pycocotools_run_equals_the_stock_one():
    # one IoU threshold / area range / maxDets and only non-empty (image, category) pairs: same AP@50 as stats[1]
    rng = random.Random(1)
    names = ["a", "b", "c", "d"]
    gts, preds = [], []
    for _ in range(40):
        boxes = [(f"{rng.choice(names)}.{k}", [x := rng.uniform(0, .7), y := rng.uniform(0, .7), x + rng.uniform(.05, .3),
                                               y + rng.uniform(.05, .3)]) for k in range(rng.randint(1, 6))]
        gts.append(SceneGraph.from_dict(row(boxes)))
        jitter = [(i if rng.random() < .8 else f"{rng.choice(names)}.9{k}", [v + rng.gauss(0, .02) for v in b])
                  for k, (i, b) in enumerate(boxes) if rng.random() < .9]
        jitter = [(i, [min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])]) for i, b in jitter]
        preds.append(SceneGraph.from_dict(row(jitter)) if rng.random() < .9 else None)
    ours = box_ap(preds, gts)
    assert 20 < ours["ap50"] < 90  # a non-trivial case
    assert ours["ap50"] == pytest.approx(stock_coco_ap50(preds, gts, False), abs=1e-6)
    assert ours["ap50_ranked"] == pytest.approx(stock_coco_ap50(preds, gts, True), abs=1e-6)


def test_box_with_swapped_corners_is_a_false_positive():
    # deliberate deviation: pycocotools' default area range [0, 1e10] ignores a box whose "area" is negative
    # (one corner pair swapped), so the stock run would give 100 here; we count it as the wrong box it is
    gt = [SceneGraph.from_dict(row([("a.1", [0, 0, .4, .4])]))]
    pred = [SceneGraph.from_dict(row([("a.2", [.4, 0, 0, .4]), ("a.1", [0, 0, .4, .4])]))]
    assert stock_coco_ap50(pred, gt, False) == pytest.approx(100.0)
    assert box_ap(pred, gt)["ap50"] == pytest.approx(100 * interpolated_ap([False, True], 1))


def test_box_frames_give_the_same_numbers(hand):
    # GT in pixels; predictions on Qwen2-VL's 0-1000 grid, in pixels, per-image (W', H') as Qwen2.5-VL, or all
    # normalised: one answer. Image size 200x100 so that x and y scale differently.
    objs = [(i, [b[0] * 2, b[1], b[2] * 2, b[3]]) for i, b in A_OBJ]
    gt_px = {1: row(objs, A_REL, w=200, h=100)}
    gt_norm = {1: SceneGraph.from_dict(row(objs, A_REL)).scaled(200, 100)}
    grid = compute_metrics({1: completion(objs, A_PRED, (1000 / 200, 1000 / 100))}, gt_px, pred_box_scale="qwen2vl")
    pixels = compute_metrics({1: completion(objs, A_PRED)}, gt_px, pred_box_scale="pixels")
    resized = compute_metrics({1: completion(objs, A_PRED, (448 / 200, 224 / 100))}, gt_px, pred_box_scale={1: (448, 224)})
    norm = compute_metrics({1: completion(objs, A_PRED, (1 / 200, 1 / 100))}, gt_norm, pred_box_scale="normalized")
    for m in (pixels, resized, norm):
        assert m.keys() == grid.keys()
        for k, v in grid.items():
            assert m[k] == (pytest.approx(v) if isinstance(v, float) else v), k
    assert grid["recall"] == 50.0 and grid["ap50"] == 100.0


def test_box_frame_misuse_is_caught():
    # no default frame; pixel GT without a size; 'pixels' without a GT size; ids that match no GT image
    with pytest.raises(TypeError):
        compute_metrics(PREDS, GTS)
    with pytest.raises(ValueError, match="no width/height"):
        compute_metrics({}, {1: {"objects": [{"id": "a.1", "bbox": [0, 0, 50, 50]}], "relationships": []}},
                 pred_box_scale="qwen2vl")
    with pytest.raises(ValueError, match="needs the GT image size"):
        compute_metrics({1: completion(D_OBJ)}, {1: SceneGraph.from_dict(row([("a.1", [0, 0, .5, .5])]))},
                 pred_box_scale="pixels")
    with pytest.raises(ValueError, match="not in the ground truth"):
        compute_metrics({"1": PREDS["A"]}, {1: GTS["A"]}, pred_box_scale="pixels")
    with pytest.raises(ValueError, match="refers to an id"):
        compute_metrics({}, {1: row(D_OBJ, [("clock.1", "on", "tower.1")])}, pred_box_scale="pixels")
    # 0-1000 answers declared normalised: most boxes land far outside the image -> a warning
    many = [(f"a.{k}", [k, k, k + 10, k + 10]) for k in range(30)]
    with pytest.warns(UserWarning, match="outside the image"):
        compute_metrics({1: completion(many, scale=(10, 10))}, {1: row(many)}, pred_box_scale="normalized")


class TableSim:
    """A stand-in for EmbeddingSimilarity (no model in the unit tests): a fixed table of similarities."""

    TABLE = {("t shirt", "shirt"): 0.8, ("sofa", "couch"): 0.3}

    def matrix(self, a, b):
        return np.array([[1.0 if x == y else self.TABLE.get((x, y), 0.0) for y in b] for x in a])


def test_vocabulary_mapping_is_reported_separately():
    # "t-shirt" maps to "shirt" (0.8 >= 0.5) and the wearing triplet is recovered under mapped/; "sofa" (0.3) is
    # dropped; the exact numbers stay what they were
    objs = [("man.1", [0, 0, 50, 100]), ("shirt.1", [5, 20, 45, 60])]
    gt = {1: row(objs, [("man.1", "wearing", "shirt.1")])}
    pred = {1: completion([objs[0], ("t-shirt.1", objs[1][1]), ("sofa.1", [60, 60, 90, 90])],
                          [("man.1", "wearing", "t-shirt.1")])}
    vocab = {"categories": ["man", "shirt", "couch"], "predicates": ["wearing"]}
    exact = compute_metrics(pred, gt, pred_box_scale="pixels")
    m = compute_metrics(pred, gt, pred_box_scale="pixels", vocabulary=vocab, similarity=TableSim())
    assert m["recall"] == exact["recall"] == 0.0 and m["ap50"] == exact["ap50"] == 50.0
    assert m["mapped/recall"] == 100.0 and m["mapped/ap50"] == 100.0
    assert m["mapped/objects_dropped"] == pytest.approx(100 / 3)
    # a sgglib.data.Vocabulary-like object (attributes instead of keys) works the same
    as_object = SimpleNamespace(**vocab)
    assert compute_metrics(pred, gt, pred_box_scale="pixels", vocabulary=as_object, similarity=TableSim()) == m
    with pytest.raises(ValueError, match="missing from the vocabulary"):
        compute_metrics(pred, gt, pred_box_scale="pixels", vocabulary={"categories": ["man"], "predicates": []},
                 similarity=TableSim())


def run_cli(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_cli_on_the_example_files():
    # the shipped examples: 11 images, 4 failures (broken JSON, cut-off answer, refusal, no row),
    # one relation to an unlisted id and one repeated id dropped by the parser
    files = ("--pred", str(EXAMPLES / "predictions.jsonl"), "--gt", str(EXAMPLES / "ground_truth.jsonl"))
    code, out, _ = run_cli(*files, "--json")
    m = json.loads(out)
    assert code == 0 and m["num_images"] == 11
    assert m["failures"] == {"invalid_json": 1, "missing": 1, "no_answer": 1, "truncated": 1}
    assert m["dangling_relations"] == 1 and m["duplicate_ids"] == 1
    assert 0 < m["recall"] < 100 and 0 < m["ap50"] < 100
    table = subprocess.run([sys.executable, "-m", "sgglib.evaluate", *files], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout
    assert "AP@50" in table and "Failure rate" in table and f"{m['recall']:.2f}" in table
    assert format_table(m).splitlines()[0] in table


@pytest.mark.parametrize(
    "gt_lines, pred_lines, message",
    [
        # a line that is not JSON names its file and line
        (['{"image_id": 1, "width": 10, "height": 10, "objects": [], "relationships": []}'], ["", "{oops"],
         r"pred\.jsonl:2: not valid JSON"),
        # GT without the image size (its boxes are pixels)
        (['{"image_id": 1, "objects": [], "relationships": []}'], [], r"gt\.jsonl:1: .*'width' and 'height'"),
        # a repeated image id
        (['{"image_id": 1, "width": 10, "height": 10, "objects": [], "relationships": []}'] * 2, [],
         r"gt\.jsonl:2: image_id 1 repeated \(first on line 1\)"),
        # a bad GT box
        (['{"image_id": 1, "width": 10, "height": 10, "objects": [{"id": "a.1", "bbox": [1, 2]}], '
          '"relationships": []}'], [], r"gt\.jsonl:1: .*objects\[0\]"),
        # box_scale on some rows only
        (['{"image_id": 1, "width": 10, "height": 10, "objects": [], "relationships": []}',
          '{"image_id": 2, "width": 10, "height": 10, "objects": [], "relationships": []}'],
         ['{"image_id": 1, "completion": "", "box_scale": [448, 336]}', '{"image_id": 2, "completion": ""}'],
         r"pred\.jsonl:2: no box_scale"),
        # a prediction row without a completion, and one for an image the GT does not have
        (['{"image_id": 1, "width": 10, "height": 10, "objects": [], "relationships": []}'], ['{"image_id": 1}'],
         r"pred\.jsonl:1: .*'completion'"),
        (['{"image_id": 1, "width": 10, "height": 10, "objects": [], "relationships": []}'],
         ['{"image_id": "1", "completion": null}'], r"not in the ground truth"),
    ],
)
def test_cli_bad_input(tmp_path, gt_lines, pred_lines, message):
    (tmp_path / "gt.jsonl").write_text("\n".join(gt_lines) + "\n")
    (tmp_path / "pred.jsonl").write_text("\n".join(pred_lines) + "\n")
    code, out, err = run_cli("--pred", str(tmp_path / "pred.jsonl"), "--gt", str(tmp_path / "gt.jsonl"))
    assert code == 2 and not out
    assert re.search(message, err), err


VALID = completion(A_OBJ, A_PRED, (10, 10))
texts = st.one_of(
    st.text(max_size=200),
    st.builds(lambda i, j, s: VALID[:i] + s + VALID[j:], st.integers(0, len(VALID)), st.integers(0, len(VALID)),
              st.text(alphabet='{}[]",:0123456789.-e aonbjx', max_size=12)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(texts, min_size=1, max_size=3))
def test_evaluate_never_raises_and_stays_in_range(completions):
    # random and mutated answers: every value finite, percentages in [0, 100]
    gts = {i: GTS["A"] for i in range(len(completions))}
    m = compute_metrics(dict(enumerate(completions)), gts, pred_box_scale="qwen2vl", train_triplets=[])
    for key, value in m.items():
        values = value.values() if isinstance(value, dict) else [value]
        for v in values:
            assert math.isfinite(v), key
            if key not in ("num_images", "num_gt_objects", "num_gt_relations", "num_failures", "failures",
                           "dangling_relations", "duplicate_ids", "per_predicate_count", "num_zero_shot_triplets"):
                assert 0.0 <= v <= 100.0, (key, v)
