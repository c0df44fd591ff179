"""The scene-graph type every part of sgglib shares: parser, rewards, metrics, data loaders, viewer.

A scene graph is a list of objects (an id ``"category.N"`` and an ``[x1, y1, x2, y2]`` box) and a list of
directed relations ``subject --predicate--> object`` between object ids (``docs/method.md#task-and-output``).

Boxes carry no unit of their own: a graph read from a Qwen2-VL completion is on the 0-1000 grid, a ground-truth
graph from a loader is in original-image pixels, a reward's solution is in [0, 1]. ``SceneGraph.scaled`` moves a
graph between frames; the code that compares two graphs puts both in one frame first.

>>> g = SceneGraph.from_dict({"objects": [{"id": "Person.1", "bbox": [0, 0, 10, 20]}],
...                           "relationships": []})
>>> g.objects[0].category, g.objects[0].bbox
('person', (0.0, 0.0, 10.0, 20.0))
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

Box = tuple[float, float, float, float]

_NUMBER_SUFFIX = re.compile(r"\.\d+$")


@lru_cache(maxsize=1 << 16)  # names repeat across objects, relations and samples; a cache hit is ~5× cheaper
def normalize_name(name: str) -> str:
    """Lowercase, ``_`` and ``-`` to spaces, strip: the reference's ``refine_node_edge``.

    Unlike the reference's answer extraction we never delete substrings: ``"jsonl.1"`` stays ``"jsonl.1"``.

    >>> normalize_name("Traffic_Light-1")
    'traffic light 1'
    """
    return name.replace("_", " ").replace("-", " ").lower().strip()


@lru_cache(maxsize=1 << 16)  # SGObject.category calls this on every access
def category_of(object_id: str) -> str:
    """The category of an id: the id without its trailing ``.N`` number.

    The reference takes ``id.split('.')[0]``; the two agree on every id of the form ``name.N`` and on ids with no
    dot. We differ only on names that contain a dot themselves (``"st. bernard.2"`` → ``"st. bernard"``, where the
    reference would say ``"st"``).

    >>> category_of("traffic light.3"), category_of("person")
    ('traffic light', 'person')
    """
    return _NUMBER_SUFFIX.sub("", object_id)


@dataclass(frozen=True, slots=True)
class SGObject:
    """One node: a normalised id (``"person.1"``) and an ``(x1, y1, x2, y2)`` box of finite floats."""

    id: str
    bbox: Box

    @property
    def category(self) -> str:
        return category_of(self.id)


@dataclass(frozen=True, slots=True)
class Relation:
    """One directed edge between two object ids, with a normalised predicate."""

    subject: str
    predicate: str
    object: str


@dataclass(frozen=True, slots=True)
class SceneGraph:
    """Objects and relations; immutable, hashable, so parse results can be cached and shared safely."""

    objects: tuple[SGObject, ...] = ()
    relations: tuple[Relation, ...] = ()

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, normalize: bool = True) -> "SceneGraph":
        """Build a graph from trusted data (a ground-truth row, a ``solution`` column, a saved prediction).

        Accepts ``relationships`` (the reference's key) or ``relations``. Raises ``ValueError`` naming the bad entry:
        ground truth that does not fit the schema is a bug in the data, not something to score as zero. Completions
        from a model go through :func:`sgglib.parse.parse_completion` instead, which never raises.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"scene graph must be a mapping, got {type(data).__name__}")
        objects = []
        for i, obj in enumerate(data.get("objects") or ()):
            # unrolled (no generators): rewards convert one solution dict per completion of every GRPO step
            try:
                x1, y1, x2, y2 = obj["bbox"]  # ValueError unless exactly 4
                box = (float(x1), float(y1), float(x2), float(y2))
                oid = str(obj["id"])
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"objects[{i}] is not {{'id': str, 'bbox': [4 numbers]}}: {obj!r}") from err
            if not (math.isfinite(box[0]) and math.isfinite(box[1]) and math.isfinite(box[2])
                    and math.isfinite(box[3])):
                raise ValueError(f"objects[{i}] bbox must be 4 finite numbers: {obj!r}")
            objects.append(SGObject(normalize_name(oid) if normalize else oid, box))
        rels = data.get("relationships", data.get("relations")) or ()
        relations = []
        for i, rel in enumerate(rels):
            try:
                sub, pred, obj = str(rel["subject"]), str(rel["predicate"]), str(rel["object"])
            except (KeyError, TypeError) as err:
                raise ValueError(f"relationships[{i}] needs subject/predicate/object: {rel!r}") from err
            if normalize:
                sub, pred, obj = normalize_name(sub), normalize_name(pred), normalize_name(obj)
            relations.append(Relation(sub, pred, obj))
        return cls(tuple(objects), tuple(relations))

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """The JSON schema of the task (``relationships`` key, boxes as lists)."""
        return {
            "objects": [{"id": o.id, "bbox": list(o.bbox)} for o in self.objects],
            "relationships": [
                {"subject": r.subject, "predicate": r.predicate, "object": r.object} for r in self.relations
            ],
        }

    # -- views --------------------------------------------------------------------------------------------------
    def object_map(self) -> dict[str, SGObject]:
        """id → object (the first one, should ids repeat)."""
        out: dict[str, SGObject] = {}
        for o in self.objects:
            out.setdefault(o.id, o)
        return out

    def triplets(self) -> list[tuple[SGObject, str, SGObject]]:
        """``(subject object, predicate, object object)`` for every relation whose two ends are listed."""
        objs = self.object_map()
        return [
            (objs[r.subject], r.predicate, objs[r.object])
            for r in self.relations
            if r.subject in objs and r.object in objs
        ]

    def scaled(self, sx: float, sy: float) -> "SceneGraph":
        """Divide x coordinates by ``sx`` and y by ``sy`` (e.g. ``(1000, 1000)`` maps the Qwen2-VL grid to [0,1])."""
        return SceneGraph(
            tuple(
                SGObject(o.id, (o.bbox[0] / sx, o.bbox[1] / sy, o.bbox[2] / sx, o.bbox[3] / sy))
                for o in self.objects
            ),
            self.relations,
        )

    @property
    def categories(self) -> list[str]:
        return [o.category for o in self.objects]

    def __len__(self) -> int:  # number of objects; handy in stats
        return len(self.objects)


def as_graph(value: "SceneGraph | Mapping[str, Any]") -> SceneGraph:
    """Accept a :class:`SceneGraph` or a dict in the JSON schema."""
    return value if isinstance(value, SceneGraph) else SceneGraph.from_dict(value)

