"""An ipywidgets scene-graph viewer: a thin shell over the pure drawing functions of :mod:`sgglib.viz`.

Choose a run (or the ground truth alone) and an image — from the list, by id, or with prev/next — and toggle what
is drawn: the ground truth, the prediction, or their diff by the Hard Recall rule. Predicates can be filtered and
objects in no shown relation hidden; the raw completion and the parser's failure reason sit underneath.

Under papermill widgets render only as text, so notebooks also call :func:`static_panels` for a fixed list of
images.

>>> v = Viewer(rows, {"sft": records})           # doctest: +SKIP
>>> v.widget                                      # doctest: +SKIP   (the last expression of a cell shows it)
"""

from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

from . import viz
from .graph import SceneGraph

GT_ONLY = "(ground truth only)"
MODES = ("ground truth", "prediction", "diff")


def _records_by_id(records: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    if isinstance(records, Mapping):
        return {str(k): v for k, v in records.items()}
    return {str(r["image_id"]): r for r in records if r.get("sample", 0) == 0}  # first sample of each image


def render(row: Mapping[str, Any], record: Mapping[str, Any] | None, mode: str = "ground truth",
           predicates: Sequence[str] | None = None, hide_isolated: bool = False, figsize=(10, 4.8)):
    """One panel as a Figure: ``mode`` is ``ground truth``, ``prediction`` or ``diff``; ``record`` is the image's
    ``predictions.jsonl`` record (None: no prediction). What the widget shows, and what headless notebooks draw."""
    gt = viz.filter_graph(row, predicates, hide_isolated)
    image_id = row["image_id"]
    if mode == "ground truth" or record is None:
        suffix = "" if mode == "ground truth" else " (no prediction for this image)"
        return viz.draw_image_and_graph(row["image"], gt, title=f"{image_id}: ground truth{suffix}", figsize=figsize)
    result, pred = viz.prediction_in_pixels(record, row["width"], row["height"])
    if pred is None:  # the diff of a failure: every GT triplet missed, as the metric counts it
        title = f"{image_id}: prediction failed ({result.failure.value})"
        if mode == "diff":
            return viz.draw_diff(row["image"], gt, None, title=title, figsize=figsize)
        return viz.draw_image_and_graph(row["image"], SceneGraph(), title=title, figsize=figsize)
    pred = viz.filter_graph(pred, predicates, hide_isolated)
    if mode == "prediction":
        colors = viz.category_colors(gt.categories + pred.categories)  # a category keeps its GT colour
        return viz.draw_image_and_graph(row["image"], pred, title=f"{image_id}: prediction", colors=colors,
                                        figsize=figsize)
    return viz.draw_diff(row["image"], gt, pred, figsize=figsize)


def static_panels(rows, runs: Mapping[str, Any], image_ids: Sequence[Any], mode: str = "diff"):
    """Figures for a fixed list of images and every run (the headless stand-in for the widget)."""
    index = {str(i): k for k, i in enumerate(_column(rows, "image_id"))}
    figs = []
    for image_id in image_ids:
        if str(image_id) not in index:
            continue
        row = rows[index[str(image_id)]]
        for name, records in runs.items():
            fig = render(row, _records_by_id(records).get(str(image_id)), mode)
            fig.suptitle(name, fontsize=10)
            figs.append(fig)
    return figs


def _column(rows, key: str) -> list:
    # a datasets.Dataset reads one column without decoding the images
    return list(rows[key]) if hasattr(rows, "column_names") else [r[key] for r in rows]


def png_bytes(fig, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


class Viewer:
    """The widget. ``rows``: dataset rows (``sgglib.data`` schema, a list or a ``datasets.Dataset``); ``runs``:
    run name → ``predictions.jsonl`` records (a list, or image id → record). ``widget`` is the ipywidgets box."""

    def __init__(self, rows, runs: Mapping[str, Any] | None = None, max_listed: int = 500):
        import ipywidgets as w

        self.rows = rows
        self.runs = {name: _records_by_id(r) for name, r in (runs or {}).items()}
        ids = [str(i) for i in _column(rows, "image_id")]
        self.index = {i: k for k, i in enumerate(ids)}
        preds = sorted({r["predicate"] for rels in _column(rows, "relationships") for r in rels})
        self.run = w.Dropdown(options=[GT_ONLY, *self.runs], value=next(iter(self.runs), GT_ONLY),
                              description="run")
        self.image = w.Dropdown(options=ids[:max_listed], value=ids[0], description="image")
        self.image_id = w.Text(placeholder="image id, Enter", description="go to id", continuous_update=False)
        self.prev, self.next = w.Button(description="◀ prev"), w.Button(description="next ▶")
        self.mode = w.ToggleButtons(options=MODES, value="diff" if self.runs else "ground truth")
        self.predicates = w.SelectMultiple(options=preds, rows=min(6, max(2, len(preds))),
                                           description="predicates")
        self.hide_isolated = w.Checkbox(value=False, description="hide isolated nodes")
        self.picture = w.Image(format="png", layout=w.Layout(max_width="100%"))
        self.status = w.HTML()
        self.completion = w.Textarea(disabled=True, layout=w.Layout(width="100%", height="8em"),
                                     description="completion")
        for control in (self.run, self.image, self.mode, self.predicates, self.hide_isolated):
            control.observe(lambda _change: self.refresh(), names="value")
        self.image_id.observe(self._go_to_id, names="value")
        self.prev.on_click(lambda _b: self._step(-1))
        self.next.on_click(lambda _b: self._step(+1))
        self.widget = w.VBox([
            w.HBox([self.run, self.mode]),
            w.HBox([self.image, self.prev, self.next, self.image_id]),
            w.HBox([self.predicates, self.hide_isolated]),
            self.picture, self.status, self.completion,
        ])
        self.refresh()

    # -- state ------------------------------------------------------------------------------------------------------
    def _step(self, delta: int) -> None:
        ids = list(self.image.options)
        self.image.value = ids[(ids.index(self.image.value) + delta) % len(ids)]

    def _go_to_id(self, change) -> None:
        image_id = str(change["new"]).strip()
        if not image_id:
            return
        if image_id not in self.index:
            self.status.value = f"<b>no image with id {image_id!r}</b>"
            return
        if image_id not in self.image.options:  # beyond the listed ones: list it
            self.image.options = [*self.image.options, image_id]
        self.image.value = image_id

    def figure(self):
        """The Figure for the current selection (a pure call into :func:`render`)."""
        row = self.rows[self.index[self.image.value]]
        record = self.runs.get(self.run.value, {}).get(self.image.value)
        mode = self.mode.value if self.run.value != GT_ONLY else "ground truth"
        return render(row, record, mode, list(self.predicates.value) or None, self.hide_isolated.value)

    def refresh(self) -> None:
        self.picture.value = png_bytes(self.figure())
        record = self.runs.get(self.run.value, {}).get(self.image.value)
        if record is None:
            self.completion.value = ""
            self.status.value = "no prediction" if self.run.value != GT_ONLY else ""
            return
        row = self.rows[self.index[self.image.value]]
        result, pred = viz.prediction_in_pixels(record, row["width"], row["height"])
        self.completion.value = str(record.get("completion"))
        if pred is None:
            self.status.value = (f"<b style='color:#d62728'>parse failure: {result.failure.value}</b> "
                                 f"{result.detail}")
            return
        c = viz.GraphDiff(row, pred).counts
        self.status.value = (f"parsed: {len(pred.objects)} objects, {len(pred.relations)} relations (dropped: "
                             f"{result.duplicate_ids} repeated ids, {result.dangling_relations} relations to unknown "
                             f"ids); triplets {c['matched']} matched, {c['missed']} missed, "
                             f"{c['false_positive']} false positive")
