"""Per-triplet credit (sgglib.train.credit, ``GRPORunConfig.credit``): which relationship entries of a completion
hit and what each earns, which tokens they span, the mask's kept tokens, the reward-to-go offsets, and that a GRPO
run trains on exactly those per-token advantages in either mode."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

from sgglib.parse import completion_text
from sgglib.rewards import EdgeHardReward
from sgglib.runs import read_metrics_csv
from sgglib.train import credit, grpo
from sgglib.train.credit import (causal_offsets, causal_shifts, credit_mask, relation_spans, relations_start,
                                 token_char_ends, triplet_contributions, triplet_hits)
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


def recording_credit_steps(monkeypatch) -> list:
    """Make GRPO runs record, per training step, TRL's sequence advantages, the per-token ones credit made of them,
    the completion mask and the batch credit kept (rows, completions, ids, rewards)."""
    steps = []
    make = grpo.credit_trainer

    def recording(base, mode):
        class Sequence(base):
            def _generate_and_score_completions(self, inputs):
                output = super()._generate_and_score_completions(inputs)
                steps.append([output["advantages"].clone()])
                return output

        class Recording(make(Sequence, mode)):
            def _generate_and_score_completions(self, inputs):
                output = super()._generate_and_score_completions(inputs)
                steps[-1] += [output["advantages"].clone(), output["completion_mask"].clone(), self._credit_batch]
                return output
        return Recording

    monkeypatch.setattr(grpo, "credit_trainer", recording)
    return steps


def test_triplet_credit_trains_on_per_token_advantages(tmp_path, policy, monkeypatch):
    steps = recording_credit_steps(monkeypatch)
    result = run(config(tmp_path, policy, credit="triplet", temperature=1.0, max_steps=4, save_steps=4))
    assert result["global_step"] == 4 and len(steps) == 4
    dropped = 0
    for sequence, per_token, mask, (rows, completions, ids_list, _) in steps:
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


def test_relations_credit_zeroes_the_object_list(tmp_path, policy, monkeypatch):
    from sgglib.models import load_model_and_processor

    _, processor = load_model_and_processor(policy, dtype="float32")
    decode = lambda i: processor.decode(i, skip_special_tokens=True)  # noqa: E731
    steps = recording_credit_steps(monkeypatch)
    result = run(config(tmp_path, policy, credit="relations", temperature=1.0, max_steps=3, save_steps=3))
    assert result["global_step"] == 3 and len(steps) == 3
    placed = 0
    for sequence, per_token, mask, (rows, completions, ids_list, _) in steps:
        for i, (text, ids) in enumerate(zip(completions, ids_list)):
            start = relations_start(completion_text(text))
            if start is None or sequence[i] == 0:
                assert (per_token[i] == sequence[i]).all()  # no key (or no advantage): every token keeps it
                continue
            ends = token_char_ends(decode, ids)
            expected = [0.0 if end <= start else float(sequence[i]) for end in ends]
            expected += [float(sequence[i])] * (per_token.shape[1] - len(expected))  # padding: masked by TRL
            assert per_token[i].tolist() == pytest.approx(expected)
            placed += sum(end <= start for end in ends) > 0 and sum(end > start for end in ends) > 0
    assert placed > 0  # some samples had both an object list and a relations part to split
    logged = [r for r in read_metrics_csv(tmp_path / "run" / "metrics.csv") if "train/credit_dropped" in r]
    assert len(logged) == 3 and any(r["train/credit_dropped"] > 0 for r in logged)


def test_triplet_contributions_split_the_hard_recall_reward_in_written_order():
    text = completion(("cup.1", "on", "table.1"),      # wrong predicate
                      ("cup.1", "above", "table.1"),   # a GT triplet
                      ("cup.1", "near", "ghost.1"),    # a relation to an undefined id
                      ("cup.1", "above", "table.1"),   # the same again: nothing new
                      ("lamp.1", "near", "cup.1"))     # a GT triplet
    entries, n_gt = triplet_contributions(text, SOLUTION, [1000.0, 1000.0])
    assert [hits for *_, hits in entries] == [0, 1, 0, 0, 1] and n_gt == 2
    assert [(a, b) for a, b, _ in entries] == [(a, b) for a, b, _ in relation_spans(text)]
    # the entries' shares add up to the reward itself
    assert sum(h for *_, h in entries) / n_gt == EdgeHardReward()([text], [SOLUTION], [[1000.0, 1000.0]])[0] == 1.0
    assert triplet_contributions('{"objects": [', SOLUTION) is None


def test_causal_offsets_compare_each_prefix_with_the_groups_same_length_prefix():
    # two groups of two; per sample the reward each entry earned
    earned = [[0.5, 0.0, 0.5], [], [0.0], [1.0, 1.0]]
    offsets = causal_offsets(earned, 2)
    assert [len(o) for o in offsets] == [4, 1, 2, 3]  # one per number of entries completed, 0 included
    assert offsets[0] == [0.0, 0.25, 0.25, 0.5]  # the second sample earned nothing at any length
    assert offsets[1] == [0.0]
    assert offsets[2] == [0.0, -0.5] and offsets[3] == [0.0, 0.5, 1.0]  # the shorter one counts in full after its end
    # a group's offsets cancel at every length both of its samples reached
    for n in range(2):
        assert offsets[2][n] + offsets[3][n] == pytest.approx(0.0)


def test_causal_shifts_divide_as_trl_scales_the_advantages():
    offsets = [[0.0, 1.0], [0.0, -1.0], [0.0, 2.0], [0.0, -2.0]]
    rewards = [1.0, 3.0, 2.0, 2.0]  # group 1: std 1.414; group 2: every reward equal
    assert causal_shifts(offsets, rewards, 2, "none") == offsets
    group = causal_shifts(offsets, rewards, 2, "group")
    assert group[0][1] == pytest.approx(1.0 / (2 ** 0.5 + 1e-4))
    assert group[2] == [0.0, 0.0] and group[3] == [0.0, 0.0]  # no scale to divide by: no shift, as TRL's advantage 0
    batch = causal_shifts(offsets, rewards, 2, "batch")
    assert batch[2][1] == pytest.approx(2.0 / (statistics.stdev(rewards) + 1e-4))
    with pytest.raises(ValueError, match="scale"):
        causal_shifts(offsets, rewards, 2, "mean")


def test_causal_credit_trains_on_rewards_to_go(tmp_path, policy, monkeypatch):
    from sgglib.models import load_model_and_processor

    steps = recording_credit_steps(monkeypatch)
    # the tiny policy's samples rarely hit a triplet, so every entry counts as one hit here (the hit test itself is
    # test_triplet_contributions_split_the_hard_recall_reward_in_written_order's): what is checked is where the
    # rewards-to-go land and what they are
    real = credit.triplet_contributions

    def every_entry_hits(*args):
        found = real(*args)
        return found and ([(a, b, 1) for a, b, _ in found[0]], found[1])

    monkeypatch.setattr(credit, "triplet_contributions", every_entry_hits)
    cfg = config(tmp_path, policy, credit="causal", temperature=1.0, max_steps=4, save_steps=4, scale_rewards="none")
    result = run(cfg)
    assert result["global_step"] == 4 and len(steps) == 4
    _, processor = load_model_and_processor(policy, dtype="float32")
    decode = lambda i: processor.decode(i, skip_special_tokens=True)  # noqa: E731
    weight = cfg.reward_weights()["edge_hard_reward"]
    shifted = 0
    for sequence, per_token, _, (rows, completions, ids_list, _) in steps:
        texts = [completion_text(c) for c in completions]
        found = [every_entry_hits(t, r["solution"], r["box_scale"]) for t, r in zip(texts, rows)]
        # per sample: the weighted Hard Recall earned after each number of entries (0, 1, ..., all)
        cumulative = []
        for f in found:
            c = [0.0]
            for *_, hits in (f[0] if f else []):
                c.append(c[-1] + weight * hits / f[1])
            cumulative.append(c)
        for i, (text, ids) in enumerate(zip(texts, ids_list)):
            group = cumulative[i - i % 4: i - i % 4 + 4]
            ends = token_char_ends(decode, ids) if decode(ids) == text else None
            if ends is None or not found[i]:  # nothing to place (no graph, no entry, or unaligned): unchanged
                assert per_token[i, :len(ids)].tolist() == pytest.approx([sequence[i].item()] * len(ids))
                continue
            for k in range(len(ids)):
                start = ends[k - 1] if k else 0
                n = sum(end <= start for _, end, _ in found[i][0])
                mean = sum(g[min(n, len(g) - 1)] for g in group) / 4
                expected = sequence[i].item() - (cumulative[i][n] - mean)  # scale_rewards="none": reward units
                assert per_token[i, k].item() == pytest.approx(expected, abs=1e-5)
                shifted += abs(expected - sequence[i].item()) > 1e-6
    assert shifted > 0  # some token's advantage moved: credit is not a no-op here
    logged = [r for r in read_metrics_csv(tmp_path / "run" / "metrics.csv") if "train/credit_shift" in r]
    assert len(logged) == 4 and any(r["train/credit_shift"] > 0 for r in logged)


def test_credit_options_are_checked():
    with pytest.raises(ValueError, match="placebo"):
        GRPORunConfig(credit="triplet", shuffle_rewards=True).check()
    with pytest.raises(ValueError, match="credit must be"):
        GRPORunConfig(credit="token").check()
    assert GRPORunConfig(credit="triplet", baseline="greedy").check().credit == "triplet"
    assert GRPORunConfig(credit="causal").check().credit == "causal"
    assert GRPORunConfig(credit="relations", shuffle_rewards=True).check().credit == "relations"  # its placebo
    for bad in (dict(rewards="relax"), dict(rewards="soft"), dict(baseline="greedy"), dict(rare_predicate_power=0.5),
                dict(dangling="zero")):
        with pytest.raises(ValueError, match="causal"):
            GRPORunConfig(credit="causal", **bad).check()



@pytest.mark.parametrize("module", ["credit", "placebo", "shared_prompt", "self_critical"])
def test_train_module_doctests(module):
    import doctest
    import importlib

    assert doctest.testmod(importlib.import_module(f"sgglib.train.{module}")).failed == 0
