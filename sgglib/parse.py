"""Turn a model completion into a :class:`~sgglib.graph.SceneGraph` or a named failure — the one parser.

Every reward, metric, notebook and viewer calls :func:`parse_completion`; nothing else in sgglib reads JSON from a
completion. It never raises on a string, and it is cached, so the five rewards of a GRPO step parse each completion
once between them.

What it accepts (``docs/method.md#parsing-completions``): ``<think>…</think><answer>…</answer>``, an ``<answer>`` without think (closed or not),
a fenced ```` ```json ```` block, bare JSON; text around any of these is ignored.

How each irregularity is handled (and why):

============================  ==========================================================================
input                         result
============================  ==========================================================================
no ``{``/``[`` at all          failure ``no_answer``
JSON cut off at the end        failure ``truncated`` (an unclosed ``<answer>`` or fence whose JSON ends early)
other JSON syntax errors       failure ``invalid_json`` (also: nesting too deep, an integer literal over
                               Python's 4,300-digit limit)
JSON that is not an object     failure ``not_an_object``
no ``objects`` or              failure ``missing_keys`` (both are required, as in the reference's format
``relationships`` list         check); ``relations`` is *not* accepted as a synonym in completions
object not a dict, no id,      failure ``bad_object``
id not a string
bbox not 4 finite numbers      failure ``bad_bbox``: strings, booleans, NaN, ±Infinity, 3 or 5 numbers,
                               integers beyond float range.
                               The reference evaluator counts these images as failures.
relation not a dict of         failure ``bad_relation``
3 strings
duplicate id                   the first object with that id is kept, later ones dropped and counted in
                               ``ParseResult.duplicate_ids`` (so listing an object 5 times earns nothing)
relation to an unknown id      the relation is dropped and counted in ``ParseResult.dangling_relations``;
                               the reference's rewards zero the whole sample instead (a KeyError
                               swallowed by ``except Exception``): we keep the rest of the graph
swapped corners (x2 < x1)      kept as written; such a box has zero area and overlaps nothing
huge finite coordinates        kept as written; they match nothing
============================  ==========================================================================

Names are normalised as the reference does (lowercase, ``_``/``-`` → space, strip), without its bug of deleting every
``"json"`` substring first (which turned ``jsonl.1`` into ``l.1``).

>>> r = parse_completion('<think>x</think><answer>{"objects": [{"id": "Cat.1", "bbox": [1, 2, 3, 4]}], '
...                      '"relationships": []}</answer>')
>>> r.ok, r.strict_format, r.graph.objects[0].id
(True, True, 'cat.1')
>>> parse_completion('<answer>{"objects": [').failure
<Failure.TRUNCATED: 'truncated'>
"""

from __future__ import annotations

import enum
import json
import math
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .graph import Relation, SceneGraph, SGObject, normalize_name


class Failure(str, enum.Enum):
    """Why a completion gave no graph. ``str`` values are what run directories and logs store."""

    NO_ANSWER = "no_answer"
    TRUNCATED = "truncated"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_KEYS = "missing_keys"
    BAD_OBJECT = "bad_object"
    BAD_BBOX = "bad_bbox"
    BAD_RELATION = "bad_relation"


@dataclass(frozen=True, slots=True)
class ParseResult:
    """The outcome of parsing one completion.

    ``graph`` is set iff ``failure`` is None. ``strict_format`` says the whole completion is exactly
    ``<think>…</think> <answer>…</answer>`` (surrounding white space allowed), the RL system prompt's format.
    """

    graph: SceneGraph | None
    failure: Failure | None
    strict_format: bool = False
    duplicate_ids: int = 0
    dangling_relations: int = 0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None


_STRICT = re.compile(r"\s*<think>.*?</think>\s*<answer>(.*?)</answer>\s*", re.DOTALL)
_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.DOTALL)
_DECODER = json.JSONDecoder()
_FLOAT_MAX = sys.float_info.max


# The three regexes above state the rules; the functions below implement them with str.find, ~10× faster on a
# 2 kB completion (this runs once per completion of every GRPO step). tests/test_parse.py checks they agree.
def _is_strict(text: str) -> bool:
    """``_STRICT.fullmatch(text) is not None`` (str.strip removes exactly what ``\\s`` matches: str.isspace)."""
    s = text.strip()
    if not (s.startswith("<think>") and s.endswith("</answer>")):
        return False
    last = len(s) - len("</answer>")
    p = s.find("</think>", len("<think>"))
    while p != -1:
        q = p + len("</think>")
        while q < last and s[q].isspace():
            q += 1
        if s.startswith("<answer>", q) and q + len("<answer>") <= last:
            return True
        p = s.find("</think>", p + 1)
    return False


