"""The pure drawing functions return Figures with the expected artists (no pyplot state, headless)."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
from PIL import Image

from sgglib import viz

ROW = {"image_id": "a", "image": Image.new("RGB", (64, 64)), "width": 64, "height": 64,
       "objects": [{"id": "cat.1", "bbox": [4, 4, 30, 30]}, {"id": "cat.2", "bbox": [34, 4, 60, 30]},
                   {"id": "mat.1", "bbox": [0, 32, 64, 64]}],
       "relationships": [{"subject": "cat.1", "predicate": "on", "object": "mat.1"},
                         {"subject": "cat.2", "predicate": "near", "object": "dog.1"}]}


def test_draw_scene_graph_boxes_labels_arrows():
    # one box per object, one colour per category, arrows only between listed ids
    fig = viz.draw_scene_graph(ROW["image"], ROW)
    ax = fig.axes[0]
    rects = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert isinstance(fig, Figure) and len(rects) == 3
    assert rects[0].get_edgecolor() == rects[1].get_edgecolor() != rects[2].get_edgecolor()
    assert sum(isinstance(p, FancyArrowPatch) for p in ax.patches) == 1
    assert {"cat.1", "cat.2", "mat.1", "on"} <= {t.get_text() for t in ax.texts}


def test_grids_and_charts():
    assert len(viz.draw_examples([ROW, ROW], ncols=3).axes) == 2
    assert isinstance(viz.bar_counts({"on": 5, "near": 1}, log=True), Figure)
    assert isinstance(viz.histogram([1, 2, 2, 5]), Figure)
