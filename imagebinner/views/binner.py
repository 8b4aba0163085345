"""Views of a :class:`~imagebinner.tools.binner.Binner`: input frames, binned frames, their parts and statistics.

All coordinates are nm in the canonical corner convention: camera pixel ``j`` is centred at ``(j + 0.5)·ps``, a
binned frame (one patch of ``P × P`` pixels) uses patch-local nm, exactly as its labels. Every layer is its own
``@param.depends`` method so it can be wrapped in its own ``hv.DynamicMap`` (see :meth:`BinnerView.input_plot`).
No widgets here: :mod:`imagebinner.apps.binner` adds them.
"""

from __future__ import annotations

import holoviews as hv
import numpy as np
import param

from imagebinner.errors import ImageBinnerError
from imagebinner.io import Movie, open_movie
from imagebinner.tools.binner import BinnedFrame, Binner, Measurement
from imagebinner.tools.binning_windows import pixel_indices
from imagebinner.views.frames import (
    counts_curve,
    crosses,
    empty_image,
    frame_image,
    image_clim,
    maybe_rasterize,
    movie_clim,
    regions,
)

#: Binner settings that define the binned frames; a change makes the shown binned frames stale
PLAN_PARAMS = ("measurements", "pixel_size", "camera_offset", "patch_size", "n_patches", "n_binned", "bin_size",
               "min_emitters", "seed", "reuse_patches", "output_dtype", "half_pixel", "max_attempts")
MAX_PARTS_SHOWN = 16


