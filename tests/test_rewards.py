"""sgglib.rewards: hand-computed values, agreement with the loop-based oracle, the deliberate deviations, the TRL
contract (chat form, registry, box_scale, pickling) and the embedding-similarity path."""

import json
import math
import pickle
import random

import pytest

import sgglib.rewards as R
from sgglib.graph import SceneGraph
from sgglib.similarity import EmbeddingSimilarity

import reference_rewards as ref  # tests/ is on sys.path (pytest rootdir import mode)

GT = {
    "objects": [
        {"id": "person.1", "bbox": [0.0, 0.0, 0.5, 0.5]},
        {"id": "horse.1", "bbox": [0.5, 0.5, 1.0, 1.0]},
        {"id": "hat.1", "bbox": [0.0, 0.0, 0.2, 0.2]},
    ],
    "relationships": [
        {"subject": "person.1", "predicate": "riding", "object": "horse.1"},
        {"subject": "person.1", "predicate": "wearing", "object": "hat.1"},
    ],
}


def answer(objects, relations, tags=True):
    body = json.dumps({"objects": [{"id": i, "bbox": b} for i, b in objects],
                       "relationships": [{"subject": s, "predicate": p, "object": o} for s, p, o in relations]})
    return f"<think>ok</think><answer>{body}</answer>" if tags else body


PERSON, HORSE, HAT = ("person.1", [0, 0, 500, 500]), ("horse.1", [500, 500, 1000, 1000]), ("hat.1", [0, 0, 200, 200])
CORRECT = answer([PERSON, HORSE, HAT], [("person.1", "riding", "horse.1"), ("person.1", "wearing", "hat.1")])
NO_HAT = answer([PERSON, HORSE], [("person.1", "riding", "horse.1")])


# rewards are unweighted; the hand values below are the reference's weighted ones (format 1, node 2, edge 5; the
# guard weighs 5 in the hard preset), so every reward is scaled by its reference weight here
REF_WEIGHT = {"format_reward": 1.0, "node_acc_reward": 2.0, "node_box_reward": 2.0, "edge_soft_reward": 5.0,
              "edge_hard_reward": 5.0, "edge_relax_reward": 5.0, "size_penalty_reward": 5.0}


def weighted(fn, texts, sols, scales=None):
    return [REF_WEIGHT[fn.__name__] * v for v in fn(texts, solution=sols, box_scale=scales)]


def one(fn, text, sol=GT, **kw):
    return REF_WEIGHT[fn.__name__] * fn([text], [sol], **kw)[0]


# -- hand-computed values ---------------------------------------------------------------------------------------------
def test_correct_graph_scores_every_maximum():
    # the GT itself written on the 1000 grid: every reward at its maximum, the guard silent
    assert [one(R.REWARD_FUNCS[n], CORRECT) for n in R.REWARD_FUNCS] == [1.0, 2.0, 2.0, 5.0, 5.0, 5.0, 0.0]


def test_missing_object_and_relation_hand_values():
    # hat and its relation missing: Hard/Relax/Soft edge 5·1/2; nodes 2·2/3 (2 of 3 GT objects matched exactly)
    assert one(R.edge_hard_reward, NO_HAT) == 2.5
    assert one(R.edge_relax_reward, NO_HAT) == 2.5
    assert one(R.edge_soft_reward, NO_HAT) == 2.5
    assert one(R.node_acc_reward, NO_HAT) == pytest.approx(4 / 3)
    assert one(R.node_box_reward, NO_HAT) == pytest.approx(4 / 3)


def test_rare_predicate_weights_pay_more_for_rare_predicates():
    # "wearing" 4x rarer than "riding": power 0.5 weighs it 2; finding only "riding" earns 5*1/3, only "wearing" 5*2/3
    weights = R.rare_predicate_weights({"riding": 400, "wearing": 100}, power=0.5)
    assert weights == {"riding": 1.0, "wearing": 2.0}
    only_wearing = answer([PERSON, HAT], [("person.1", "wearing", "hat.1")])
    for cls in (R.EdgeHardReward, R.EdgeRelaxReward):
        fn = cls(predicate_weights=weights)
        assert one(fn, NO_HAT) == pytest.approx(5 / 3) and one(fn, only_wearing) == pytest.approx(10 / 3)
        assert one(fn, CORRECT) == pytest.approx(5.0)  # still at most the full reward
    # power 0 (and no weights, the default) is the reference's plain Hard Recall
    plain = R.EdgeHardReward(predicate_weights=R.rare_predicate_weights({"riding": 400, "wearing": 100}, 0.0))
    assert one(plain, NO_HAT) == one(R.edge_hard_reward, NO_HAT) == 2.5
    with pytest.raises(ValueError):
        R.rare_predicate_weights({"riding": 1}, power=-1)


