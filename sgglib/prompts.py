"""Prompts, SFT targets, GRPO solutions and the two box conventions (``docs/method.md#prompts``).

Rows come from :func:`sgglib.data.load_sgg` with boxes in original-image pixels. What the model reads and writes:

* **Prompts.** :func:`open_prompt` (format, id convention, integer boxes, list every object, a small example with an
  orphan object) and :func:`closed_prompt` (the same plus the dataset's category and predicate lists). The image
  size is never told (the reference strips it from its hub prompts before training).
* **System prompts.** :data:`SFT_SYSTEM_PROMPT` (plain) and :data:`RL_SYSTEM_PROMPT`, which asks for
  ``<think>…</think><answer>…</answer>`` (DeepSeek-R1 style, as in the paper's GRPO).
* **SFT target.** :func:`sft_target`: the JSON in a ```` ```json ```` fence, no think tags.
* **Box conventions.** ``"qwen2vl"``: integers on a 0–1000 grid, ``int(x / W * 1000)``. ``"qwen2.5vl"``: integer
  pixels of the *resized* model input, ``W' = grid_w · 14`` from the processor's ``image_grid_thw``
  (:func:`resized_from_grid`) or, equivalently, Qwen's ``smart_resize`` (:func:`resized_size`). The reference's SFT
  script always wrote 0–1000 targets, also for Qwen2.5-VL; :func:`sft_target` writes each model's own frame.
* **Rewards.** :func:`solution` is the ground truth normalised to [0, 1] by the original W, H; :func:`box_scale`
  is what divides a completion's coordinates into [0, 1]: ``(1000, 1000)`` or ``(W', H')``.

>>> to_model_box([10, 20, 110, 220], 200, 400)
[50, 50, 550, 550]
>>> to_model_box([10, 20, 110, 220], 200, 400, "qwen2.5vl", resized=(224, 448))
[11, 22, 123, 246]
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Sequence

CONVENTIONS = ("qwen2vl", "qwen2.5vl")
GRID = 1000  # Qwen2-VL's box grid

SFT_SYSTEM_PROMPT = "You are a helpful and multimodal AI assistant."
RL_SYSTEM_PROMPT = (
    "You are a helpful and multimodal AI assistant. First think about the image step by step inside "
    "<think> </think> tags, then give the final answer inside <answer> </answer> tags, i.e. "
    "<think> reasoning here </think><answer> answer here </answer>."
)

EXAMPLE_GRAPH = {
    "objects": [{"id": "person.1", "bbox": [120, 80, 310, 590]}, {"id": "bike.1", "bbox": [90, 350, 420, 700]},
                {"id": "tree.1", "bbox": [600, 40, 880, 650]}],
    "relationships": [{"subject": "person.1", "predicate": "riding", "object": "bike.1"}],
}
"""the prompts' worked example (tree.1 has no relation)"""


def example_block(graph: Mapping[str, Any]) -> str:
    """A JSON example as the prompts show it: one fenced line."""
    return "```json\n" + json.dumps(graph) + "\n```"


_EXAMPLE = example_block(EXAMPLE_GRAPH)
OBJECTS_CLAUSE = (
    '"objects": every visible object, each {"id": "name.number", "bbox": [x1, y1, x2, y2]} with integer '
    'coordinates; number each name from 1 in reading order ("person.1", "person.2").\n'
)
RELATIONSHIPS_CLAUSE = (
    '"relationships": each {"subject": id, "predicate": relation, "object": id}, only between listed ids; '
    "objects without relations are still listed.\n"
)
_OPEN = "Generate a scene graph for this image as JSON with two lists.\n" + OBJECTS_CLAUSE + RELATIONSHIPS_CLAUSE


def open_prompt() -> str:
    """The open-vocabulary user prompt (no category or predicate list)."""
    return _OPEN + "Example (tree.1 has no relation):\n" + _EXAMPLE


def closed_prompt(categories: Iterable[str], predicates: Iterable[str]) -> str:
    """The closed-vocabulary user prompt: the open one plus the allowed names (the paper's main setting)."""
    return (
        _OPEN
        + "Object names must come from this list: [" + ", ".join(categories) + "].\n"
        + "Predicates must come from this list: [" + ", ".join(predicates) + "].\n"
        + "Example (tree.1 has no relation):\n" + _EXAMPLE
    )


def user_prompt(vocabulary: Any = None) -> str:
    """Closed prompt when a vocabulary (``.categories``/``.predicates``) is given, else open."""
    if vocabulary is None:
        return open_prompt()
    return closed_prompt(vocabulary.categories, vocabulary.predicates)