class BinnerView(param.Parameterized):
    """What a Binner does, frame by frame: inputs with their localizations, binned frames with their parts."""

    measurement = param.Integer(default=0, bounds=(0, 0), doc="Measurement shown in the input player (0-based).")
    frame = param.Integer(default=0, bounds=(0, 0), doc="Input frame shown (0-based page of the movie).")
    binned_frame = param.Integer(default=0, bounds=(0, 0), doc="Binned frame shown (0-based).")
    part = param.Integer(
        default=0, bounds=(0, 1),
        doc="Part (patch) of the binned frame: the input player jumps to its source frame, where its window is "
        "drawn as a rectangle (also when the binned frame changes).",
    )
    show_crosses = param.Boolean(default=True, doc="Overlay localizations as red crosses.")
    revision = param.Integer(default=0, doc="Bumped when the binner's data change (every layer redraws).")
    input_layout = param.Integer(
        default=0, doc="Bumped when the input plot must be rebuilt (new measurements, another image size).")
    binned_layout = param.Integer(default=0, doc="Bumped when the binned plots must be rebuilt (new binned frames).")

    def __init__(self, binner: Binner, **params):
        self.binner = binner
        self._ms: list[Measurement] = []
        self._clims: dict[int, tuple[float, float]] = {}
        self._plan_snapshot: dict | None = None
        self._binned_cache: dict[int, BinnedFrame] = {}
        self._binned_clim: tuple[float, float] = (0.0, 1.0)
        self._emitters = np.zeros(0, dtype=np.int64)
        self._input_shape: tuple | None = None
        self._movies: dict[int, Movie] = {}
        #: set by an app while the binner works in another thread: the binned views then show placeholders
        self.busy = False
        self._n_parts = 0
        super().__init__(**params)

    # -- state ------------------------------------------------------------------------------------------------
    @property
    def measurements(self) -> list[Measurement]:
        """The loaded measurements shown (empty before :meth:`refresh`)."""
        return self._ms

    @property
    def n_parts(self) -> int:
        """Parts shown per binned frame (0 before a preview/run)."""
        return self._n_parts

    @property
    def has_binned(self) -> bool:
        """True when binned frames are shown (drawn and composed with the binner's current settings)."""
        return self._plan_snapshot is not None and self._plan_snapshot == self._snapshot()

    def _snapshot(self) -> dict:
        return {name: getattr(self.binner, name) for name in PLAN_PARAMS}

    def refresh(self, binned: bool = False) -> None:
        """Re-read the binner after load (and, with ``binned``, after draw/compose/save) and redraw every view.

        Loads the measurements (cached by the binner), fixes colour limits per movie, and sets the bounds of the
        frame, measurement, binned-frame and part selectors.
        """
        ms = self.binner.load()
        self._ms = list(ms)
        self.close()
        # the views read through their own file handles: a Run in another thread reads the binner's
        self._movies = {m.index: open_movie(m.movie_path) for m in ms}
        self._clims = {i: movie_clim(movie) for i, movie in self._movies.items()}
        self._binned_cache.clear()
        updates: dict = {}
        if binned:
            plan = self.binner.compose()
            self._plan_snapshot = self._snapshot()
            stats = self.binner.statistics()
            self._emitters = np.asarray(stats.get("binned", {}).get("emitters_per_frame", np.zeros(0)))
            sample = [self._binned(j).image for j in range(min(len(plan), 8))]
            self._binned_clim = image_clim(sample)
            self._n_parts = min(plan.shape[1], MAX_PARTS_SHOWN)
            self.param.binned_frame.bounds = (0, max(len(plan) - 1, 0))
            self.param.part.bounds = (0, max(plan.shape[1] - 1, 1))  # a slider needs start < end
            updates["binned_frame"] = min(self.binned_frame, len(plan) - 1)
            updates["part"] = min(self.part, plan.shape[1] - 1)
        self.param.measurement.bounds = (0, max(len(ms) - 1, 0))
        measurement = min(self.measurement, max(len(ms) - 1, 0))
        n_frames = ms[measurement].n_frames if ms else 1
        self.param.frame.bounds = (0, max(n_frames - 1, 0))
        updates.update(measurement=measurement, frame=min(self.frame, n_frames - 1))
        with param.parameterized.batch_call_watchers(self):
            self.param.update(**updates)
            self._input_shape = ms[measurement].shape if ms else None
            self.input_layout += 1
            if binned:
                self.binned_layout += 1
            self.revision += 1

    @param.depends("measurement", watch=True)
    def _measurement_changed(self) -> None:
        if self._ms:
            m = self._ms[self.measurement]
            self.param.frame.bounds = (0, max(m.n_frames - 1, 0))
            if self.frame >= m.n_frames:
                self.frame = m.n_frames - 1
            if m.shape != self._input_shape:  # another image size: rebuild the plot so its ranges fit
                self._input_shape = m.shape
                self.input_layout += 1

    @param.depends("part", "binned_frame", watch=True)
    def show_part_source(self) -> None:
        """Point the input player at the source frame of the selected part (on a part or binned-frame change)."""
        bf = self.current_binned()
        if bf is None or not bf.parts:
            return
        src = bf.parts[min(self.part, len(bf.parts) - 1)]
        with param.parameterized.batch_call_watchers(self):
            self.measurement = src["measurement"]
            self.param.frame.bounds = (0, self._ms[src["measurement"]].n_frames - 1)
            self.frame = src["frame"]

    def _binned(self, j: int) -> BinnedFrame:
        if j not in self._binned_cache:
            if len(self._binned_cache) > 64:
                self._binned_cache.clear()
            self._binned_cache[j] = self.binner.binned_frame(j)
        return self._binned_cache[j]

    def current_binned(self) -> BinnedFrame | None:
        """The shown binned frame, or None before a preview/run (or when the settings changed since)."""
        if not self.has_binned or self.binner.running or self.busy:
            return None
        try:
            return self._binned(self.binned_frame)
        except (ImageBinnerError, IndexError):
            return None

    @property
    def pixel_size(self) -> float:
        stats = self.binner.stats or {}
        return float(stats.get("pixel_size") or self.binner.pixel_size or 1.0)

    # -- input frames -----------------------------------------------------------------------------------------
    @param.depends("measurement", "frame", "revision")
    def input_image(self) -> hv.Image:
        """The input frame in nm (pixel j centred at (j + 0.5)·ps), colour limits fixed per movie."""
        if not self._ms:
            return empty_image()
        m = self._ms[self.measurement]
        return frame_image(self._movies[m.index].frame(self.frame), self.pixel_size, self._clims.get(m.index))

    @param.depends("measurement", "frame", "show_crosses", "revision")
    def input_points(self) -> hv.Points:
        """Localizations of the shown input frame (canonical nm, as they are)."""
        if not self._ms or not self.show_crosses:
            return crosses(np.empty(0), np.empty(0))
        m = self._ms[self.measurement]
        rows = slice(int(m.offsets[self.frame]), int(m.offsets[self.frame + 1]))
        return crosses(m.table.x[rows], m.table.y[rows])

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

    @param.depends("measurement", "frame", "binned_frame", "revision")
    def input_regions(self) -> hv.Rectangles:
        """Rectangles of the shown binned frame's patches cut from the shown input frame."""
        return regions(self.part_boxes(self.measurement, self.frame))

    @param.depends("measurement", "frame", "revision")
    def input_density(self) -> hv.Overlay:
        """Localizations per frame of the shown measurement, with the shown frame marked."""
        counts = self._ms[self.measurement].locs_per_frame() if self._ms else np.zeros(1, dtype=np.int64)
        return counts_curve(counts, self.frame, label="input")

    @param.depends("input_layout")
    def input_plot(self) -> hv.Overlay:
        """Input frame, crosses and part windows, each layer its own DynamicMap (large frames rasterized).

        Rebuilt (new ranges) only when ``input_layout`` changes; frame changes update the data and keep the zoom.
        """
        image = maybe_rasterize(hv.DynamicMap(self.input_image), self._input_shape)
        overlay = image * hv.DynamicMap(self.input_points) * hv.DynamicMap(self.input_regions)
        return overlay.opts(hv.opts.Overlay(show_legend=False))

    # -- binned frames ----------------------------------------------------------------------------------------
    @param.depends("binned_frame", "revision")
    def binned_image(self) -> hv.Image:
        """The binned frame (output dtype) in patch-local nm, colour limits fixed per run."""
        bf = self.current_binned()
        if bf is None:
            return empty_image()
        return frame_image(bf.image, self.pixel_size, self._binned_clim)

    @param.depends("binned_frame", "show_crosses", "revision")
    def binned_points(self) -> hv.Points:
        """Labels of the binned frame (patch-local nm)."""
        bf = self.current_binned()
        if bf is None or not self.show_crosses:
            return crosses(np.empty(0), np.empty(0))
        return crosses(bf.locs.x, bf.locs.y)

    @param.depends("binned_layout")
    def binned_plot(self) -> hv.Overlay:
        """Binned frame and its labels as separate DynamicMaps (rebuilt when new binned frames are composed)."""
        overlay = hv.DynamicMap(self.binned_image) * hv.DynamicMap(self.binned_points)
        return overlay.opts(hv.opts.Overlay(show_legend=False))

    @param.depends("binned_frame", "revision")
    def binned_emitters(self) -> hv.Overlay:
        """Emitters (labels) per binned frame, with the shown binned frame marked."""
        counts = self._emitters if len(self._emitters) else np.zeros(1, dtype=np.int64)
        return counts_curve(counts, self.binned_frame, ylabel="emitters", label="binned").redim.label(
            frame="binned frame")

    def part_locs(self, part: dict) -> tuple[np.ndarray, np.ndarray]:
        """Patch-local x, y (nm) of the localizations inside one part's window."""
        m = self._ms[part["measurement"]]
        rows = slice(int(m.offsets[part["frame"]]), int(m.offsets[part["frame"] + 1]))
        x, y = m.table.x[rows], m.table.y[rows]
        ps, size = self.pixel_size, self.binner.patch_size
        px, py = pixel_indices(x, ps), pixel_indices(y, ps)
        inside = ((px >= part["column"]) & (px < part["column"] + size)
                  & (py >= part["row"]) & (py < part["row"] + size))
        return x[inside] - part["column"] * ps, y[inside] - part["row"] * ps

    def part_element(self, k: int, binned_frame: int = 0, show_crosses: bool = True, revision: int = 0) -> hv.Overlay:
        """Part ``k`` of the shown binned frame: its patch (patch-local nm) with its localizations."""
        bf = self.current_binned()
        if bf is None or k >= len(bf.parts):
            return (empty_image() * crosses(np.empty(0), np.empty(0), size=7)).opts(title=f"part {k}")
        p = bf.parts[k]
        m = self._ms[p["measurement"]]
        patch = self._movies[m.index].window(p["frame"], p["row"], p["column"], self.binner.patch_size)
        x, y = self.part_locs(p) if show_crosses else (np.empty(0), np.empty(0))
        title = f"part {k}: m{p['measurement'] + 1} f{p['frame']} r{p['row']} c{p['column']}"
        return (frame_image(patch, self.pixel_size, self._clims.get(m.index)) * crosses(x, y, size=7)).opts(
            title=title)

    def part_plot(self, k: int) -> hv.DynamicMap:
        """Part ``k`` as a DynamicMap following the shown binned frame (updates data only, no re-layout)."""
        from functools import partial

        stream = hv.streams.Params(self, ["binned_frame", "show_crosses", "revision"])
        dmap = hv.DynamicMap(partial(self.part_element, k), streams=[stream])
        return dmap.opts(hv.opts.Image(responsive=False, frame_width=180, frame_height=180, colorbar=False,
                                       xaxis=None, yaxis=None, tools=[]),
                         hv.opts.Overlay(fontsize={"title": 8}))

    def parts(self, max_parts: int = MAX_PARTS_SHOWN) -> hv.Layout:
        """The single patches summed into the shown binned frame (small images with their crosses)."""
        n = min(self._n_parts, max_parts)
        return hv.Layout([self.part_plot(k) for k in range(n)]).cols(5).opts(hv.opts.Overlay(show_legend=False))

    def close(self) -> None:
        """Close the views' own movie handles."""
        for movie in self._movies.values():
            movie.close()
        self._movies = {}

    def emitters_per_binned_frame(self) -> np.ndarray:
        """Emitters of every binned frame of the last preview/run."""
        return self._emitters
