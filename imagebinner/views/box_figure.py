"""Box plots of densities per frame made directly in Bokeh: one box per group (quartiles, Tukey whiskers, outliers).

The statistics are computed here with numpy (:func:`box_stats`), so only a handful of numbers per group reach the
page, whatever the number of frames; the figure's sources are rewritten when the groups change (another load or
plan), the figure itself is made once.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from bokeh.models import ColumnDataSource, FactorRange, HoverTool
from bokeh.plotting import figure as bokeh_figure

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
                ) -> tuple[dict[str, list], dict[str, list]]:
    """The columns of the boxes (one row per group: its statistics and colour) and of the outliers (group, value)."""
    boxes: dict[str, list] = {k: [] for k in ("group", "q1", "median", "q3", "low", "high", "n", "colour")}
    outliers: dict[str, list] = {"group": [], "value": []}
    for name, values in groups.items():
        st = box_stats(values)
        for key in ("q1", "median", "q3", "low", "high", "n"):
            boxes[key].append(st[key])
        boxes["group"].append(name)
        boxes["colour"].append((colours or {}).get(name, BOX_COLOUR))
        values = np.asarray(values, dtype=float)
        far = values[(values < st["low"]) | (values > st["high"])]
        outliers["group"] += [name] * len(far)
        outliers["value"] += far.tolist()
    return boxes, outliers


def box_figure(groups: Mapping[str, np.ndarray], ylabel: str, xlabel: str = "frames of", height: int = 260,
               colours: Mapping[str, str] | None = None) -> tuple[object, ColumnDataSource, ColumnDataSource]:
    """Box plots of ``groups`` (name -> values) on one axis across the page's width; returns the figure and the
    sources of the boxes and of the outliers (write :func:`box_columns` into them and set the x range's factors to
    show other groups)."""
    box_data, outlier_data = box_columns(groups, colours)
    fig = bokeh_figure(x_range=FactorRange(*box_data["group"]), tools="pan,wheel_zoom,box_zoom,save,reset",
                       height=height, sizing_mode="stretch_width", x_axis_label=xlabel, y_axis_label=ylabel)
    fig.toolbar.logo = None
    boxes, outliers = ColumnDataSource(box_data), ColumnDataSource(outlier_data)
    fig.segment(x0="group", y0="low", x1="group", y1="high", source=boxes, line_color="black")  # the whiskers
    bars = fig.vbar(x="group", bottom="q1", top="q3", width=2 * BOX_HALF_WIDTH, source=boxes, fill_color="colour",
                    line_color="black")
    for y, width in (("median", 2 * BOX_HALF_WIDTH), ("low", BOX_HALF_WIDTH), ("high", BOX_HALF_WIDTH)):
        fig.rect(x="group", y=y, width=width, height=2 if y == "median" else 1, height_units="screen",
                 source=boxes, color="black")  # the median and the whiskers' caps
    fig.scatter(x="group", y="value", source=outliers, size=6, color="black")
    fig.add_tools(HoverTool(renderers=[bars], tooltips=[("", "@group"), ("median", "@median{0.000}"),
                                                        ("quartiles", "@q1{0.000} – @q3{0.000}"),
                                                        ("frames", "@n")]))
    fig.xgrid.visible = False
    return fig, boxes, outliers
