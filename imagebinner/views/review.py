"""Views of a :class:`~imagebinner.tools.review.PredictionReview`: frames, merged images, histogram, metrics, sweep.

Camera frames: pixel ``j`` centred at ``(j + 0.5)·ps`` nm. Deep-STORM high-resolution images (``Predicted_``,
``Widefield_``, ``Predicted_stacked_``): hr pixel ``k`` centred at ``k·ps_hr`` nm. Predictions and ground truth are
canonical nm and overlay both as they are. No widgets here: :mod:`imagebinner.apps.review` adds them.

Every view depends on the review's result params: a (re)load sets ``predictions`` (with every other result at
once), a threshold change sets ``filtered``, ``metrics``, ``density``; the view's own state (the open stacked
density, the summed images, colour limits) follows the loaded predictions.
"""

from __future__ import annotations

import holoviews as hv
import numpy as np
import param

from imagebinner.io import Movie, open_movie
from imagebinner.tools.review import PredictionReview
from imagebinner.views.frames import (
    TRUTH_OPTS,
    crosses,
    empty_image,
    frame_image,
    frame_size,
    hr_image,
    image_clim,
    is_large,
    maybe_rasterize,
)

#: above this many predictions the merged view is rasterized instead of drawn as dots (guide: 1e5..5e5 points)
RASTERIZE_ABOVE_POINTS = 100_000
#: the largest frame of a merged image (width × height in screen pixels): three fit side by side
MERGED_BOX = (300, 240)
CURVE_OPTS = dict(responsive=True, height=220, tools=["hover"], show_grid=True, framewise=True)
SWEEP_METRICS = ("jaccard", "f1", "precision", "recall")
SWEEP_COLOURS = {"jaccard": "#1f77b4", "f1": "#ff7f0e", "precision": "#2ca02c", "recall": "#d62728"}
TABLE_METRICS = ("threshold", "n_pred", "n_gt", "tp", "fp", "fn", "precision", "recall", "f1", "jaccard", "rmse_nm",
                 "bias_x_nm", "bias_y_nm", "efficiency", "tolerance_nm")


def truth_marks(x: np.ndarray, y: np.ndarray, label: str = "ground truth") -> hv.Points:
    """Ground-truth localizations as green circles (nm)."""
    return hv.Points((np.asarray(x), np.asarray(y)), kdims=["x", "y"], label=label).opts(**TRUTH_OPTS)


