"""Auxiliary tasks of the synthetic world that pre-train the embedded base model (the stand-in for an Instruct
model): each a part of the scene-graph task, never the whole (``docs/method.md#the-embedded-default``)."""

from __future__ import annotations

import json
import random

from .. import prompts


def aux_examples(row: dict, rng: random.Random | None = None, system: str | None = prompts.SFT_SYSTEM_PROMPT,
                 xywh_prob: float = 0.5, vocabulary=None) -> list[dict]:
    """Auxiliary tasks on one image, for the base model (each a part of the scene-graph task, never the whole):

    * ``list``: name the objects, comma-separated, no boxes;
    * ``ground``: the box of one named object as ``[x1, y1, x2, y2]`` on the 0–1000 grid;
    * ``detect``: every object as JSON with an empty relation list, boxes on the 0–1000 grid either as
      ``[x, y, width, height]`` (another convention; chosen with probability ``xywh_prob``) or as
      ``[x1, y1, x2, y2]``, the prompt saying which;
    * ``describe``: the relations as plain sentences (``"red circle.1 is next to blue square.1."``);
    * ``relate``: the relations as JSON ``{"relationships": [...]}`` with no object list and no boxes — not a
      scene graph (the parser's ``missing_keys``).

    With a ``vocabulary``, half of the detect, describe and relate prompts are long forms written like the
    scene-graph prompt: its object clause, name lists and worked example, each cut down to the part the task asks
    for. A base that has read these answers the scene-graph prompt with one of the parts it knows — a detect-style
    graph without relations or relations without objects — as an Instruct model answers a new schema with the
    formats it has seen.
    """
    rng = rng or random.Random(0)
    grid = [(o["id"], prompts.to_model_box(o["bbox"], row["width"], row["height"])) for o in row["objects"]]
    names = [oid.rsplit(".", 1)[0] for oid, _ in grid]
    oid, box = grid[rng.randrange(len(grid))] if grid else ("nothing.1", [0, 0, 0, 0])
    # "relationships": [] makes a detect-style answer a *valid* (if poor) scene graph, and xywh boxes read as
    # xyxy are mostly wrong: what a zero-shot base would write if it answered the scene-graph prompt like a detector
    xywh = rng.random() < xywh_prob

    def convention(b):
        return [b[0], b[1], b[2] - b[0], b[3] - b[1]] if xywh else list(b)

    detect = {"objects": [{"id": i, "bbox": convention(b)} for i, b in grid], "relationships": []}
    relations = [{k: r[k] for k in ("subject", "predicate", "object")} for r in row["relationships"]]
    box_words = "[x, y, width, height]" if xywh else "[x1, y1, x2, y2]"
    sentences = " ".join(f"{r['subject']} is {r['predicate']} {r['object']}." for r in row["relationships"])
    image = row["image"].convert("RGB")
    detect_prompt = (f"Detect every object. Answer in JSON: an id (category.number) and a box {box_words} on a "
                     "0-1000 grid for each.")
    describe_prompt = "Describe how the objects relate to each other, one sentence per object."
    relate_prompt = ('List the relations between the objects in JSON: {"relationships": [...]}, each with a '
                     "subject, a predicate and an object id (category.number).")
    # Long forms share the scene-graph prompt's wording: with BPE merging across words, words the base never reads
    # are tokens it never trained, and its zero-shot output degenerates on them (docs/findings.md#the-embedded-tokenizer)
    if vocabulary is not None and rng.random() < 0.5:
        names_line = "Object names must come from this list: [" + ", ".join(vocabulary.categories) + "].\n"
        predicates_line = "Predicates must come from this list: [" + ", ".join(vocabulary.predicates) + "].\n"
        example_objects = [{"id": o["id"], "bbox": convention(o["bbox"])} for o in prompts.EXAMPLE_GRAPH["objects"]]
        detect_prompt = ("Generate a list of the objects in this image as JSON.\n"
                         + prompts.OBJECTS_CLAUSE.replace("[x1, y1, x2, y2]", box_words) + names_line
                         + '"relationships": an empty list.\nExample:\n'
                         + prompts.example_block({"objects": example_objects, "relationships": []}))
        describe_prompt = ("Describe how the objects relate to each other, one sentence per relation.\n"
                           + predicates_line.rstrip("\n"))
        relate_prompt = ("List the relations in this image as JSON.\n"
                         '"relationships": each {"subject": id, "predicate": relation, "object": id}, ids written '
                         'as "name.number" ("person.1").\n' + predicates_line + "Example:\n"
                         + prompts.example_block({"relationships": prompts.EXAMPLE_GRAPH["relationships"]}))
    tasks = [
        ("What objects are in the image? Name them, separated by commas.", ", ".join(names) or "nothing"),
        (f"Where is {oid}? Give its box as [x1, y1, x2, y2] on a 0-1000 grid.", json.dumps(box)),
        (detect_prompt, prompts.example_block(detect)),
        (describe_prompt, sentences or "Nothing."),
        (relate_prompt, prompts.example_block({"relationships": relations})),
    ]
    return [{"images": [image], "prompt": prompts.prompt_messages(p, system), "completion": prompts.assistant_message(t)}
            for p, t in tasks]


class AuxExamples:
    """A ``datasets`` transform for :func:`sgglib.train.sft.train_sft`: each stored row becomes one auxiliary task
    drawn at random (seeded) from :func:`aux_examples`."""

    def __init__(self, system: str | None = prompts.SFT_SYSTEM_PROMPT, vocabulary=None, seed: int = 0):
        self.system, self.vocabulary, self.rng = system, vocabulary, random.Random(seed)

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        examples = [self.rng.choice(aux_examples(r, self.rng, self.system, vocabulary=self.vocabulary)) for r in rows]
        return {k: [e[k] for e in examples] for k in ("images", "prompt", "completion")}


