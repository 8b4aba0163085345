"""Camera frames with localization crosses, in nanometres with the corner convention; densities per frame.

Pixel ``j`` of a camera frame is drawn centred at ``(j + 0.5) * pixel_size`` nm, so canonical localizations
(nm, origin at the corner of pixel (0, 0)) overlay without any conversion. Data stay in nm everywhere; fields larger
than :data:`MICRONS_ABOVE_NM` get axes labelled in µm (:func:`length_axes`: a tick formatter divides by 1000), so
large images do not get 55 000 nm tick labels. Hover tools keep showing nm.
"""

from __future__ import annotations

import time

import holoviews as hv
import numpy as np
from bokeh.models import CustomJSTickFormatter

from imagebinner.io import Movie

#: frame plots have a fixed size with the image's aspect (see :func:`frame_size`): a responsive plot in a stretched
#: pane fills the pane and squashes the image (``data_aspect`` is not kept by Bokeh with fixed ranges)
FRAME_OPTS = dict(cmap="gray", invert_yaxis=True, colorbar=True, tools=["hover"], responsive=False)
#: the largest frame (inside the axes) of a frame plot, width × height in screen pixels
FRAME_BOX = (420, 340)
CROSS_OPTS = dict(marker="x", size=10, color="red", line_width=1.5)
#: fields (the larger side, nm) above this get axes in µm: nm ticks would have five or more digits
MICRONS_ABOVE_NM = 10_000.0
#: the y label of densities per frame (localizations or emitters per µm² of the field)
DENSITY_LABEL = "per µm²"
MARKER_OPTS = dict(color="orange", line_width=1.5)
#: x and y of frames in nm (the hover tool shows nm; axes may be labelled in µm, see :func:`length_axes`)
NM_KDIMS = [hv.Dimension("x", label="x [nm]"), hv.Dimension("y", label="y [nm]")]


def canvas_plots() -> None:
    """Draw every plot on a 2-D canvas, not with WebGL (HoloViews' default): these plots hold one frame and up to a
    few thousand marks (the super-resolution view is a datashaded image), where a canvas draws at once, while each
    WebGL plot compiles its shaders and copies its pixels back to the page on every paint. Measured in Chromium
    (software GL, as on a remote desktop or a machine without a GPU): the review page ready in 1.75 s instead of
    2.1 s. Browsers also cap the live WebGL contexts per page (16 in Chromium), which a page of frame plots reaches."""
    from holoviews.plotting.bokeh import BokehRenderer

    BokehRenderer.webgl = False


canvas_plots()


def micron_formatter() -> CustomJSTickFormatter:
    """A tick formatter showing nm data in µm (a new Bokeh model each call: a model belongs to one document)."""
    return CustomJSTickFormatter(code="return Number((tick / 1000).toPrecision(6)).toString();")


def micron_ticks(plot, element) -> None:
    """HoloViews hook: tick labels of a plot's x and y axes in µm (nm data). The formatter is made once per plot, so
    frame updates do not replace it (no new model per step), and a plot never shares it with another document."""
    for axis in (*plot.state.xaxis, *plot.state.yaxis):
        if not isinstance(axis.formatter, CustomJSTickFormatter):
            axis.formatter = micron_formatter()


def in_microns(extent_nm: float) -> bool:
    """True when a field whose larger side is ``extent_nm`` gets axes labelled in µm (:data:`MICRONS_ABOVE_NM`)."""
    return extent_nm > MICRONS_ABOVE_NM


def length_axes(extent_nm: float) -> dict:
    """Plot options labelling the x and y axes of nm data: in nm, or in µm (ticks divided by 1000, the
    :func:`micron_ticks` hook) when the field is large (:func:`in_microns`)."""
    if not in_microns(extent_nm):
        return {"xlabel": "x [nm]", "ylabel": "y [nm]"}
    return {"xlabel": "x [µm]", "ylabel": "y [µm]", "hooks": [micron_ticks]}


def field_extent_nm(shape: tuple[int, int], pixel_size: float) -> float:
    """The larger side (nm) of a field of ``shape`` (rows, columns) pixels."""
    return float(max(int(shape[0]), int(shape[1]))) * float(pixel_size)


def field_area_um2(shape: tuple[int, int], pixel_size: float) -> float:
    """Area (µm²) of a field of ``shape`` (rows, columns) pixels of ``pixel_size`` nm."""
    return int(shape[0]) * int(shape[1]) * (float(pixel_size) / 1000.0) ** 2


