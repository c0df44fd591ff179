"""Pure drawing functions that return a matplotlib Figure; notebooks and the viewer wrap them (STYLE.md §7).

>>> from PIL import Image
>>> fig = draw_scene_graph(Image.new("RGB", (64, 64)), {"objects": [{"id": "cat.1", "bbox": [4, 4, 30, 30]},
...     {"id": "mat.1", "bbox": [0, 30, 64, 64]}], "relationships": [{"subject": "cat.1", "predicate": "on",
...     "object": "mat.1"}]})
>>> len(fig.axes)
1
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

from .graph import SceneGraph, as_graph


def _figure(figsize: tuple[float, float]):
    # Figure() rather than pyplot: no global state, nothing left open, works headless under papermill
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def category_colors(categories: Sequence[str]) -> dict[str, Any]:
    """One stable colour per category (tab20, in first-seen order)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    ordered = list(dict.fromkeys(categories))
    return {c: cmap(i % cmap.N) for i, c in enumerate(ordered)}


def draw_scene_graph(image: Any, graph: SceneGraph | Mapping[str, Any], *, ax=None, title: str | None = None,
                     colors: Mapping[str, Any] | None = None, show_relations: bool = True,
                     figsize: tuple[float, float] = (5, 5), fontsize: float = 7):
    """The image with boxes and ``name.N`` labels (one colour per category) and relation arrows
    subject → object labelled with the predicate. Boxes must be in the image's pixels.

    Draws into ``ax`` when given (and returns its figure), else into a new Figure.
    """
    g = as_graph(graph)
    if ax is None:
        fig = _figure(figsize)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    colors = dict(colors) if colors is not None else category_colors(g.categories)
    ax.imshow(image)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=fontsize + 2)
    from matplotlib.patches import FancyArrowPatch, Rectangle

    centers = {}
    for o in g.objects:
        x1, y1, x2, y2 = o.bbox
        color = colors.get(o.category, "white")
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.5))
        ax.text(x1, y1, o.id, fontsize=fontsize, color="black", va="bottom",
                bbox=dict(facecolor=color, alpha=0.7, pad=0.5, linewidth=0))
        centers.setdefault(o.id, ((x1 + x2) / 2, (y1 + y2) / 2))
    if show_relations:
        for r in g.relations:
            if r.subject not in centers or r.object not in centers:
                continue
            (sx, sy), (ox, oy) = centers[r.subject], centers[r.object]
            ax.add_patch(FancyArrowPatch((sx, sy), (ox, oy), arrowstyle="-|>", mutation_scale=8, color="black",
                                         linewidth=0.8, alpha=0.8, connectionstyle="arc3,rad=0.15"))
            ax.text((sx + ox) / 2, (sy + oy) / 2, r.predicate, fontsize=fontsize - 1, ha="center", va="center",
                    bbox=dict(facecolor="white", alpha=0.7, pad=0.3, linewidth=0))
    return fig


def draw_examples(rows: Sequence[Mapping[str, Any]], ncols: int = 3, size: float = 4.0, **kwargs):
    """A grid of dataset rows (the loaders' schema), each drawn with :func:`draw_scene_graph`."""
    n = len(rows)
    nrows = max(1, -(-n // ncols))
    fig = _figure((size * min(n, ncols), size * nrows))
    axes = fig.subplots(nrows, min(n, ncols), squeeze=False).ravel()
    cats = [o["id"].rsplit(".", 1)[0] for r in rows for o in r["objects"]]
    colors = category_colors(cats)
    for ax, row in zip(axes, rows):
        draw_scene_graph(row["image"], row, ax=ax, title=str(row["image_id"]), colors=colors, **kwargs)
    for ax in axes[n:]:
        ax.set_axis_off()
    return fig


def bar_counts(counts: Mapping[str, int] | Counter, *, title: str = "", log: bool = False, top: int | None = None,
               figsize: tuple[float, float] = (7, 3)):
    """A bar chart of name → count, largest first (the long-tail plots of notebook 01)."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    fig = _figure(figsize)
    ax = fig.add_subplot()
    ax.bar(range(len(items)), [v for _, v in items], color="tab:blue")
    ax.set_xticks(range(len(items)), [k for k, _ in items], rotation=60, ha="right", fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("count")
    return fig


def histogram(values: Sequence[int], *, title: str = "", figsize: tuple[float, float] = (4, 3)):
    """Histogram of small integers (objects or relations per image), one bin per value."""
    fig = _figure(figsize)
    ax = fig.add_subplot()
    lo, hi = (min(values), max(values)) if len(values) else (0, 0)
    ax.hist(values, bins=[v - 0.5 for v in range(lo, hi + 2)], color="tab:green", edgecolor="white")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("images")
    return fig
