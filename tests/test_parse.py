"""sgglib.parse: one test per row of the table in the module docstring, the accepted forms, and hypothesis properties
(random and mutated completions never raise; every reward stays finite and in its documented range)."""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sgglib.rewards as R
from sgglib.parse import _ANSWER, _FENCE, _STRICT, Failure, answer_region, _is_strict, completion_text, \
    parse_completion

OBJ = '{"id": "cat.1", "bbox": [1, 2, 30, 40]}'


def graph_json(objects=OBJ, relations="") -> str:
    return f'{{"objects": [{objects}], "relationships": [{relations}]}}'


def failure(text):
    return parse_completion(text).failure


# -- the table, row by row ----------------------------------------------------------------------------------------------
def test_no_json_is_no_answer():
    # row "no { / [ at all": prose, an empty answer, and non-text input
    assert failure("I see a cat.") is Failure.NO_ANSWER
    assert failure("<think>hmm</think><answer>none</answer>") is Failure.NO_ANSWER
    assert failure(None) is Failure.NO_ANSWER and failure(42) is Failure.NO_ANSWER


def test_cut_off_json_is_truncated():
    # row "JSON cut off at the end": unclosed <answer>, unclosed fence, bare JSON ending mid-list
    assert failure('<think>x</think><answer>{"objects": [') is Failure.TRUNCATED
    assert failure('```json\n{"objects": [{"id": "cat.1", "bbox": [1, 2,') is Failure.TRUNCATED
    assert failure('{"objects": [' + OBJ + ', ') is Failure.TRUNCATED


def test_other_syntax_errors_are_invalid_json():
    # row "other JSON syntax errors": a stray brace mid-text, nesting deeper than the decoder's recursion limit,
    # and an integer literal over Python's 4,300-digit limit (these two raised before)
    assert failure('<answer>{"objects": [}, "relationships": []}</answer>') is Failure.INVALID_JSON
    assert failure("[" * 100_000) is Failure.INVALID_JSON
    assert failure('{"objects": [{"id": "a.1", "bbox": [1, 2, 3, ' + "9" * 5000 + ']}]}') is Failure.INVALID_JSON


def test_json_not_an_object():
    # row "JSON that is not an object": a list of numbers, a graph wrapped in a list
    assert failure("<answer>[1, 2]</answer>") is Failure.NOT_AN_OBJECT
    assert failure(f"<answer>[{graph_json()}]</answer>") is Failure.NOT_AN_OBJECT


def test_missing_keys():
    # row "no objects or relationships list": one key missing, "relations" as a synonym, a non-list value
    assert failure('{"objects": []}') is Failure.MISSING_KEYS
    assert failure('{"objects": [], "relations": []}') is Failure.MISSING_KEYS
    assert failure('{"objects": {}, "relationships": []}') is Failure.MISSING_KEYS


def test_bad_object():
    # row "object not a dict, no id, id not a string"
    for obj in ("1", '{"bbox": [1, 2, 3, 4]}', '{"id": 5, "bbox": [1, 2, 3, 4]}'):
        assert failure(graph_json(obj)) is Failure.BAD_OBJECT, obj


@pytest.mark.parametrize("box", ['["1", 2, 3, 4]', "[true, 2, 3, 4]", "[NaN, 2, 3, 4]", "[Infinity, 2, 3, 4]",
                                 "[-Infinity, 2, 3, 4]", "[1, 2, 3]", "[1, 2, 3, 4, 5]", "[1e400, 2, 3, 4]",
                                 "[1, 2, 3, " + "9" * 400 + "]", '"1, 2, 3, 4"', "null"])
def test_bad_bbox(box):
    # row "bbox not 4 finite numbers": strings, booleans, NaN, ±Infinity, 3 or 5 numbers, overflow to inf, an
    # integer beyond float range (raised OverflowError before), a string box, a missing box
    assert failure(graph_json(f'{{"id": "cat.1", "bbox": {box}}}')) is Failure.BAD_BBOX


