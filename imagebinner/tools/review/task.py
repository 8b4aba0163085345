"""The prediction review tool: its settings (declared once), the load orchestration, threshold reactions, save.

``PredictionReview(folder=..., ground_truth=..., movie=...)``, then ``load()``. Changing ``threshold`` afterwards
is cheap (a mask over the precomputed confidences and the matching from precomputed candidate pairs); changing
``tolerance`` recomputes the pairs and the sweep. Files: :mod:`imagebinner.io.predictions`; sizes:
:mod:`.geometry`; reading: :mod:`.reading`; matching and metrics: :mod:`imagebinner.tools.matching`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import param

from imagebinner.errors import ParameterError
from imagebinner.io import LOC_FORMATS, WRITE_FORMATS, LocTable, check_outputs, output_paths, write_locs
from imagebinner.io.predictions import (
    ROLES,
    ExplodedFrames,
    exploded_summary,
    find_prediction_files,
    is_prediction_name,
    role_files,
)
from imagebinner.tools.base import Task
from imagebinner.tools.matching import METRIC_NAMES, Matcher, suggest_thresholds, sweep_thresholds
from imagebinner.tools.relocalize import RelocalizeSettings, Upsampling
from imagebinner.tools.review.geometry import (
    Geometry,
    derive_upsampling,
    resolve_geometry,
    resolve_l2,
    truth_pixel_size,
)
from imagebinner.tools.review.status import MatchStatus, ThresholdIndex, kept_rows
from imagebinner.tools.review.reading import (
    find_model_metadata,
    frame_count,
    hr_images,
    open_test_movie,
    read_predictions,
    read_truth,
    sum_images,
    within_frames,
)
from imagebinner.tools.settings import CameraSettings, OutputFile

SWEEP_KEYS = ("threshold", "jaccard", "f1", "precision", "recall", "rmse_nm", "efficiency", "tp", "fp", "fn")


class PredictionReview(Task, CameraSettings, Upsampling, RelocalizeSettings, OutputFile):
    """Review DeepSTORM predictions: confidence threshold, exact metrics against ground truth, threshold sweep."""

    #: the settings by the part of the review they shape (the app shows them in these groups); ``settings`` is
    #: their concatenation, the re-localization group is the shared :class:`RelocalizeSettings`
    setting_groups: ClassVar[dict[str, tuple[str, ...]]] = {
        "prediction": ("source", "pixel_size", "half_pixel", "upsampling"),
        "threshold": ("threshold",),
        "matching": ("tolerance", "n_thresholds", "histogram_bins"),
        "relocalization": RelocalizeSettings.relocalize_settings(),
    }
    inputs = ("folder", "stem", "movie", "model_folder", "ground_truth", "ground_truth_format")
    settings = tuple(name for group in setting_groups.values() for name in group)
    outputs = ("output_path", "output_format", "overwrite")
    actions = {"request_load": "load", "request_save": "save"}

    # -- inputs ---------------------------------------------------------------------------------------------
    folder = param.String(
        default="",
        doc="Prediction folder (ZeroCostDL4Mic outputs: Localizations_<stem>_avg.csv or _max.csv, "
        "Predicted_<stem>.tif, Widefield_<stem>.tif, optional Predicted_stacked_<stem>.tif).",
    )
    stem = param.String(
        default="",
        doc="Movie stem selecting the prediction when the folder holds several; for exploded single-frame "
        "predictions (Localizations_<stem>_frame00001_avg.csv, ...) the part before _frame.",
    )
    movie = param.String(
        default="",
        doc="Test movie (TIF or Picasso .raw) or a folder of its exploded frames <stem>_frame00001.tif, ...; "
        "optional (frame count, camera pixel size, field size); empty = <stem>.tif in the prediction folder if "
        "present.",
    )
    model_folder = param.String(
        default="",
        doc="The notebook's model folder (its model_metadata.mat gives the L2 factor and upsampling for "
        "re-localization); empty = model_metadata.mat in the prediction folder if present (imagebinner predict "
        "writes one), else the notebook's default automatic L2 for the upsampling.",
    )
    ground_truth = param.String(default="", doc="Ground-truth localizations in any supported format; optional.")
    ground_truth_format = param.Selector(
        default="auto", objects=["auto", *LOC_FORMATS], doc="Format of the ground-truth file (auto: detected)."
    )
    # -- settings (pixel_size, half_pixel, upsampling and the re-localization settings come from the mixins) --
    source = param.Selector(
        default="localizations",
        objects=["localizations", "stacked"],
        doc="Predictions from the Localizations CSV, or re-localized from Predicted_stacked_<stem>.tif with the "
        "re-localization settings.",
    )
    threshold = param.Number(
        default=0.0,
        doc="Confidence threshold: predictions with confidence >= threshold are kept (confidences are the network "
        "output / L2 and can exceed 1; bounds come from the data).",
    )
    tolerance = param.Number(
        default=100.0,
        bounds=(0.0, 10_000.0),
        inclusive_bounds=(False, True),
        softbounds=(10.0, 500.0),
        doc="Matching radius in nm: a prediction and a ground-truth localization of the same frame can pair only "
        "within this lateral distance.",
    )
    n_thresholds = param.Integer(
        default=50, bounds=(2, 10_000), doc="Thresholds in the sweep (spanning the confidences)."
    )
    histogram_bins = param.Integer(default=50, bounds=(1, 10_000), doc="Bins of the confidence histogram.")
    # -- outputs (output_path and overwrite from OutputFile) -----------------------------------------------------
    output_format = param.Selector(
        default="deepstorm-prediction",
        objects=list(WRITE_FORMATS),
        doc="Format of the saved predictions (deepstorm-prediction: the notebook's Localizations CSV layout).",
    )
    # -- actions ----------------------------------------------------------------------------------------------
    request_load = param.Event(label="Load", doc="Find and read the files, match, sweep (load()).")
    request_save = param.Event(
        label="Save", doc="Write the predictions kept at the threshold to output_path in output_format (save())."
    )

    # -- results --------------------------------------------------------------------------------------------
    loaded = param.Boolean(default=False, constant=True, doc="True once load() has run.")
    files = param.Dict(default={}, constant=True, doc="Prediction files found, by role.")
    predictions = param.Parameter(default=None, constant=True, doc="All predictions (canonical LocTable).")
    truth = param.Parameter(default=None, constant=True, doc="Ground truth (canonical LocTable) or None.")
    filtered = param.Parameter(default=None, constant=True, doc="Predictions with confidence >= threshold.")
    match_status = param.ClassSelector(
        class_=MatchStatus, default=None, constant=True,
        doc="At the current threshold: per prediction dropped / true positive / false positive, per ground truth "
        "matched or missed (row order of predictions and truth; slice with their frame_rows).",
    )
    n_frames = param.Integer(default=0, constant=True, doc="Frames of the measurement.")
    image_shape = param.Parameter(default=None, constant=True, doc="Camera image (height, width) in px, if known.")
    hr_shape = param.Parameter(default=None, constant=True, doc="Upsampled image (height, width) in hr px, if known.")
    pixel_size_hr = param.Number(default=None, allow_None=True, constant=True, doc="Upsampled pixel size, nm.")
    camera_pixel_size = param.Number(default=None, allow_None=True, constant=True, doc="Camera pixel size used, nm.")
    upsampling_used = param.Integer(default=None, allow_None=True, constant=True, doc="Upsampling factor used.")
    model_metadata = param.Dict(
        default={}, constant=True,
        doc="The model's model_metadata.mat (mean_test, std_test, upsampling, l2_weighting_factor, path), if found.",
    )
    l2_used = param.Number(
        default=None, allow_None=True, constant=True, doc="L2 weighting factor of the re-localization, as used."
    )
    l2_source = param.String(default="", constant=True, doc="Where l2_used comes from (setting, metadata, default).")
    field_area_um2 = param.Number(default=None, allow_None=True, constant=True, doc="Field of view, µm².")
    metrics = param.Dict(default={}, constant=True, doc="Metrics at the current threshold (empty without truth).")
    frame_metrics = param.Dict(default={}, constant=True, doc="Per-frame metrics at the current threshold (arrays).")
    sweep = param.Dict(default={}, constant=True, doc="Metrics against the threshold (arrays; empty without truth).")
    suggested_thresholds = param.Dict(
        default={}, constant=True, doc="Thresholds maximising Jaccard ('jaccard') and F1 ('f1')."
    )
    density = param.Dict(
        default={},
        constant=True,
        doc="Localizations per µm² per frame, empty frames included: 'frame', 'predictions' (kept at the threshold), "
        "'ground_truth' (NaN when the field size is unknown); 'prediction_counts', 'truth_counts': per frame.",
    )
    confidence_histogram = param.Dict(
        default={}, constant=True, doc="'counts' and bin 'edges' of all prediction confidences (range from the data)."
    )

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._matcher: Matcher | None = None
        self._index: ThresholdIndex | None = None
        self._n_frames = 0
        self._gt_counts: np.ndarray | None = None
        self._quiet = False  # set while load() adjusts the threshold (no reaction with the old data)
        self._conf = np.empty(0)
        self._pred_frame = np.empty(0, np.int64)
        self._movie = None
        self._found: dict | None = None  # find_prediction_files' result (paths) of the loaded prediction
        self._merged_images: dict[str, np.ndarray | None] = {}

    # -- loading --------------------------------------------------------------------------------------------
    def load(self) -> "PredictionReview":
        """Find and read the files, match, sweep, and compute everything for the current threshold.

        Every result param is set at once at the end (views see one consistent update); a failed load keeps the
        previous results.
        """
        with self._job(6, "loading predictions"):
            if not self.folder:
                raise ParameterError("no prediction folder given: set folder", params=["folder"])
            files = find_prediction_files(self.folder, self.stem or None)
            self._advance()
            hr = hr_images(files)
            metadata = find_model_metadata(self.model_folder, self.folder)
            upsampling = self.upsampling if self.upsampling is not None else (
                metadata.upsampling if metadata is not None else None)
            movie, movie_path = open_test_movie(
                self.movie, self.folder, files["stem"], files["exploded"] is not None, self.pixel_size
            )
            try:
                geometry, truth = self._geometry_and_truth(hr, movie, upsampling)
                self._advance()
                l2, l2_source = resolve_l2(self.l2_weighting_factor,
                                           metadata.l2_weighting_factor if metadata is not None else None,
                                           geometry.upsampling)
                pred = read_predictions(
                    files, self.source, self, geometry.pixel_size_hr, geometry.upsampling, self.folder, l2
                )
                self._advance()
                n_frames = frame_count(movie, hr.stacked_pages, pred, truth)
                pred = within_frames(pred, n_frames, "predictions")
                if truth is not None:
                    truth = within_frames(truth, n_frames, "ground truth")
                meta = {"n_frames": n_frames, "pixel_size": geometry.camera_pixel_size,
                        "image_shape": geometry.image_shape}
                pred = pred.with_meta(**{k: v for k, v in meta.items() if v is not None})
                self._advance()
            except BaseException:
                if movie is not None:
                    movie.close()
                raise
            results = self._loaded_results(files, movie_path, pred, truth, n_frames, geometry)
            results.update(l2_used=l2, l2_source=l2_source, model_metadata={} if metadata is None else {
                "mean_test": metadata.mean_test, "std_test": metadata.std_test, "upsampling": metadata.upsampling,
                "l2_weighting_factor": metadata.l2_weighting_factor, "path": str(metadata.path)})
            self._advance()
            self._replace_movie(movie)
            self._found = files
            self._finish_load(results)
        return self

    def load_tables(self, predictions: LocTable, truth: LocTable | None = None, n_frames: int | None = None,
                    geometry: Geometry | None = None) -> "PredictionReview":
        """Review predictions already in memory (a notebook, a benchmark): match, sweep and every result as
        :meth:`load` gives them, without files (no movie, no hr images unless ``geometry`` names their sizes)."""
        m = predictions.meta
        n = int(n_frames or max(predictions.n_frames, truth.n_frames if truth is not None else 0))
        g = geometry or Geometry(None, m.image_shape, None, m.pixel_size, None)
        results = self._loaded_results({"exploded": None}, None, predictions, truth, n, g)
        with self._job(1, "reviewing tables"):
            self._replace_movie(None)
            self._found = None
            self._finish_load(results)
        return self

    def _finish_load(self, results: dict) -> None:
        """Confidences, threshold bounds, histogram, matching and sweep, threshold results; all set at once."""
        pred, truth = results["predictions"], results["truth"]
        self._merged_images = {}
        self._conf = np.asarray(pred["confidence"], dtype=float)
        self._pred_frame = pred.frame
        self._update_threshold_bounds()
        results.update(self._histogram())
        self._n_frames = results["n_frames"]
        self._gt_counts = None
        results.update(self._matching(truth, pred))
        results.update(self._threshold_results(pred, truth, results["n_frames"], results["field_area_um2"]))
        self._advance()
        self._update(**results, loaded=True, status=self._summary(results["filtered"], pred, results["metrics"]))

    def _geometry_and_truth(self, hr, movie, upsampling: int | None) -> tuple[Geometry, LocTable | None]:
        """The sizes of the review and the ground truth (read with the camera pixel size known so far)."""
        movie_shape = movie.shape if movie is not None else None
        movie_ps = movie.pixel_size if movie is not None else None
        truth = None
        if self.ground_truth:
            u = derive_upsampling(upsampling, hr.hr_shape, movie_shape, movie_ps, hr.pixel_size_hr)
            truth = read_truth(self.ground_truth, self.ground_truth_format, self.pixel_size, self.half_pixel,
                               truth_pixel_size(movie_ps, hr.pixel_size_hr, u))
        geometry = resolve_geometry(
            hr_shape=hr.hr_shape,
            pixel_size_hr=hr.pixel_size_hr,
            movie_shape=movie_shape,
            movie_pixel_size=movie_ps,
            truth_shape=None if truth is None or truth.meta.image_shape is None else tuple(truth.meta.image_shape),
            truth_pixel_size=None if truth is None else truth.meta.pixel_size,
            pixel_size=self.pixel_size,
            upsampling=upsampling,
            where=self.folder,
        )
        return geometry, truth

    @staticmethod
    def _loaded_results(files: dict, movie_path: str | None, pred: LocTable, truth: LocTable | None,
                        n_frames: int, g: Geometry) -> dict[str, Any]:
        return {
            "files": {
                **{k: (str(v) if isinstance(v, Path) else v) for k, v in files.items()},
                "exploded": exploded_summary(files),
                "movie": movie_path,
            },
            "predictions": pred,
            "truth": truth,
            "n_frames": int(n_frames),
            "image_shape": g.image_shape,
            "hr_shape": g.hr_shape,
            "pixel_size_hr": g.pixel_size_hr,
            "camera_pixel_size": g.camera_pixel_size,
            "upsampling_used": g.upsampling,
            "field_area_um2": g.field_area_um2,
        }

    def _replace_movie(self, movie) -> None:
        if self._movie is not None and self._movie is not movie:
            self._movie.close()  # a reload replaces the previous movie
        self._movie = movie

    def _update_threshold_bounds(self) -> None:
        """Soft bounds (the slider's range) span the loaded confidences; a threshold below the smallest keeps the same
        predictions, so it is raised to the smallest; one above the largest stays (and widens the range: nothing is
        kept). Hard bounds also admit 0 (keep everything) for scripts."""
        conf = self._conf[np.isfinite(self._conf)]
        lo = float(conf.min()) if len(conf) else 0.0
        hi = max(float(conf.max()) if len(conf) else 1.0, float(self.threshold), lo + 1e-9)
        self.param.threshold.bounds = (min(lo, 0.0), hi)
        self.param.threshold.softbounds = (lo, hi)
        if self.threshold < lo:
            self._quiet = True
            try:
                self.threshold = lo
            finally:
                self._quiet = False

    def _histogram(self) -> dict[str, Any]:
        conf = self._conf
        if len(conf):
            lo, hi = float(conf.min()), float(conf.max())
            if hi <= lo:
                hi = lo + 1.0
            counts, edges = np.histogram(conf, bins=self.histogram_bins, range=(lo, hi))
        else:
            counts, edges = np.zeros(0, np.int64), np.zeros(0)
        return {"confidence_histogram": {"counts": counts, "edges": edges}}

    def _matching(self, truth: LocTable | None, pred: LocTable) -> dict[str, Any]:
        """(Re)build the matcher and the sweep (after loading or a tolerance change)."""
        if truth is None:
            self._matcher = None
            self._index = ThresholdIndex(pred, None, self._n_frames)
            return {"sweep": {}, "suggested_thresholds": {}}
        self._matcher = Matcher(truth, pred, self.tolerance)
        self._index = ThresholdIndex(pred, self._matcher, self._n_frames)
        sweep = self._matcher.sweep(sweep_thresholds(self._conf, self.n_thresholds))
        return {"sweep": sweep, "suggested_thresholds": suggest_thresholds(sweep)}

    def _threshold_results(self, pred: LocTable, truth: LocTable | None, n: int, area: float | None) -> dict:
        """The kept predictions, match status, metrics, per-frame metrics and densities at the current threshold:
        lookups in the threshold index, no re-matching (the kept table is copied only when read)."""
        at = self._index.at(self.threshold)
        pred_counts = at.kept_per_frame
        scale = (1.0 / area) if area else np.nan
        density = {"frame": np.arange(n, dtype=np.int64), "predictions": pred_counts * scale,
                   "prediction_counts": pred_counts}
        filtered = kept_rows(pred, lambda: at.status.kept).with_length(int(pred_counts.sum()))
        out: dict[str, Any] = {"filtered": filtered, "match_status": at.status, "metrics": {},
                               "frame_metrics": {}, "density": density}
        if at.frame_sums is not None:
            if self._gt_counts is None or len(self._gt_counts) != n:
                self._gt_counts = truth.counts_per_frame(n)  # once per load: the truth does not follow the threshold
            gt_counts = self._gt_counts
            density["ground_truth"] = gt_counts * scale
            density["truth_counts"] = gt_counts
            out["metrics"] = {**at.metrics(len(truth)), "threshold": float(self.threshold),
                              "tolerance_nm": float(self.tolerance)}
            out["frame_metrics"] = at.frame_metrics(gt_counts)
        return out

    # -- reacting to settings -------------------------------------------------------------------------------
    @param.depends("threshold", watch=True)
    def _apply_threshold(self) -> None:
        if self.loaded and not self._quiet:
            results = self._threshold_results(self.predictions, self.truth, self.n_frames, self.field_area_um2)
            self._update(**results, status=self._summary(results["filtered"], self.predictions, results["metrics"]))

    @param.depends("tolerance", "n_thresholds", watch=True)
    def _tolerance_changed(self) -> None:
        if self.loaded:
            results = self._matching(self.truth, self.predictions)
            results.update(self._threshold_results(self.predictions, self.truth, self.n_frames, self.field_area_um2))
            self._update(**results, status=self._summary(results["filtered"], self.predictions, results["metrics"]))

    @param.depends("histogram_bins", watch=True)
    def _bins_changed(self) -> None:
        if self.loaded:
            self._update(**self._histogram())

    # -- reading back -----------------------------------------------------------------------------------------
    def movie_frame(self, k: int) -> np.ndarray | None:
        """Camera frame ``k`` (0-based) of the test movie or its exploded frames; None without a movie."""
        if self._movie is None:
            return None
        return self._movie.frame(k)

    def merged_image(self, role: str) -> np.ndarray | None:
        """The summed hr image of ``role`` ("predicted" or "widefield"): ``Predicted_<stem>.tif`` /
        ``Widefield_<stem>.tif``, or for exploded predictions the sum of the per-frame images (read one at a time,
        cached); None when there is none."""
        if role not in ("predicted", "widefield"):
            raise ParameterError(f"no merged image {role!r} (choose predicted or widefield)")
        if not self.loaded:
            return None
        if role not in self._merged_images:
            found = role_files(self._found, role) if self._found is not None else []
            self._merged_images[role] = sum_images(found, role) if found else None
        return self._merged_images[role]

    def close(self) -> None:
        """Release the test movie's file handle (the review stays usable except for ``movie_frame``)."""
        self._replace_movie(None)

    def _summary(self, filtered: LocTable | None, predictions: LocTable, metrics: dict) -> str:
        n_pred = len(filtered) if filtered is not None else 0
        text = f"{n_pred} of {len(predictions)} predictions kept at threshold {self.threshold:g}"
        if metrics:
            m = metrics
            text += (
                f"; vs {m['n_gt']} ground truth within {self.tolerance:g} nm: Jaccard {m['jaccard']:.4f}, "
                f"F1 {m['f1']:.4f}, RMSE {m['rmse_nm']:.2f} nm"
            )
        return text

    def summary_line(self) -> str:
        """One line: predictions kept at the threshold and, with ground truth, the main metrics."""
        return self._summary(self.filtered, self.predictions, self.metrics) if self.loaded else ""

    # -- saving -----------------------------------------------------------------------------------------------
    def input_paths(self) -> list[Path]:
        """Every file the loaded review read (or may read): no save may write over one of them (or its sidecar)."""
        paths = [Path(p) for p in (self.ground_truth, self.movie, self.files.get("movie")) if p]
        if self._found is not None:
            paths += [p for role in ROLES for p in role_files(self._found, role)]
        if isinstance(self._movie, ExplodedFrames):
            paths += self._movie.files
        return paths

    def save(self) -> list[Path]:
        """Write the predictions kept at the threshold to ``output_path`` in ``output_format``; returns the paths.

        Atomic; refuses to replace an existing file unless ``overwrite``; never writes over an input file or its
        sidecar (even with ``overwrite``), nor under a name the prediction-folder search would take for a
        prediction of the folder.
        """
        if not self.loaded:
            raise ParameterError("nothing to save: load the predictions first")
        if not self.output_path:
            raise ParameterError("no output file given: set output_path", params=["output_path"])
        path = Path(self.output_path)
        targets = output_paths(path, self.output_format)
        check_outputs(targets, self.input_paths(), self.overwrite)
        for t in targets:
            if t.parent.resolve() == Path(self.folder).resolve() and is_prediction_name(t.name):
                raise ParameterError(
                    "this name would be taken for a prediction file of the folder: choose another name", t
                )
        return write_locs(self.filtered, path, format=self.output_format, overwrite=self.overwrite)

    def result_summary(self) -> dict:
        """A JSON-ready dict: metrics at the threshold, the sweep as a list of rows, suggestions, files, sizes."""
        out = {
            "folder": self.folder,
            "stem": self.files.get("stem"),
            "files": self.files,
            "source": self.source,
            "n_frames": self.n_frames,
            "n_pred_total": len(self.predictions) if self.predictions is not None else 0,
            "threshold": float(self.threshold),
            "tolerance_nm": float(self.tolerance),
            "matcher": "optimal one-to-one per frame (max pairs, then min sum of squared distances)",
            "pixel_size_hr_nm": self.pixel_size_hr,
            "camera_pixel_size_nm": self.camera_pixel_size,
            "upsampling": self.upsampling_used,
            "field_area_um2": self.field_area_um2,
            "l2_weighting_factor_used": self.l2_used,
            "l2_source": self.l2_source,
            "model_metadata": self.model_metadata,
            "settings": self.settings_record(),
        }
        if self.metrics:
            out.update(self.metrics)
        else:  # no ground truth: only the prediction count is known
            out.update({k: None for k in METRIC_NAMES})
            out["n_pred"] = len(self.filtered) if self.filtered is not None else 0
        sw = self.sweep
        out["sweep"] = [
            {k: (int(sw[k][i]) if k in ("tp", "fp", "fn") else float(sw[k][i])) for k in SWEEP_KEYS}
            for i in range(len(sw.get("threshold", [])))
        ]
        out["suggested_thresholds"] = dict(self.suggested_thresholds)
        return out
