"""Summary views of a prediction review: confidence histogram, density per frame (series and boxplots), metrics.

Each view depends on the review's result params only (never on the frame): a frame step re-sends none of them; the
frame marker of the density series is a separate layer (:meth:`ReviewView.frame_marker`), and so is the threshold
marker of the plots against confidence (:meth:`ReviewSummary.threshold_marker`): a threshold change re-sends no curve.
"""

from __future__ import annotations

from collections import Counter

import holoviews as hv
import numpy as np
import param

from imagebinner.tools.review import PredictionReview
from imagebinner.views.box_figure import BOX_HALF_WIDTH, box_stats

CURVE_OPTS = dict(responsive=True, height=220, tools=["hover"], show_grid=True, framewise=True)
SWEEP_METRICS = ("jaccard", "f1", "precision", "recall")
SWEEP_COLOURS = {"jaccard": "#1f77b4", "f1": "#ff7f0e", "precision": "#2ca02c", "recall": "#d62728"}
TABLE_METRICS = ("threshold", "n_pred", "n_gt", "tp", "fp", "fn", "precision", "recall", "f1", "jaccard", "rmse_nm",
                 "bias_x_nm", "bias_y_nm", "efficiency", "tolerance_nm")
#: the density series and boxplot groups: key of ``review.density``, label, colour
DENSITY_SERIES = (("ground_truth", "truth_counts", "ground truth", "green"),
                  ("predictions", "prediction_counts", "predictions (kept)", "red"))