def answer_region(text: str) -> str:
    """The part of the completion that should hold the JSON: inside <answer>, then inside a fence, if present.
    Public for answers that are JSON but no scene graph (the base model's part tasks: ``benchmarks/base_tasks.py``)."""
    i = text.find("<answer>")
    if i >= 0:  # _ANSWER: up to the first </answer>, or to the end if it is never closed
        j = text.find("</answer>", i + len("<answer>"))
        text = text[i + len("<answer>"): j if j >= 0 else len(text)]
    i = text.find("```")
    if i >= 0:  # _FENCE: an optional json/JSON tag, up to the closing fence or the end
        k = i + 3 + (4 if text.startswith(("json", "JSON"), i + 3) else 0)
        j = text.find("```", k)
        text = text[k: j if j >= 0 else len(text)]
    return text


def _is_number(v: Any) -> bool:
    # type(), not isinstance: JSON gives exactly int, float or bool, and a bool is not a coordinate
    if type(v) is float:
        return math.isfinite(v)
    # an int beyond float range would make math.isfinite / float() raise OverflowError
    return type(v) is int and -_FLOAT_MAX <= v <= _FLOAT_MAX


def _build_graph(data: dict) -> ParseResult:
    objs, rels = data.get("objects"), data.get("relationships")
    if not isinstance(objs, list) or not isinstance(rels, list):
        return ParseResult(None, Failure.MISSING_KEYS, detail="need lists 'objects' and 'relationships'")
    objects: list[SGObject] = []
    seen: set[str] = set()
    duplicates = 0
    for i, obj in enumerate(objs):
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            return ParseResult(None, Failure.BAD_OBJECT, detail=f"objects[{i}] has no string id")
        box = obj.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and _is_number(box[0]) and _is_number(box[1])
                and _is_number(box[2]) and _is_number(box[3])):
            return ParseResult(None, Failure.BAD_BBOX, detail=f"objects[{i}] bbox is not 4 finite numbers")
        oid = normalize_name(obj["id"])
        if oid in seen:
            duplicates += 1
            continue
        seen.add(oid)
        objects.append(SGObject(oid, (float(box[0]), float(box[1]), float(box[2]), float(box[3]))))
    relations: list[Relation] = []
    dangling = 0
    for i, rel in enumerate(rels):
        if not isinstance(rel, dict):
            return ParseResult(None, Failure.BAD_RELATION, detail=f"relationships[{i}] needs 3 strings")
        sub, pred, obj = rel.get("subject"), rel.get("predicate"), rel.get("object")
        if not (isinstance(sub, str) and isinstance(pred, str) and isinstance(obj, str)):
            return ParseResult(None, Failure.BAD_RELATION, detail=f"relationships[{i}] needs 3 strings")
        sub, obj = normalize_name(sub), normalize_name(obj)
        if sub not in seen or obj not in seen:
            dangling += 1
            continue
        relations.append(Relation(sub, normalize_name(pred), obj))
    return ParseResult(
        SceneGraph(tuple(objects), tuple(relations)), None, duplicate_ids=duplicates, dangling_relations=dangling
    )


@lru_cache(maxsize=8192)
def _parse(text: str) -> ParseResult:
    strict = _is_strict(text)
    region = answer_region(text)
    starts = [i for i in (region.find("{"), region.find("[")) if i >= 0]
    if not starts:
        return ParseResult(None, Failure.NO_ANSWER, strict, detail="no JSON object in the completion")
    try:
        data, _ = _DECODER.raw_decode(region, min(starts))
    except json.JSONDecodeError as err:
        # An error at the very end of the text means the model stopped mid-JSON (length limit, EOS too early);
        # so does a string still open at the end (the decoder reports where that string started).
        cut = not region[err.pos:].strip() or err.msg.startswith("Unterminated string")
        failure = Failure.TRUNCATED if cut else Failure.INVALID_JSON
        return ParseResult(None, failure, strict, detail=err.msg)
    except RecursionError:
        return ParseResult(None, Failure.INVALID_JSON, strict, detail="JSON nested too deeply")
    except ValueError as err:  # an integer literal over Python's 4,300-digit conversion limit
        return ParseResult(None, Failure.INVALID_JSON, strict, detail=str(err)[:80])
    if not isinstance(data, dict):
        return ParseResult(None, Failure.NOT_AN_OBJECT, strict, detail=f"answer is a JSON {type(data).__name__}")
    result = _build_graph(data)
    return ParseResult(result.graph, result.failure, strict, result.duplicate_ids, result.dangling_relations,
                       result.detail)


def clear_cache() -> None:
    """Forget every cached parse (benchmarks time the parser from cold)."""
    _parse.cache_clear()


def parse_completion(completion: Any) -> ParseResult:
    """Parse one completion (a string, or TRL's chat form ``[{"role": "assistant", "content": ...}]``).

    Never raises; anything that is not text is a ``no_answer`` failure. Results are cached by text.
    """
    return _parse(completion_text(completion))


def completion_text(completion: Any) -> str:
    """The text of a completion in any of the forms TRL passes: ``str``, ``[{"content": str}]``, ``{"content": str}``.

    Content given as a list of parts (``[{"type": "text", "text": ...}]``) is joined. Anything else gives ``""``.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return completion_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        parts = []
        for item in completion:
            if isinstance(item, dict):
                parts.append(completion_text(item.get("content", item.get("text"))))
            elif isinstance(item, str):
                parts.append(item)
        return "".join(parts)
    return ""
