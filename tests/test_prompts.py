"""Prompts, SFT targets, GRPO solutions and both box conventions (docs/method.md#box-conventions)."""

from __future__ import annotations

import pytest
from PIL import Image

from sgglib import prompts as P
from sgglib.data import Vocabulary
from sgglib.parse import parse_completion

ROW = {
    "image_id": "x", "image": Image.new("RGB", (500, 333)), "width": 500, "height": 333,
    "objects": [{"id": "cat.1", "bbox": [10.0, 20.0, 250.5, 300.0]}, {"id": "mat.1", "bbox": [0.0, 200.0, 499.0, 333.0]},
                {"id": "lamp.1", "bbox": [400.0, 0.0, 480.0, 90.0]}],
    "relationships": [{"subject": "cat.1", "predicate": "on", "object": "mat.1"}],
}


def test_qwen2vl_grid_round_trip():
    # 0–1000 integer grid, truncated like the reference; back to pixels within one grid step
    box = P.to_model_box(ROW["objects"][0]["bbox"], 500, 333)
    assert box == [20, 60, 501, 900] and all(isinstance(v, int) for v in box)
    back = P.from_model_box(box, 500, 333)
    assert all(abs(a - b) <= 500 / 1000 + 1e-9 for a, b in zip(back, ROW["objects"][0]["bbox"]))


def test_qwen25vl_resized_pixels_round_trip_and_processor_agreement():
    # W', H' from smart_resize equal grid·14 from the real PIL image processor; round trip within half a pixel
    from transformers import Qwen2VLImageProcessorPil

    proc = Qwen2VLImageProcessorPil(min_pixels=4 * 28 * 28, max_pixels=256 * 28 * 28)
    grid = proc(images=[ROW["image"]])["image_grid_thw"][0]
    resized = P.resized_from_grid(grid)
    assert resized == P.resized_size(500, 333, min_pixels=4 * 28 * 28, max_pixels=256 * 28 * 28)
    box = P.to_model_box(ROW["objects"][0]["bbox"], 500, 333, "qwen2.5vl", resized)
    back = P.from_model_box(box, 500, 333, "qwen2.5vl", resized)
    tol = 0.5 * max(500 / resized[0], 333 / resized[1]) + 1e-9
    assert all(abs(a - b) <= tol for a, b in zip(back, ROW["objects"][0]["bbox"]))


def test_qwen25vl_target_is_in_resized_pixels_not_the_1000_grid():
    # the reference's SFT script wrote 0–1000 targets for every model; ours follow the model's convention
    resized = (280, 196)
    target = parse_completion(P.sft_target(ROW, "qwen2.5vl", resized)).graph
    assert target.objects[1].bbox == (0.0, 118.0, 279.0, 196.0)
    grid = parse_completion(P.sft_target(ROW)).graph
    assert grid.objects[1].bbox == (0.0, 600.0, 998.0, 1000.0)


@pytest.mark.parametrize("convention,resized", [("qwen2vl", None), ("qwen2.5vl", (504, 336))])
def test_completion_over_box_scale_matches_solution(convention, resized):
    # what the rewards do: completion / box_scale and solution are the same boxes in [0, 1]
    pred = parse_completion(P.sft_target(ROW, convention, resized)).graph.scaled(*P.box_scale(convention, resized))
    sol = P.solution(ROW)
    for p, s in zip(pred.objects, sol["objects"]):
        assert p.id == s["id"] and all(abs(a - b) <= 2e-3 for a, b in zip(p.bbox, s["bbox"]))
    assert all(0 <= v <= 1 for o in sol["objects"] for v in o["bbox"])
    assert sol["relationships"] == ROW["relationships"]


def test_box_scale_and_bad_convention():
    assert P.box_scale() == (1000.0, 1000.0)
    assert P.box_scale("qwen2.5vl", (504, 336)) == (504.0, 336.0)
    with pytest.raises(ValueError):
        P.box_scale("qwen2.5vl")
    with pytest.raises(ValueError):
        P.box_scale("llava")


def test_sft_target_is_fenced_json_without_think_and_keeps_order():
    text = P.sft_target(ROW)
    assert text.startswith("```json\n") and text.endswith("```") and "<think>" not in text
    r = parse_completion(text)
    assert r.ok and [o.id for o in r.graph.objects] == ["cat.1", "mat.1", "lamp.1"]
    assert len(r.graph.relations) == 1


def test_prompts_open_closed_and_rl():
    vocab = Vocabulary(("cat", "mat", "lamp"), ("on", "near"))
    closed, open_ = P.user_prompt(vocab), P.user_prompt()
    assert "[cat, mat, lamp]" in closed and "[on, near]" in closed and "cat, mat" not in open_
    for text in (closed, open_):
        assert "500" not in text and "333" not in text  # the image size is never told
        assert "name.number" in text and "tree.1" in text  # id format; example with an orphan object
    assert "<think>" in P.RL_SYSTEM_PROMPT and "<answer>" in P.RL_SYSTEM_PROMPT


def test_trl_rows():
    sft = P.sft_example(ROW)
    assert sft["images"] == [ROW["image"]] and sft["prompt"][-1]["content"][0] == {"type": "image"}
    assert parse_completion(sft["completion"]).ok
    grpo = P.grpo_example(ROW, convention="qwen2.5vl", resized=(504, 336))
    assert grpo["prompt"][0]["content"][0]["text"] == P.RL_SYSTEM_PROMPT
    assert grpo["box_scale"] == [504.0, 336.0] and grpo["solution"] == P.solution(ROW)
