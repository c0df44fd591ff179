"""Reward hacking: with every preset (hard, relax, soft — each including the size-penalty guard) no padded or
degenerate output beats the correct graph, and the guard leaves correct and sensibly over-predicted graphs alone.

Recall-style rewards never penalise extras (docs/method.md#the-size-guard), so each case below ties or beats the correct graph without
the guard; the module docstring of sgglib.rewards gives the guard's formula."""

import json
import random

import pytest

import sgglib.rewards as R
from sgglib.similarity import EmbeddingSimilarity

# VG150's 50 predicates: the spam case lists every one of them on every ordered pair
PREDICATES = (
    "above,across,against,along,and,at,attached to,behind,belonging to,between,carrying,covered in,covering,eating,"
    "flying in,for,from,growing on,hanging from,has,holding,in,in front of,laying on,looking at,lying on,made of,"
    "mounted on,near,of,on,on back of,over,painted on,parked on,part of,playing,riding,says,sitting on,standing on,"
    "to,under,using,walking in,walking on,watching,wearing,wears,with"
).split(",")


def make_gt(n_objects: int, n_relations: int, seed: int = 0) -> dict:
    """A VG-like GT in [0, 1]: objects of mixed sizes (small parts to large stuff), relations between them."""
    rng = random.Random(seed)
    names = ["man", "shirt", "hat", "horse", "tree", "building", "window", "car", "sign", "street", "dog", "table"]
    objs = []
    for i in range(n_objects):
        w, h = rng.choice([(.08, .1), (.2, .3), (.35, .45), (.6, .4)])
        x, y = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        objs.append({"id": f"{names[i % len(names)]}.{i + 1}", "bbox": [x, y, x + w, y + h]})
    rels, pairs = [], set()
    while len(rels) < n_relations:
        s, o = rng.sample(range(n_objects), 2)
        if (s, o) not in pairs:
            pairs.add((s, o))
            rels.append({"subject": objs[s]["id"], "predicate": rng.choice(PREDICATES), "object": objs[o]["id"]})
    return {"objects": objs, "relationships": rels}


def write(objects, relations) -> str:
    """A tagged completion on the Qwen2-VL 1000 grid; ``objects`` as (id, [x1, y1, x2, y2] in [0, 1])."""
    body = json.dumps({"objects": [{"id": i, "bbox": [round(v * 1000, 1) for v in b]} for i, b in objects],
                       "relationships": [{"subject": s, "predicate": p, "object": o} for s, p, o in relations]})
    return f"<think>listing the scene</think><answer>{body}</answer>"


def hacks(gt: dict) -> dict[str, str]:
    rng = random.Random(1)
    objs = [(o["id"], o["bbox"]) for o in gt["objects"]]
    rels = [(r["subject"], r["predicate"], r["object"]) for r in gt["relationships"]]
    spurious = []
    for k in range(200):
        x, y = rng.uniform(0, .9), rng.uniform(0, .9)
        spurious.append((f"thing{k % 7}.{k + 1}", [x, y, x + rng.uniform(.02, .1), y + rng.uniform(.02, .1)]))
    copies = [(f"{i.split('.')[0]}.{100 * c + int(i.split('.')[1])}", b) for c in range(1, 5) for i, b in objs]
    copy_rels = [(f"{s.split('.')[0]}.{100 * c + int(s.split('.')[1])}", p,
                  f"{o.split('.')[0]}.{100 * c + int(o.split('.')[1])}") for c in range(1, 5) for s, p, o in rels]
    ids = [i for i, _ in objs]
    return {
        "200 spurious objects + correct graph": write(objs + spurious, rels),
        "200 spurious objects alone": write(spurious, []),
        "each GT object 5x, same ids": write(objs * 5, rels),
        "each GT object 5x, distinct ids, same boxes": write(objs + copies, rels),
        "5x with distinct ids, relations copied": write(objs + copies, rels + copy_rels),
        "all N^2 relations x every predicate": write(objs, [(s, p, o) for s in ids for o in ids for p in PREDICATES]),
        "all N^2 relations x GT predicates": write(objs, [(s, p, o) for s in ids for o in ids
                                                          for p in sorted({r[1] for r in rels})]),
        "whole-image boxes": write([(i, [0, 0, 1, 1]) for i in ids], rels),
        "whole-image boxes + correct graph": write(objs + [(f"{i.split('.')[0]}.{900 + k}", [0, 0, 1, 1])
                                                           for k, i in enumerate(ids)], rels),
        "NaN coordinates": write(objs, rels).replace(json.dumps([round(v * 1000, 1) for v in objs[0][1]]),
                                                     "[NaN, NaN, NaN, NaN]"),
        "1e9 coordinates": write([(i, [1e6] * 4) for i in ids], rels),
        "boxes to 1e9": write([(i, [0, 0, 1e6, 1e6]) for i in ids], rels),
    }


