"""Frame and merged views of a :class:`~imagebinner.tools.review.PredictionReview`; summaries in :mod:`.review_summary`.

Camera frames: pixel ``j`` centred at ``(j + 0.5)·ps`` nm. Deep-STORM high-resolution images (``Predicted_``,
``Predicted_stacked_``): hr pixel ``k`` centred at ``k·ps_hr`` nm; the summed ``Widefield_`` image is a ``kron`` copy
of camera pixels, drawn on the camera-pixel grid (hr pixel ``k`` centred at ``(k + 0.5)·ps_hr``). Predictions and ground truth are
canonical nm and overlay both as they are. No widgets here: :mod:`imagebinner.apps.review` adds them.

Every view depends on the review's result params: a (re)load sets ``predictions`` (with every other result at
once), a threshold change sets ``match_status`` (true/false positives, misses: sliced per frame here), ``metrics``,
``density``. The two frame plots (camera frame, predicted hr frame, each with the marks) are Bokeh figures made once
per load (:mod:`.frame_figure`; large frames: rasterized HoloViews plots); a frame step writes the new images and
marks into their data sources and moves the density's frame marker, nothing else. The all-frames render aggregates
the kept predictions with datashader; they are the first ``k`` of the predictions sorted by confidence, so a threshold
change copies nothing.
"""

from __future__ import annotations

import warnings
from collections import Counter

import holoviews as hv
import numpy as np
import param

from imagebinner.io import Movie, open_movie
from imagebinner.tools.review import PredictionReview
from imagebinner.tools.review.status import FP, TP
from imagebinner.views.frame_sources import FrameSources, styled_columns
from imagebinner.views.frames import (
    TRUTH_OPTS,
    empty_image,
    frame_image,
    frame_size,
    hr_image,
    image_clim,
    is_large,
    maybe_rasterize,
)
from imagebinner.views.review_summary import ReviewSummary

#: above this many predictions the merged view is rasterized instead of drawn as dots (guide: 1e5..5e5 points)
RASTERIZE_ABOVE_POINTS = 100_000
#: the largest frame of a merged image (width × height in screen pixels): three fit side by side
MERGED_BOX = (300, 240)
#: mark classes with ground truth (legend labels, toggles) and without
CLASSES = ("true positive", "false positive", "missed", "matched truth")
CLASSES_NO_TRUTH = ("predictions",)
CONFIDENCE_CMAP = "viridis"
#: the look of each class; predictions (true/false positives) are coloured by confidence
CLASS_OPTS = {
    "true positive": dict(marker="x", size=11, line_width=2),
    "false positive": dict(marker="triangle", size=10, fill_alpha=0.0, line_width=1.5),
    "predictions": dict(marker="x", size=11, line_width=2),
    "missed": dict(marker="square", size=13, fill_alpha=0.0, line_width=2, color="magenta"),
    "matched truth": {**TRUTH_OPTS},
}
#: the two mark layers of a frame plot and the classes each holds (a ``status`` column maps to marker and size)
PREDICTION_CLASSES = ("true positive", "false positive", "predictions")
TRUTH_CLASSES = ("missed", "matched truth")
NO_STACKED_MESSAGE = ("**No stacked prediction in this folder**: the per-frame predicted density "
                      "(`Predicted_stacked_<stem>.tif`) was not saved with these predictions, so there is no hr "
                      "frame to show. The camera frame above shows the predictions.")


def truth_marks(x: np.ndarray, y: np.ndarray, label: str = "ground truth") -> hv.Points:
    """Ground-truth localizations as green circles (nm)."""
    return hv.Points((np.asarray(x), np.asarray(y)), kdims=["x", "y"], label=label).opts(**TRUTH_OPTS)


_KDIMS = [hv.Dimension("x"), hv.Dimension("y")]
_MARK_TIPS = [("x [nm]", "@x{0.0}"), ("y [nm]", "@y{0.0}"), ("class", "@status")]