def test_bad_relation():
    # row "relation not a dict of 3 strings": a string, a missing predicate, a numeric predicate
    for rel in ('"cat.1 on mat.1"', '{"subject": "cat.1", "object": "cat.1"}',
                '{"subject": "cat.1", "predicate": 3, "object": "cat.1"}'):
        assert failure(graph_json(relations=rel)) is Failure.BAD_RELATION, rel


def test_duplicate_id_keeps_first_and_counts():
    # row "duplicate id": the first cat.1 is kept, the two later ones dropped and counted
    text = graph_json(f'{OBJ}, {{"id": "cat.1", "bbox": [5, 5, 9, 9]}}, {{"id": "Cat.1", "bbox": [0, 0, 1, 1]}}')
    r = parse_completion(text)
    assert r.ok and r.duplicate_ids == 2 and [o.bbox for o in r.graph.objects] == [(1.0, 2.0, 30.0, 40.0)]


def test_relation_to_unknown_id_is_dropped_and_counted():
    # row "relation to an unknown id": dog.7 is never listed; the valid relation stays
    rels = ('{"subject": "cat.1", "predicate": "near", "object": "dog.7"}, '
            '{"subject": "cat.1", "predicate": "on", "object": "cat.1"}')
    r = parse_completion(graph_json(relations=rels))
    assert r.ok and r.dangling_relations == 1 and [x.predicate for x in r.graph.relations] == ["on"]


def test_swapped_corners_kept_as_written():
    # row "swapped corners (x2 < x1)": the box is not reordered
    r = parse_completion(graph_json('{"id": "cat.1", "bbox": [30, 40, 1, 2]}'))
    assert r.graph.objects[0].bbox == (30.0, 40.0, 1.0, 2.0)


def test_huge_finite_coordinates_kept_as_written():
    # row "huge finite coordinates": 1e300 is a finite float and stays
    r = parse_completion(graph_json('{"id": "cat.1", "bbox": [0, 0, 1e300, 1e300]}'))
    assert r.ok and r.graph.objects[0].bbox[2] == 1e300


# -- accepted forms -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,strict", [
    (f"<think>a cat</think><answer>{graph_json()}</answer>", True),  # the RL format
    (f"  <think>a\ncat</think>\n<answer>\n{graph_json()}\n</answer>\n", True),  # white space around it
    (f"<answer>{graph_json()}</answer>", False),  # answer without think
    (f"<answer>{graph_json()}", False),  # answer never closed
    (f"Sure.\n```json\n{graph_json()}\n```\nDone.", False),  # fenced block with prose around (the SFT target)
    (graph_json(), False),  # bare JSON
    (f"The graph is {graph_json()} as requested.", False),  # bare JSON inside prose
])
def test_accepted_forms(text, strict):
    r = parse_completion(text)
    assert r.ok and r.strict_format is strict and r.graph.objects[0].id == "cat.1"


def test_names_normalised_without_deleting_json():
    # lowercase, _ and - to spaces, stripped; the reference's "json" deletion bug is not repeated
    objs = '{"id": " Traffic_Light-1.2 ", "bbox": [1, 2, 3, 4]}, {"id": "jsonl.1", "bbox": [1, 2, 3, 4]}'
    rel = '{"subject": "TRAFFIC light 1.2", "predicate": "Next_To", "object": "jsonl.1"}'
    r = parse_completion(f"<answer>```json\n{graph_json(objs, rel)}\n```</answer>")
    assert [o.id for o in r.graph.objects] == ["traffic light 1.2", "jsonl.1"]
    assert r.graph.relations[0].predicate == "next to" and r.dangling_relations == 0


def test_chat_forms_and_cache():
    # TRL's chat form, a bare message dict, content given as parts; the same text returns the cached result
    text = graph_json()
    forms = [[{"role": "assistant", "content": text}], {"content": text},
             [{"role": "assistant", "content": [{"type": "text", "text": text}]}]]
    assert all(completion_text(f) == text for f in forms)
    assert all(parse_completion(f) is parse_completion(text) for f in forms)


