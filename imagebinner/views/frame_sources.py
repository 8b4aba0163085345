"""Frame steps written straight into a drawn plot's Bokeh data sources (no plot update per step).

The frame plots (a frame image and its mark layers: the review's frames with their marks, the Binner's input frame
with its crosses and part windows) and the Binner's density series are Bokeh figures made by :mod:`.frame_figure`
when their data change as a whole (a load, another frame geometry), registered with :meth:`FrameSources.register`.
A frame step (and in the review a threshold move or a class toggle) then replaces the mark layers' columns (one data
change per source), the image column only when the frame changed, and moves the frame markers: a handful of model
changes, not a plot update. The review's marks take their marker, size, line width and colour from columns of their
source (:func:`styled_columns`), so one write restyles every mark.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

import numpy as np

#: the style columns of a mark layer, from each mark's class (``status``)
STYLE_KEYS = ("line_width", "marker", "size")


def styled_columns(data: Mapping[str, np.ndarray], looks: Mapping[str, Mapping], colour_by: str | None = None
                   ) -> dict[str, object]:
    """A mark layer's columns as its rendered source holds them: ``x``, ``y``, ``status`` (and the confidence), plus
    ``color`` (the ``colour_by`` column for a colour-mapped layer, else each class's colour) and the marker, size and
    line width of each mark's class (``looks``: class -> options)."""
    names = np.asarray(data["status"], dtype=str)
    classes, index = np.unique(names, return_inverse=True)
    out: dict[str, object] = {"x": np.asarray(data["x"], dtype=float), "y": np.asarray(data["y"], dtype=float),
                              "status": names.tolist()}
    if colour_by is not None:
        out[colour_by] = np.asarray(data[colour_by], dtype=float)
        out["color"] = out[colour_by]
    else:
        out["color"] = [str(looks[c]["color"]) for c in classes[index]] if len(names) else []
    for key in STYLE_KEYS:
        values = np.asarray([looks[c][key] for c in classes]) if len(classes) else np.empty(0)
        column = values[index] if len(names) else values
        out[key] = column.tolist() if key == "marker" else np.asarray(column, dtype=float)
    return out


@dataclass(eq=False)
class _Target:
    """One rendered plot: its kind, the data source of each layer (overlay order; the first is the image when
    ``image`` is set), its frame markers (Bokeh ``Span``) and the frame its image shows."""

    kind: str
    sources: list = field(default_factory=list)
    image: bool = False
    spans: list = field(default_factory=list)
    frame: object = None


class FrameSources:
    """The rendered frame plots of a view by kind (e.g. "camera", "stacked", "input"); plots that are gone (cleaned
    up by Panel, garbage-collected) drop out."""

    def __init__(self) -> None:
        self._plots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Bokeh figure -> target

    def register(self, kind: str, plot, frame: object, spans: list | tuple = ()) -> None:
        """A plot drawn directly in Bokeh (a :class:`~.frame_figure.FramePlot` showing ``frame``: a frame plot, or a
        per-frame series whose line is its one mark layer): its image source (if any) and mark sources get the
        writes of :meth:`push`, its frame markers ``spans`` the marker."""
        sources = ([plot.image] if plot.image is not None else []) + list(plot.marks)
        self._plots[plot.figure] = _Target(kind, sources, plot.image is not None, list(spans), frame)

    def __len__(self) -> int:
        return len(self._plots)

    def push(self, frame: object, image_of: Callable[[str], np.ndarray | None],
             layers: Callable[[str], list[dict | None]], marker: float | None = None,
             also: Callable[[str, object], None] | None = None) -> int:
        """Write the new frame into every registered plot: where the shown ``frame`` changed, the image column (the
        frame of ``image_of(kind)``, read once per kind); the layers' columns (``layers(kind)``: one dict per layer
        after the image, None = unchanged); frame markers moved to ``marker``; ``also(kind, figure)`` for anything else.
        Computed now; written at once in the session's own thread (events not held for the document lock), else on
        the session's next tick; in a notebook sent over the output's comm. Returns the number of plots written."""
        images: dict[str, np.ndarray | None] = {}
        columns: dict[str, list] = {}
        writes: dict[object, list[Callable[[], None]]] = {}
        for plot, target in list(self._plots.items()):
            kind = target.kind
            new = None
            if target.image and target.frame != frame:
                if kind not in images:
                    images[kind] = image_of(kind)
                new = images[kind]
            if kind not in columns:
                columns[kind] = layers(kind)
            target.frame = frame
            doc = plot.document
            writes.setdefault(doc, []).append(partial(_write, target, new, columns[kind], marker, also, plot))
        for doc, work in writes.items():
            _dispatch(doc, work)
        return sum(len(w) for w in writes.values())


def _write(target: _Target, image: np.ndarray | None, layers: list, marker: float | None,
           also: Callable[[str, object], None] | None, plot) -> None:
    """One plot's new frame written into its models (one change per data source)."""
    sources = list(target.sources)
    if target.image:
        source = sources.pop(0)
        if image is not None and source is not None and np.shape(source.data["image"][0]) == image.shape:
            source.data.update(image=[image])  # one column: x, y, dw, dh stay
    for source, data in zip(sources, layers):
        if source is not None and data is not None:
            source.data = dict(data)
    for span in target.spans:
        if marker is not None and span.location != marker:
            span.location = marker
    if also is not None:
        also(target.kind, plot)


def _dispatch(doc, work: list[Callable[[], None]]) -> None:
    """Run model writes for ``doc`` as Panel does: in a server session at once (events dispatched without
    waiting for the document lock) in the session's own thread, else on its next tick; in a notebook output held and
    sent over the output's comm."""
    from panel.io.document import unlocked
    from panel.io.state import state

    def run() -> None:
        for write in work:
            write()

    comm = _notebook_comm(doc)
    if comm is not None:  # the changes collected (held) and sent as one patch, as Panel sends its own
        from panel.io.notebook import push

        held = doc.callbacks.hold_value
        if not held:
            doc.hold("combine")
        try:
            run()
            push(doc, comm)
        finally:
            if not held:
                doc.unhold()
        return
    if doc is not None and doc.session_context is not None and not state._unblocked(doc):
        doc.add_next_tick_callback(run)
        return
    with unlocked():
        run()


def _notebook_comm(doc):
    """The comm of the notebook output rendering ``doc`` (None for server sessions and unrendered documents)."""
    if doc is None or doc.session_context is not None:
        return None
    from panel.io.state import state

    return next((comm for _view, _root, d, comm in list(state._views.values()) if d is doc and comm is not None),
                None)