def frame_size(shape: tuple[int, int], box: tuple[int, int] = FRAME_BOX) -> dict[str, int]:
    """``frame_width``/``frame_height`` of the largest plot frame inside ``box`` (width, height in screen pixels)
    with the aspect of an image of ``shape`` (rows, columns; square pixels)."""
    rows, cols = max(int(shape[0]), 1), max(int(shape[1]), 1)
    scale = min(box[0] / cols, box[1] / rows)
    return {"frame_width": max(round(cols * scale), 20), "frame_height": max(round(rows * scale), 20)}


def frame_image(frame: np.ndarray, pixel_size: float, clim: tuple[float, float] | None = None,
                label: str = "", axes: bool = True) -> hv.Image:
    """A camera frame as an ``hv.Image`` in nm: pixel (row r, col j) centred at ((j+0.5)·ps, (r+0.5)·ps).

    ``axes``: label the axes for the field's size (µm for large fields, :func:`length_axes`)."""
    height, width = frame.shape
    xs = (np.arange(width) + 0.5) * pixel_size
    ys = (np.arange(height) + 0.5) * pixel_size
    img = hv.Image((xs, ys, frame), kdims=NM_KDIMS, vdims=["intensity"], label=label)
    opts = dict(FRAME_OPTS, **frame_size(frame.shape))
    if axes:
        opts.update(length_axes(field_extent_nm(frame.shape, pixel_size)))
    if clim is not None:
        opts["clim"] = clim
    return img.opts(**opts)


def crosses(x: np.ndarray, y: np.ndarray, label: str = "localizations", **opts) -> hv.Points:
    """Localizations as red crosses (``hv.Points`` with x, y in nm)."""
    pts = hv.Points((np.asarray(x), np.asarray(y)), kdims=["x", "y"], label=label)
    return pts.opts(**{**CROSS_OPTS, **opts})


def counts_curve(counts: np.ndarray, current: int | None = None, ylabel: str = "localizations per frame",
                 label: str = "") -> hv.Overlay:
    """Counts per frame (empty frames included) with a marker at the current frame."""
    frames = np.arange(len(counts))
    curve = hv.Curve((frames, counts), "frame", ylabel, label=label).opts(responsive=True, height=180,
                                                                           tools=["hover"], framewise=True)
    marker = hv.VLine(current if current is not None else 0).opts(color="orange", line_width=1)
    return (curve * marker).opts(show_legend=False)


def density_curve(values: np.ndarray, counts: np.ndarray | None = None, xlabel: str = "frame",
                  ylabel: str = f"localizations {DENSITY_LABEL}", count_label: str = "localizations",
                  label: str = "") -> hv.Curve:
    """Density per frame (frame 0..n-1) as a curve; with ``counts`` the raw counts show in the hover tool."""
    frames = np.arange(len(values))
    vdims = [hv.Dimension("density", label=ylabel)]
    data: tuple = (frames, np.asarray(values, dtype=np.float64))
    if counts is not None:
        vdims.append(hv.Dimension("count", label=count_label))
        data = (*data, np.asarray(counts))
    return hv.Curve(data, hv.Dimension("frame", label=xlabel), vdims, label=label).opts(
        responsive=True, height=170, tools=["hover"], framewise=True, show_grid=True)


def frame_marker(frame: int | None) -> hv.VLine:
    """The shown frame on a per-frame plot (a cheap element: moving it changes one number in the page)."""
    return hv.VLine(0 if frame is None else int(frame)).opts(**MARKER_OPTS)


def density_boxes(groups: dict[str, np.ndarray], ylabel: str = f"localizations {DENSITY_LABEL}") -> hv.BoxWhisker:
    """Box plots of densities per frame, one box per group (e.g. each measurement and the binned frames) on a
    common axis: compare the binned frames' density with the inputs' to choose ``bin_size``."""
    names = [name for name, values in groups.items() for _ in range(len(values))]
    values = np.concatenate([np.asarray(v, dtype=np.float64) for v in groups.values()]) if groups else np.zeros(0)
    return hv.BoxWhisker((names, values), kdims=[hv.Dimension("group", label="frames of")],
                         vdims=[hv.Dimension("density", label=ylabel)]).opts(
        responsive=True, height=260, framewise=True, show_grid=True, box_fill_color="#9ecae1", tools=["hover"])


def movie_clim(movie: Movie, n_samples: int = 8) -> tuple[float, float]:
    """Fixed colour limits for a movie: 0.5 and 99.9 percentiles of a few frames spread over it."""
    picks = np.unique(np.linspace(0, movie.n_frames - 1, min(n_samples, movie.n_frames)).astype(int))
    sample = np.stack([movie.frame(int(k)) for k in picks]).astype(np.float64)
    lo, hi = np.percentile(sample, [0.5, 99.9])
    return (float(lo), float(hi if hi > lo else lo + 1))


