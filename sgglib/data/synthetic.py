"""The embedded synthetic scene-graph world: coloured shapes on a grid, with a stated annotation rule.

Why this world looks the way it does (``docs/findings.md#the-embedded-model-and-world``): a tiny from-scratch
Qwen2-VL learns boxes and relations in minutes only when objects sit in the 28-px cells that each become one merged visual token,
and when the background carries a position cue (a smooth colour gradient; the vision tower has 2-D RoPE but no
absolute position embedding). The earlier aligned world (112 px, 2–4 objects, one relation each) was learned so
well by SFT that GRPO had nothing left to fix, so the default here has *headroom*: the same 112 px (4×4 cells, 16
visual tokens) but 3–7 objects, 16 categories, 13 predicates and nested objects. A larger world (224 px, 8×8 cells,
4–12 objects) is one knob away, but the tiny model did not learn it in an 8-minute CPU SFT budget (Recall 0 after
about 1,150 steps; ``reports/reference/world_tuning.json``).

**Scene.** ``n ~ U{min_objects..max_objects}`` objects. Top-level objects occupy distinct cells chosen uniformly.
Each has a colour (first ``n_colors`` of :data:`COLORS`) and a shape (first ``n_shapes`` of :data:`SHAPES`), drawn
with Zipf weights ``1/k**category_skew`` (so categories are long-tailed, as in VG), and a size:
frames are always *large*, other shapes are *small* with probability ``p_small``. A large object's box is its cell
inset by ``large_inset`` px, a small one's by ``small_inset`` px. A frame (a hollow square) holds, with probability
``p_nested``, a *content* object: a small non-frame shape centred in the frame's cell (box = cell inset by
``small_inset``). Contents count towards ``n``. ``jitter`` > 0 shifts each top-level object (with its content) by
up to that many pixels, breaking the alignment to tokens.

**Category** = ``"<colour> <shape>"`` (``"red circle"``); a box is the exact bounding box of the drawn shape.

**Listing order and ids.** Top-level objects in raster order of their cells (row by row, left to right); a frame's
content immediately after its frame. Ids number each category in listing order: ``"red circle.1"``,
``"red circle.2"``, …

**Which pairs get a relation.** Distances are Euclidean between cell centres, in cells.
- A content object has exactly one relation: ``content --inside--> its frame``.
- Every top-level object A relates to its ``relations_per_object`` nearest *other top-level* objects (contents are
  never chosen as partners); ties are broken by listing order (earlier first).

**Which predicate wins** for a pair (A, B), with ``dx = col(B) - col(A)``, ``dy = row(B) - row(A)`` (rows grow
downwards): the first of these that holds, in this order (:func:`predicate`) —

=================  =========================================================
``inside``         A is B's content
``on``             B's cell is directly below A's (dx = 0, dy = 1)
``under``          B's cell is directly above A's (dx = 0, dy = -1)
``next to``        B's cell is directly left or right of A's (dy = 0, |dx| = 1)
``same color as``  same colour
``bigger than``    A is large, B is small
``smaller than``   A is small, B is large
``left of``        same row (dy = 0) and dx > 0   (A is left of B)
``right of``       same row and dx < 0
``above``          same column (dx = 0) and dy > 0
``below``          same column and dy < 0
``same shape as``  same shape
``near``           anything else
=================  =========================================================

Every relation is a function of what is visible (cells, colours, shapes, sizes), so a perfect model reaches 100%
recall. The predicate frequency is long-tailed (contact and attribute predicates are common, ``inside``/``under``
and the far positional ones rarer; measured counts are in ``notebooks/01_data_prep.ipynb``).

**Difficulty knobs** (all fields of :class:`WorldConfig`; expected effect on learning):

- ``image_size``/``cell_size``: more cells = more visual tokens, more places to localise; ``cell_size`` should stay
  28 (one merged Qwen2-VL token) unless the model's patch/merge size changes.
- ``min_objects``/``max_objects``: longer outputs and more relations; the main lever against "SFT is perfect".
- ``n_colors``/``n_shapes``: more categories (``n_colors × n_shapes``), finer recognition, rarer categories.
- ``category_skew``: long tail of categories (and of ``same color as``/``same shape as``); rare categories are
  the ones a model learns last.
- ``p_small``: size variety; feeds ``bigger than``/``smaller than`` and makes boxes less uniform.
- ``p_nested``: frequency of ``inside`` and of two objects sharing one token.
- ``relations_per_object``: relations per object (1 → about one per object); 2+ lengthens graphs and makes the
  tie-break rule matter.
- ``jitter``: breaks the token alignment (boxes no longer on a lattice); early experiments suggest it hurts a lot.
- ``background`` (``"gradient"`` | ``"uniform"``): removing the gradient removed the position cue and the learning
  (AP@50 63 → 4 in an early experiment).
- ``contrast`` (0–1] and ``noise_std``: weaker, noisier objects.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageDraw

# Saturated colours, chosen to stand out from the light background; the first ``n_colors`` are used.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (25, 150, 45),
    "blue": (35, 65, 215),
    "black": (25, 25, 25),
    "purple": (135, 45, 175),
    "orange": (235, 125, 0),
    "cyan": (0, 165, 185),
    "pink": (225, 85, 170),
}
# ``frame`` is second so that any world with two or more shapes can nest.
SHAPES: tuple[str, ...] = ("circle", "frame", "square", "triangle", "diamond", "cross")
# Priority order: the first predicate whose condition holds is the annotation (see the module docstring).
PREDICATES: tuple[str, ...] = (
    "inside", "on", "under", "next to", "same color as", "bigger than", "smaller than",
    "left of", "right of", "above", "below", "same shape as", "near",
)
# Background gradient: red rises left→right, green top→bottom, blue constant; all light, so objects contrast.
_BG_LO, _BG_HI, _BG_BLUE = 170.0, 235.0, 215.0
SPLIT_OFFSETS = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class WorldConfig:
    """Difficulty knobs of the synthetic world (see the module docstring for their effect)."""

    image_size: int = 112
    """Square image side in pixels; a multiple of ``cell_size``. 224 (8×8 cells) was not learned in 8 CPU minutes."""
    cell_size: int = 28
    """Grid cell side in pixels; 28 = one merged Qwen2-VL visual token (patch 14 × spatial merge 2)."""
    min_objects: int = 3
    """Fewest objects per image (contents included)."""
    max_objects: int = 7
    """Most objects per image (contents included); at most the number of cells."""
    n_colors: int = 4
    """Colours used, the first ``n_colors`` of COLORS (categories = n_colors × n_shapes)."""
    n_shapes: int = 4
    """Shapes used, the first ``n_shapes`` of SHAPES; ≥ 2 includes the nestable ``frame``."""
    category_skew: float = 0.7
    """Zipf exponent of colour and shape frequencies (weight of the k-th ∝ 1/k**skew); 0 = uniform categories."""
    p_small: float = 0.2
    """Probability that a non-frame top-level object is small."""
    p_nested: float = 0.3
    """Probability that a frame holds a small content object (predicate ``inside``)."""
    relations_per_object: int = 1
    """Each top-level object relates to this many nearest other top-level objects."""
    count_skew: float = 0.0
    """Objects per scene: 0 = uniform over ``min_objects..max_objects``; > 0 = a long tail, P(n) ∝
    (n − min_objects + 1) ** −count_skew — most scenes short, a few dense (VG's shape)."""
    annotation_keep: float = 1.0
    """The annotator keeps each related pair with this probability (1 = every pair: complete annotation)."""
    predicate_choice: str = "first"
    """``first``: the first predicate that holds, in priority order (a deterministic rule); ``preferred``: one of the
    predicates that hold, drawn with weight 1 / rank ** ``preference_skew`` (an annotator's long-tailed taste)"""
    preference_skew: float = 1.0
    """How strongly a ``preferred`` annotator favours the predicates earlier in the priority order."""
    large_inset: int = 3
    """Large object's box = its cell inset by this many pixels."""
    small_inset: int = 8
    """Small object's (and content's) box = its cell inset by this many pixels."""
    frame_width: int = 3
    """Line width of a frame, in pixels."""
    jitter: int = 0
    """Random shift of each top-level object, up to this many pixels (0 = aligned to the token grid)."""
    background: str = "gradient"
    """``"gradient"`` (a position cue) or ``"uniform"`` (the gradient's mean colour everywhere)."""
    contrast: float = 1.0
    """Object colour = background mean + contrast × (colour − background mean)."""
    noise_std: float = 0.0
    """Standard deviation of Gaussian pixel noise, in 0–255 units."""

    def __post_init__(self) -> None:
        cells = self.grid * self.grid
        checks = [
            (self.cell_size > 0 and self.image_size % self.cell_size == 0, "image_size must be a multiple of cell_size"),
            (1 <= self.min_objects <= self.max_objects <= cells, f"need 1 <= min_objects <= max_objects <= {cells}"),
            (1 <= self.n_colors <= len(COLORS), f"n_colors must be in 1..{len(COLORS)}"),
            (1 <= self.n_shapes <= len(SHAPES), f"n_shapes must be in 1..{len(SHAPES)}"),
            (0 <= self.p_small <= 1 and 0 <= self.p_nested <= 1, "probabilities must be in [0, 1]"),
            (self.category_skew >= 0, "category_skew must be >= 0"),
            (self.relations_per_object >= 0, "relations_per_object must be >= 0"),
            (self.count_skew >= 0 and self.preference_skew >= 0, "count_skew and preference_skew must be >= 0"),
            (0 < self.annotation_keep <= 1, "annotation_keep must be in (0, 1]"),
            (self.predicate_choice in ("first", "preferred"), "predicate_choice must be 'first' or 'preferred'"),
            (0 <= self.large_inset < self.small_inset < self.cell_size // 2, "need 0 <= large_inset < small_inset < cell/2"),
            (self.small_inset >= self.large_inset + self.frame_width + 1, "a content must fit inside its frame"),
            (0 <= self.jitter <= self.large_inset, "jitter must be in 0..large_inset (objects stay inside their cell)"),
            (self.background in ("gradient", "uniform"), "background must be 'gradient' or 'uniform'"),
            (0 < self.contrast <= 1 and self.noise_std >= 0, "need 0 < contrast <= 1 and noise_std >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"WorldConfig: {message}")

    @property
    def grid(self) -> int:
        return self.image_size // self.cell_size

    @property
    def colors(self) -> list[str]:
        return list(COLORS)[: self.n_colors]

    @property
    def shapes(self) -> list[str]:
        return list(SHAPES[: self.n_shapes])

    @property
    def categories(self) -> list[str]:
        """All ``"<colour> <shape>"`` names, colour-major."""
        return [f"{c} {s}" for c in self.colors for s in self.shapes]

    @property
    def predicates(self) -> list[str]:
        """The predicates this world can produce (``inside`` needs frames)."""
        return [p for p in PREDICATES if p != "inside" or "frame" in self.shapes]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def background_mean(cfg: WorldConfig) -> tuple[float, float, float]:
    """Mean background colour in [0, 1] per channel: the centre for pixel normalisation."""
    mid = (_BG_LO + _BG_HI) / 2
    return (mid / 255, mid / 255, _BG_BLUE / 255)


@dataclass(frozen=True)
class Placed:
    """One object of a scene: its cell, attributes, box, and (for a content) the index of its frame."""

    row: int
    col: int
    color: str
    shape: str
    small: bool
    box: tuple[float, float, float, float]
    frame: int | None = None

    @property
    def category(self) -> str:
        return f"{self.color} {self.shape}"


def sample_scene(rng: np.random.Generator, cfg: WorldConfig) -> list[Placed]:
    """Objects of one image, already in listing order (raster order, content after its frame)."""
    if cfg.count_skew:
        sizes = np.arange(cfg.min_objects, cfg.max_objects + 1)
        n = int(rng.choice(sizes, p=_zipf(len(sizes), cfg.count_skew)))
    else:  # the uniform count draws the same random numbers as before the knob existed
        n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    solid = [s for s in cfg.shapes if s != "frame"] or cfg.shapes
    color_p, shape_p = _zipf(cfg.n_colors, cfg.category_skew), _zipf(cfg.n_shapes, cfg.category_skew)
    solid_p = _zipf(len(solid), cfg.category_skew)
    # Draw top-level attributes first, then decide nesting, so that contents count towards n.
    cells = rng.choice(cfg.grid * cfg.grid, size=n, replace=False)
    out: list[Placed] = []
    budget = n
    for cell in sorted(int(c) for c in cells):  # sorted flat index = raster order
        if budget == 0:
            break
        row, col = divmod(cell, cfg.grid)
        shape = cfg.shapes[int(rng.choice(cfg.n_shapes, p=shape_p))]
        color = cfg.colors[int(rng.choice(cfg.n_colors, p=color_p))]
        small = shape != "frame" and bool(rng.random() < cfg.p_small)
        jx, jy = (rng.integers(-cfg.jitter, cfg.jitter + 1, size=2) if cfg.jitter else (0, 0))
        inset = cfg.small_inset if small else cfg.large_inset
        out.append(Placed(row, col, color, shape, small, _cell_box(cfg, row, col, inset, int(jx), int(jy))))
        budget -= 1
        if shape == "frame" and budget > 0 and solid != ["frame"] and rng.random() < cfg.p_nested:
            c_shape = solid[int(rng.choice(len(solid), p=solid_p))]
            c_color = cfg.colors[int(rng.choice(cfg.n_colors, p=color_p))]
            box = _cell_box(cfg, row, col, cfg.small_inset, int(jx), int(jy))
            out.append(Placed(row, col, c_color, c_shape, True, box, frame=len(out) - 1))
            budget -= 1
    return out


def _zipf(n: int, skew: float) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** skew
    return w / w.sum()


def _cell_box(cfg: WorldConfig, row: int, col: int, inset: int, jx: int, jy: int) -> tuple[float, float, float, float]:
    x0, y0 = col * cfg.cell_size + jx, row * cfg.cell_size + jy
    return (float(x0 + inset), float(y0 + inset), float(x0 + cfg.cell_size - inset), float(y0 + cfg.cell_size - inset))


def predicates_that_hold(a: Placed, b: Placed, a_index: int, b_index: int) -> list[str]:
    """Every predicate true of subject ``a`` and object ``b``, in priority order (:data:`PREDICATES`); ``near`` only
    when nothing else holds. Its first element is the deterministic rule's choice (:func:`predicate`)."""
    dx, dy = b.col - a.col, b.row - a.row
    holds = {
        "inside": a.frame == b_index,
        "on": dx == 0 and dy == 1,
        "under": dx == 0 and dy == -1,
        "next to": dy == 0 and abs(dx) == 1,
        "same color as": a.color == b.color,
        "bigger than": not a.small and b.small,
        "smaller than": a.small and not b.small,
        "left of": dy == 0 and dx > 0,
        "right of": dy == 0 and dx < 0,
        "above": dx == 0 and dy > 0,
        "below": dx == 0 and dy < 0,
        "same shape as": a.shape == b.shape,
    }
    return [p for p in PREDICATES if holds.get(p)] or ["near"]


def predicate(a: Placed, b: Placed, a_index: int, b_index: int) -> str:
    """The winning predicate for subject ``a`` and object ``b`` (the table in the module docstring)."""
    return predicates_that_hold(a, b, a_index, b_index)[0]


def related_pairs(scene: list[Placed], cfg: WorldConfig) -> list[tuple[int, int]]:
    """The ``(subject, object)`` index pairs the rule relates: a content to its frame; each top-level object to its
    ``relations_per_object`` nearest other top-level objects (ties by listing order)."""
    top = [i for i, o in enumerate(scene) if o.frame is None]
    pairs = []
    for ai, a in enumerate(scene):
        if a.frame is not None:
            pairs.append((ai, a.frame))
            continue
        others = [j for j in top if j != ai]
        # stable sort: equal distances keep listing order, which is the stated tie-break
        others.sort(key=lambda j: math.hypot(scene[j].col - a.col, scene[j].row - a.row))
        pairs += [(ai, bi) for bi in others[: cfg.relations_per_object]]
    return pairs


def annotate(scene: list[Placed], cfg: WorldConfig, rng: np.random.Generator | None = None
             ) -> dict[str, list[dict[str, Any]]]:
    """The scene graph of a scene: ids, boxes, the *annotated* relations (what SFT, the rewards and the metrics see)
    and the *complete* ones (every related pair with every predicate that holds; for analysis only, never trained
    on). With ``annotation_keep`` < 1 or ``predicate_choice="preferred"`` the annotator draws from ``rng``; the
    defaults draw nothing and annotate every pair with the first predicate that holds."""
    counts: dict[str, int] = {}
    ids = []
    for obj in scene:
        counts[obj.category] = counts.get(obj.category, 0) + 1
        ids.append(f"{obj.category}.{counts[obj.category]}")
    objects = [{"id": i, "bbox": list(o.box)} for i, o in zip(ids, scene)]
    rels, complete = [], []
    for ai, bi in related_pairs(scene, cfg):
        holds = predicates_that_hold(scene[ai], scene[bi], ai, bi)
        complete += [{"subject": ids[ai], "predicate": p, "object": ids[bi]} for p in holds]
        if cfg.annotation_keep < 1 and rng.random() >= cfg.annotation_keep:
            continue  # the annotator skipped this pair
        chosen = holds[0]
        if cfg.predicate_choice == "preferred" and len(holds) > 1:
            chosen = holds[int(rng.choice(len(holds), p=_zipf(len(holds), cfg.preference_skew)))]
        rels.append({"subject": ids[ai], "predicate": chosen, "object": ids[bi]})
    return {"objects": objects, "relationships": rels, "complete_relationships": complete}


def render(scene: list[Placed], cfg: WorldConfig, rng: np.random.Generator | None = None) -> Image.Image:
    """Draw a scene: gradient (or uniform) background, then each shape filling its box."""
    size = cfg.image_size
    mean = np.array(background_mean(cfg)) * 255
    if cfg.background == "gradient":
        ramp = np.linspace(_BG_LO, _BG_HI, size)
        bg = np.empty((size, size, 3))
        bg[..., 0] = ramp[None, :]
        bg[..., 1] = ramp[:, None]
        bg[..., 2] = _BG_BLUE
    else:
        bg = np.broadcast_to(mean, (size, size, 3)).copy()
    img = Image.fromarray(bg.round().astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for obj in scene:
        color = tuple(int(round(m + cfg.contrast * (c - m))) for c, m in zip(COLORS[obj.color], mean))
        _draw_shape(draw, obj.shape, obj.box, color, cfg.frame_width)
    if cfg.noise_std > 0:
        rng = rng if rng is not None else np.random.default_rng(0)
        arr = np.asarray(img, dtype=np.float64) + rng.normal(0, cfg.noise_std, (size, size, 3))
        img = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), "RGB")
    return img


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, ...], color: tuple, width: int) -> None:
    # PIL's x2/y2 are inclusive, so draw up to x2 - 1: the drawn pixels span exactly [x1, x2) × [y1, y2).
    x1, y1, x2, y2 = (int(v) for v in box)
    r, b = x2 - 1, y2 - 1
    cx, cy = (x1 + r) / 2, (y1 + b) / 2
    if shape == "circle":
        draw.ellipse([x1, y1, r, b], fill=color)
    elif shape == "frame":
        draw.rectangle([x1, y1, r, b], outline=color, width=width)
    elif shape == "square":
        draw.rectangle([x1, y1, r, b], fill=color)
    elif shape == "triangle":
        draw.polygon([(cx, y1), (r, b), (x1, b)], fill=color)
    elif shape == "diamond":
        draw.polygon([(cx, y1), (r, cy), (cx, b), (x1, cy)], fill=color)
    elif shape == "cross":
        t = max(2, (x2 - x1) // 3)
        draw.rectangle([x1, cy - t / 2, r, cy + t / 2], fill=color)
        draw.rectangle([cx - t / 2, y1, cx + t / 2, b], fill=color)
    else:  # pragma: no cover - SHAPES and this function change together
        raise ValueError(f"unknown shape {shape!r}")


def generate(cfg: WorldConfig, n: int, seed: int = 0, split: str = "train") -> Iterator[dict[str, Any]]:
    """Rows of the common schema (``image_id``, ``image``, ``width``, ``height``, ``objects``, ``relationships``) plus
    ``complete_relationships`` (:func:`annotate`).

    Deterministic: the same ``(cfg, n, seed, split)`` gives the same rows; splits use independent streams.
    """
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"synthetic split must be one of {sorted(SPLIT_OFFSETS)}, got {split!r}")
    rng = np.random.default_rng([seed, SPLIT_OFFSETS[split]])
    annotator = np.random.default_rng([seed, SPLIT_OFFSETS[split], 1])  # its own stream: scenes stay the same
    for i in range(n):
        scene = sample_scene(rng, cfg)
        graph = annotate(scene, cfg, annotator)
        yield {
            "image_id": f"syn-{split}-{i:06d}",
            "image": render(scene, cfg, rng),
            "width": cfg.image_size,
            "height": cfg.image_size,
            **graph,
        }