# -- box conventions --------------------------------------------------------------------------------------------
def _check(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def resized_size(width: int, height: int, *, min_pixels: int = 4 * 28 * 28, max_pixels: int = 1024 * 28 * 28,
                 factor: int = 28) -> tuple[int, int]:
    """``(W', H')`` of the model input, by Qwen's own ``smart_resize`` (the processor's resize rule).

    Defaults are the reference's SFT processor bounds; pass your processor's ``min_pixels``/``max_pixels``.
    """
    # lazy: heavy import; the PIL module, because the torch one imports torchvision (which fails to import on CPU-only machines)
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    h, w = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    return int(w), int(h)


def resized_from_grid(image_grid_thw: Sequence[int], patch_size: int = 14) -> tuple[int, int]:
    """``(W', H')`` from one row of the processor's ``image_grid_thw`` = ``(t, grid_h, grid_w)``."""
    _, gh, gw = (int(v) for v in image_grid_thw)
    return gw * patch_size, gh * patch_size


def box_scale(convention: str = "qwen2vl", resized: tuple[int, int] | None = None) -> tuple[float, float]:
    """What a completion's coordinates are divided by to land in [0, 1] (the rewards' ``box_scale``)."""
    _check(convention)
    if convention == "qwen2vl":
        return (float(GRID), float(GRID))
    if resized is None:
        raise ValueError("qwen2.5vl boxes need the resized input size (W', H')")
    return (float(resized[0]), float(resized[1]))


def to_model_box(box: Sequence[float], width: int, height: int, convention: str = "qwen2vl",
                 resized: tuple[int, int] | None = None) -> list[int]:
    """Original-pixel box → the integers the model writes (truncation on the grid, as the reference; rounding in
    resized pixels)."""
    sx, sy = box_scale(convention, resized)
    x1, y1, x2, y2 = box
    if convention == "qwen2vl":
        return [int(x1 / width * sx), int(y1 / height * sy), int(x2 / width * sx), int(y2 / height * sy)]
    return [round(x1 / width * sx), round(y1 / height * sy), round(x2 / width * sx), round(y2 / height * sy)]


def from_model_box(box: Sequence[float], width: int, height: int, convention: str = "qwen2vl",
                   resized: tuple[int, int] | None = None) -> list[float]:
    """The model's box → original-image pixels (the inverse of :func:`to_model_box`, up to its rounding)."""
    sx, sy = box_scale(convention, resized)
    x1, y1, x2, y2 = box
    return [x1 / sx * width, y1 / sy * height, x2 / sx * width, y2 / sy * height]


# -- targets and solutions --------------------------------------------------------------------------------------
def model_graph(row: Mapping[str, Any], convention: str = "qwen2vl",
                resized: tuple[int, int] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The row's graph with boxes in the model's frame, objects in the row's listing order."""
    w, h = row["width"], row["height"]
    return {
        "objects": [{"id": o["id"], "bbox": to_model_box(o["bbox"], w, h, convention, resized)}
                    for o in row["objects"]],
        "relationships": [{"subject": r["subject"], "predicate": r["predicate"], "object": r["object"]}
                          for r in row["relationships"]],
    }


def format_answer(graph: Mapping[str, Any]) -> str:
    """A graph as the fenced JSON answer: one object or relation per line (the reference's layout)."""
    objs = ",\n".join("    " + json.dumps(o) for o in graph["objects"])
    rels = ",\n".join("    " + json.dumps(r) for r in graph["relationships"])
    return f'```json\n{{\n  "objects": [\n{objs}\n  ],\n  "relationships": [\n{rels}\n  ]\n}}\n```'


def sft_target(row: Mapping[str, Any], convention: str = "qwen2vl", resized: tuple[int, int] | None = None) -> str:
    """The SFT completion: the fenced JSON answer, boxes in the model's own convention, no think tags."""
    return format_answer(model_graph(row, convention, resized))


def solution(row: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The GRPO ``solution`` column: the ground-truth graph with boxes divided by the original W, H (in [0, 1])."""
    w, h = float(row["width"]), float(row["height"])
    return {
        "objects": [{"id": o["id"], "bbox": [o["bbox"][0] / w, o["bbox"][1] / h, o["bbox"][2] / w, o["bbox"][3] / h]}
                    for o in row["objects"]],
        "relationships": [dict(r) for r in row["relationships"]],
    }


def system_prompt(name: str | None) -> str | None:
    """A system turn by name: ``"sft"`` (:data:`SFT_SYSTEM_PROMPT`), ``"rl"`` (:data:`RL_SYSTEM_PROMPT`),
    ``"none"`` or ``""`` (no system turn: the chat template's default); any other string is the text itself."""
    named = {"sft": SFT_SYSTEM_PROMPT, "rl": RL_SYSTEM_PROMPT, "none": None, "": None}
    if name is None:  # configs saved before system prompts had names wrote null for "no system turn"
        return None
    return named.get(name, name)


def prompt_messages(text: str, system: str | None = SFT_SYSTEM_PROMPT) -> list[dict[str, Any]]:
    """A conversational prompt (TRL's format): optional system turn, then the image placeholder and the text."""
    msgs: list[dict[str, Any]] = [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
    msgs.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]})
    return msgs


def assistant_message(text: str) -> list[dict[str, Any]]:
    """A completion in TRL's conversational format: one assistant turn holding ``text``."""
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def sft_example(row: Mapping[str, Any], vocabulary: Any = None, system: str | None = SFT_SYSTEM_PROMPT,
                convention: str = "qwen2vl", resized: tuple[int, int] | None = None) -> dict[str, Any]:
    """One TRL SFT row: ``{"images": [RGB image], "prompt": [...], "completion": [...]}`` — the task prompt (closed
    iff ``vocabulary``) and the fenced JSON answer in the model's box convention (:func:`sft_target`)."""
    return {
        "images": [row["image"].convert("RGB")],
        "prompt": prompt_messages(user_prompt(vocabulary), system),
        "completion": assistant_message(sft_target(row, convention, resized)),
    }


def grpo_example(row: Mapping[str, Any], vocabulary: Any = None, system: str | None = RL_SYSTEM_PROMPT,
                 convention: str = "qwen2vl", resized: tuple[int, int] | None = None) -> dict[str, Any]:
    """One TRL GRPO row: the RGB image, the conversational prompt, ``solution`` (the GT in [0, 1]),
    ``box_scale`` (what divides the completion's coordinates into [0, 1]) and ``image_id``."""
    return {
        "image": row["image"].convert("RGB"),
        "prompt": prompt_messages(user_prompt(vocabulary), system),
        "solution": solution(row),
        "box_scale": list(box_scale(convention, resized)),
        "image_id": row["image_id"],
    }
