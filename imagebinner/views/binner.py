"""Views of a :class:`~imagebinner.tools.binner.Binner`: input frames, binned frames, their parts and statistics.

All coordinates are nm in the canonical corner convention: camera pixel ``j`` is centred at ``(j + 0.5)·ps``, a
binned frame (one patch of ``P × P`` pixels) uses patch-local nm, exactly as its labels.

One update per step: the input frame with its crosses and part windows is one overlay drawn by HoloViews when the
measurement, the plan or the shown layers change (:meth:`BinnerView.input_plot`); an input frame step writes the new
frame's image column, crosses and windows straight into that plot's data sources and moves the density curve's frame
marker (:class:`~imagebinner.views.frame_sources.FrameSources`: a few data changes, no HoloViews update). The binned
frame with its labels is one DynamicMap. The densities per frame (curves, box plots) do not depend on the shown
frame: only a marker moves on a step.

The views depend on the Binner's result params (``loaded``, ``pool``, ``plan``, ``running``) and on their own
selectors; nothing is refreshed by hand. A setting change resets the Binner's ``plan`` to None, so the binned views
show placeholders until the next preview/run (a stale plan is never shown). No widgets here:
:mod:`imagebinner.apps.binner` adds them.
"""

from __future__ import annotations

from functools import partial

import holoviews as hv
import numpy as np
import param

from imagebinner.errors import ImageBinnerError
from imagebinner.io import Movie, open_movie
from imagebinner.tools.binner import BinnedFrame, Binner, Measurement
from imagebinner.views.frame_figure import series_columns
from imagebinner.views.frame_sources import FrameSources
from imagebinner.views.frames import (
    DENSITY_LABEL,
    crosses,
    density_curve,
    empty_image,
    field_area_um2,
    frame_image,
    frame_marker,
    image_clim,
    is_large,
    maybe_rasterize,
    movie_clim,
    regions,
)

MAX_PARTS_SHOWN = 16
#: binned frames kept per plan (the player revisits them); sampled for the colour limits of a plan
BINNED_CACHE_SIZE = 64
CLIM_SAMPLE = 8