class ReviewSummary(param.Parameterized):
    """Histogram, density and metric views of a review (all frames); ``calls`` counts each view's renders."""

    review = param.ClassSelector(class_=PredictionReview, constant=True, doc="The review shown.")

    def __init__(self, review: PredictionReview, **params):
        self.calls: Counter = Counter()
        super().__init__(review=review, **params)

    @param.depends("review.threshold")
    def threshold_marker(self) -> hv.VLine:
        """The current threshold on a plot against confidence (the only layer a threshold change re-sends there)."""
        self.calls["threshold_marker"] += 1
        return hv.VLine(float(self.review.threshold)).opts(color="red", line_width=2)

    def with_threshold(self, method) -> hv.Overlay:
        """A summary plot (DynamicMap of ``method``) with the threshold marker as its own layer."""
        return hv.DynamicMap(method) * hv.DynamicMap(self.threshold_marker)

    @param.depends("review.confidence_histogram")
    def confidence_histogram(self) -> hv.Histogram:
        """Histogram of all prediction confidences (counts computed by the review)."""
        self.calls["confidence_histogram"] += 1
        h = self.review.confidence_histogram or {}
        edges, counts = np.asarray(h.get("edges", [])), np.asarray(h.get("counts", []))
        if len(edges) < 2:
            edges, counts = np.array([0.0, 1.0]), np.array([0])
        hist = hv.Histogram((edges, counts), kdims=["confidence"], vdims=["predictions"]).opts(
            responsive=True, height=220, tools=["hover"], color="#7f7f7f", line_color=None,
            title="confidence histogram", framewise=True)
        return hist

    @param.depends("review.density")
    def density_curves(self) -> hv.Overlay:
        """Localizations per µm² per frame: ground truth vs predictions kept at the threshold (no frame marker)."""
        self.calls["density_curves"] += 1
        d = self.review.density or {}
        frames = np.asarray(d.get("frame", np.arange(1)))
        per_area = any(np.any(np.isfinite(np.asarray(d[k], dtype=float))) for k, *_ in DENSITY_SERIES if k in d)
        ylabel = "locs per µm²" if per_area else "locs per frame"
        curves = []
        for key, count_key, label, colour in DENSITY_SERIES:
            if key in d:
                values = np.asarray(d[key] if per_area else d[count_key], dtype=float)
                curves.append(hv.Curve((frames, values), "frame", ylabel, label=label).opts(color=colour,
                                                                                            **CURVE_OPTS))
        if not curves:
            curves.append(hv.Curve((frames, np.zeros(len(frames))), "frame", ylabel).opts(**CURVE_OPTS))
        # legend outside: never over the curves
        return hv.Overlay(curves).opts(title="density per frame", legend_position="right")

    @param.depends("review.density")
    def density_boxplot(self) -> hv.Overlay:
        """Boxplots of localizations per frame (all frames, empty ones included): ground truth and kept predictions
        side by side (the spread that helps choose a bin size). Quartiles and whiskers are computed here (numpy) and
        drawn as one rectangle layer and one segment layer: no per-frame rows reach the plot."""
        self.calls["density_boxplot"] += 1
        d = self.review.density or {}
        stats = {label: (box_stats(np.asarray(d[count_key], dtype=float)), colour)
                 for _key, count_key, label, colour in DENSITY_SERIES if count_key in d}
        if not stats:
            stats = {"predictions (kept)": (box_stats(np.zeros(1)), "red")}
        rows, segments = [], []
        for i, (label, (st, colour)) in enumerate(stats.items()):
            rows.append((i - BOX_HALF_WIDTH, st["q1"], i + BOX_HALF_WIDTH, st["q3"], label, colour, st["median"],
                         st["n"]))
            for y0, y1 in ((st["low"], st["q1"]), (st["q3"], st["high"])):  # whiskers
                segments.append((i, y0, i, y1))
            for y in (st["low"], st["median"], st["high"]):  # caps and the median
                w = BOX_HALF_WIDTH if y == st["median"] else BOX_HALF_WIDTH / 2
                segments.append((i - w, y, i + w, y))
        ylabel = "localizations per frame"
        boxes = hv.Rectangles(rows, kdims=["set_x0", ylabel, "set_x1", "q3"],
                              vdims=["set", "colour", "median", "frames"]).opts(
            color="colour", fill_alpha=0.5, line_color="black", tools=["hover"])
        lines = hv.Segments(segments, kdims=["set_x0", ylabel, "set_x1", "y1"]).opts(color="black", line_width=1.5)
        ticks = [(i, label) for i, label in enumerate(stats)]
        return (boxes * lines).opts(hv.opts.Overlay(
            title="localizations per frame", responsive=True, height=220, show_grid=True, framewise=True,
            xticks=ticks, xlim=(-0.6, len(ticks) - 0.4), xlabel="set", ylabel=ylabel, show_legend=False))

    @param.depends("review.metrics", "review.filtered")
    def metrics_table(self):
        """Metrics at the current threshold as a two-column ``pandas.DataFrame`` (metric, value); without ground
        truth only the threshold and the kept count."""
        import pandas as pd

        self.calls["metrics_table"] += 1
        m = self.review.metrics or {}
        names = [k for k in TABLE_METRICS if k in m]
        values = [f"{m[k]:.4g}" if isinstance(m[k], (float, np.floating)) else str(m[k]) for k in names]
        if not names:
            n = len(self.review.filtered) if self.review.filtered is not None else 0
            names, values = ["threshold", "n_pred"], [f"{self.review.threshold:.4g}", str(n)]
        return pd.DataFrame({"metric": names, "value": values})

    @param.depends("review.sweep", "review.suggested_thresholds")
    def sweep_plot(self) -> hv.Overlay:
        """Jaccard, F1, precision and recall against the threshold; suggested thresholds (dashed)."""
        self.calls["sweep_plot"] += 1
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
        return overlay.opts(title="metrics vs threshold", legend_position="right")

    @param.depends("review.sweep")
    def rmse_plot(self) -> hv.Curve:
        """RMSE of matched pairs (nm) against the threshold."""
        self.calls["rmse_plot"] += 1
        s = self.review.sweep or {}
        thresholds = np.asarray(s.get("threshold", [0.0, 1.0]))
        rmse = np.asarray(s.get("rmse_nm", np.zeros(len(thresholds))), dtype=float)
        return hv.Curve((thresholds, rmse), "threshold", "RMSE [nm]").opts(color="purple", title="RMSE vs threshold",
                                                                           **CURVE_OPTS)