GTS = {"VG-size (20 objects, 15 relations)": make_gt(20, 15), "small (3 objects, 2 relations)": make_gt(3, 2),
       "single relation (2 objects)": make_gt(2, 1)}


def correct(gt: dict) -> str:
    return write([(o["id"], o["bbox"]) for o in gt["objects"]],
                 [(r["subject"], r["predicate"], r["object"]) for r in gt["relationships"]])


@pytest.fixture(scope="module")
def minilm():
    return EmbeddingSimilarity()


@pytest.mark.parametrize("gt_name", list(GTS))
@pytest.mark.parametrize("preset", ["hard", "relax", "soft", "relax+minilm"])
def test_no_hack_beats_the_correct_graph(preset, gt_name, request):
    # every case in hacks() scores strictly below the correct graph, for each preset and GT size
    gt = GTS[gt_name]
    sim = request.getfixturevalue("minilm") if preset == "relax+minilm" else "exact"
    weights = R.PRESETS[preset.split("+")[0]]
    cases = hacks(gt)
    totals = R.total_reward([correct(gt), *cases.values()], [gt] * (len(cases) + 1), weights=weights, sim=sim)
    best, rest = totals[0], dict(zip(cases, totals[1:]))
    assert best == pytest.approx(sum(weights.values()) - weights["size_penalty_reward"], abs=1e-3)
    beaten = {k: v for k, v in rest.items() if not v < best}
    assert not beaten, (best, beaten)


def test_guard_is_what_stops_the_ties():
    # without the guard, padding ties the correct graph (recall never penalises extras): the guard is needed
    gt = GTS["VG-size (20 objects, 15 relations)"]
    cases = hacks(gt)
    no_guard = {k: w for k, w in R.PRESETS["hard"].items() if k != "size_penalty_reward"}
    totals = R.total_reward([correct(gt), cases["all N^2 relations x every predicate"],
                             cases["each GT object 5x, distinct ids, same boxes"]], [gt] * 3, weights=no_guard)
    assert totals[1] == totals[0] == totals[2]


def test_guard_leaves_correct_and_sensible_over_prediction_alone():
    # +10 plausible extra objects and +10 extra relations (VG annotations are sparse): no penalty
    gt = GTS["VG-size (20 objects, 15 relations)"]
    objs = [(o["id"], o["bbox"]) for o in gt["objects"]]
    extra = [(f"leaf.{k + 1}", [k * .09, .9, k * .09 + .05, .95]) for k in range(10)]
    rels = [(r["subject"], r["predicate"], r["object"]) for r in gt["relationships"]]
    more = rels + [(extra[k][0], "on", objs[k][0]) for k in range(10)]
    assert R.size_penalty_reward([correct(gt), write(objs + extra, more)], [gt, gt]) == [0.0, 0.0]


