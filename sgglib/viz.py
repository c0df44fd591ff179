"""Pure drawing functions that return a matplotlib Figure; notebooks and the viewer wrap them.

>>> from PIL import Image
>>> fig = draw_scene_graph(Image.new("RGB", (64, 64)), {"objects": [{"id": "cat.1", "bbox": [4, 4, 30, 30]},
...     {"id": "mat.1", "bbox": [0, 30, 64, 64]}], "relationships": [{"subject": "cat.1", "predicate": "on",
...     "object": "mat.1"}]})
>>> len(fig.axes)
1
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .boxes import iou_matrix
from .graph import SceneGraph, as_graph
from .matching import triplet_scores
from .parse import parse_completion


def new_figure(figsize: tuple[float, float]):
    # Figure() rather than pyplot: no global state, nothing left open, works headless under papermill
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def plot_curves(curves: Mapping[str, Sequence[Mapping[str, float]]], panels: Sequence[str | Sequence[str]], *,
                smooth: int = 1, ncols: int = 3, panel_size: tuple[float, float] = (4.2, 3.2)):
    """Training curves: one panel per entry of ``panels``, one line per run and key.

    ``curves``: run label → ``metrics.csv`` rows (:func:`sgglib.runs.read_metrics_csv`). A panel is a column name
    (``"eval/recall"``) or several that share units and axes (``("train/sampled_recall", "eval/recall")``: the
    sampled policy against the greedy one). ``train/…`` columns get a trailing moving average over ``smooth`` rows
    (one GRPO step is noisy); a panel whose name ends in ``loss`` uses a log scale. Panels with no data say so.
    """
    panels = [(p,) if isinstance(p, str) else tuple(p) for p in panels]
    nrows = max(1, -(-len(panels) // ncols))
    fig = new_figure((panel_size[0] * min(ncols, max(1, len(panels))), panel_size[1] * nrows))
    if not panels:
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no curves to plot", ha="center", va="center")
        return fig
    axes = fig.subplots(nrows, min(ncols, len(panels)), squeeze=False).ravel()
    several = len(curves) > 1
    for ax, keys in zip(axes, panels):
        for label, rows in curves.items():
            for key in keys:
                xs, ys = _series(rows, key, smooth if key.startswith("train/") else 1)
                if xs:
                    name = " · ".join(x for x in (label if several else "", key if len(keys) > 1 else "") if x)
                    ax.plot(xs, ys, marker="o" if len(xs) < 15 else None, markersize=3, label=name or None)
        ax.set_title(" vs ".join(keys), fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if keys[0].endswith("loss") and ax.lines:
            ax.set_yscale("log")
        if not ax.lines:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        elif any(line.get_label() and not line.get_label().startswith("_") for line in ax.lines):
            ax.legend(fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    return fig


def _series(rows: Sequence[Mapping[str, float]], key: str, smooth: int = 1) -> tuple[list[float], list[float]]:
    pts = [(float(r.get("step", i)), float(r[key])) for i, r in enumerate(rows) if key in r]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    if smooth > 1 and ys:
        ys = [sum(ys[max(0, i - smooth + 1):i + 1]) / len(ys[max(0, i - smooth + 1):i + 1]) for i in range(len(ys))]
    return xs, ys


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
        fig = new_figure(figsize)
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
    fig = new_figure((size * min(n, ncols), size * nrows))
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
    fig = new_figure(figsize)
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
    fig = new_figure(figsize)
    ax = fig.add_subplot()
    lo, hi = (min(values), max(values)) if len(values) else (0, 0)
    ax.hist(values, bins=[v - 0.5 for v in range(lo, hi + 2)], color="tab:green", edgecolor="white")
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("images")
    return fig


# -- predictions, filtering and the GT-vs-prediction diff ------------------------------------------------------------
MATCHED, MISSED, EXTRA = "#2ca02c", "#d62728", "#9e9e9e"  # green / red / grey, the diff's three states


def prediction_in_pixels(record: Mapping[str, Any], width: float, height: float):
    """Parse a ``predictions.jsonl`` record and move its graph from its ``box_scale`` frame to image pixels.

    Returns ``(ParseResult, SceneGraph | None)``; the graph is None when the completion does not parse.
    """
    result = parse_completion(record.get("completion"))
    if result.graph is None:
        return result, None
    sx, sy = record.get("box_scale") or (1000.0, 1000.0)  # Qwen2-VL's grid when a record names no frame
    return result, result.graph.scaled(sx / width, sy / height)


def filter_graph(graph: SceneGraph | Mapping[str, Any], predicates: Sequence[str] | None = None,
                 hide_isolated: bool = False) -> SceneGraph:
    """Keep only relations whose predicate is in ``predicates`` (None = all); optionally drop objects that take
    part in no kept relation."""
    g = as_graph(graph)
    keep = set(predicates) if predicates is not None else None
    rels = tuple(r for r in g.relations if keep is None or r.predicate in keep)
    objs = g.objects
    if hide_isolated:
        used = {r.subject for r in rels} | {r.object for r in rels}
        objs = tuple(o for o in objs if o.id in used)
    return SceneGraph(objs, rels)


class GraphDiff:
    """Which parts of a prediction agree with the ground truth, by the Hard Recall rule (``docs/method.md#metrics``).

    ``gt_rel_hit[k]``: GT relation k is recalled (:func:`sgglib.matching.triplet_scores`, the metric's own test).
    ``pred_rel_hit[k]``: predicted relation k recalls some GT relation; the rule is symmetric (same predicate,
    same categories, both IoU ≥ threshold), so it is ``triplet_scores`` with the two graphs swapped.
    Objects: matched when an object of the same category on the other side overlaps it with IoU ≥ threshold;
    ``pred_to_gt`` maps each matched predicted object to its best such GT object (for drawing one node).
    """

    def __init__(self, gt: SceneGraph | Mapping[str, Any], pred: SceneGraph | Mapping[str, Any] | None,
                 iou_threshold: float = 0.5):
        self.gt = as_graph(gt)
        self.pred = as_graph(pred) if pred is not None else SceneGraph()
        self.gt_rel_hit = list(triplet_scores(self.pred, self.gt, iou_threshold=iou_threshold) > 0.5)
        self.pred_rel_hit = list(triplet_scores(self.gt, self.pred, iou_threshold=iou_threshold) > 0.5)
        g_objs, p_objs = self.gt.objects, self.pred.objects
        iou = iou_matrix([o.bbox for o in g_objs], [o.bbox for o in p_objs]) if g_objs and p_objs \
            else np.zeros((len(g_objs), len(p_objs)))
        same = np.array([[g.category == p.category for p in p_objs] for g in g_objs], bool).reshape(iou.shape)
        ok = np.where(same & (iou >= iou_threshold), iou, -1.0)
        self.gt_obj_hit = list(ok.max(axis=1) >= 0) if len(p_objs) else [False] * len(g_objs)
        self.pred_obj_hit = list(ok.max(axis=0) >= 0) if len(g_objs) else [False] * len(p_objs)
        self.pred_to_gt = {p.id: g_objs[int(ok[:, j].argmax())].id for j, p in enumerate(p_objs)
                           if self.pred_obj_hit[j]}

    @property
    def counts(self) -> dict[str, int]:
        """Matched / missed GT relations and false-positive predicted relations."""
        return {"matched": int(sum(self.gt_rel_hit)), "missed": len(self.gt_rel_hit) - int(sum(self.gt_rel_hit)),
                "false_positive": len(self.pred_rel_hit) - int(sum(self.pred_rel_hit))}


# -- the graph beside the image --------------------------------------------------------------------------------------
def draw_graph(nodes: Sequence[tuple[str, tuple[float, float], Any]],
               edges: Sequence[tuple[str, str, str, Any]], *, ax=None, title: str | None = None,
               figsize: tuple[float, float] = (5, 5), fontsize: float = 7):
    """A directed graph drawn by networkx: ``nodes`` are ``(id, (x, y) anchor, colour)``, ``edges`` are
    ``(subject, object, predicate, colour)``. Edges between one pair share an arrow (labels joined) when they share a
    colour; each other colour gets its own, more curved arrow, so a diff never hides a state.

    Anchors (box centres in image pixels) seed a short spring layout: the graph keeps the image's left/right and
    up/down, while nodes of overlapping boxes move apart.
    """
    import networkx as nx

    if ax is None:
        fig = new_figure(figsize)
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=fontsize + 2)
    g = nx.DiGraph()
    for nid, (x, y), color in nodes:
        g.add_node(nid, anchor=(x, -y), color=color)  # image y grows downwards
    groups: dict[Any, dict[tuple[str, str], list[str]]] = {}  # colour → (subject, object) → predicates
    for s, o, pred, color in edges:
        if s in g and o in g:
            groups.setdefault(color, {}).setdefault((s, o), []).append(pred)
            g.add_edge(s, o)
    if not len(g):
        ax.text(0.5, 0.5, "(empty graph)", ha="center", va="center", transform=ax.transAxes, fontsize=fontsize)
        return fig
    anchors = nx.get_node_attributes(g, "anchor")
    span = max(1.0, max(max(abs(a), abs(b)) for a, b in anchors.values()))
    start = {n: (a / span, b / span) for n, (a, b) in anchors.items()}
    pos = nx.spring_layout(g.to_undirected(), pos=start, seed=0, iterations=8, k=0.6 / max(1, len(g)) ** 0.5) \
        if len(g) > 1 else start
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=[g.nodes[n]["color"] for n in g], node_size=260,
                           edgecolors="black", linewidths=0.5)
    nx.draw_networkx_labels(g, pos, ax=ax, font_size=fontsize - 1, verticalalignment="bottom")
    taken: dict[tuple[str, str], int] = {}
    for color, pairs in groups.items():
        for (s, o), preds in pairs.items():
            k = taken[(s, o)] = taken.get((s, o), -1) + 1
            style = f"arc3,rad={0.1 + 0.25 * k}"
            nx.draw_networkx_edges(g, pos, ax=ax, edgelist=[(s, o)], edge_color=[color], arrows=True,
                                   arrowstyle="-|>", arrowsize=10, node_size=260, connectionstyle=style)
            nx.draw_networkx_edge_labels(g, pos, ax=ax, edge_labels={(s, o): " / ".join(preds)},
                                         font_size=fontsize - 1, font_color=color if color != "black" else "k",
                                         connectionstyle=style,
                                         bbox=dict(facecolor="white", alpha=0.7, pad=0.2, linewidth=0))
    ax.margins(0.15)
    return fig


def _center(box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def draw_image_and_graph(image: Any, graph: SceneGraph | Mapping[str, Any], *, title: str = "",
                         colors: Mapping[str, Any] | None = None, figsize: tuple[float, float] = (10, 4.8)):
    """The image with its boxes and ``name.N`` labels (left) and the graph (right), one colour per category,
    the same for a node and its box."""
    g = as_graph(graph)
    colors = dict(colors) if colors is not None else category_colors(g.categories)
    fig = new_figure(figsize)
    ax_img, ax_graph = fig.subplots(1, 2)
    draw_scene_graph(image, g, ax=ax_img, title=title or None, colors=colors, show_relations=False)
    nodes = [(o.id, _center(o.bbox), colors.get(o.category, "white")) for o in g.object_map().values()]
    draw_graph(nodes, [(r.subject, r.object, r.predicate, "black") for r in g.relations], ax=ax_graph,
               title=f"{len(g.objects)} objects, {len(g.relations)} relations")
    return fig


def draw_diff(image: Any, gt: SceneGraph | Mapping[str, Any], pred: SceneGraph | Mapping[str, Any] | None, *,
              title: str = "", iou_threshold: float = 0.5, figsize: tuple[float, float] = (10, 4.8)):
    """GT vs prediction by the Hard Recall rule: matched green, missed red, false positives grey — for boxes
    (left; predicted boxes dashed) and for triplets (right; a matched predicted object shares its GT node)."""
    from matplotlib.patches import Rectangle

    d = GraphDiff(gt, pred, iou_threshold)
    fig = new_figure(figsize)
    ax_img, ax_graph = fig.subplots(1, 2)
    ax_img.imshow(image)
    ax_img.set_axis_off()
    c = d.counts
    ax_img.set_title(title or f"{c['matched']} matched, {c['missed']} missed, {c['false_positive']} false positive",
                     fontsize=9)
    for objs, hits, dashed in ((d.gt.objects, d.gt_obj_hit, False), (d.pred.objects, d.pred_obj_hit, True)):
        for o, hit in zip(objs, hits):
            if dashed and hit:
                continue  # a matched prediction sits on its GT box, already drawn green
            x1, y1, x2, y2 = o.bbox
            color = MATCHED if hit else (EXTRA if dashed else MISSED)
            ax_img.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=1.5,
                                       linestyle="--" if dashed else "-"))
            ax_img.text(x1, y1, o.id, fontsize=6, va="bottom", bbox=dict(facecolor=color, alpha=0.7, pad=0.4,
                                                                         linewidth=0))
    node = {o.id: o.id for o in d.gt.objects}
    nodes = [(o.id, _center(o.bbox), MATCHED if hit else MISSED) for o, hit in zip(d.gt.objects, d.gt_obj_hit)]
    for o, hit in zip(d.pred.objects, d.pred_obj_hit):
        if o.id in d.pred_to_gt:
            node.setdefault("pred:" + o.id, d.pred_to_gt[o.id])
        elif "pred:" + o.id not in node:
            node["pred:" + o.id] = "pred:" + o.id
            nodes.append(("pred:" + o.id, _center(o.bbox), EXTRA))
    edges = [(r.subject, r.object, r.predicate, MATCHED if hit else MISSED)
             for r, hit in zip(d.gt.relations, d.gt_rel_hit)]
    edges += [(node.get("pred:" + r.subject, ""), node.get("pred:" + r.object, ""), r.predicate, EXTRA)
              for r, hit in zip(d.pred.relations, d.pred_rel_hit) if not hit]
    draw_graph(nodes, edges, ax=ax_graph, title="triplets: green matched, red missed, grey false positive")
    return fig


def show(fig, folder: str | Path, name: str, dpi: int = 90) -> Path:
    """Save ``fig`` as ``folder/name.png`` (:func:`save_figure`) and display that PNG in the running notebook: the
    same picture in JupyterLab, under papermill and in the HTML export. Returns the path."""
    from IPython.display import Image, display

    path = save_figure(fig, folder, name, dpi)
    display(Image(filename=str(path)))
    return path


def save_figure(fig, folder: str | Path, name: str, dpi: int = 90) -> Path:
    """Save ``fig`` as ``folder/name.png`` (the folder is created) and return the path: notebooks save and show
    that PNG, which looks the same in JupyterLab, under papermill and in the HTML export."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=dpi)
    return path