def test_hard_recall_iou_threshold_is_inclusive():
    # person box [0,0,500,250] has IoU exactly 0.5 with the GT's: a hit; [0,0,500,240] (IoU 0.48) is not
    hit = answer([("person.1", [0, 0, 500, 250]), HORSE], [("person.1", "riding", "horse.1")])
    miss = answer([("person.1", [0, 0, 500, 240]), HORSE], [("person.1", "riding", "horse.1")])
    assert one(R.edge_hard_reward, hit) == 2.5 and one(R.edge_hard_reward, miss) == 0.0


def test_hard_recall_needs_predicate_and_categories():
    # wrong predicate, then wrong subject category (same box): no hit either time
    wrong_pred = answer([PERSON, HORSE], [("person.1", "on", "horse.1")])
    wrong_cat = answer([("man.1", PERSON[1]), HORSE], [("man.1", "riding", "horse.1")])
    assert one(R.edge_hard_reward, wrong_pred) == 0.0 and one(R.edge_hard_reward, wrong_cat) == 0.0


def test_hard_recall_is_not_one_to_one():
    # one predicted triplet serves two identical GT triplets (the reference's loop, and its evaluator)
    gt = {"objects": GT["objects"][:2], "relationships": [GT["relationships"][0]] * 2}
    assert one(R.edge_hard_reward, NO_HAT, gt) == 5.0


def test_node_box_hand_value():
    # person box [0,0,400,500]: IoU 0.8, L1 0.1 -> (2·0.8 + 5·e^-0.1)/7; horse exact -> 1; hat unmatched; ×2/3
    text = answer([("person.1", [0, 0, 400, 500]), HORSE], [])
    expect = 2 * ((2 * 0.8 + 5 * math.exp(-0.1)) / 7 + 1.0) / 3
    assert one(R.node_box_reward, text) == pytest.approx(expect)


def test_node_acc_counts_category_of_the_hungarian_match():
    # the horse is labelled "cow": matched by geometry, category wrong -> only the person scores: 2·1/3
    text = answer([PERSON, ("cow.1", HORSE[1])], [])
    assert one(R.node_acc_reward, text) == pytest.approx(2 / 3)


def test_soft_edge_uses_matched_pair_and_multiplies_sims():
    # "cow" matched to the GT horse by box: its relation counts with sim(horse, cow) = 0 under exact match
    text = answer([PERSON, ("cow.1", HORSE[1])], [("person.1", "riding", "cow.1")])
    assert one(R.edge_soft_reward, text) == 0.0
    assert one(R.edge_soft_reward, NO_HAT) == 2.5


def test_format_hand_values():
    # tagged valid graph 1; white space around it 1; untagged 0 in strict mode, 0.5 non-strict; bad JSON 0;
    # a relation to an unlisted id 0 (the reference's validity); no think block 0
    dangling = answer([PERSON], [("person.1", "riding", "horse.1")])
    no_think = "<answer>" + answer([PERSON], [], tags=False) + "</answer>"
    texts = [CORRECT, "\n " + CORRECT + "\n", answer([PERSON], [], tags=False), "<think>x</think><answer>{</answer>",
             dangling, no_think]
    assert R.format_reward(texts) == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert R.FormatReward(strict=False)(texts) == [1.0, 1.0, 0.5, 0.0, 0.0, 0.5]


def test_empty_ground_truth_and_empty_prediction():
    # no GT relations: edge rewards divide by max(1, 0); an empty predicted graph scores 0 but is valid format
    empty = answer([], [])
    assert one(R.edge_hard_reward, CORRECT, {"objects": GT["objects"], "relationships": []}) == 0.0
    assert one(R.node_acc_reward, empty) == 0.0 and one(R.format_reward, empty) == 1.0
    assert one(R.node_acc_reward, CORRECT, {"objects": [], "relationships": []}) == 0.0