def test_spamming_predicates_loses_to_an_honest_half_right_graph():
    # a policy that knows the objects but not the predicates: guessing one predicate per GT pair (half right) beats
    # listing every predicate on every pair, which recall alone would pay 5/5
    gt = GTS["VG-size (20 objects, 15 relations)"]
    objs = [(o["id"], o["bbox"]) for o in gt["objects"]]
    ids = [i for i, _ in objs]
    half = [(r["subject"], r["predicate"] if k % 2 else "near", r["object"]) for k, r in enumerate(gt["relationships"])]
    spam = [(s, p, o) for s in ids for o in ids for p in PREDICATES]
    for preset in R.PRESETS:
        honest, spammed = R.total_reward([write(objs, half), write(objs, spam)], [gt, gt], weights=preset)
        assert spammed < honest, preset


def test_penalty_range():
    # the guard (unweighted) lies in [-1, 0] whatever the padding, and the worst padding reaches -1
    gt = GTS["small (3 objects, 2 relations)"]
    values = R.size_penalty_reward(list(hacks(gt).values()), [gt] * len(hacks(gt)))
    assert all(-1.0 <= v <= 0.0 for v in values) and min(values) == -1.0


@pytest.mark.parametrize("gt_name", list(GTS))
def test_budget_guard_never_lets_a_hack_beat_the_correct_graph(gt_name):
    # the lenient guard charges only padding beyond the budget: a hack may tie the correct graph of a small GT
    # (its extras earn nothing), never beat it; far beyond the budget it still costs the full penalty
    gt = GTS[gt_name]
    weights = R.PRESETS["hard"]
    fns = R.make_rewards(weights, guard="budget")
    cases = hacks(gt)
    texts = [correct(gt), *cases.values()]
    per_fn = [f(texts, [gt] * len(texts)) for f in fns]
    totals = [sum(w * v[i] for w, v in zip(weights.values(), per_fn)) for i in range(len(texts))]
    best, rest = totals[0], dict(zip(cases, totals[1:]))
    assert not {k: v for k, v in rest.items() if v > best + 1e-9}, best
    assert rest["200 spurious objects alone"] < best


def test_budget_guard_does_not_charge_a_slip_within_budget():
    # one self-relation added to the correct graph: the strict guard charges it 1 / #GT relations, the budget guard
    # nothing (the slip earns no recall, so it costs nothing)
    gt = GTS["VG-size (20 objects, 15 relations)"]
    objs = [(o["id"], o["bbox"]) for o in gt["objects"]]
    rels = [(r["subject"], r["predicate"], r["object"]) for r in gt["relationships"]]
    slip = write(objs, rels + [(objs[0][0], "near", objs[0][0])])
    strict, budget = (R.make_rewards(["size_penalty_reward"], guard=g)[0]([slip], [gt])[0] for g in ("strict", "budget"))
    assert strict == pytest.approx(-1 / 15) and budget == 0.0


def test_headroom_splits_the_variance_under_both_guards():
    # benchmarks/grpo_headroom.py: two samples that differ only by a self-relation differ in reward only through the
    # strict guard; the budget guard charges nothing within budget, so that group has no variance left
    from grpo_headroom import _components, _variance_split

    gt = GTS["small (3 objects, 2 relations)"]
    objs = [(o["id"], o["bbox"]) for o in gt["objects"]]
    rels = [(r["subject"], r["predicate"], r["object"]) for r in gt["relationships"]]
    slip = write(objs, rels + [(objs[0][0], "near", objs[0][0])])
    comp = _components([correct(gt), slip], [gt, gt], [(1000, 1000)] * 2)
    strict_total, strict = _variance_split(comp, 2, "strict")
    budget_total, budget = _variance_split(comp, 2, "budget")
    assert strict["size_penalty_reward"] > 0 and strict["edge_hard_reward"] == 0 == strict["format_reward"]
    assert strict_total == pytest.approx(strict["size_penalty_reward"])
    assert budget_total == 0 == budget["size_penalty_reward"]
