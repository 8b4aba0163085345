"""Box plots of densities per frame made directly in Bokeh: one box per group (quartiles, Tukey whiskers, outliers).

The statistics are computed here with numpy (:func:`box_stats`), so only a handful of numbers per group reach the
page, whatever the number of frames; the figure's sources are rewritten when the groups change (another load or
plan), the figure itself is made once.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from bokeh.models import ColumnDataSource, FactorRange, HoverTool, Rect, Scatter, Segment, VBar

from imagebinner.views.frame_figure import plain_figure

#: half the width of a box, in category units
BOX_HALF_WIDTH = 0.3
BOX_COLOUR = "#9ecae1"


def box_stats(values: np.ndarray) -> dict[str, float]:
    """Boxplot statistics of ``values``: quartiles, whiskers at the furthest values within 1.5 IQR of the box (Tukey),
    and the count."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        values = np.zeros(1)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    reach = 1.5 * (q3 - q1)
    low = float(values[values >= q1 - reach].min())
    high = float(values[values <= q3 + reach].max())
    return {"q1": float(q1), "median": float(median), "q3": float(q3), "low": low, "high": high, "n": len(values)}


def box_columns(groups: Mapping[str, np.ndarray], colours: Mapping[str, str] | None = None
                ) -> tuple[dict[str, list], dict[str, list], dict[str, list]]:
    """The columns of the boxes (one row per group: its statistics and colour), of the ticks (each group's median
    and whisker caps: group, value, width) and of the outliers (group, value)."""
    boxes: dict[str, list] = {k: [] for k in ("group", "q1", "median", "q3", "low", "high", "n", "colour")}
    ticks: dict[str, list] = {"group": [], "value": [], "width": []}
    outliers: dict[str, list] = {"group": [], "value": []}
    for name, values in groups.items():
        st = box_stats(values)
        for key in ("q1", "median", "q3", "low", "high", "n"):
            boxes[key].append(st[key])
        boxes["group"].append(name)
        boxes["colour"].append((colours or {}).get(name, BOX_COLOUR))
        for key, width in (("median", 2 * BOX_HALF_WIDTH), ("low", BOX_HALF_WIDTH), ("high", BOX_HALF_WIDTH)):
            ticks["group"].append(name)
            ticks["value"].append(st[key])
            ticks["width"].append(width)
        values = np.asarray(values, dtype=float)
        far = values[(values < st["low"]) | (values > st["high"])]
        outliers["group"] += [name] * len(far)
        outliers["value"] += far.tolist()
    return boxes, ticks, outliers


def box_figure(groups: Mapping[str, np.ndarray], ylabel: str, xlabel: str = "frames of", height: int = 260,
               colours: Mapping[str, str] | None = None) -> tuple[object, list[ColumnDataSource]]:
    """Box plots of ``groups`` (name -> values) on one axis across the page's width; returns the figure and the
    sources of the boxes, the ticks and the outliers (write :func:`box_columns` into them and set the x range's
    factors to show other groups). One renderer per layer, each with its one glyph (Bokeh's plotting methods add
    four more glyphs per renderer: a tenth of a second per figure)."""
    columns = box_columns(groups, colours)
    fig = plain_figure(x_range=FactorRange(*columns[0]["group"]), height=height, sizing_mode="stretch_width",
                       x_axis_label=xlabel, y_axis_label=ylabel)
    fig.xgrid.visible = False
    boxes, ticks, outliers = (ColumnDataSource(c) for c in columns)
    fig.add_glyph(boxes, Segment(x0="group", y0="low", x1="group", y1="high", line_color="black"))  # whiskers
    bars = fig.add_glyph(boxes, VBar(x="group", bottom="q1", top="q3", width=2 * BOX_HALF_WIDTH, fill_color="colour",
                                     line_color="black"))
    fig.add_glyph(ticks, Rect(x="group", y="value", width="width", height=2, height_units="screen",
                              fill_color="black", line_color="black"))  # medians and whisker caps
    fig.add_glyph(outliers, Scatter(x="group", y="value", size=6, fill_color="black", line_color="black"))
    fig.add_tools(HoverTool(renderers=[bars], tooltips=[("", "@group"), ("median", "@median{0.000}"),
                                                        ("quartiles", "@q1{0.000} – @q3{0.000}"),
                                                        ("frames", "@n")]))
    return fig, [boxes, ticks, outliers]