def test_size_penalty_hand_values():
    # GT: 3 objects, 2 relations -> budgets 2·3+10 = 16 objects, 3·2+10 = 16 relations
    grid = [(f"thing.{i}", [i * 50, 900, i * 50 + 40, 940]) for i in range(20)]  # 20 disjoint boxes: 4 over
    assert one(R.size_penalty_reward, answer(grid, [])) == pytest.approx(-5 * 4 / 16)
    # one duplicate id (dropped by the parser) -> 1/3 of the GT objects
    dup = answer([PERSON, HORSE, HAT, PERSON], [("person.1", "riding", "horse.1")])
    assert one(R.size_penalty_reward, dup) == pytest.approx(-5 / 3)
    # the same relation twice -> 1/2 of the GT relations
    rep = answer([PERSON, HORSE], [("person.1", "riding", "horse.1")] * 2)
    assert one(R.size_penalty_reward, rep) == pytest.approx(-2.5)
    # a second name for the person's box (IoU 1 with an earlier box) -> 1/3
    alias = answer([PERSON, HORSE, ("man.1", PERSON[1])], [])
    assert one(R.size_penalty_reward, alias) == pytest.approx(-5 / 3)
    # failed parse: no penalty (everything else already 0)
    assert one(R.size_penalty_reward, "nothing") == 0.0


# -- agreement with the oracle ------------------------------------------------------------------------------------
VOCAB = ["person", "horse", "hat", "tree", "car", "dog"]
PREDICATES = ["on", "riding", "wearing", "near", "has"]


def random_case(rng: random.Random):
    """A GT in [0,1] and a well-formed perturbed prediction on the 1000 grid or in (W', H') pixels."""
    n = rng.randint(0, 10)
    gt_objs = []
    for i in range(n):
        x, y, w, h = rng.uniform(0, .7), rng.uniform(0, .7), rng.uniform(.03, .3), rng.uniform(.03, .3)
        gt_objs.append({"id": f"{rng.choice(VOCAB)}.{i + 1}", "bbox": [x, y, x + w, y + h]})
    gt_rels = [{"subject": rng.choice(gt_objs)["id"], "predicate": rng.choice(PREDICATES),
                "object": rng.choice(gt_objs)["id"]} for _ in range(rng.randint(0, 8) if n else 0)]
    scale = rng.choice([(1000, 1000), (448, 336), (812, 560)])
    noise = rng.choice([0.0, 0.01, 0.04])
    pred, ids = [], {}
    for k, o in enumerate(gt_objs):
        if rng.random() < 0.2:
            continue
        c = o["id"].split(".")[0] if rng.random() > 0.15 else rng.choice(VOCAB)
        x1, y1, x2, y2 = (v + rng.gauss(0, noise) for v in o["bbox"])
        box = [round(x1 * scale[0]), round(y1 * scale[1]), round(x2 * scale[0]), round(y2 * scale[1])]
        box[2], box[3] = max(box[2], box[0] + 2), max(box[3], box[1] + 2)
        ids[o["id"]] = f"{c}.{k + 1}"
        pred.append((ids[o["id"]], box))
    for k in range(rng.randint(0, 4)):
        x, y = rng.randint(0, 800), rng.randint(0, 800)
        pred.append((f"{rng.choice(VOCAB)}.{100 + k}", [x, y, x + rng.randint(5, 200), y + rng.randint(5, 200)]))
    rng.shuffle(pred)
    rels = [(ids[r["subject"]], r["predicate"] if rng.random() > 0.2 else rng.choice(PREDICATES), ids[r["object"]])
            for r in gt_rels if r["subject"] in ids and r["object"] in ids and rng.random() < 0.8]
    for _ in range(rng.randint(0, 3) if pred else 0):  # extra relations, sometimes on an already used pair
        s, o = (rels[0][0], rels[0][2]) if rels and rng.random() < .5 else (rng.choice(pred)[0], rng.choice(pred)[0])
        rels.insert(rng.randint(0, len(rels)), (s, rng.choice(PREDICATES), o))
    text = answer(pred, rels, tags=rng.random() < 0.8)
    if rng.random() < 0.3:
        text = "```json\n" + answer(pred, rels, tags=False) + "\n```"
    return text, {"objects": gt_objs, "relationships": gt_rels}, scale


CASES = [random_case(random.Random(seed)) for seed in range(600)]


@pytest.mark.parametrize("name", list(ref.REFERENCE))
def test_equal_to_reference_oracle_on_random_graphs(name):
    # 600 random well-formed completions (varied sizes, noise, scales, formats): same value as the oracle
    texts, sols, scales = zip(*CASES)
    ours = weighted(R.REWARD_FUNCS[name], list(texts), list(sols), list(scales))
    theirs = [ref.REFERENCE[name](t, s, sc) for t, s, sc in CASES]
    assert ours == pytest.approx(theirs, abs=1e-9)