# -- properties ------------------------------------------------------------------------------------------------------------
GTS = [
    {"objects": [{"id": "cat.1", "bbox": [0.0, 0.0, 0.5, 0.5]}, {"id": "mat.1", "bbox": [0.0, 0.5, 1.0, 1.0]}],
     "relationships": [{"subject": "cat.1", "predicate": "on", "object": "mat.1"}]},
    {"objects": [], "relationships": []},
]
RANGES = {"format_reward": (0.0, 1.0), "node_acc_reward": (0.0, 2.0), "node_box_reward": (0.0, 2.0),
          "edge_soft_reward": (0.0, 5.0), "edge_hard_reward": (0.0, 5.0), "edge_relax_reward": (0.0, 5.0),
          "size_penalty_reward": (-5.0, 0.0)}
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_rewards(texts):
    for gt in GTS:
        for name, fn in R.REWARD_FUNCS.items():
            lo, hi = RANGES[name]
            for v in fn(texts, [gt] * len(texts)):
                assert math.isfinite(v) and lo <= v <= hi, (name, v)
        assert set(R.format_reward(texts)) <= {0.0, 1.0}


ids = st.sampled_from(["cat.1", "mat.1", "Cat.1", "dog.2", "a", "", "jsonl.1", "cat. 1"])
number = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                   st.sampled_from([0, 1000, 1e300, -1e300, 500.5]))
obj = st.fixed_dictionaries({"id": ids, "bbox": st.lists(number, min_size=4, max_size=4)})
rel = st.fixed_dictionaries({"subject": ids, "predicate": st.sampled_from(["on", "near", "On", ""]),
                             "object": ids})
graph = st.fixed_dictionaries({"objects": st.lists(obj, max_size=12), "relationships": st.lists(rel, max_size=12)})


@PROPS
@given(st.text(max_size=400))
def test_random_text_never_raises(text):
    r = parse_completion(text)
    assert (r.graph is None) == (r.failure is not None)
    check_rewards([text])


@PROPS
@given(graph, st.sampled_from(["<think>t</think><answer>{}</answer>", "```json\n{}\n```", "{}", "<answer>{}"]))
def test_random_graphs_give_rewards_in_range(g, wrapper):
    text = wrapper.replace("{}", json.dumps(g), 1)
    r = parse_completion(text)
    assert r.ok or r.failure in (Failure.BAD_OBJECT, Failure.BAD_BBOX)
    check_rewards([text])


JSONISH = st.text(alphabet='{}[]",:.0123456789-eENaInfity <>/answerthk\n\\', max_size=12)


@PROPS
@given(graph, st.lists(st.tuples(st.sampled_from(["cut", "insert", "delete", "repeat"]), st.floats(0, 1),
                                 st.floats(0, 1), JSONISH), min_size=1, max_size=4))
def test_mutated_completions_never_raise(g, mutations):
    text = f"<think>t</think><answer>{json.dumps(g)}</answer>"
    for op, a, b, s in mutations:
        i, j = sorted((int(a * len(text)), int(b * len(text))))
        text = {"cut": text[:j], "insert": text[:i] + s + text[i:], "delete": text[:i] + text[j:],
                "repeat": text[:j] + text[i:j] + text[j:]}[op]
    r = parse_completion(text)
    assert (r.graph is None) == (r.failure is not None)
    check_rewards([text])
    assert set(R.FormatReward(strict=False)([text])) <= {0.0, 0.5, 1.0}


TAGGY = st.lists(st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "```", "json", "JSON", " ", "\n",
                                  "\t", "\u00a0", "\x1c", "x", "{", "}", "<", "/"]), max_size=14).map("".join)


@settings(max_examples=300, deadline=None)
@given(TAGGY)
def test_fast_tag_scanning_agrees_with_the_regexes(text):
    # the parser finds tags with str.find for speed; the regexes in sgglib.parse state the rules. Regions may differ
    # only in surrounding white space (the regexes' `\s*` and `$`), which the JSON search ignores.
    assert _is_strict(text) == (_STRICT.fullmatch(text) is not None)
    region = text
    for pattern in (_ANSWER, _FENCE):
        m = pattern.search(region)
        region = m.group(1) if m else region
    assert answer_region(text).strip() == region.strip()