class ReviewView(param.Parameterized):
    """Frame-by-frame and summary views of a prediction review; ``threshold`` lives on the review itself."""

    frame = param.Integer(default=0, bounds=(0, 0), doc="Frame shown (0-based).")
    show_truth = param.Boolean(default=True, doc="Overlay the ground truth (green circles).")
    show_predictions = param.Boolean(default=True, doc="Overlay the predictions kept at the threshold (red crosses).")
    review = param.ClassSelector(class_=PredictionReview, constant=True, doc="The review shown.")

    def __init__(self, review: PredictionReview, **params):
        self._stacked: Movie | None = None
        self._sums: dict[str, np.ndarray] = {}
        self._clims: dict[str, tuple[float, float]] = {}
        self._shown = None  # the review's predictions the state above belongs to
        super().__init__(review=review, **params)
        self._sync()

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
        self._stacked, self._sums, self._clims = None, {}, {}
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
            picks = np.unique(np.linspace(0, self._stacked.n_frames - 1, min(8, self._stacked.n_frames)).astype(int))
            self._clims["stacked"] = image_clim([self._stacked.frame(int(k)) for k in picks], 0.0, 99.99)
        if r.n_frames and r.movie_frame(0) is not None:
            picks = np.unique(np.linspace(0, r.n_frames - 1, min(8, r.n_frames)).astype(int))
            self._clims["camera"] = image_clim([r.movie_frame(int(k)) for k in picks])

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
        r = self.review
        frame = r.movie_frame(self.frame) if r.loaded else None
        if frame is None or not r.camera_pixel_size:
            return empty_image()
        return frame_image(frame, r.camera_pixel_size, self._clims.get("camera"))

    @param.depends("frame", "review.predictions")
    def stacked_image(self) -> hv.Image:
        """The predicted hr density of the frame (``Predicted_stacked``; hr pixel k centred at k·ps_hr nm)."""
        self._sync()
        r = self.review
        if self._stacked is None or not r.pixel_size_hr or self.frame >= self._stacked.n_frames:
            return empty_image("no predicted hr frames (Predicted_stacked_<stem>.tif)" if r.loaded else "")
        return hr_image(self._stacked.frame(self.frame), r.pixel_size_hr, self._clims.get("stacked"))

    @param.depends("frame", "show_predictions", "review.filtered")
    def prediction_points(self) -> hv.Points:
        """Predictions of the frame with confidence >= threshold (nm as they are)."""
        r = self.review
        if not r.loaded or not self.show_predictions or r.filtered is None:
            return crosses(np.empty(0), np.empty(0), label="predictions")
        rows = r.filtered.frame_rows(self.frame)
        return crosses(r.filtered.x[rows], r.filtered.y[rows], label="predictions")

    @param.depends("frame", "show_truth", "review.truth")
    def truth_points(self) -> hv.Points:
        """Ground truth of the frame (nm)."""
        r = self.review
        if not r.loaded or not self.show_truth or r.truth is None:
            return truth_marks(np.empty(0), np.empty(0))
        rows = r.truth.frame_rows(self.frame)
        return truth_marks(r.truth.x[rows], r.truth.y[rows])

    def camera_plot(self) -> hv.Overlay:
        """Widefield frame with ground truth and predictions, one DynamicMap per layer."""
        shape = self.review.image_shape
        overlay = (maybe_rasterize(hv.DynamicMap(self.camera_image), shape) * hv.DynamicMap(self.truth_points)
                   * hv.DynamicMap(self.prediction_points))
        return overlay.opts(hv.opts.Overlay(show_legend=False))

    def stacked_plot(self) -> hv.Overlay:
        """Predicted hr frame with ground truth and predictions, one DynamicMap per layer (large frames rasterized)."""
        shape = self.review.hr_shape
        overlay = (maybe_rasterize(hv.DynamicMap(self.stacked_image), shape) * hv.DynamicMap(self.truth_points)
                   * hv.DynamicMap(self.prediction_points))
        return overlay.opts(hv.opts.Overlay(show_legend=False))

    # -- merged (sum) images ----------------------------------------------------------------------------------
    def sum_image(self, role: str) -> hv.Image:
        """``Predicted_<stem>.tif`` (role "predicted") or ``Widefield_<stem>.tif`` ("widefield") in nm."""
        self._sync()
        r = self.review
        if role not in self._sums or not r.pixel_size_hr:
            return empty_image(f"no {role} image")
        title = {"predicted": "Predicted (sum of frames)", "widefield": "Widefield (sum of frames)"}[role]
        return hr_image(self._sums[role], r.pixel_size_hr, self._clims.get(role), label=title).opts(
            cmap="fire" if role == "predicted" else "gray")

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

    @param.depends("review.filtered")
    def kept_points(self) -> hv.Points:
        """All predictions kept at the threshold (every frame), as points to rasterize."""
        r = self.review
        if not r.loaded or r.filtered is None:
            return hv.Points((np.empty(0), np.empty(0)), kdims=["x", "y"])
        return hv.Points((r.filtered.x, r.filtered.y), kdims=["x", "y"]).redim.label(x="x [nm]", y="y [nm]")

    def merged_localizations(self) -> hv.DynamicMap | hv.Image:
        """The kept predictions of all frames: dots when few, else rasterized counts (a super-resolution image)."""
        r = self.review
        if not r.loaded or r.filtered is None:
            return empty_image()  # nothing to aggregate (rasterizing no data fails)
        common = dict(invert_yaxis=True, xticks=4, title="kept predictions, all frames", responsive=False,
                      **frame_size(r.hr_shape or (1, 1), MERGED_BOX))
        if r.hr_shape and r.pixel_size_hr:  # the field of the hr images (hr pixel k spans k·ps_hr ± ps_hr/2)
            half = r.pixel_size_hr / 2
            common.update(xlim=(-half, r.hr_shape[1] * r.pixel_size_hr - half),
                          ylim=(-half, r.hr_shape[0] * r.pixel_size_hr - half))
        points = hv.DynamicMap(self.kept_points)
        if len(r.predictions) <= RASTERIZE_ABOVE_POINTS:
            return points.opts(hv.opts.Points(color="#ffb000", size=2, bgcolor="black", **common))
        from holoviews.operation.datashader import rasterize

        return rasterize(points).opts(cmap="fire", cnorm="eq_hist", colorbar=True, **common)

    # -- summaries --------------------------------------------------------------------------------------------
    @param.depends("review.confidence_histogram", "review.threshold")
    def confidence_histogram(self) -> hv.Overlay:
        """Histogram of all prediction confidences (counts computed by the review) with the threshold marked."""
        h = self.review.confidence_histogram or {}
        edges, counts = np.asarray(h.get("edges", [])), np.asarray(h.get("counts", []))
        if len(edges) < 2:
            edges, counts = np.array([0.0, 1.0]), np.array([0])
        hist = hv.Histogram((edges, counts), kdims=["confidence"], vdims=["predictions"]).opts(
            responsive=True, height=220, tools=["hover"], color="#7f7f7f", line_color=None,
            title="confidence histogram", framewise=True)
        return hist * hv.VLine(float(self.review.threshold)).opts(color="red", line_width=2)

    @param.depends("frame", "review.density")
    def density_curves(self) -> hv.Overlay:
        """Localizations per µm² per frame: ground truth vs predictions kept at the threshold."""
        d = self.review.density or {}
        frames = np.asarray(d.get("frame", np.arange(1)))
        curves = []
        for key, label, colour in (("ground_truth", "ground truth", "green"), ("predictions", "predictions", "red")):
            if key in d:
                curves.append(hv.Curve((frames, np.asarray(d[key])), "frame", "locs per µm²", label=label).opts(
                    color=colour, **CURVE_OPTS))
        if not curves:
            curves.append(hv.Curve((frames, np.zeros(len(frames))), "frame", "locs per µm²").opts(**CURVE_OPTS))
        overlay = hv.Overlay(curves) * hv.VLine(self.frame).opts(color="orange", line_width=1)
        return overlay.opts(title="density per frame", legend_position="right")  # outside: never over the curves

    @param.depends("review.metrics", "review.filtered")
    def metrics_table(self):
        """Metrics at the current threshold as a two-column ``pandas.DataFrame`` (metric, value); without ground
        truth only the threshold and the kept count."""
        import pandas as pd

        m = self.review.metrics or {}
        names = [k for k in TABLE_METRICS if k in m]
        values = [f"{m[k]:.4g}" if isinstance(m[k], (float, np.floating)) else str(m[k]) for k in names]
        if not names:
            n = len(self.review.filtered) if self.review.filtered is not None else 0
            names, values = ["threshold", "n_pred"], [f"{self.review.threshold:.4g}", str(n)]
        return pd.DataFrame({"metric": names, "value": values})

    @param.depends("review.sweep", "review.suggested_thresholds", "review.threshold")
    def sweep_plot(self) -> hv.Overlay:
        """Jaccard, F1, precision and recall against the threshold; suggested thresholds (dashed), current (red)."""
        s = self.review.sweep or {}
        thresholds = np.asarray(s.get("threshold", [0.0, 1.0]))
        curves = [
            hv.Curve((thresholds, np.asarray(s[k]) if k in s else np.zeros(len(thresholds))), "threshold", "score",
                     label=k).opts(color=SWEEP_COLOURS[k], **CURVE_OPTS)
            for k in SWEEP_METRICS
        ]
        overlay = hv.Overlay(curves)
        for name, value in (self.review.suggested_thresholds or {}).items():
            if value is not None:
                overlay = overlay * hv.VLine(float(value), label=f"best {name}").opts(
                    color=SWEEP_COLOURS.get(name, "black"), line_dash="dashed", line_width=1.5)
        overlay = overlay * hv.VLine(float(self.review.threshold)).opts(color="red", line_width=2)
        return overlay.opts(title="metrics vs threshold", legend_position="right")

    @param.depends("review.sweep", "review.threshold")
    def rmse_plot(self) -> hv.Overlay:
        """RMSE of matched pairs (nm) against the threshold, current threshold marked."""
        s = self.review.sweep or {}
        thresholds = np.asarray(s.get("threshold", [0.0, 1.0]))
        rmse = np.asarray(s.get("rmse_nm", np.zeros(len(thresholds))), dtype=float)
        curve = hv.Curve((thresholds, rmse), "threshold", "RMSE [nm]").opts(color="purple", **CURVE_OPTS)
        return (curve * hv.VLine(float(self.review.threshold)).opts(color="red", line_width=2)).opts(
            title="RMSE vs threshold")

    def close(self) -> None:
        if self._stacked is not None:
            self._stacked.close()
            self._stacked = None