def test_random_cases_exercise_the_rewards():
    # guard against a vacuous oracle test: the cases give partial credit, not just 0 and the maximum
    texts, sols, scales = zip(*CASES)
    for name in ("edge_hard_reward", "node_box_reward", "edge_soft_reward"):
        values = R.REWARD_FUNCS[name](list(texts), list(sols), list(scales))
        assert len({round(v, 6) for v in values}) > 20, name


# -- deliberate deviations ----------------------------------------------------------------------------------------
def test_deviation_format_bug_fixed():
    # deviation 1: the released reference scores any graph with an object 0; ours scores it 1
    assert ref.format_reward(CORRECT, with_bug=True) == 0.0
    assert ref.format_reward(CORRECT) == 1.0 == one(R.format_reward, CORRECT)


def test_deviation_relation_to_undefined_id_is_ignored():
    # deviation 2: a relation to "cow.9" (never listed) zeroes the reference's Hard/Relax sample; ours keeps the
    # rest of the graph, while format still says 0
    # (listed first: the reference's loop stops at the first hit and would never look the bad id up)
    text = answer([PERSON, HORSE, HAT], [("cow.9", "riding", "horse.1"), ("person.1", "riding", "horse.1"),
                                         ("person.1", "wearing", "hat.1")])
    assert ref.edge_hard_reward(text, GT) == 0.0 and ref.edge_relax_reward(text, GT) == 0.0
    assert one(R.edge_hard_reward, text) == 5.0 and one(R.edge_relax_reward, text) == 5.0
    assert one(R.format_reward, text) == 0.0


def test_deviation_duplicate_id_keeps_first_object():
    # deviation 3: person.1 listed twice, the second copy far away: we keep the first (a hit), the reference's
    # dict kept the last (a miss)
    text = answer([PERSON, HORSE, ("person.1", [900, 0, 950, 50])], [("person.1", "riding", "horse.1")])
    assert one(R.edge_hard_reward, text) == 2.5
    assert ref.edge_hard_reward(text, GT) == 0.0


def test_soft_edge_keeps_last_relation_per_pair():
    # deviation-4 decision (matches the reference): of two relations on one pair only the last counts
    right_last = answer([PERSON, HORSE], [("person.1", "on", "horse.1"), ("person.1", "riding", "horse.1")])
    right_first = answer([PERSON, HORSE], [("person.1", "riding", "horse.1"), ("person.1", "on", "horse.1")])
    assert one(R.edge_soft_reward, right_last) == 2.5 == ref.edge_soft_reward(right_last, GT)
    assert one(R.edge_soft_reward, right_first) == 0.0 == ref.edge_soft_reward(right_first, GT)


def test_deviation_nan_and_boolean_coordinates_fail():
    # deviation 5: NaN / true coordinates are a failed parse (0 everywhere); the reference accepted both
    for bad in ('[0, 0, NaN, 500]', '[0, 0, true, 500]'):
        text = CORRECT.replace("[0, 0, 500, 500]", bad)
        assert [one(f, text) for f in R.REWARD_FUNCS.values()] == [0.0] * 7
    assert ref.format_reward(CORRECT.replace("[0, 0, 500, 500]", "[0, 0, NaN, 500]")) == 1.0


def test_deviation_text_around_the_json_is_tolerated():
    # deviation 5 (lenient side): prose around a fenced answer; the reference's json.loads of the whole text failed
    text = "Here is the graph:\n```json\n" + answer([PERSON, HORSE, HAT], [("person.1", "riding", "horse.1")],
                                                     tags=False) + "\n```\nHope this helps."
    assert one(R.edge_hard_reward, text) == 2.5 and one(R.format_reward, text) == 0.0


def test_deviation_ids_compared_after_normalisation():
    # deviation 5 (lenient side): a relation naming "Person_1.1" for the object "person 1.1" is valid for us; the
    # reference's format check compared raw strings and gave 0
    text = answer([("person 1.1", PERSON[1]), HORSE], [("Person_1.1", "riding", "horse.1")])
    assert one(R.format_reward, text) == 1.0 and ref.format_reward(text) == 0.0


