"""The widget viewer (sgglib.viewer), driven through its controls without a browser: each control changes the
picture, and the status line names parse failures. tests/test_browser.py checks the same in JupyterLab."""

from __future__ import annotations

from matplotlib.figure import Figure
from PIL import Image

from sgglib import viewer

ROWS = [{"image_id": f"img{i}", "image": Image.new("RGB", (64, 64), (40 * i, 90, 120)), "width": 64, "height": 64,
         "objects": [{"id": "cat.1", "bbox": [4, 4, 30, 30]}, {"id": "mat.1", "bbox": [0, 32, 64, 64]},
                     {"id": "dog.1", "bbox": [40, 4, 60, 20]}],
         "relationships": [{"subject": "cat.1", "predicate": "on", "object": "mat.1"},
                           {"subject": "dog.1", "predicate": "near", "object": "cat.1"}]} for i in range(3)]
GOOD = ('{"objects": [{"id": "cat.1", "bbox": [62, 62, 469, 469]}, {"id": "mat.1", "bbox": [0, 500, 1000, 1000]}],'
        ' "relationships": [{"subject": "cat.1", "predicate": "on", "object": "mat.1"}]}')
RECORDS = [{"image_id": "img0", "completion": GOOD, "box_scale": [1000, 1000]},
           {"image_id": "img1", "completion": '{"objects": [', "box_scale": [1000, 1000]}]


def test_render_modes_return_figures():
    # every mode draws, including a failed parse (diff: all missed) and an image with no record
    for mode in viewer.MODES:
        for record in (RECORDS[0], RECORDS[1], None):
            assert isinstance(viewer.render(ROWS[0], record, mode), Figure)


def test_controls_change_the_picture_and_status():
    # image, mode, predicate filter, hide-isolated and go-to-id each re-render; failures show their reason
    v = viewer.Viewer(ROWS, {"sft": RECORDS})
    assert v.mode.value == "diff" and "1 matched, 1 missed" in v.status.value
    seen = {bytes(v.picture.value)}
    v.next.click()
    assert v.image.value == "img1" and "parse failure: truncated" in v.status.value
    assert v.completion.value == '{"objects": ['
    seen.add(bytes(v.picture.value))
    v.image_id.value = "img0"
    v.mode.value = "prediction"
    seen.add(bytes(v.picture.value))
    v.predicates.value = ("near",)
    seen.add(bytes(v.picture.value))
    v.hide_isolated.value = True
    seen.add(bytes(v.picture.value))
    v.image_id.value = "nope"
    assert "no image with id" in v.status.value
    assert len(seen) == 5 and all(p.startswith(b"\x89PNG") for p in seen)


def test_static_panels_skip_unknown_ids():
    # the headless stand-in: one figure per (image, run), unknown ids skipped
    figs = viewer.static_panels(ROWS, {"a": RECORDS, "b": RECORDS}, ["img0", "missing", "img2"])
    assert len(figs) == 4
