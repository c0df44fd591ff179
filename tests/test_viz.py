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


# -- the diff, filtering and the graph beside the image ----------------------------------------------------------------
PRED = {"objects": [{"id": "cat.1", "bbox": [5, 5, 30, 30]}, {"id": "mat.1", "bbox": [0, 33, 64, 64]},
                    {"id": "dog.1", "bbox": [40, 40, 50, 50]}],
        "relationships": [{"subject": "cat.1", "predicate": "on", "object": "mat.1"},
                          {"subject": "dog.1", "predicate": "on", "object": "mat.1"}]}
GT = {**ROW, "relationships": ROW["relationships"][:1] + [{"subject": "cat.2", "predicate": "on", "object": "mat.1"}]}


def test_graph_diff_follows_hard_recall():
    # GT cat.1-on-mat is hit (IoU >= 0.5, same names), cat.2-on-mat missed; dog-on-mat is a false positive;
    # objects: cat.2 unmatched on the GT side, dog.1 on the predicted side
    d = viz.GraphDiff(GT, PRED)
    assert d.gt_rel_hit == [True, False] and d.pred_rel_hit == [True, False]
    assert d.counts == {"matched": 1, "missed": 1, "false_positive": 1}
    assert d.gt_obj_hit == [True, False, True] and d.pred_obj_hit == [True, True, False]
    assert d.pred_to_gt == {"cat.1": "cat.1", "mat.1": "mat.1"}
    assert viz.GraphDiff(GT, None).counts == {"matched": 0, "missed": 2, "false_positive": 0}  # a failed parse


def test_draw_diff_colours():
    # boxes: matched green, missed red, unmatched prediction grey and dashed; edges carry the same three colours
    from matplotlib.colors import to_hex

    fig = viz.draw_diff(ROW["image"], GT, PRED)
    ax_img, ax_graph = fig.axes
    boxes = {(to_hex(p.get_edgecolor()), p.get_linestyle()) for p in ax_img.patches if isinstance(p, Rectangle)}
    assert boxes == {(viz.MATCHED, "-"), (viz.MISSED, "-"), (viz.EXTRA, "--")}
    edges = {to_hex(p.get_edgecolor()) for p in ax_graph.patches if isinstance(p, FancyArrowPatch)}
    assert edges == {viz.MATCHED, viz.MISSED, viz.EXTRA}
    assert "pred:dog.1" in {t.get_text() for t in ax_graph.texts}


def test_image_and_graph_share_colours_and_filter():
    # node colour = its box colour; the predicate filter and hide-isolated drop what they should
    from matplotlib.collections import PathCollection
    from matplotlib.colors import to_hex

    fig = viz.draw_image_and_graph(ROW["image"], ROW)
    ax_img, ax_graph = fig.axes
    box_colors = {to_hex(p.get_edgecolor()) for p in ax_img.patches if isinstance(p, Rectangle)}
    node_colors = {to_hex(c) for coll in ax_graph.collections if isinstance(coll, PathCollection)
                   for c in coll.get_facecolors()}
    assert node_colors == box_colors and len(box_colors) == 2
    g = viz.filter_graph(PRED, predicates=["near"], hide_isolated=True)
    assert g.relations == () and g.objects == ()
    g = viz.filter_graph(PRED, hide_isolated=True)
    assert [o.id for o in g.objects] == ["cat.1", "mat.1", "dog.1"] and len(g.relations) == 2


def test_prediction_in_pixels_uses_the_box_scale():
    # a Qwen2-VL 0-1000 box on a 64-px image lands at 64/1000 of its value; a failure gives no graph
    result, g = viz.prediction_in_pixels({"completion": '{"objects": [{"id": "cat.1", "bbox": [0, 0, 500, 1000]}],'
                                                        ' "relationships": []}', "box_scale": [1000, 1000]}, 64, 64)
    assert result.ok and g.objects[0].bbox == (0.0, 0.0, 32.0, 64.0)
    result, g = viz.prediction_in_pixels({"completion": "no graph"}, 64, 64)
    assert g is None and result.failure.value == "no_answer"