def test_each_completion_is_parsed_once_per_suite():
    # the five soft-preset rewards share one parse (and one Hungarian matching) per completion
    from sgglib.parse import _parse

    texts, sols, scales = map(list, zip(*CASES[:40]))
    R.clear_caches()
    for fn in R.make_rewards(R.PRESETS["soft"]):
        fn(texts, sols, scales)
    assert _parse.cache_info().misses == len(set(texts))


def test_hard_recall_fast_path_equals_general_path():
    # matching.triplet_scores answers exact similarity by a candidate-pair fast path; an exact similarity that is not
    # an ExactSimilarity instance takes the general matrix path: both agree on every random case
    class SlowExact:
        def matrix(self, a, b):
            return R.EXACT.matrix(a, b)

    texts, sols, scales = map(list, zip(*CASES))
    general = R.EdgeRelaxReward(sim=SlowExact())(texts, sols, scales)
    assert R.edge_hard_reward(texts, sols, scales) == general


def test_size_penalty_subtracts_the_ground_truths_own_near_duplicates():
    # a GT that itself lists two near-identical boxes (VG has some): the correct graph is not penalised for copying it
    gt = {"objects": GT["objects"] + [{"id": "man.1", "bbox": [0.0, 0.0, 0.5, 0.49]}], "relationships": []}
    text = answer([PERSON, HORSE, HAT, ("man.1", [0, 0, 500, 490])], [])
    assert one(R.size_penalty_reward, text, gt) == 0.0
    assert one(R.size_penalty_reward, text) == pytest.approx(-5 / 3)  # against GT without it: one near-duplicate


# -- TRL contract ------------------------------------------------------------------------------------------------------
def test_chat_form_equals_string_form():
    # TRL passes [[{"role": "assistant", "content": ...}]]; values equal the plain-string call
    texts, sols, scales = zip(*CASES[:50])
    chat = [[{"role": "assistant", "content": t}] for t in texts]
    for name, fn in R.REWARD_FUNCS.items():
        assert fn(chat, list(sols), list(scales)) == fn(list(texts), list(sols), list(scales)), name


def test_registry_names_match_functions():
    # open-r1 style: each registry name is the function of that name, and __name__ (TRL's log key) agrees
    expected = {"format_reward", "node_acc_reward", "node_box_reward", "edge_soft_reward", "edge_hard_reward",
                "edge_relax_reward", "size_penalty_reward"}
    assert set(R.REWARD_FUNCS) == expected
    for name, fn in R.REWARD_FUNCS.items():
        assert fn is getattr(R, name) and fn.__name__ == name


def test_presets_hold_the_only_weights():
    # the three reward sets, each with the guard; weights as documented and nowhere else (a reward has no weight);
    # a spec string parses; an unknown name is an error
    assert R.PRESETS["hard"] == {"format_reward": 1.0, "edge_hard_reward": 5.0, "size_penalty_reward": 5.0}
    assert R.PRESETS["soft"] == {"format_reward": 1.0, "node_acc_reward": 2.0, "node_box_reward": 2.0,
                                 "edge_soft_reward": 5.0, "size_penalty_reward": 9.0}
    for name, weights in R.PRESETS.items():
        fns = R.make_rewards(weights)
        assert [f.__name__ for f in fns] == list(weights) and "size_penalty_reward" in weights
        assert not any(hasattr(f, "weight") for f in fns)
    assert R.reward_weights("format_reward:1, edge_relax_reward:5") == {"format_reward": 1.0, "edge_relax_reward": 5.0}
    for bad in ("nope", "recall_of_everything:5", "format_reward=1"):
        with pytest.raises(ValueError):
            R.reward_weights(bad)


def test_rewards_pickle():
    # TRL / datasets may pickle reward functions: instances round-trip and give the same values
    texts, sols, scales = zip(*CASES[:20])
    for fn in [*R.REWARD_FUNCS.values(), *R.make_rewards(R.PRESETS["soft"]), R.EdgeRelaxReward(sim=EmbeddingSimilarity())]:
        back = pickle.loads(pickle.dumps(fn))
        assert back.__name__ == fn.__name__ and repr(back) == repr(fn)
        if not isinstance(fn.sim, EmbeddingSimilarity):
            assert back(list(texts), list(sols), list(scales)) == fn(list(texts), list(sols), list(scales))


