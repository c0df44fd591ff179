"""sgglib.diagnostics: the structure of a run's answers, precision against the complete graph, the recall split and
the sampling headroom — hand-made run directories with known answers."""

from __future__ import annotations

import json

import pytest

from sgglib import diagnostics
from sgglib.analysis import load_run
from sgglib.runs import write_json

ROW = {"image_id": "a", "width": 100, "height": 100,
       "objects": [{"id": "cat.1", "bbox": [0, 0, 50, 50]}, {"id": "mat.1", "bbox": [0, 50, 100, 100]}],
       "relationships": [{"subject": "cat.1", "predicate": "on", "object": "mat.1"}],
       "complete_relationships": [{"subject": "cat.1", "predicate": "on", "object": "mat.1"},
                                  {"subject": "cat.1", "predicate": "above", "object": "mat.1"}]}
OBJECTS = [{"id": "cat.1", "bbox": [0, 0, 500, 500]}, {"id": "mat.1", "bbox": [0, 500, 1000, 1000]}]


def answer(relations):
    return json.dumps({"objects": OBJECTS, "relationships": [
        {"subject": s, "predicate": p, "object": o} for s, p, o in relations]})


def run_dir(tmp_path, completions, metrics=None):
    # a run directory as training writes it: predictions.jsonl (one image each) and metrics.json
    path = tmp_path / "run"
    path.mkdir(parents=True)
    lines = [{"image_id": f"img{i}", "completion": c, "box_scale": [1000, 1000], "sample": 0}
             for i, c in enumerate(completions)]
    (path / "predictions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    write_json(path / "metrics.json", metrics or {"failure_rate": 0.0, "recall": 50.0})
    return load_run(path)


def test_output_stats_counts_structure_and_failures(tmp_path):
    # 1 truncated answer of 4; the 3 valid ones hold 2, 1 and 3 relations, one self-relation and one dangling id
    run = run_dir(tmp_path, [answer([("cat.1", "on", "mat.1"), ("cat.1", "near", "cat.1")]),
                             answer([("cat.1", "on", "mat.1")]),
                             answer([("cat.1", "on", "mat.1"), ("cat.1", "above", "mat.1"), ("dog.9", "on", "mat.1")]),
                             '{"objects": [{"id": "cat.1", "bbox": [0, 0'])
    stats = diagnostics.output_stats(run)
    assert stats["failure_rate"] == stats["truncated"] == 25.0
    assert stats["relations_per_answer"] == pytest.approx(5 / 3)  # the dangling relation is dropped by the parser
    assert stats["self_relations_per_answer"] == pytest.approx(1 / 3)
    assert stats["dangling_per_answer"] == pytest.approx(1 / 3)


def test_precision_against_the_complete_graph(tmp_path):
    # "above" is true (the complete graph holds it) but unannotated; "under" is false: precision against the
    # complete graph 2/3, against the annotation 1/3; the complete graph's recall 2/2
    run = run_dir(tmp_path, [answer([("cat.1", "on", "mat.1"), ("cat.1", "above", "mat.1"),
                                     ("cat.1", "under", "mat.1")])])
    rows = [{**ROW, "image_id": "img0"}]
    scores = diagnostics.complete_graph_scores(run, rows)
    assert scores["precision_complete"] == pytest.approx(200 / 3)
    assert scores["precision_annotated"] == pytest.approx(100 / 3)
    assert scores["recall_complete"] == 100.0
    without = [{k: v for k, v in rows[0].items() if k != "complete_relationships"}]
    assert diagnostics.complete_graph_scores(run, without) is None  # real data: no complete graph, no claim


def test_recall_split_parts_sum_to_the_change():
    # the two parts add up; with no failures before or after the change is all in the valid answers
    split = diagnostics.recall_split({"recall": 10.0, "failure_rate": 50.0}, {"recall": 18.0, "failure_rate": 10.0})
    assert split["failures_removed"] + split["better_valid_answers"] == pytest.approx(8.0)
    assert split["failures_removed"] == pytest.approx(8.0)  # 20 per valid answer before and after
    same = diagnostics.recall_split({"recall": 10.0, "failure_rate": 0.0}, {"recall": 12.0, "failure_rate": 0.0})
    assert same["failures_removed"] == 0.0 and same["better_valid_answers"] == pytest.approx(2.0)


def test_study_table_and_headroom(tmp_path):
    # a run that sampled at its end reports its headroom; the table has one row per run with every column
    metrics = {"failure_rate": 0.0, "recall": 40.0, "sampling": {"best_of_k": 8, "best_of_k_recall": 55.0,
                                                                 "mean_sample_recall": 30.0}}
    run = run_dir(tmp_path, [answer([("cat.1", "on", "mat.1")])], metrics)
    assert diagnostics.sampling_headroom(run)["best_of_k_recall"] == 55.0
    table = diagnostics.study_table({"SFT": run}, [{**ROW, "image_id": "img0"}]).splitlines()
    assert len(table) == 3 and table[2].startswith("| SFT | 0.00 | 40.00 | 40.00 |") and "55.00" in table[2]


def test_answer_changes_tells_text_objects_relations_and_boxes_apart(tmp_path):
    on, near = ("cat.1", "on", "mat.1"), ("cat.1", "near", "mat.1")
    moved = json.dumps({"objects": [{"id": "cat.1", "bbox": [0, 0, 400, 500]}, OBJECTS[1]],
                        "relationships": [{"subject": "cat.1", "predicate": "on", "object": "mat.1"}]})
    before = run_dir(tmp_path / "a", [answer([on]), answer([on, near]), answer([on]), answer([on]), '{"objects": ['])
    after = run_dir(tmp_path / "b", [answer([on]), answer([near, on]), answer([near]), moved, '{"objects": [{'])
    changes = diagnostics.answer_changes(before, after)
    # img0 identical; img1 the same relations in another order; img2 another relation; img3 a box moved; img4 both
    # failed with different texts
    assert changes["answers"] == 5
    assert changes["unchanged_text"] == pytest.approx(20.0)
    assert changes["unchanged_objects"] == pytest.approx(80.0)
    assert changes["unchanged_relations"] == pytest.approx(60.0)
    assert changes["changed_boxes_only"] == pytest.approx(20.0)
    assert "relations_changed_recall" not in changes
    # against the ground truth (cat.1 on mat.1 everywhere): img2 lost its hit, img4 failed both times
    rows = [{**ROW, "image_id": f"img{i}"} for i in range(5)]
    scored = diagnostics.answer_changes(before, after, rows)
    assert scored["relations_changed_recall"] == {"rose": 0, "fell": 1, "held": 1}
    swapped = diagnostics.answer_changes(after, before, rows)["relations_changed_recall"]
    assert swapped == {"rose": 1, "fell": 0, "held": 1}


def test_sample_divergence_finds_the_shared_prefix_and_where_samples_leave_the_greedy_answer(tmp_path):
    on, near = ("cat.1", "on", "mat.1"), ("cat.1", "near", "mat.1")
    run = run_dir(tmp_path, [answer([on])])  # img0's greedy answer
    assert diagnostics.sample_divergence(run) is None  # no samples kept
    moved = answer([on]).replace("500, 500]", "400, 500]")  # a box digit: leaves inside the object list
    samples = [answer([on]), answer([near]), moved, answer([on])]
    (run.path / "samples.jsonl").write_text("".join(
        json.dumps({"image_id": "img0", "completion": c, "sample": i}) + "\n" for i, c in enumerate(samples)))
    out = diagnostics.sample_divergence(run)
    assert out["images"] == 1 and out["samples"] == 4
    assert out["samples_equal_to_greedy"] == 50.0
    assert out["samples_leaving_greedy_in_objects"] == 25.0 and out["samples_leaving_greedy_in_relations"] == 25.0
    # the four share the text up to the moved box's first digit: everything before it, in each of them
    common = answer([on]).index("500, 500]")
    assert out["shared_prefix_share"] == pytest.approx(100 * 4 * common / sum(map(len, samples)))


def test_zero_diagnosis_says_who_writes_relations_and_what_they_hold():
    # benchmarks/zero_diagnosis.py on one hand-made group of 4: a one-object list, two broken answers that try a
    # relation (one annotated triplet, one not) and a valid graph whose relation hits
    from zero_diagnosis import diagnose

    gt = {"objects": [{"id": "a.1", "bbox": [0.1, 0.1, 0.3, 0.3]}, {"id": "b.1", "bbox": [0.5, 0.5, 0.7, 0.7]}],
          "relationships": [{"subject": "a.1", "predicate": "near", "object": "b.1"}]}
    objects = '{"objects": [{"id": "a.1", "bbox": [100, 100, 300, 300]}, {"id": "b.1", "bbox": [500, 500, 700, 700]}]'
    hit, miss = ('{"subject": "a.1", "predicate": "near", "object": "b.1"}',
                 '{"subject": "b.1", "predicate": "on", "object": "a.1"}')
    texts = ['{"objects": [{"id": "a.1", "bbox": [100, 100, 300, 300]}], "relationships": []}',
             objects + ', "relationships": [' + hit + ', {"subject": "a.1", "pred',
             '{"objects": [{"id": "b.1", "bbox": [5' + miss + ']}',
             objects + ', "relationships": [' + hit + ']}']
    out = diagnose(texts, [gt] * 4, 4, "hard", "budget")
    assert out["relation_attempts"] == 0.75 and out["relation_attempts_valid"] == pytest.approx(1 / 3)
    assert out["salvaged_triplets_per_attempt"] == 1.0 and out["salvaged_triplet_precision"] == pytest.approx(2 / 3)
    assert out["groups_with_any_recall"] == 1.0 and out["zero_variance_groups"] == 0.0
    kinds = out["by_kind"]
    assert kinds["valid, 2 objects, with relations"]["mean_advantage"] > 0 > kinds["failure: invalid_json"][
        "mean_advantage"]
    assert [kinds[k]["samples"] for k in ("failure: truncated", "failure: invalid_json",  # the unclosed one is cut
                                          "valid, 1 object, no relations")] == [1, 1, 1]
    # a group's advantages sum to 0, so the three writers' mean is minus the one-object list's, over three
    only_objects = kinds["valid, 1 object, no relations"]["mean_advantage"]
    assert only_objects < 0 and out["relation_attempts_mean_advantage"] == pytest.approx(-only_objects / 3)
