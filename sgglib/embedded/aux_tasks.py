"""Auxiliary tasks of the synthetic world that pre-train the embedded base model (the stand-in for an Instruct
model): each a part of the scene-graph task, never the whole (``docs/method.md#the-embedded-default``)."""

from __future__ import annotations

import json
import random

from PIL import Image

from .. import prompts

DETECT_PROMPT = ("Detect every object. Answer in JSON: an id (category.number) and a box {box_words} on a 0-1000 grid "
                 "for each.")
"""the short ``detect`` prompt; ``box_words`` is ``[x1, y1, x2, y2]`` or ``[x, y, width, height]``"""
RELATE_PROMPT = ('List the relations between the objects in JSON: {"relationships": [...]}, each with a subject, a '
                 "predicate and an object id (category.number).")
"""the short ``relate`` prompt"""


def aux_examples(row: dict, rng: random.Random | None = None, system: str | None = prompts.SFT_SYSTEM_PROMPT,
                 xywh_prob: float = 0.5, vocabulary=None, transcribe=None,
                 unstated_relations: float = 0.0) -> list[dict]:
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

    With ``transcribe`` (a vocabulary), a sixth task: :func:`transcribe_example`, a random scene described in words
    to be written as a whole scene graph, on a blank image (``unstated_relations``: see there). Without it the five
    tasks and their random draws are exactly as before, which the committed base and tokenizer depend on.
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
    detect_prompt = DETECT_PROMPT.format(box_words=box_words)
    describe_prompt = "Describe how the objects relate to each other, one sentence per object."
    relate_prompt = RELATE_PROMPT
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
    examples = [{"images": [image], "prompt": prompts.prompt_messages(p, system),
                 "completion": prompts.assistant_message(t)} for p, t in tasks]
    if transcribe is not None:
        examples.append(transcribe_example(transcribe, rng, (row["width"], row["height"]), system,
                                           unstated_relations))
    return examples


def random_graph(vocabulary, rng: random.Random, max_objects: int = 7) -> dict:
    """A scene graph drawn at random from ``vocabulary``: 1..``max_objects`` objects with random names and boxes on
    the 0–1000 grid, numbered per name in order, and random relations between distinct ones. Its relations follow
    no rule of the synthetic world, and no image shows it."""
    n = rng.randint(1, max_objects)
    counts: dict[str, int] = {}
    objects = []
    for _ in range(n):
        name = rng.choice(vocabulary.categories)
        counts[name] = counts.get(name, 0) + 1
        x1, y1 = rng.randrange(0, 900), rng.randrange(0, 900)
        box = [x1, y1, rng.randrange(x1 + 20, 1001), rng.randrange(y1 + 20, 1001)]
        objects.append({"id": f"{name}.{counts[name]}", "bbox": box})
    pairs = [(a["id"], b["id"]) for a in objects for b in objects if a is not b]
    chosen = rng.sample(pairs, rng.randint(0, min(len(pairs), n + 1)))
    return {"objects": objects,
            "relationships": [{"subject": s, "predicate": rng.choice(vocabulary.predicates), "object": o}
                              for s, o in chosen]}


def transcribe_example(vocabulary, rng: random.Random, size: tuple[int, int],
                       system: str | None = prompts.SFT_SYSTEM_PROMPT, unstated_relations: float = 0.0) -> dict:
    """The ``transcribe`` task: a scene described in words (each object's box, each relation as a sentence) to be
    written as a scene graph, worded like the closed scene-graph prompt with "for this description" in place of
    "for this image" and the description after that first line. The scene is :func:`random_graph` and the image a
    blank canvas, so the task teaches the schema (objects with boxes, then relations between their ids) and nothing
    about what an image shows: the text-to-JSON instruction data an Instruct model has read, not the scene-graph
    task (``docs/findings.md#r1-sgg-zero``).

    With probability ``unstated_relations`` the description names the objects only, and the answer still lists the
    scene's relations: guesses, since nothing in the input shows them. A base trained so writes relations between
    the objects it lists where its input gives none, as a language model writes the relations a scene usually has."""
    graph = random_graph(vocabulary, rng)
    first, rest = prompts.closed_prompt(vocabulary.categories, vocabulary.predicates).split("\n", 1)
    objects = " ".join(f"{o['id']} is at {json.dumps(o['bbox'])}." for o in graph["objects"])
    stated = rng.random() >= unstated_relations if unstated_relations else True
    relations = " ".join(f"{r['subject']} is {r['predicate']} {r['object']}." for r in graph["relationships"]
                         if stated)
    # the description comes first, so the prompt ends as the scene-graph prompt does (its worked example): a base
    # that always read a description after the example answered the scene-graph prompt mid-structure
    text = (first.replace("for this image", "for this description") + "\nDescription: " + objects
            + (" " + relations if relations else "") + "\n" + rest)
    blank = Image.new("RGB", size, (255, 255, 255))
    return {"images": [blank], "prompt": prompts.prompt_messages(text, system),
            "completion": prompts.assistant_message(prompts.format_answer(graph))}


class AuxExamples:
    """A ``datasets`` transform for :func:`sgglib.train.sft.train_sft`: each stored row becomes one auxiliary task
    drawn at random (seeded) from :func:`aux_examples`."""

    def __init__(self, system: str | None = prompts.SFT_SYSTEM_PROMPT, vocabulary=None, seed: int = 0,
                 transcribe=None, unstated_relations: float = 0.0):
        self.system, self.vocabulary, self.rng = system, vocabulary, random.Random(seed)
        self.transcribe, self.unstated_relations = transcribe, unstated_relations

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        examples = [self.rng.choice(aux_examples(r, self.rng, self.system, vocabulary=self.vocabulary,
                                                 transcribe=self.transcribe,
                                                 unstated_relations=self.unstated_relations)) for r in rows]
        return {k: [e[k] for e in examples] for k in ("images", "prompt", "completion")}


