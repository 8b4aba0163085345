"""Frame plots made directly as Bokeh figures: a frame in nm with mark layers, colour bar and legend, no HoloViews.

A frame plot of the review (and of the Binner) is drawn once per load and then changed by writes into its data
sources (:mod:`.frame_sources`). HoloViews needs about 0.2 s of a session's start per such plot (options, ranges,
dim transforms, five glyphs per layer); the same figure made here takes a tenth of that and has fewer models for the
browser to build. The geometry is :mod:`.frames`' own: pixel ``j`` of a frame whose pixel centres lie at
``(j + offset)·ps`` nm covers ``[(j + offset − ½)·ps, (j + offset + ½)·ps]``; the y axis points down (row 0 at the
top, as the camera sees it); fields larger than :data:`~.frames.MICRONS_ABOVE_NM` get axes labelled in µm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    EqHistColorMapper,
    HoverTool,
    Image,
    LinearColorMapper,
    Line,
    Quad,
    Range1d,
    Scatter,
    Span,
)
from bokeh.plotting import figure as bokeh_figure

from imagebinner.views.frames import (
    CROSS_OPTS,
    FRAME_BOX,
    MARKER_OPTS,
    REGION_OPTS,
    field_extent_nm,
    frame_size,
    in_microns,
    length_axes,
    micron_formatter,
)

#: the tools of every figure made here (HoloViews' defaults; hover tools are added per layer)
TOOLS = "pan,wheel_zoom,box_zoom,save,reset"


def plain_figure(**options):
    """A Bokeh figure with :data:`TOOLS` and no Bokeh logo (``options`` as for ``bokeh.plotting.figure``)."""
    fig = bokeh_figure(tools=TOOLS, **options)
    fig.toolbar.logo = None
    return fig


def palette(cmap: str, n: int = 256) -> list[str]:
    """``n`` colours of a named colour map (HoloViews' names: "gray", "fire", "viridis", ...)."""
    from holoviews.plotting.util import process_cmap

    return list(process_cmap(cmap, n))


@dataclass(eq=False)
class FramePlot:
    """A drawn frame plot: the figure, the image's data source (None: no image) and the mark layers' sources."""

    figure: object
    image: ColumnDataSource | None = None
    marks: list[ColumnDataSource] = field(default_factory=list)


def frame_figure(shape: tuple[int, int], pixel_size: float, image: np.ndarray | None = None, *, offset: float = 0.5,
                 cmap: str = "gray", clim: tuple[float, float] | None = None, eq_hist: bool = False,
                 colorbar: bool = False, title: str = "", box: tuple[int, int] = FRAME_BOX) -> FramePlot:
    """A frame plot of a field of ``shape`` (rows, columns) pixels of ``pixel_size`` nm whose pixel centres lie at
    ``(j + offset)·pixel_size`` (camera frames 0.5, Deep-STORM hr images 0), with ``image`` drawn if given:
    ``clim`` fixes the colour scale (else each frame's range), ``eq_hist`` equalises its histogram, ``colorbar``
    shows the scale ("intensity")."""
    rows, cols = int(shape[0]), int(shape[1])
    x0 = y0 = (offset - 0.5) * pixel_size
    width, height = cols * pixel_size, rows * pixel_size
    extent = field_extent_nm(shape, pixel_size)
    labels = length_axes(extent)
    fig = plain_figure(title=title or None, x_range=Range1d(x0, x0 + width), y_range=Range1d(y0 + height, y0),
                       x_axis_label=labels["xlabel"], y_axis_label=labels["ylabel"], match_aspect=False,
                       **frame_size(shape, box))
    fig.grid.visible = False
    if in_microns(extent):  # ticks in µm
        for axis in (*fig.xaxis, *fig.yaxis):
            axis.formatter = micron_formatter()
    plot = FramePlot(fig)
    if image is not None:
        low, high = clim if clim is not None else (None, None)
        mapper_type = EqHistColorMapper if eq_hist else LinearColorMapper
        mapper = mapper_type(palette=palette(cmap), low=low, high=high)
        plot.image = ColumnDataSource({"image": [image], "x": [x0], "y": [y0], "dw": [width], "dh": [height]})
        renderer = fig.add_glyph(plot.image, Image(image="image", x="x", y="y", dw="dw", dh="dh", color_mapper=mapper))
        fig.add_tools(HoverTool(renderers=[renderer], tooltips=[("x [nm]", "$x{0.0}"), ("y [nm]", "$y{0.0}"),
                                                                ("intensity", "@image")]))
        if colorbar:
            fig.add_layout(ColorBar(color_mapper=mapper, title="intensity", width=12), "right")
    return plot


def add_marks(plot: FramePlot, columns: Mapping[str, object], *, colour_mapper: LinearColorMapper | None = None,
              tooltips: Sequence[tuple[str, str]] = (("x [nm]", "@x{0.0}"), ("y [nm]", "@y{0.0}"),
                                                     ("class", "@status"))) -> ColumnDataSource:
    """A mark layer whose marks take marker, size, line width and colour from the columns of the same names
    (:func:`~.frame_sources.styled_columns`); ``colour_mapper`` maps the ``color`` column (e.g. confidences) to
    colours. Unfilled marks; returns the layer's data source."""
    source = ColumnDataSource(dict(columns))
    colour = {"field": "color", "transform": colour_mapper} if colour_mapper is not None else "color"
    glyph = Scatter(x="x", y="y", marker="marker", size="size", line_width="line_width", line_color=colour,
                    fill_color=colour, fill_alpha=0.0)
    renderer = plot.figure.add_glyph(source, glyph)
    plot.figure.add_tools(HoverTool(renderers=[renderer], tooltips=list(tooltips)))
    plot.marks.append(source)
    return source


def colour_bar(plot: FramePlot, cmap: str, clim: tuple[float, float], title: str) -> LinearColorMapper:
    """A colour scale ``clim`` of ``cmap`` shown as a colour bar right of the frame; returns its mapper."""
    low, high = clim
    mapper = LinearColorMapper(palette=palette(cmap), low=low, high=high if high > low else low + 1)
    plot.figure.add_layout(ColorBar(color_mapper=mapper, title=title, width=12), "right")
    return mapper


def add_crosses(plot: FramePlot, columns: Mapping[str, object]) -> ColumnDataSource:
    """Localizations (columns ``x``, ``y`` in nm) as red crosses (:data:`~.frames.CROSS_OPTS`)."""
    source = ColumnDataSource(dict(columns))
    look = CROSS_OPTS
    glyph = Scatter(x="x", y="y", marker=look["marker"], size=look["size"], line_color=look["color"],
                    line_width=look["line_width"])
    renderer = plot.figure.add_glyph(source, glyph)
    plot.figure.add_tools(HoverTool(renderers=[renderer], tooltips=[("x [nm]", "@x{0.0}"), ("y [nm]", "@y{0.0}")]))
    plot.marks.append(source)
    return source


def add_regions(plot: FramePlot, columns: Mapping[str, object]) -> ColumnDataSource:
    """Rectangles (columns ``left``, ``bottom``, ``right``, ``top`` in nm) outlined as :data:`~.frames.REGION_OPTS`."""
    source = ColumnDataSource(dict(columns))
    plot.figure.add_glyph(source, Quad(left="left", right="right", bottom="bottom", top="top", **REGION_OPTS))
    plot.marks.append(source)
    return source


def series_columns(values: np.ndarray, counts: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The columns of a per-frame series: ``frame`` (0..n-1), ``density`` and, if given, the raw ``count``."""
    columns = {"frame": np.arange(len(values)), "density": np.asarray(values, dtype=np.float64)}
    if counts is not None:
        columns["count"] = np.asarray(counts)
    return columns


def series_figure(columns: Mapping[str, np.ndarray], xlabel: str, ylabel: str, count_label: str = "count",
                  marker: float = 0.0, height: int = 190) -> tuple[object, ColumnDataSource, Span]:
    """A per-frame series (:func:`series_columns`) as a line across the page's width, the shown frame marked by a
    vertical line (moved by a step, the series unchanged); returns the figure, its source and the marker."""
    fig = plain_figure(height=height, sizing_mode="stretch_width", x_axis_label=xlabel, y_axis_label=ylabel)
    source = ColumnDataSource(dict(columns))
    line = fig.add_glyph(source, Line(x="frame", y="density", line_width=2, line_color="#30a2da"))
    tips = [(xlabel, "@frame"), (ylabel, "@density{0.000}")]
    if "count" in columns:
        tips.append((count_label, "@count"))
    fig.add_tools(HoverTool(renderers=[line], tooltips=tips, mode="vline"))
    span = Span(location=marker, dimension="height", line_color=MARKER_OPTS["color"],
                line_width=MARKER_OPTS["line_width"])
    fig.add_layout(span)
    return fig, source, span