class BinnerView(param.Parameterized):
    """What a Binner does, frame by frame: inputs with their localizations, binned frames with their parts."""

    binner = param.ClassSelector(class_=Binner, constant=True, doc="The Binner whose inputs and results are shown.")
    measurement = param.Integer(default=0, bounds=(0, 0), doc="Measurement shown in the input player (0-based).")
    frame = param.Integer(default=0, bounds=(0, 0), doc="Input frame shown (0-based page of the movie).")
    binned_frame = param.Integer(default=0, bounds=(0, 0), doc="Binned frame shown (0-based).")
    part = param.Integer(
        default=0, bounds=(0, 1),
        doc="Part (patch) of the binned frame: the input player jumps to its source frame, where its window is "
        "drawn as a rectangle (also when the binned frame changes).",
    )
    show_crosses = param.Boolean(default=True, doc="Overlay localizations as red crosses.")
    input_geometry = param.Tuple(
        default=(0, 0, 0.0), length=3, constant=True,
        doc="Rows, columns and pixel size (nm) of the shown input frames: the input plot gets new ranges when they "
        "change; other data changes keep the zoom.",
    )

    def __init__(self, binner: Binner, **params):
        self._movies: dict[str, Movie] = {}  # the views' own file handles, by movie path
        self._clims: dict[str, tuple[float, float]] = {}
        self._binned_cache: dict[int, BinnedFrame] = {}
        self._binned_clim: tuple[np.ndarray | None, tuple[float, float]] = (None, (0.0, 1.0))
        self._sources = FrameSources()  # the rendered input plots: a frame step writes into their data sources
        self._series_key: tuple | None = None  # the loaded measurements and the measurement the density plot shows
        self._boxes_key: tuple | None = None  # the loaded measurements and the plan the box plots show
        self._pushed: tuple | None = None  # the state the last push wrote
        super().__init__(binner=binner, **params)
        self.param.watch(self._push, ["frame", "measurement", "show_crosses", "binned_frame"])
        binner.param.watch(self._push, ["loaded", "plan", "running"])

    # -- state derived from the binner's results ------------------------------------------------------------------
    @property
    def measurements(self) -> list[Measurement]:
        """The measurements the binner loaded (empty before a load, and after a change of the measurements)."""
        return list(self.binner.loaded or [])

    @property
    def plan(self) -> np.ndarray | None:
        """The binner's plan when it can be shown: None before a preview/run, after a setting change (stale) and
        while the binner works (its files are then read by another thread)."""
        return None if self.binner.running else self.binner.plan

    @property
    def has_binned(self) -> bool:
        """True when binned frames are shown (composed with the binner's current settings)."""
        return self.plan is not None

    @property
    def n_parts(self) -> int:
        """Parts shown per binned frame (0 before a preview/run)."""
        plan = self.binner.plan
        return 0 if plan is None else min(plan.shape[1], MAX_PARTS_SHOWN)

    @property
    def pixel_size(self) -> float:
        return float(self.binner.pixel_size_used or self.binner.pixel_size or 1.0)

    @param.depends("binner.loaded", watch=True, on_init=True)
    def _loaded_changed(self) -> None:
        """New measurements: the views' own movie handles (a job in another thread reads the binner's), colour
        limits fixed per movie, bounds of the measurement and frame selectors."""
        ms = self.measurements
        paths = {str(m.movie_path) for m in ms}
        for path in [p for p in self._movies if p not in paths]:
            self._movies.pop(path).close()
            self._clims.pop(path, None)
        for m in ms:
            key = str(m.movie_path)
            if key not in self._movies:
                self._movies[key] = open_movie(m.movie_path)
                self._clims[key] = movie_clim(self._movies[key])
        self.param.measurement.bounds = (0, max(len(ms) - 1, 0))
        with param.parameterized.batch_call_watchers(self):
            self.measurement = min(self.measurement, max(len(ms) - 1, 0))
            self._measurement_changed()

    @param.depends("measurement", watch=True)
    def _measurement_changed(self) -> None:
        ms = self.measurements
        m = ms[self.measurement] if ms else None
        n_frames = m.n_frames if m is not None else 1
        self.param.frame.bounds = (0, max(n_frames - 1, 0))
        if self.frame >= n_frames:
            self.frame = n_frames - 1
        geometry = (*m.shape, self.pixel_size) if m is not None else (0, 0, 0.0)
        if geometry != self.input_geometry:
            with param.edit_constant(self):
                self.input_geometry = geometry

    @param.depends("binner.plan", watch=True, on_init=True)
    def _plan_changed(self) -> None:
        """New (or no) binned frames: forget the cached ones, bound the binned-frame and part selectors."""
        self._binned_cache = {}
        plan = self.binner.plan
        if plan is None:
            return  # stale or none: the selectors keep their place for the next plan
        self.param.binned_frame.bounds = (0, max(len(plan) - 1, 0))
        self.param.part.bounds = (0, max(plan.shape[1] - 1, 1))  # a slider needs start < end
        with param.parameterized.batch_call_watchers(self):
            self.binned_frame = min(self.binned_frame, len(plan) - 1)
            self.part = min(self.part, plan.shape[1] - 1)

    @param.depends("part", "binned_frame", watch=True)
    def show_part_source(self) -> None:
        """Point the input player at the source frame of the selected part (on a part or binned-frame change)."""
        bf = self.current_binned()
        if bf is None or not bf.parts:
            return
        src = bf.parts[min(self.part, len(bf.parts) - 1)]
        with param.parameterized.batch_call_watchers(self):
            self.measurement = src["measurement"]
            self.param.frame.bounds = (0, self.measurements[src["measurement"]].n_frames - 1)
            self.frame = src["frame"]

    def current_binned(self) -> BinnedFrame | None:
        """The shown binned frame, or None when no plan can be shown (see :attr:`plan`)."""
        plan = self.plan
        if plan is None:
            return None
        j = self.binned_frame
        cache = self._binned_cache
        if j not in cache:
            try:
                bf = self.binner.binned_frame(j)
            except (ImageBinnerError, IndexError):
                return None
            if self.binner.plan is not plan:  # replaced meanwhile (by a job in another thread): do not cache
                return bf
            if len(cache) >= BINNED_CACHE_SIZE:
                cache.clear()
            cache[j] = bf
        return cache[j]

    def binned_clim(self) -> tuple[float, float]:
        """Colour limits of the shown plan's binned frames (percentiles of the first few), fixed per plan."""
        plan = self.plan
        if plan is None:
            return (0.0, 1.0)
        if self._binned_clim[0] is not plan:
            sample = [self.binner.binned_frame(j).image for j in range(min(len(plan), CLIM_SAMPLE))]
            self._binned_clim = (plan, image_clim(sample))
        return self._binned_clim[1]

    def _movie(self, m: Measurement) -> Movie:
        return self._movies[str(m.movie_path)]

    # -- input frames -----------------------------------------------------------------------------------------
    @param.depends("measurement", "frame", "binner.loaded")
    def input_image(self) -> hv.Image:
        """The input frame in nm (pixel j centred at (j + 0.5)·ps), colour limits fixed per movie."""
        ms = self.measurements
        if not ms:
            return empty_image()
        m = ms[min(self.measurement, len(ms) - 1)]
        frame = self._movie(m).frame(min(self.frame, m.n_frames - 1))
        return frame_image(frame, self.pixel_size, self._clims.get(str(m.movie_path)))

    def _frame_xy(self) -> tuple[np.ndarray, np.ndarray]:
        """x, y (canonical nm, as they are) of the shown input frame's localizations; none when crosses are off."""
        m = self._shown()
        if m is None or not self.show_crosses:
            return np.empty(0), np.empty(0)
        frame = min(self.frame, m.n_frames - 1)
        rows = slice(int(m.offsets[frame]), int(m.offsets[frame + 1]))
        return m.table.x[rows], m.table.y[rows]

    @param.depends("measurement", "frame", "show_crosses", "binner.loaded")
    def input_points(self) -> hv.Points:
        """Localizations of the shown input frame as crosses (over a rasterized large frame)."""
        return crosses(*self._frame_xy())

    def part_boxes(self, measurement: int, frame: int) -> list[tuple[float, float, float, float]]:
        """Windows (nm) of the shown binned frame's parts taken from ``frame`` of ``measurement``."""
        bf = self.current_binned()
        if bf is None:
            return []
        ps, size = self.pixel_size, self.binner.patch_size
        return [
            (p["column"] * ps, p["row"] * ps, (p["column"] + size) * ps, (p["row"] + size) * ps)
            for p in bf.parts
            if p["measurement"] == measurement and p["frame"] == frame
        ]

    @param.depends("measurement", "frame", "binned_frame", "binner.plan", "binner.running")
    def input_regions(self) -> hv.Rectangles:
        """Rectangles of the shown binned frame's patches cut from the shown input frame."""
        return regions(self.part_boxes(self.measurement, self.frame))

    def _input_key(self) -> tuple:
        """What the input plot's image shows: the loaded measurements, the measurement and its frame."""
        return (id(self.binner.loaded), self.measurement, self.frame)

    def _push(self, *_events) -> None:
        """An input frame step (or another measurement, binned frame or plan, the crosses toggled): the frame's
        image (when another frame is shown), crosses and part windows written into the input plot's data sources,
        the density's frame marker moved; the density series and the box plots written only when their data
        changed (another measurement, load or plan). No plot is rebuilt."""
        state = (self._input_key(), self.show_crosses, self.binned_frame, id(self.binner.plan), self.binner.running)
        if state == self._pushed:
            return  # (a binned-frame step moves the input player first: its windows are written then)
        self._pushed = state
        if len(self._sources):
            self._sources.push(self._input_key(), self.input_frame_data, self._layers_of, marker=float(self.frame),
                               also=self._follow_data)

    def _layers_of(self, kind: str) -> list[dict | None]:
        """The new columns of a registered plot's layers (None: unchanged)."""
        if kind == "input":
            return self.input_layers()
        return self._changed_series() if kind == "density" else self._changed_boxes()

    def _follow_data(self, kind: str, figure) -> None:
        """The box plots' axis follows their groups; the input plot's colour scale follows the shown movie (limits
        fixed per movie)."""
        if kind == "boxes":
            groups = list(figure.renderers[0].data_source.data["group"])  # (the boxes: written just before)
            if list(figure.x_range.factors) != groups:
                figure.x_range.factors = groups
            return
        if kind != "input":
            return
        m = self._shown()
        clim = self._clims.get(str(m.movie_path)) if m is not None else None
        for renderer in figure.renderers:
            mapper = getattr(getattr(renderer, "glyph", None), "color_mapper", None)
            if clim is not None and mapper is not None and (mapper.low, mapper.high) != clim:
                mapper.update(low=clim[0], high=clim[1])

    def input_frame_data(self, _kind: str = "input") -> np.ndarray | None:
        """The shown input frame's pixels (what a step writes into the input plot's image)."""
        m = self._shown()
        return None if m is None else self._movie(m).frame(min(self.frame, m.n_frames - 1))

    def input_layers(self) -> list[dict]:
        """The columns of the input plot's crosses and part windows for the shown frame, as their sources hold them."""
        x, y = self._frame_xy()
        boxes = np.asarray(self.part_boxes(self.measurement, self.frame), dtype=np.float64).reshape(-1, 4)
        return [{"x": x, "y": y},
                {"left": boxes[:, 0], "bottom": boxes[:, 1], "right": boxes[:, 2], "top": boxes[:, 3]}]

    @param.depends("measurement", "frame", "show_crosses", "binned_frame", "binner.loaded", "binner.plan",
                   "binner.running")
    def input_marks(self) -> hv.Overlay:
        """Crosses and part windows alone (over a rasterized large frame, which is its own DynamicMap)."""
        return self.input_points().opts(show_legend=False) * self.input_regions().opts(show_legend=False)

    @param.depends("input_geometry")
    def input_plot(self):
        """Input frame, crosses and part windows: a Bokeh figure made once per frame geometry (new ranges; other
        changes write into its data sources and keep the zoom, :meth:`_push`); large frames a rasterized HoloViews
        image with the marks over it (two DynamicMaps), axes in µm for large fields."""
        rows, cols, ps = self.input_geometry
        if rows and is_large((rows, cols)):
            image = maybe_rasterize(hv.DynamicMap(self.input_image), (rows, cols), ps)
            return image * hv.DynamicMap(self.input_marks)
        from imagebinner.views.frame_figure import add_crosses, add_regions, frame_figure

        m = self._shown()
        image = self.input_frame_data("input")
        plot = frame_figure((rows, cols) if rows else (1, 1), ps or 1.0, image,
                            clim=self._clims.get(str(m.movie_path)) if m is not None else None, colorbar=True)
        points, boxes = self.input_layers()
        add_crosses(plot, points)
        add_regions(plot, boxes)
        self._sources.register("input", plot, self._input_key())
        return plot.figure

    # -- densities per frame ----------------------------------------------------------------------------------
    def input_densities(self, m: Measurement) -> np.ndarray:
        """Localizations per µm² in each frame of measurement ``m`` (the whole field)."""
        return m.locs_per_frame() / field_area_um2(m.shape, self.pixel_size)

    def patch_area_um2(self) -> float:
        """Area (µm²) of one binned frame (one patch)."""
        size = self.binner.patch_size
        return field_area_um2((size, size), self.pixel_size)

    def binned_densities(self) -> np.ndarray:
        """Emitters per µm² in each binned frame of the shown plan (empty without a plan)."""
        return self.emitters_per_binned_frame() / self.patch_area_um2()

    def _shown(self) -> Measurement | None:
        ms = self.measurements
        return ms[min(self.measurement, len(ms) - 1)] if ms else None

    def input_series(self) -> dict[str, np.ndarray]:
        """Localizations per µm² per frame of the shown measurement (columns frame, density, count), independent of
        the shown frame."""
        m = self._shown()
        if m is None:
            return series_columns(np.zeros(1), np.zeros(1, dtype=np.int64))
        return series_columns(self.input_densities(m), m.locs_per_frame())

    def _changed_series(self) -> list[dict | None]:
        """The input density plot's new columns after another measurement or load (one write), else None: a frame
        step moves its marker only."""
        key = (id(self.binner.loaded), self.measurement)
        if key == self._series_key:
            return [None]
        self._series_key = key
        return [self.input_series()]

    def input_density(self):
        """Localizations per µm² per frame of the shown measurement (a Bokeh figure), the shown frame marked: a
        frame step moves the marker, another measurement writes its series (:meth:`_push`)."""
        from imagebinner.views.frame_figure import FramePlot, series_figure

        fig, source, span = series_figure(self.input_series(), "frame", f"localizations {DENSITY_LABEL}",
                                          "localizations", marker=float(self.frame))
        self._series_key = (id(self.binner.loaded), self.measurement)
        self._sources.register("density", FramePlot(fig, marks=[source]), self._input_key(), spans=[span])
        return fig

    @param.depends("binner.plan", "binner.running")
    def binned_series(self) -> hv.Curve:
        """Emitters per µm² per binned frame of the shown plan."""
        counts = self.emitters_per_binned_frame()
        if not len(counts):
            return density_curve(np.zeros(1), np.zeros(1, dtype=np.int64), "binned frame",
                                  f"emitters {DENSITY_LABEL}", "emitters")
        return density_curve(counts / self.patch_area_um2(), counts, "binned frame", f"emitters {DENSITY_LABEL}",
                             "emitters")

    @param.depends("binned_frame")
    def binned_marker(self) -> hv.VLine:
        return frame_marker(self.binned_frame)

    def binned_emitters(self) -> hv.Overlay:
        """Emitters per µm² per binned frame, with the shown binned frame marked (two DynamicMaps)."""
        return hv.DynamicMap(self.binned_series) * hv.DynamicMap(self.binned_marker)

    def density_groups(self) -> dict[str, np.ndarray]:
        """Densities per frame (per µm²) by group: each loaded measurement's frames and, after a preview/run, the
        binned frames (label with the bin size)."""
        groups = {f"m{m.index + 1}: {m.movie_path.parent.name}/{m.movie_path.name}": self.input_densities(m)
                  for m in self.measurements}
        binned = self.binned_densities()
        if len(binned):
            per_frame = ("target density" if self.binner.frame_targets is not None
                         else f"{self.binner.plan.shape[1]} per frame")
            groups[f"binned ({per_frame})"] = binned
        return groups

    def _box_groups(self) -> dict[str, np.ndarray]:
        return self.density_groups() or {"(no data)": np.zeros(1)}

    def density_boxes(self):
        """Box plots of the density per frame of every measurement and of the binned frames, on one axis (a Bokeh
        figure: another load or plan writes its boxes, :meth:`_push`)."""
        from imagebinner.views.box_figure import box_figure
        from imagebinner.views.frame_figure import FramePlot

        fig, sources = box_figure(self._box_groups(), f"localizations or emitters {DENSITY_LABEL}")
        self._boxes_key = (id(self.binner.loaded), id(self.plan))
        self._sources.register("boxes", FramePlot(fig, marks=sources), self._input_key())
        return fig

    def _changed_boxes(self) -> list[dict | None]:
        """The box plots' new columns after another load or plan (boxes, ticks, outliers), else None (a step)."""
        from imagebinner.views.box_figure import box_columns

        key = (id(self.binner.loaded), id(self.plan))
        if key == self._boxes_key:
            return [None, None, None]
        self._boxes_key = key
        return list(box_columns(self._box_groups()))

    # -- binned frames ----------------------------------------------------------------------------------------
    @param.depends("binned_frame", "binner.plan", "binner.running")
    def binned_image(self) -> hv.Image:
        """The binned frame (output dtype) in patch-local nm, colour limits fixed per plan; a placeholder when no
        plan can be shown."""
        bf = self.current_binned()
        if bf is None:
            return empty_image()
        return frame_image(bf.image, self.pixel_size, self.binned_clim())

    @param.depends("binned_frame", "show_crosses", "binner.plan", "binner.running")
    def binned_points(self) -> hv.Points:
        """Labels of the binned frame (patch-local nm)."""
        bf = self.current_binned()
        if bf is None or not self.show_crosses:
            return crosses(np.empty(0), np.empty(0))
        return crosses(bf.locs.x, bf.locs.y)

    def binned_extent(self) -> dict[str, tuple[float, float]]:
        """Axis ranges of the binned frames (one patch, patch-local nm): plots built while the binner works start
        with placeholders, so their ranges are given, not taken from the first data."""
        extent = self.binner.patch_size * self.pixel_size
        return {"xlim": (0.0, extent), "ylim": (0.0, extent)}

    @param.depends("binned_frame", "show_crosses", "binner.plan", "binner.running")
    def binned_overlay(self) -> hv.Overlay:
        """The binned frame with its labels (one element: a step is one plot update)."""
        return (self.binned_image() * self.binned_points()).opts(show_legend=False, **self.binned_extent())

    def binned_plot(self) -> hv.DynamicMap:
        """Binned frame and its labels as one DynamicMap (new binned frames update the data)."""
        return hv.DynamicMap(self.binned_overlay)

    def emitters_per_binned_frame(self) -> np.ndarray:
        """Emitters (labels) of every binned frame of the shown plan: the localizations of its parts."""
        if self.plan is None:
            return np.zeros(0, dtype=np.int64)
        return self.binner.emitters_per_binned_frame()  # target plans: rows padded with -1

    def part_locs(self, part: dict) -> tuple[np.ndarray, np.ndarray]:
        """Patch-local x, y (nm) of the localizations inside one part's window (the binner's membership rule)."""
        locs = self.binner.patch_locs(part["pool_index"])
        return np.asarray(locs["x"]), np.asarray(locs["y"])

    def part_element(self, k: int, binned_frame: int = 0, show_crosses: bool = True, **_results) -> hv.Overlay:
        """Part ``k`` of the shown binned frame: its patch (patch-local nm) with its localizations."""
        bf = self.current_binned()
        if bf is None or k >= len(bf.parts):
            return (empty_image() * crosses(np.empty(0), np.empty(0), size=7)).opts(title=f"part {k}")
        p = bf.parts[k]
        m = self.measurements[p["measurement"]]
        patch = self._movie(m).window(p["frame"], p["row"], p["column"], self.binner.patch_size)
        x, y = self.part_locs(p) if show_crosses else (np.empty(0), np.empty(0))
        title = f"part {k}: m{p['measurement'] + 1} f{p['frame']} r{p['row']} c{p['column']}"
        return (frame_image(patch, self.pixel_size, self._clims.get(str(m.movie_path))) * crosses(x, y, size=7)
                ).opts(title=title)

    def part_plot(self, k: int) -> hv.DynamicMap:
        """Part ``k`` as a DynamicMap following the shown binned frame and plan (updates data only, no re-layout)."""
        streams = [hv.streams.Params(self, ["binned_frame", "show_crosses"]),
                   hv.streams.Params(self.binner, ["plan", "running"])]
        dmap = hv.DynamicMap(partial(self.part_element, k), streams=streams)
        return dmap.opts(hv.opts.Image(responsive=False, frame_width=180, frame_height=180, colorbar=False,
                                       xaxis=None, yaxis=None, tools=[]),
                         hv.opts.Overlay(fontsize={"title": 8}, **self.binned_extent()))

    def parts(self, max_parts: int = MAX_PARTS_SHOWN) -> hv.Layout:
        """The single patches summed into the shown binned frame (small images with their crosses)."""
        n = min(self.n_parts, max_parts)
        return hv.Layout([self.part_plot(k) for k in range(n)]).cols(5).opts(hv.opts.Overlay(show_legend=False))

    def close(self) -> None:
        """Close the views' own movie handles."""
        for movie in self._movies.values():
            movie.close()
        self._movies = {}
        self._clims = {}
