"""The shared core: scene-graph type, box geometry, matching, similarity, run paths."""

import math
import pickle

import numpy as np
import pytest

from sgglib.boxes import giou_matrix, iou_matrix, l1_matrix
from sgglib.graph import SceneGraph, category_of, normalize_name
from sgglib.matching import hungarian_match, triplet_scores
from sgglib.similarity import get_similarity
from sgglib import runs


def graph(objects, relations=()):
    return SceneGraph.from_dict(
        {
            "objects": [{"id": i, "bbox": b} for i, b in objects],
            "relationships": [{"subject": s, "predicate": p, "object": o} for s, p, o in relations],
        }
    )


GT = graph(
    [("man.1", [0, 0, 0.5, 0.5]), ("horse.1", [0.5, 0.5, 1, 1]), ("hat.1", [0.1, 0, 0.2, 0.1])],
    [("man.1", "riding", "horse.1"), ("man.1", "wearing", "hat.1"), ("horse.1", "near", "man.1")],
)


def test_normalize_name_matches_reference_without_json_bug():
    # reference refine_node_edge: lowercase, _ and - to space; "json" must survive (reference deleted it)
    assert normalize_name(" Traffic_Light-2 ") == "traffic light 2"
    assert normalize_name("jsonl.1") == "jsonl.1"


def test_category_of_strips_only_a_trailing_number():
    # agrees with the reference's split('.')[0] on name.N and on ids without a dot
    assert category_of("traffic light.12") == "traffic light"
    assert category_of("person") == "person"
    # differs (documented) on names containing a dot
    assert category_of("st. bernard.2") == "st. bernard"


def test_from_dict_rejects_bad_ground_truth_with_a_message():
    # GT is trusted data: a bad box is a data bug and must name the entry, not score zero
    with pytest.raises(ValueError, match=r"objects\[0\]"):
        SceneGraph.from_dict({"objects": [{"id": "a.1", "bbox": [0, 0, 1]}], "relationships": []})
    with pytest.raises(ValueError, match=r"relationships\[0\]"):
        SceneGraph.from_dict({"objects": [], "relationships": [{"subject": "a.1"}]})


def test_round_trip_and_scaling():
    # to_dict/from_dict are inverse; scaled divides x by sx and y by sy
    assert SceneGraph.from_dict(GT.to_dict()) == GT
    g = graph([("a.1", [100, 200, 300, 400])]).scaled(1000, 500)
    assert g.objects[0].bbox == (0.1, 0.4, 0.3, 0.8)
    assert hash(g) == hash(graph([("a.1", [0.1, 0.4, 0.3, 0.8])]))


def test_iou_giou_l1_hand_values():
    # two 2x2 squares overlapping by half: IoU 2/6; GIoU equals IoU when the hull is the union
    a, b = [[0, 0, 2, 2]], [[1, 0, 3, 2]]
    assert iou_matrix(a, b)[0, 0] == pytest.approx(1 / 3)
    assert giou_matrix(a, b)[0, 0] == pytest.approx(1 / 3)
    # disjoint boxes: IoU 0, GIoU negative (gap counts against)
    assert giou_matrix([[0, 0, 1, 1]], [[2, 0, 3, 1]])[0, 0] == pytest.approx(0 - (3 - 2) / 3)
    assert l1_matrix(a, b)[0, 0] == 2


def test_degenerate_and_swapped_boxes_overlap_nothing():
    # deliberate deviation: swapped corners have zero area (reference: negative*negative = positive area)
    assert iou_matrix([[2, 2, 0, 0]], [[0, 0, 2, 2]])[0, 0] == 0
    assert iou_matrix([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0, 0] == 0
    assert np.isfinite(giou_matrix([[0, 0, 1e300, 1e300]], [[0, 0, 1, 1]])).all()


def test_triplet_scores_is_the_hard_recall_hit_test():
    # a prediction with other ids but the same categories, boxes at IoU>=0.5 and predicates hits;
    # the reversed relation and the missing one do not
    pred = graph(
        [("man.7", [0, 0, 0.5, 0.45]), ("horse.2", [0.5, 0.5, 1, 1]), ("hat.3", [0.6, 0.6, 0.7, 0.7])],
        [("man.7", "riding", "horse.2"), ("man.7", "wearing", "hat.3"), ("man.7", "near", "horse.2")],
    )
    # hat box is far off -> "wearing" misses; "near" is predicted in the wrong direction -> misses
    assert triplet_scores(pred, GT).tolist() == [1.0, 0.0, 0.0]


def test_triplet_scores_is_not_one_to_one_and_respects_rank():
    # one predicted triplet serves two identical GT triplets (reference evaluator semantics)
    gt = graph([("a.1", [0, 0, 1, 1]), ("b.1", [1, 1, 2, 2])], [("a.1", "on", "b.1"), ("a.1", "on", "b.1")])
    pred = graph([("a.1", [0, 0, 1, 1]), ("b.1", [1, 1, 2, 2])], [("b.1", "on", "a.1"), ("a.1", "on", "b.1")])
    assert triplet_scores(pred, gt).tolist() == [1.0, 1.0]
    # keeping only the first predicted relation (R@1) loses both
    assert triplet_scores(pred, gt, max_pred_relations=1).tolist() == [0.0, 0.0]


def test_triplet_scores_empty_inputs():
    assert triplet_scores(SceneGraph(), GT).tolist() == [0.0, 0.0, 0.0]
    assert triplet_scores(GT, SceneGraph()).tolist() == []


def test_hungarian_match_is_one_to_one_and_prefers_the_right_category():
    # two predictions on the same spot: the one with the right category takes the GT man
    pred = graph([("horse.1", [0, 0, 0.5, 0.5]), ("man.1", [0, 0, 0.5, 0.5])])
    rows, cols = hungarian_match(pred, GT)
    pairs = dict(zip(rows.tolist(), cols.tolist()))
    assert pairs[1] == 0  # man.1 -> GT man.1
    assert len(set(cols.tolist())) == len(cols)


def test_exact_similarity_matrix_and_pickling():
    sim = get_similarity("exact")
    assert sim.matrix(["a", "b"], ["b", "a", "c"]).tolist() == [[0, 1, 0], [1, 0, 0]]
    assert pickle.loads(pickle.dumps(sim))("x", "x") == 1.0
    with pytest.raises(ValueError):
        get_similarity("spacy")


def test_embedding_similarity_is_lazy():
    # building one loads nothing (no import-time or construction-time model load)
    sim = get_similarity("embedding")
    assert sim._model is None
    assert math.isclose(sim.floor, 0.0)


def test_run_paths_resolve_against_the_repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    assert runs.repo_path("notebooks") == runs.REPO_ROOT / "notebooks"
    assert (runs.REPO_ROOT / "pyproject.toml").exists()
    out = runs.write_json(tmp_path / "c.json", {"a": (1, 2), "p": tmp_path})
    assert runs.read_json(out) == {"a": [1, 2], "p": str(tmp_path)}