def test_box_scale_qwen2_grid_and_qwen25_pixels():
    # the same graph on the Qwen2-VL 1000 grid (default) and in Qwen2.5-VL input pixels (W', H') = (448, 336)
    px = answer([("person.1", [0, 0, 224, 168]), ("horse.1", [224, 168, 448, 336]), ("hat.1", [0, 0, 89.6, 67.2])],
                [("person.1", "riding", "horse.1"), ("person.1", "wearing", "hat.1")])
    for fn in R.REWARD_FUNCS.values():
        grid = fn([CORRECT, CORRECT], [GT, GT], box_scale=None)
        mixed = fn([CORRECT, px], [GT, GT], box_scale=[None, (448, 336)])
        assert mixed == pytest.approx(grid), fn.__name__
    # pixels read as the 1000 grid land in the wrong place
    assert one(R.edge_hard_reward, px) == 0.0


def test_bad_box_scale_and_length_mismatch_raise():
    # a zero scale or a missing sample is a data bug, reported loudly (never scored as 0)
    with pytest.raises(ValueError):
        R.edge_hard_reward([CORRECT], [GT], box_scale=[(0, 1000)])
    with pytest.raises(ValueError):
        R.edge_hard_reward([CORRECT, CORRECT], [GT])


def test_solution_as_json_string_or_scene_graph():
    # the solution column may arrive as the dict, its JSON string (HF datasets) or a SceneGraph
    forms = [GT, json.dumps(GT), SceneGraph.from_dict(GT)]
    for fn in R.REWARD_FUNCS.values():
        assert len({fn([NO_HAT], [s])[0] for s in forms}) == 1, fn.__name__


def test_ground_truth_cache_is_by_identity():
    # two equal-looking dicts with different content are never confused, even after the first is cached
    a = json.loads(json.dumps(GT))
    b = json.loads(json.dumps(GT))
    b["relationships"] = b["relationships"][:1]
    assert R.edge_hard_reward([NO_HAT, NO_HAT], [a, b]) == [0.5, 1.0]


def test_total_reward_weighs_and_sums_a_preset():
    # total_reward = the weighted sum over the preset; correct graph: 1 + 5 + 0 (hard), 1 + 2 + 2 + 5 + 0 (soft);
    # without the hat, Hard Recall is 1/2: 1 + 5/2
    assert R.total_reward([CORRECT], [GT]) == [6.0]
    assert R.total_reward([CORRECT], [GT], weights="soft") == [10.0]
    assert R.total_reward([NO_HAT], [GT], weights={"format_reward": 1.0, "edge_hard_reward": 5.0}) == [3.5]


def test_module_doctest():
    # the runnable example in the module docstring stays true
    import doctest

    assert doctest.testmod(R).failed == 0


# -- embedding similarity ------------------------------------------------------------------------------------------
def test_embedding_similarity_gives_partial_credit():
    # "man" for the GT "person" (same box, same predicate): exact match gives 0, MiniLM a partial credit in (0, 5);
    # the GT names themselves still score the full 5 (equal strings are exactly 1)
    man = answer([("man.1", PERSON[1]), HORSE], [("man.1", "riding", "horse.1")])
    sim = EmbeddingSimilarity()
    relax, acc = R.EdgeRelaxReward(sim=sim), R.NodeAccReward(sim=sim)
    gt = {"objects": GT["objects"][:2], "relationships": GT["relationships"][:1]}
    assert one(R.edge_relax_reward, man, gt) == 0.0
    assert 0.0 < one(relax, man, gt) < 5.0
    assert one(relax, NO_HAT, gt) == 5.0
    assert 1.0 < one(acc, man, gt) < 2.0
    assert 0.0 < one(R.EdgeSoftReward(sim=sim), man, gt) < 5.0
    for fn in R.make_rewards(R.PRESETS["relax"], sim=sim):
        assert fn.__name__ != "edge_relax_reward" or fn.sim is sim


def test_dangling_zero_is_the_reference_semantics():
    # dangling="zero": a relation to an undefined id zeroes the sample's edge reward, as the reference's KeyError
    # did; the default drops that relation and scores the rest
    text = answer([PERSON, HORSE, HAT], [("cow.9", "riding", "horse.1"), ("person.1", "riding", "horse.1")])
    for cls in (R.EdgeHardReward, R.EdgeRelaxReward):
        assert cls(dangling="zero")([text], [GT]) == [0.0] and cls()([text], [GT]) == [0.5]
        assert cls(dangling="zero")([NO_HAT], [GT]) == [0.5]  # no dangling relation: the same as the default
    with pytest.raises(ValueError):
        R.EdgeHardReward(dangling="ignore")