# -- shared helpers for the Binner and review views ---------------------------------------------------------------

#: frames with more pixels than this are rasterized (aggregated to the plot's screen size) before being sent
RASTERIZE_ABOVE_PIXELS = 1024 * 1024

REGION_OPTS = dict(fill_alpha=0.0, line_color="orange", line_width=2)
TRUTH_OPTS = dict(marker="circle", size=12, fill_alpha=0.0, line_color="lime", line_width=1.5, color="lime")


def hr_image(image: np.ndarray, pixel_size_hr: float, clim: tuple[float, float] | None = None,
             label: str = "", axes: bool = True, camera_grid: bool = False) -> hv.Image:
    """A Deep-STORM high-resolution image in nm: hr pixel (row r, col k) centred at (k·ps_hr, r·ps_hr).

    ``camera_grid``: the image is a ``kron`` copy of camera pixels (Deep-STORM's ``Widefield_``): hr pixel k centred
    at (k + 0.5)·ps_hr, so each block of upsampling × upsampling hr pixels covers its camera pixel exactly (camera
    pixel j spans [j·ps, (j + 1)·ps], as :func:`frame_image` draws it). ``axes`` as for :func:`frame_image`."""
    height, width = image.shape
    offset = 0.5 if camera_grid else 0.0
    xs = (np.arange(width) + offset) * pixel_size_hr
    ys = (np.arange(height) + offset) * pixel_size_hr
    img = hv.Image((xs, ys, image), kdims=NM_KDIMS, vdims=["intensity"], label=label)
    opts = dict(FRAME_OPTS, cmap="fire", xticks=4, **frame_size(image.shape))
    if axes:
        opts.update(length_axes(field_extent_nm(image.shape, pixel_size_hr)))
    if clim is not None:
        opts["clim"] = clim
    return img.opts(**opts)


def regions(boxes: list[tuple[float, float, float, float]], label: str = "patches") -> hv.Rectangles:
    """Rectangles ``(x0, y0, x1, y1)`` in nm (e.g. the windows of binned-frame parts on their source frame)."""
    data = np.asarray(list(boxes), dtype=np.float64).reshape(-1, 4)  # (an array is cheaper than a list to wrap)
    return hv.Rectangles(data, kdims=["x0", "y0", "x1", "y1"], label=label).opts(**REGION_OPTS)


def image_clim(images: list[np.ndarray], low: float = 0.5, high: float = 99.9) -> tuple[float, float]:
    """Fixed colour limits from a few images (percentiles; never an empty range)."""
    if not images:
        return (0.0, 1.0)
    sample = np.concatenate([np.asarray(im, dtype=np.float64).ravel() for im in images])
    lo, hi = np.percentile(sample, [low, high])
    return (float(lo), float(hi if hi > lo else lo + 1))


def is_large(shape: tuple[int, int] | None) -> bool:
    """True when a frame of this shape should be rasterized rather than sent as a plain image."""
    return shape is not None and int(shape[0]) * int(shape[1]) > RASTERIZE_ABOVE_PIXELS


def maybe_rasterize(dmap: hv.DynamicMap, shape: tuple[int, int] | None,
                    pixel_size: float | None = None) -> hv.DynamicMap:
    """Rasterize the image DynamicMap only when its frames are large (small frames are cheaper as they are);
    with ``pixel_size`` (nm) the rasterized image's axes are labelled for the field's size (:func:`length_axes`;
    the images of :func:`frame_image` and :func:`hr_image` carry these options themselves)."""
    if not is_large(shape):
        return dmap
    axes = length_axes(field_extent_nm(shape, pixel_size)) if pixel_size else {}
    from holoviews.operation.datashader import rasterize  # imported on first use: datashader loads numba (slow)

    return rasterize(dmap, aggregator="mean").opts(cmap=FRAME_OPTS["cmap"], colorbar=True, responsive=False,
                                                    **frame_size(shape), **axes)


def empty_image(label: str = "") -> hv.Image:
    """A 2×2 placeholder image (a DynamicMap must always return the same element type; 1×1 images have no
    sampling density and break when HoloViews clones them)."""
    return hv.Image((np.array([0.25, 0.75]), np.array([0.25, 0.75]), np.zeros((2, 2))), kdims=NM_KDIMS,
                    vdims=["intensity"], label=label).opts(**FRAME_OPTS, **frame_size((1, 1)))


def frame_cost_ms(render, repeats: int = 3) -> float:
    """Median wall time in ms of ``render()`` (to set a player's interval at or above the per-frame cost)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        render()
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))
