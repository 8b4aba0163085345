"""Frame steps written straight into a rendered frame plot's Bokeh data sources (no HoloViews update per step).

A frame plot (image and mark layers in one HoloViews overlay) is rendered once per load; its sources are registered
by a plot hook (:meth:`FrameSources.hook`). A frame step, a threshold move or a class toggle then replaces the mark
layers' columns (one data change per source) and, when the frame changed, the image column only: a step is a handful
of data changes, not a HoloViews plot update (options, ranges, dim transforms, glyph updates per layer). The style
columns are the ones HoloViews' dim transforms made for the first render (same names, same values), so the glyphs
keep working unchanged.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

#: the style columns HoloViews makes from a layer's ``status`` (dim transforms of the layer's options)
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


def _style_from_columns(handles: Mapping) -> None:
    """Every glyph of a mark layer takes its marker, size, line width and colour from the source's columns: HoloViews
    draws a style that is the same for every mark of a frame (one class shown) as a constant, which the columns
    written by a later step would not change."""
    from bokeh.core.property.vectorization import Field

    mapper = next((m for k, m in handles.items() if k.endswith("color_mapper")), None)
    renderer = handles["glyph_renderer"]
    for name in ("glyph", "selection_glyph", "nonselection_glyph", "muted_glyph", "hover_glyph"):
        glyph = getattr(renderer, name, None)
        if glyph is None or isinstance(glyph, str):
            continue
        updates = {key: Field(key) for key in STYLE_KEYS if not isinstance(getattr(glyph, key), Field)}
        for key in ("line_color", "fill_color"):
            if not isinstance(getattr(glyph, key), Field):
                updates[key] = Field("color", transform=mapper) if mapper is not None else Field("color")
        if updates:
            glyph.update(**updates)


@dataclass(eq=False)
class _Target:
    """The sources of one rendered frame plot: its image (None when HoloViews keeps drawing it, e.g. rasterized) and
    its mark layers in overlay order, and the frame its image shows."""

    image: object | None
    marks: list = field(default_factory=list)
    frame: int | None = None


class FrameSources:
    """The rendered frame plots of a view, by image kind ("camera", "stacked"); plots that are gone drop out."""

    def __init__(self) -> None:
        self._plots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # HoloViews plot -> (kind, target)

    def hook(self, kind: str, frame: Callable[[], int], layers: Callable[[], list[dict]],
             push_image: bool = True) -> Callable:
        """A HoloViews hook of a frame overlay recording its sources (after each render by HoloViews); the mark
        layers' sources get the full styled columns (``layers()``) and their glyphs read their style from them."""

        def attach(plot, _element) -> None:
            subplots = list(getattr(plot, "subplots", {}).items())
            images = [sp for key, sp in subplots if key[0] == "Image"]
            image = images[0].handles.get("source") if push_image and images else None
            points = [sp for key, sp in subplots if key[0] == "Points" and "source" in sp.handles]
            for sp, columns in zip(points, layers()):
                if set(columns) - set(sp.handles["source"].data):  # (a constant style HoloViews left out)
                    sp.handles["source"].data = dict(columns)
                _style_from_columns(sp.handles)
            self._plots[plot] = (kind, _Target(image, [sp.handles["source"] for sp in points], frame()))

        return attach

    def __len__(self) -> int:
        return len(self._plots)

    def push(self, frame: int, image_of: Callable[[str], np.ndarray | None], layers: list[dict]) -> int:
        """Write ``layers`` (styled columns, overlay order) into every registered plot's mark sources and, where the
        shown frame changed, the frame's image (``image_of(kind)``, computed once per kind). Returns the number of
        sources changed."""
        changed = 0
        images: dict[str, np.ndarray | None] = {}
        for _plot, (kind, target) in list(self._plots.items()):
            if target.image is not None and target.frame != frame:
                if kind not in images:
                    images[kind] = image_of(kind)
                image = images[kind]
                if image is not None and np.shape(target.image.data["image"][0]) == image.shape:
                    target.image.data.update(image=[image])  # one column: x, y, dw, dh stay
                    changed += 1
                target.frame = frame
            for source, columns in zip(target.marks, layers):
                source.data = dict(columns)
                changed += 1
        return changed

    def figures(self) -> list:
        """The Bokeh figures of the registered plots."""
        return [plot.state for plot in list(self._plots.keys()) if getattr(plot, "state", None) is not None]
