"""Per-triplet credit (sgglib.train.credit, ``GRPORunConfig.credit="triplet"``): which relationship entries of a
completion hit, which tokens they span, which tokens keep the sample's advantage, and that a GRPO run trains on
exactly those per-token advantages."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sgglib.parse import completion_text
from sgglib.runs import read_metrics_csv
from sgglib.train import grpo
from sgglib.train.credit import credit_mask, relation_spans, token_char_ends, triplet_hits
from sgglib.train.grpo import GRPORunConfig

sys.path.insert(0, str(Path(__file__).parent))
from test_grpo import config, run  # noqa: E402  (the GRPO tests' run setup and policy)

SOLUTION = {  # the GT in [0, 1]; the completion writes boxes in Qwen2-VL's 0-1000 frame
    "objects": [{"id": "cup.1", "bbox": [0.1, 0.1, 0.3, 0.3]}, {"id": "table.1", "bbox": [0.0, 0.5, 1.0, 1.0]},
                {"id": "lamp.1", "bbox": [0.6, 0.0, 0.8, 0.4]}],
    "relationships": [{"subject": "cup.1", "predicate": "above", "object": "table.1"},
                      {"subject": "lamp.1", "predicate": "near", "object": "cup.1"}],
}


def completion(*relations) -> str:
    objects = [{"id": "cup.1", "bbox": [100, 100, 300, 300]}, {"id": "table.1", "bbox": [0, 500, 1000, 1000]},
               {"id": "lamp.1", "bbox": [600, 0, 800, 400]}]
    rels = [{"subject": s, "predicate": p, "object": o} for s, p, o in relations]
    return json.dumps({"objects": objects, "relationships": rels})


def test_triplet_hits_marks_each_written_relation_in_order():
    text = completion(("cup.1", "above", "table.1"),   # a GT triplet
                      ("cup.1", "on", "table.1"),      # wrong predicate
                      ("Cup.1", "above", "table.1"),   # the first one again (names normalised): earns nothing more
                      ("cup.1", "near", "ghost.1"),    # a relation to an undefined id
                      ("lamp.1", "near", "cup.1"))     # a GT triplet
    spans = triplet_hits(text, SOLUTION, [1000.0, 1000.0])
    assert [hit for _, _, hit in spans] == [True, False, False, False, True]
    for (start, end, _), entry in zip(spans, json.loads(text)["relationships"]):
        assert json.loads(text[start:end]) == entry
    # the same hits with the GT as a JSON string and the default frame
    assert triplet_hits(text, json.dumps(SOLUTION)) == spans
    # a box off by more than IoU 0.5 misses
    moved = text.replace("[600, 0, 800, 400]", "[700, 300, 900, 700]")
    assert [hit for *_, hit in triplet_hits(moved, SOLUTION)] == [True, False, False, False, False]
    assert triplet_hits('{"objects": [', SOLUTION) is None  # no graph: no triplets to credit
    assert relation_spans('{"objects": [{"id": "cup.1", "bbox": [1, 2, 3, 4]}], "relationships": []}') == []


def test_credit_mask_drops_the_triplets_that_disagree_with_the_sign():
    ends = [3, 8, 10, 15, 20]  # token k spans [ends[k-1], ends[k])
    spans = [(3, 10, True), (10, 20, False)]  # tokens 1-2 a hit, tokens 3-4 a miss; token 0 the objects
    assert credit_mask(0.5, spans, ends, 5) == [True, True, True, False, False]
    assert credit_mask(-0.5, spans, ends, 5) == [True, False, False, True, True]
    assert credit_mask(0.0, spans, ends, 5) == [True] * 5
    # a token straddling a span's edge belongs to it; padding past the completion is untouched
    assert credit_mask(0.5, [(9, 12, False)], ends, 7) == [True, True, False, False, True, True, True]


def test_token_char_ends_follow_the_processors_decoding(policy):
    from sgglib.models import load_model_and_processor

    _, processor = load_model_and_processor(policy, dtype="float32")
    text = completion(("cup.1", "above", "table.1"))
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    decode = lambda i: processor.decode(i, skip_special_tokens=True)  # noqa: E731
    ends = token_char_ends(decode, ids)
    assert len(ends) == len(ids) and ends[-1] == len(decode(ids)) and ends == sorted(ends)
    assert all(decode(ids[:k + 1]) == decode(ids)[:end] for k, end in enumerate(ends))
    assert token_char_ends(lambda i: "x" * (10 - len(i)), [1, 2, 3]) is None  # not incremental: no alignment


def test_triplet_credit_trains_on_per_token_advantages(tmp_path, policy, monkeypatch):
    steps = []  # per training step: TRL's sequence advantages, the per-token ones, and the batch
    make = grpo.triplet_credit_trainer

    def recording(base):
        class Sequence(base):
            def _generate_and_score_completions(self, inputs):
                output = super()._generate_and_score_completions(inputs)
                steps.append([output["advantages"].clone()])
                return output

        class Recording(make(Sequence)):
            def _generate_and_score_completions(self, inputs):
                output = super()._generate_and_score_completions(inputs)
                steps[-1] += [output["advantages"].clone(), output["completion_mask"].clone(), self._credit_batch]
                return output
        return Recording

    monkeypatch.setattr(grpo, "triplet_credit_trainer", recording)
    result = run(config(tmp_path, policy, credit="triplet", temperature=1.0, max_steps=4, save_steps=4))
    assert result["global_step"] == 4 and len(steps) == 4
    dropped = 0
    for sequence, per_token, mask, (rows, completions, ids_list) in steps:
        assert per_token.shape == mask.shape and sequence.dim() == 1
        for i, (row, text, ids) in enumerate(zip(rows, completions, ids_list)):
            kept = per_token[i] == sequence[i]
            assert (kept | (per_token[i] == 0)).all()  # a token keeps its sample's advantage or gets 0
            spans = triplet_hits(completion_text(text), row["solution"], row["box_scale"])
            if not spans or sequence[i] == 0:
                assert kept.all()
                continue
            dropped += int((~kept).sum())
            if all(hit == (sequence[i] > 0) for *_, hit in spans):
                assert kept.all()  # every triplet agrees with the sign: nothing to drop
            else:
                assert not kept.all()
    assert dropped > 0  # the run did drop some tokens: credit is not a no-op here
    logged = [r for r in read_metrics_csv(tmp_path / "run" / "metrics.csv") if "train/credit_dropped" in r]
    assert len(logged) == 4 and all(r["train/credit_unaligned"] == 0 for r in logged)
    assert any(r["train/credit_dropped"] > 0 for r in logged)


def test_triplet_credit_is_not_a_placebo_and_names_its_values():
    with pytest.raises(ValueError, match="placebo"):
        GRPORunConfig(credit="triplet", shuffle_rewards=True).check()
    with pytest.raises(ValueError, match="credit must be"):
        GRPORunConfig(credit="token").check()
    assert GRPORunConfig(credit="triplet", baseline="greedy").check().credit == "triplet"



@pytest.mark.parametrize("module", ["credit", "placebo", "shared_prompt", "self_critical"])
def test_train_module_doctests(module):
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(f"sgglib.train.{module}")).failed == 0