def _columns(x, y, status, conf=None) -> dict[str, np.ndarray]:
    """The columns of one mark layer: x, y, the class of each mark (``status``) and, for predictions, the
    confidence (plain dict columns: no pandas per step)."""
    data = {"x": np.asarray(x, dtype=float), "y": np.asarray(y, dtype=float), "status": np.asarray(status, dtype=str)}
    if conf is not None:
        data["confidence"] = np.asarray(conf, dtype=float)
    return data


def _points(data: dict[str, np.ndarray]) -> hv.Points:
    """A mark layer (the first of a load: later frames are clones of it)."""
    vdims = [k for k in ("status", "confidence") if k in data]
    return hv.Points(data, kdims=_KDIMS, vdims=vdims, datatype=["dictionary"])


def _by_status(classes: tuple[str, ...], key: str, default=None):
    """A class -> look mapping of :data:`CLASS_OPTS` as a HoloViews dim transform of the ``status`` column."""
    mapping = {c: CLASS_OPTS[c][key] for c in classes if key in CLASS_OPTS[c]}
    fallback = default if default is not None else next(iter(mapping.values()))
    return hv.dim("status").categorize(mapping, default=fallback)


class ReviewView(param.Parameterized):
    """Frame-by-frame and all-frames views of a prediction review; ``threshold`` lives on the review itself.

    In-process use (benchmarks, notebooks): ``view.frame = k`` steps a frame; ``review.threshold = t`` moves the
    threshold; :meth:`render_sr` aggregates the kept predictions of all frames (datashader); ``calls`` counts the
    renders of each view.
    """

    frame = param.Integer(default=0, bounds=(0, 0), doc="Frame shown (0-based).")
    shown = param.ListSelector(default=[*CLASSES, *CLASSES_NO_TRUTH], objects=[*CLASSES, *CLASSES_NO_TRUTH],
                               doc="Mark classes drawn on the frames (true/false positives, misses, matched truth; "
                               "predictions without ground truth).")
    review = param.ClassSelector(class_=PredictionReview, constant=True, doc="The review shown.")

    def __init__(self, review: PredictionReview, **params):
        self._stacked: Movie | None = None
        self._sums: dict[str, np.ndarray] = {}
        self._clims: dict[str, tuple[float, float]] = {}
        self._by_conf: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # x, y, -confidence sorted
        self._templates: dict[str, hv.Element] = {}  # the first image/marks of each layer, options applied once
        self._marks: tuple | None = None  # (frame, shown, match status) and the marks drawn for them
        self._layers: tuple | None = None  # the same state and the mark layers' columns
        self._sources = FrameSources()  # the rendered frame plots: a step writes into their data sources
        self._shown = None  # the review's predictions the state above belongs to
        self.calls: Counter = Counter()
        super().__init__(review=review, **params)
        self.summary = ReviewSummary(review)
        self._sync()
        self.param.watch(self._push, ["frame", "shown"])
        review.param.watch(self._push, ["match_status"])

    # -- state ------------------------------------------------------------------------------------------------
    @param.depends("review.predictions", watch=True)
    def _sync(self) -> None:
        """Follow the review's loaded predictions: open the stacked density, read the sum images, fix colour limits
        and the frame range (once per load, whichever view asks first)."""
        r = self.review
        if self._shown is r.predictions:
            return
        self._shown = r.predictions
        if self._stacked is not None:
            self._stacked.close()
        self._stacked, self._sums, self._clims, self._by_conf, self._templates = None, {}, {}, None, {}
        self._marks = self._layers = None
        if r.loaded:
            self._read_state(r)
        last = max(r.n_frames - 1, 0)
        self.param.frame.bounds = (0, last)
        self.frame = min(self.frame, last)

    def _read_state(self, r: PredictionReview) -> None:
        files = r.files or {}
        for role in ("predicted", "widefield"):
            merged = r.merged_image(role)  # whole-movie file, or the sum of exploded per-frame images
            if merged is not None:
                self._sums[role] = merged
                self._clims[role] = image_clim([merged])
        if files.get("stacked"):
            self._stacked = open_movie(files["stacked"])
        if r.n_frames and r.movie_frame(0) is not None:
            picks = np.unique(np.linspace(0, r.n_frames - 1, min(8, r.n_frames)).astype(int))
            self._clims["camera"] = image_clim([r.movie_frame(int(k)) for k in picks])
        conf = np.asarray(r.predictions["confidence"], dtype=float)
        self._clims["confidence"] = (float(np.nanmin(conf)), float(np.nanmax(conf))) if len(conf) else (0.0, 1.0)
        if len(r.predictions) > RASTERIZE_ABOVE_POINTS:  # the all-frames view aggregates: compile that now
            self._warm_aggregation()

    def _warm_aggregation(self) -> None:
        """Run the all-frames aggregation once, tiny, on the loaded predictions: datashader compiles its kernels
        (numba, seconds, once per process and argument types) while the review loads, not on the first render."""
        self.calls["warm_aggregation"] += 1
        try:
            self.render_sr(width=4, height=4)
        except Exception as exc:  # noqa: BLE001 (a failed warm-up must not fail the load; the render reports it)
            warnings.warn(f"review: the all-frames aggregation could not be prepared: {exc}", stacklevel=2)

    @property
    def has_truth(self) -> bool:
        return self.review.loaded and self.review.truth is not None

    @property
    def classes(self) -> tuple[str, ...]:
        """The mark classes of the loaded review (legend order)."""
        return CLASSES if self.has_truth else CLASSES_NO_TRUTH

    @property
    def has_movie(self) -> bool:
        return self.review.loaded and self.review.movie_frame(0) is not None

    @property
    def has_stacked(self) -> bool:
        self._sync()
        return self._stacked is not None

    # -- per-frame layers -------------------------------------------------------------------------------------
    @param.depends("frame", "review.predictions")
    def camera_image(self) -> hv.Image:
        """The test movie's frame (camera pixels centred at (j + 0.5)·ps nm)."""
        self._sync()
        self.calls["camera_image"] += 1
        r = self.review
        frame = r.movie_frame(self.frame) if r.loaded else None
        if frame is None or not r.camera_pixel_size:
            return self._empty()
        return self._reuse("camera", frame, lambda: frame_image(frame, r.camera_pixel_size, self._clims.get("camera")),
                           self.frame)

    @param.depends("frame", "review.predictions")
    def stacked_image(self) -> hv.Image:
        """The predicted hr density of the frame (``Predicted_stacked``; hr pixel k centred at k·ps_hr nm), colours
        by histogram equalisation (the density is mostly dark with a few bright peaks)."""
        self._sync()
        self.calls["stacked_image"] += 1
        r = self.review
        if self._stacked is None or not r.pixel_size_hr or self.frame >= self._stacked.n_frames:
            return self._empty("no stacked prediction in this folder" if r.loaded else "")
        frame = self._stacked.frame(self.frame)
        return self._reuse("stacked", frame, lambda: hr_image(frame, r.pixel_size_hr).opts(cnorm="eq_hist"), self.frame)

    def _empty(self, label: str = "") -> hv.Image:
        """The placeholder frame (no movie, no stacked density), built once."""
        key = f"empty:{label}"
        if key not in self._templates:
            self._templates[key] = empty_image(label).opts(colorbar=False, cnorm="eq_hist")
        return self._templates[key]

    def _reuse(self, key: str, frame: np.ndarray, make, index: int) -> hv.Image:
        """The frame as a clone of the first frame's image (same options object: HoloViews keeps the options by
        element id, so a step does not build a new option tree per frame). The same frame again (a threshold move,
        a class toggled) is the same element: its plot keeps the image data and sends none."""
        last = self._templates.get(f"last:{key}")
        if last is not None and last[0] == index:
            return last[1]
        first = self._templates.get(key)
        if first is None or first.dimension_values(2, flat=False).shape != frame.shape:
            self._templates[key] = first = make().opts(colorbar=False)  # the plot's colour bar is the confidence
            image = first
        else:
            xs, ys = (first.dimension_values(k, expanded=False) for k in (0, 1))
            image = first.clone((xs, ys, frame))
        self._templates[f"last:{key}"] = (index, image)
        return image

    @param.depends("frame", "shown", "review.match_status")
    def marks(self) -> hv.Overlay:
        """The frame's predictions kept at the threshold coloured by confidence (colour bar) and, with ground truth,
        marked true positive (×) or false positive (△), plus the ground truth: matched (○) or missed (□). Two layers
        (predictions, truth) whose ``status`` column picks each mark's look; hidden classes are left out here."""
        self._sync()
        state, layers = self._mark_layers()
        if self._marks is not None and self._marks[0] == state:  # the other frame plot of this step
            return self._marks[1]
        out, options = [], None
        for k, (key, data) in enumerate(layers):
            first = self._templates.get(key)
            if first is None:  # options applied once per layer and load; frames are clones
                options = options or self.marks_options()
                self._templates[key] = first = _points(data).opts(**options[k])
                out.append(first)
            else:
                out.append(first.clone(data))
        overlay = hv.Overlay(out)
        self._marks = (state, overlay)
        return overlay

    def _mark_layers(self) -> tuple[tuple, list[tuple[str, dict[str, np.ndarray]]]]:
        """The state (frame, shown classes, match status) and the columns of the mark layers (predictions, and the
        truth with ground truth) for it; computed once per state (``calls["marks"]``)."""
        r = self.review
        status = r.match_status if r.loaded else None
        state = (self.frame, tuple(self.shown), id(status))
        if self._layers is not None and self._layers[0] == state:
            return self._layers
        self.calls["marks"] += 1
        empty = np.empty(0)
        pred = (empty, empty, empty.astype(str), empty)
        truth = (empty, empty, empty.astype(str))
        if status is not None:
            rows = r.predictions.frame_rows(self.frame)
            codes = status.predictions_of(rows)
            if self.has_truth:
                names = np.where(codes == TP, "true positive", np.where(codes == FP, "false positive", ""))
                t_rows = r.truth.frame_rows(self.frame)
                t_names = np.where(status.truth_of(t_rows), "matched truth", "missed")
                t_sel = np.isin(t_names, self.shown)
                truth = (r.truth.x[t_rows][t_sel], r.truth.y[t_rows][t_sel], t_names[t_sel])
            else:
                names = np.where(codes != 0, "predictions", "")
            sel = np.isin(names, self.shown)
            pred = (r.predictions.x[rows][sel], r.predictions.y[rows][sel], names[sel],
                    r.predictions["confidence"][rows][sel])
        layers = [("marks:predictions", _columns(*pred))]
        if self.has_truth:
            layers.append(("marks:truth", _columns(*truth)))
        self._layers = (state, layers)
        return self._layers

    def _push(self, *_events) -> None:
        """A frame step, a threshold move or a class toggle: the new marks (and the new frame's images) written into
        the rendered frame plots' data sources, one change per source (no HoloViews plot update)."""
        if not len(self._sources):
            return
        self._sync()
        styled = self._styled_layers()
        self._sources.push(self.frame, self._frame_data, lambda _kind: styled,
                           also=lambda _kind, figure: self._show_swatches(figure))

    def _styled_layers(self, _kind: str = "") -> list[dict]:
        """The mark layers' columns as the frame plots' sources hold them (with each mark's style)."""
        _state, layers = self._mark_layers()
        return [styled_columns(data, CLASS_OPTS, "confidence" if key == "marks:predictions" else None)
                for key, data in layers]

    def _frame_data(self, kind: str) -> np.ndarray | None:
        """The shown frame's image data of ``kind`` ("camera" or "stacked"), as the frame plots draw it."""
        self.calls[f"{kind}_image"] += 1
        r = self.review
        if kind == "camera":
            return r.movie_frame(self.frame) if r.loaded else None
        if self._stacked is None or self.frame >= self._stacked.n_frames:
            return None
        return self._stacked.frame(self.frame)

    def marks_options(self) -> list[dict]:
        """The look of the two mark layers (applied once per load: frames are clones of the first marks):
        predictions coloured by confidence on one scale for the loaded data, with a colour bar; marker, size and
        line width (and the truth's colour) follow each mark's class."""
        lo, hi = self._clims.get("confidence", (0.0, 1.0))
        pred = [c for c in PREDICTION_CLASSES if c in self.classes]
        out = [dict(color="confidence", cmap=CONFIDENCE_CMAP, clim=(lo, hi if hi > lo else lo + 1), colorbar=True,
                    colorbar_opts={"title": "confidence"}, fill_alpha=0.0, tools=["hover"],
                    marker=_by_status(tuple(pred), "marker"), size=_by_status(tuple(pred), "size"),
                    line_width=_by_status(tuple(pred), "line_width"))]
        if self.has_truth:
            out.append(dict(fill_alpha=0.0, tools=["hover"], **{
                key: _by_status(TRUTH_CLASSES, src) for key, src in
                (("marker", "marker"), ("size", "size"), ("line_width", "line_width"), ("color", "color"))}))
        return out

    def _legend(self, plot, _element) -> None:
        """HoloViews hook of a (large, rasterized) frame plot: the legend of :meth:`_add_legend`."""
        self._add_legend(plot.state)

    def _add_legend(self, figure) -> None:
        """A legend below a frame plot naming the mark classes, one swatch each (static glyphs, never updated).
        Clicking an item hides its class (the view's ``shown``, filtered here on the server); the items follow
        ``shown`` when the toggles change it."""
        from bokeh.models import ColumnDataSource, GlyphRenderer, Legend, LegendItem, Scatter
        from holoviews.plotting.util import process_cmap

        swatches = getattr(figure, "_ib_swatches", None)
        if swatches is None:
            mid = process_cmap(CONFIDENCE_CMAP, 3)[1]  # predictions: a mid-scale colour
            swatches, empty = {}, ColumnDataSource(data={})  # (one source for every swatch: it holds nothing)
            for name in self.classes:
                look = CLASS_OPTS[name]
                colour = look.get("color", mid)
                glyph = Scatter(x=0, y=0, marker=look["marker"], size=look["size"], line_width=look["line_width"],
                                line_color=colour, fill_color=colour, fill_alpha=0.0)
                renderer = GlyphRenderer(data_source=empty, glyph=glyph, tags=["hv_legend"],
                                         visible=name in self.shown)
                renderer.on_change("visible", lambda _a, _old, new, name=name: self._legend_clicked(name, new))
                swatches[name] = renderer
            figure.renderers.extend(swatches.values())
            for legend in list(figure.legend):  # HoloViews' own (none: the layers are unlabelled)
                figure.center.remove(legend)
            figure.add_layout(Legend(items=[LegendItem(label=n, renderers=[r]) for n, r in swatches.items()],
                                     click_policy="hide", orientation="horizontal", location="top_left"), "below")
            figure._ib_swatches = swatches
        self._show_swatches(figure)

    def _show_swatches(self, figure) -> None:
        """The legend items of a frame plot follow ``shown``."""
        for name, renderer in getattr(figure, "_ib_swatches", {}).items():
            if renderer.visible != (name in self.shown):
                renderer.visible = name in self.shown

    def _legend_clicked(self, name: str, visible: bool) -> None:
        if visible != (name in self.shown):
            self.shown = [c for c in self.param.shown.objects if (c == name and visible) or (c != name and c in
                                                                                             self.shown)]

    def _streams(self, *extra: tuple) -> list:
        """The shared frame stream (one per view: a frame step triggers each plot once, whatever its layers) and
        the other params a layer follows."""
        if getattr(self, "_frame_stream", None) is None:
            self._frame_stream = hv.streams.Params(self, ["frame"])
        return [self._frame_stream] + [hv.streams.Params(obj, list(names)) for obj, names in extra]

    def _frame_plot(self, image, shape, kind: str):
        """A frame plot (image and marks) drawn once per load as a Bokeh figure (:meth:`_figure`): a frame step, a
        threshold move or a class toggle writes the new marks and image straight into its data sources
        (:meth:`_push`). Large frames are a HoloViews DynamicMap whose image alone is rasterized (aggregated to the
        screen's size), redrawn by HoloViews on each change."""
        if not is_large(shape):
            return self._figure(kind)
        # (large frames) the legend is made once by a hook (below the plot); HoloViews' own would be removed and
        # re-added on every update when placed outside (a walk of the page's whole model graph per frame step)
        overlay_opts = dict(show_legend=True, legend_position="top_left", legend_opts={"click_policy": "hide"},
                            hooks=[self._legend])
        streams = self._streams((self, ("shown",)), (self.review, ("predictions", "match_status")))
        image_dm = hv.DynamicMap(lambda **_: image(), streams=self._streams((self.review, ("predictions",))),
                                 cache_size=1)
        marks_dm = hv.DynamicMap(lambda **_: self.marks(), cache_size=1, streams=streams)
        return (maybe_rasterize(image_dm, shape) * marks_dm).opts(hv.opts.Overlay(**overlay_opts))

    def _field(self, kind: str) -> tuple[tuple[int, int], float, float]:
        """Shape (rows, columns), pixel size (nm) and pixel-centre offset of the field a frame plot of ``kind``
        shows: the camera frame (centres at (j + 0.5)·ps) or the hr frame (k·ps_hr); a camera plot without a movie
        shows the hr field, or the predictions' extent on a 100 nm grid."""
        r = self.review
        if kind == "camera" and r.image_shape and r.camera_pixel_size:
            return tuple(r.image_shape), float(r.camera_pixel_size), 0.5
        if r.hr_shape and r.pixel_size_hr:
            return tuple(r.hr_shape), float(r.pixel_size_hr), 0.0
        p = r.predictions
        top = (float(np.max(p.y)), float(np.max(p.x))) if r.loaded and len(p) else (0.0, 0.0)
        return (int(top[0] // 100) + 1, int(top[1] // 100) + 1), 100.0, 0.5

    def _figure(self, kind: str):
        """The frame plot of ``kind`` ("camera": the movie frame in grey; "stacked": the predicted hr density, its
        histogram equalised) as a Bokeh figure with the mark layers (predictions coloured by confidence, colour
        bar; the truth) and the legend, registered for the writes of a step."""
        from imagebinner.views.frame_figure import add_marks, colour_bar, frame_figure

        self._sync()
        shape, pixel_size, offset = self._field(kind)
        image = self._frame_data(kind)
        style = dict(cmap="gray", clim=self._clims.get("camera")) if kind == "camera" else dict(cmap="fire",
                                                                                              eq_hist=True)
        plot = frame_figure(shape, pixel_size, image if image is not None and image.shape == shape else None,
                            offset=offset, **style)
        mapper = colour_bar(plot, CONFIDENCE_CMAP, self._clims.get("confidence", (0.0, 1.0)), "confidence")
        confidence = [("confidence", "@confidence{0.000}")]
        for k, columns in enumerate(self._styled_layers()):
            if k == 0:
                add_marks(plot, columns, colour_mapper=mapper, tooltips=[*_MARK_TIPS, *confidence])
            else:
                add_marks(plot, columns, tooltips=_MARK_TIPS)
        self._add_legend(plot.figure)
        self._sources.register(kind, plot, self.frame)
        return plot.figure

    def camera_plot(self):
        """Widefield frame with the marks (a frame step writes into its data sources)."""
        return self._frame_plot(self.camera_image, self.review.image_shape, "camera")

    def stacked_plot(self):
        """Predicted hr frame with the marks (large frames rasterized)."""
        return self._frame_plot(self.stacked_image, self.review.hr_shape, "stacked")

    @param.depends("frame")
    def frame_marker(self) -> hv.VLine:
        """The current frame on a per-frame series (the only layer of the density plot a frame step changes)."""
        self.calls["frame_marker"] += 1
        return hv.VLine(float(self.frame)).opts(color="orange", line_width=1.5)

    def density_plot(self) -> hv.Overlay:
        """Density per frame (truth and kept predictions) with the current frame marked."""
        return hv.DynamicMap(self.summary.density_curves) * hv.DynamicMap(self.frame_marker)

    # -- merged (sum) images ----------------------------------------------------------------------------------
    def sum_image(self, role: str) -> hv.Image:
        """``Predicted_<stem>.tif`` (role "predicted") or ``Widefield_<stem>.tif`` ("widefield") in nm."""
        self._sync()
        r = self.review
        if role not in self._sums or not r.pixel_size_hr:
            return empty_image(f"no {role} image")
        title = {"predicted": "Predicted (sum of frames)", "widefield": "Widefield (sum of frames)"}[role]
        return hr_image(self._sums[role], r.pixel_size_hr, self._clims.get(role), label=title,
                        camera_grid=role == "widefield").opts(cmap="fire" if role == "predicted" else "gray")

    def sum_plot(self, role: str) -> hv.Element:
        """A sum image at a fixed frame height (its width follows from the data aspect), rasterized when large."""
        self._sync()
        size = frame_size(self._sums[role].shape, MERGED_BOX) if role in self._sums else frame_size((1, 1), MERGED_BOX)
        image = self.sum_image(role).opts(**size)
        if role in self._sums and is_large(self._sums[role].shape):
            from holoviews.operation.datashader import rasterize

            return rasterize(image, aggregator="mean").opts(cmap=image.opts.get().kwargs.get("cmap", "gray"),
                                                            responsive=False, **size)
        return image

    def _sorted_by_confidence(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, y of the predictions by decreasing confidence and the ascending negated confidences (once per load)."""
        self._sync()
        if self._by_conf is None:
            p = self.review.predictions
            neg = -np.asarray(p["confidence"], dtype=float)
            order = np.argsort(neg, kind="stable")
            self._by_conf = (p.x[order], p.y[order], neg[order])
        return self._by_conf

    @param.depends("review.match_status")
    def kept_points(self) -> hv.Points:
        """All predictions kept at the threshold (every frame): the first k by confidence (no copy)."""
        self.calls["kept_points"] += 1
        r = self.review
        if not r.loaded or r.predictions is None:
            return hv.Points((np.empty(0), np.empty(0)), kdims=["x", "y"])
        x, y, neg = self._sorted_by_confidence()
        k = int(np.searchsorted(neg, -float(r.threshold), side="right"))  # conf >= t  <=>  -conf <= -t
        return hv.Points((x[:k], y[:k]), kdims=["x", "y"], datatype=["dictionary"]).redim.label(
            x="x [nm]", y="y [nm]")

    def _merged_common(self) -> dict:
        r = self.review
        common = dict(invert_yaxis=True, xticks=4, title="kept predictions, all frames", responsive=False,
                      **frame_size(r.hr_shape or r.image_shape or (1, 1), MERGED_BOX))
        if r.hr_shape and r.pixel_size_hr:  # the field of the hr images (hr pixel k spans k·ps_hr ± ps_hr/2)
            half = r.pixel_size_hr / 2
            common.update(xlim=(-half, r.hr_shape[1] * r.pixel_size_hr - half),
                          ylim=(-half, r.hr_shape[0] * r.pixel_size_hr - half))
        elif r.image_shape and r.camera_pixel_size:
            common.update(xlim=(0, r.image_shape[1] * r.camera_pixel_size),
                          ylim=(0, r.image_shape[0] * r.camera_pixel_size))
        return common

    def merged_localizations(self) -> hv.DynamicMap | hv.Image:
        """The kept predictions of all frames: dots when few, else a datashader aggregation (super-resolution)."""
        r = self.review
        if not r.loaded or r.filtered is None:
            return empty_image()  # nothing to aggregate (rasterizing no data fails)
        common = self._merged_common()
        points = hv.DynamicMap(self.kept_points)
        if len(r.predictions) <= RASTERIZE_ABOVE_POINTS:
            return points.opts(hv.opts.Points(color="#ffb000", size=2, bgcolor="black", **common))
        from holoviews.operation.datashader import rasterize

        return rasterize(points).opts(cmap="fire", cnorm="eq_hist", colorbar=True, **common)

    def render_sr(self, width: int = 800, height: int = 800) -> hv.Image:
        """The super-resolution image of the kept predictions (counts per screen pixel over the field), aggregated
        with datashader as the all-frames view does."""
        from holoviews.operation.datashader import rasterize

        common = self._merged_common()
        ranges = {k: common[k.replace("_range", "lim")] for k in ("x_range", "y_range")
                  if k.replace("_range", "lim") in common}
        return rasterize(self.kept_points(), width=width, height=height, dynamic=False, **ranges)

    def close(self) -> None:
        if self._stacked is not None:
            self._stacked.close()
            self._stacked = None
