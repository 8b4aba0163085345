"""Prediction review: DeepSTORM (ZeroCostDL4Mic) outputs against ground truth — threshold, exact metrics, sweep.

``PredictionReview(folder=..., ground_truth=..., movie=...)``, then ``load()``. Changing ``threshold`` afterwards
is cheap (a mask over the precomputed confidences and the matching from precomputed candidate pairs); changing
``tolerance`` recomputes the pairs and the sweep. Matching and metrics: :mod:`imagebinner.tools.matching`.

Files in the prediction folder are found by their documented names only (spec section 2.5), with exact patterns:

* ``Localizations_<stem>_avg.csv`` / ``Localizations_<stem>_max.csv`` (both for one stem: an error);
* ``Predicted_<stem>.tif``, ``Widefield_<stem>.tif``; ``Predicted_stacked_<stem>.tif`` (optional; a name
  ``Predicted_stacked_X.tif`` is always the stacked density of ``X``, never the summed prediction of
  ``stacked_X``).

A folder holding several stems needs ``stem``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import param

from imagebinner.errors import FormatError, ParameterError
from imagebinner.io import LOC_FORMATS, LocTable, WRITE_FORMATS, open_movie, output_paths, read_locs, write_locs
from imagebinner.tools.base import Task
from imagebinner.tools.matching import METRIC_NAMES, Matcher, suggest_thresholds, sweep_thresholds
from imagebinner.tools.relocalize import relocalize_stack

_PATTERNS = {
    "localizations_avg": re.compile(r"^Localizations_(?P<stem>.+)_avg\.csv$"),
    "localizations_max": re.compile(r"^Localizations_(?P<stem>.+)_max\.csv$"),
    "stacked": re.compile(r"^Predicted_stacked_(?P<stem>.+)\.tiff?$"),
    "predicted": re.compile(r"^Predicted_(?P<stem>.+)\.tiff?$"),
    "widefield": re.compile(r"^Widefield_(?P<stem>.+)\.tiff?$"),
}
_FRAME_FILE = r"^{stem}_frame(?P<n>\d+)\.tiff?$"


def find_prediction_files(folder: str | Path, stem: str | None = None) -> dict:
    """The prediction files of one stem in ``folder``: ``{"stem", "localizations", "variant", "predicted",
    "widefield", "stacked"}`` (paths or None; ``variant`` is "avg" or "max").

    Errors (one line, naming the folder): folder missing; no prediction file; several stems without ``stem``; the
    given stem absent; both ``_avg`` and ``_max`` for the stem; two files for one role (``.tif`` and ``.tiff``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FormatError("prediction folder not found (or not a folder)", folder)
    found: dict[str, dict[str, list[Path]]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        for role, pattern in _PATTERNS.items():
            m = pattern.match(path.name)
            if m:
                found.setdefault(m["stem"], {}).setdefault(role, []).append(path)
                break  # first matching role wins: "stacked" is tested before "predicted"
    if not found:
        raise FormatError(
            "no DeepSTORM prediction files (Localizations_<stem>_avg.csv or _max.csv, Predicted_<stem>.tif, "
            "Widefield_<stem>.tif, Predicted_stacked_<stem>.tif)",
            folder,
        )
    if stem:
        if stem not in found:
            raise FormatError(
                f"no prediction files for stem {stem!r} (stems found: {', '.join(sorted(found))})", folder
            )
    elif len(found) > 1:
        listing = "; ".join(f"{s}: {', '.join(p.name for ps in found[s].values() for p in ps)}" for s in sorted(found))
        raise FormatError(f"several predictions in one folder, choose one with stem ({listing})", folder)
    else:
        stem = next(iter(found))
    roles = found[stem]
    for role, paths in roles.items():
        if len(paths) > 1:
            raise FormatError(f"ambiguous {role} files: {', '.join(p.name for p in paths)}", folder)
    if "localizations_avg" in roles and "localizations_max" in roles:
        raise FormatError(
            f"both {roles['localizations_avg'][0].name} and {roles['localizations_max'][0].name}: keep one of them "
            "in the folder",
            folder,
        )
    loc_role = "localizations_avg" if "localizations_avg" in roles else "localizations_max"
    one = {r: (roles[r][0] if r in roles else None) for r in _PATTERNS}
    return {
        "stem": stem,
        "localizations": one[loc_role],
        "variant": None if one[loc_role] is None else loc_role.rsplit("_", 1)[1],
        "predicted": one["predicted"],
        "widefield": one["widefield"],
        "stacked": one["stacked"],
    }


class ExplodedFrames:
    """A folder of single-frame TIFs ``<stem>_frame00001.tif``, ... read as a movie (file number = frame + 1)."""

    def __init__(self, folder: str | Path, stem: str):
        self.path = Path(folder)
        pattern = re.compile(_FRAME_FILE.format(stem=re.escape(stem)))
        numbered = {}
        for p in self.path.iterdir():
            m = pattern.match(p.name)
            if m:
                n = int(m["n"])
                if n in numbered:
                    raise FormatError(f"two files for frame {n}: {numbered[n].name}, {p.name}", self.path)
                numbered[n] = p
        if not numbered:
            raise FormatError(f"no exploded frames {stem}_frame00001.tif, ... in the folder", self.path)
        expected = list(range(1, len(numbered) + 1))
        if sorted(numbered) != expected:
            missing = sorted(set(range(1, max(numbered) + 1)) - set(numbered))[:5]
            raise FormatError(f"exploded frames are not numbered 1..N (missing e.g. {missing})", self.path)
        self.files = [numbered[n] for n in expected]
        with open_movie(self.files[0]) as first:
            self.shape, self.pixel_size = first.shape, first.pixel_size
        self.n_frames = len(self.files)

    def frame(self, k: int) -> np.ndarray:
        with open_movie(self.files[k]) as m:
            return m.frame(0)

    def close(self) -> None:  # for symmetry with Movie
        pass


def _tif_info(path: Path | None) -> tuple[tuple[int, int] | None, float | None]:
    if path is None:
        return None, None
    with open_movie(path) as m:
        return m.shape, m.pixel_size


class PredictionReview(Task):
    """Review DeepSTORM predictions: confidence threshold, exact metrics against ground truth, threshold sweep."""

    # -- inputs ---------------------------------------------------------------------------------------------
    folder = param.String(
        default="",
        doc="Prediction folder (ZeroCostDL4Mic outputs: Localizations_<stem>_avg.csv or _max.csv, "
        "Predicted_<stem>.tif, Widefield_<stem>.tif, optional Predicted_stacked_<stem>.tif).",
    )
    stem = param.String(default="", doc="Movie stem selecting the prediction when the folder holds several.")
    movie = param.String(
        default="",
        doc="Test movie (TIF or Picasso .raw) or a folder of its exploded frames <stem>_frame00001.tif, ...; "
        "optional (frame count, camera pixel size, field size); empty = <stem>.tif in the prediction folder if "
        "present.",
    )
    ground_truth = param.String(default="", doc="Ground-truth localizations in any supported format; optional.")
    ground_truth_format = param.Selector(
        default="auto", objects=["auto", *LOC_FORMATS], doc="Format of the ground-truth file (auto: detected)."
    )
    source = param.Selector(
        default="localizations",
        objects=["localizations", "stacked"],
        doc="Predictions from the Localizations CSV, or re-localized from Predicted_stacked_<stem>.tif with the "
        "re-localization settings below.",
    )
    relocalize_threshold = param.Number(
        default=0.1,
        bounds=(0.0, None),
        softbounds=(0.0, 1.0),
        doc="Re-localization: a 3×3 local maximum of the stacked density is a detection if it exceeds this × L2.",
    )
    local_average = param.Boolean(
        default=True, doc="Re-localization: 3×3 centre of gravity and 3×3-sum confidence (notebook '_avg')."
    )
    l2_weighting_factor = param.Number(
        default=100.0,
        bounds=(0.0, None),
        inclusive_bounds=(False, True),
        doc="Re-localization: the L2 weighting factor used in training (must match it).",
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
    upsampling = param.Integer(
        default=None,
        allow_None=True,
        bounds=(1, 64),
        doc="DeepSTORM upsampling factor; empty = derived from the images (hr image size / movie size, or camera "
        "pixel size / hr pixel size).",
    )
    pixel_size = param.Number(
        default=None,
        allow_None=True,
        bounds=(0.0, None),
        inclusive_bounds=(False, True),
        doc="Camera pixel size in nm; empty = from the movie's metadata, or hr pixel size × upsampling.",
    )
    n_thresholds = param.Integer(default=50, bounds=(2, 10_000), doc="Thresholds in the sweep (spanning the confidences).")
    histogram_bins = param.Integer(default=50, bounds=(1, 10_000), doc="Bins of the confidence histogram.")

    # -- results --------------------------------------------------------------------------------------------
    loaded = param.Boolean(default=False, constant=True, doc="True once load() has run.")
    files = param.Dict(default={}, constant=True, doc="Prediction files found, by role.")
    predictions = param.Parameter(default=None, constant=True, doc="All predictions (canonical LocTable).")
    truth = param.Parameter(default=None, constant=True, doc="Ground truth (canonical LocTable) or None.")
    filtered = param.Parameter(default=None, constant=True, doc="Predictions with confidence >= threshold.")
    n_frames = param.Integer(default=0, constant=True, doc="Frames of the measurement.")
    image_shape = param.Parameter(default=None, constant=True, doc="Camera image (height, width) in px, if known.")
    hr_shape = param.Parameter(default=None, constant=True, doc="Upsampled image (height, width) in hr px, if known.")
    pixel_size_hr = param.Number(default=None, allow_None=True, constant=True, doc="Upsampled pixel size, nm.")
    camera_pixel_size = param.Number(default=None, allow_None=True, constant=True, doc="Camera pixel size used, nm.")
    upsampling_used = param.Integer(default=None, allow_None=True, constant=True, doc="Upsampling factor used.")
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
        "'ground_truth' (NaN when the field size is unknown).",
    )
    confidence_histogram = param.Dict(
        default={}, constant=True, doc="'counts' and bin 'edges' of all prediction confidences (range from the data)."
    )

    def __init__(self, **params):
        super().__init__(**params)
        self._matcher: Matcher | None = None
        self._conf = np.empty(0)
        self._movie = None
        self._movie_path: str | None = None

    # -- loading --------------------------------------------------------------------------------------------
    def load(self) -> "PredictionReview":
        """Find and read the files, match, sweep, and compute everything for the current threshold."""
        with self._job(6, "loading predictions"):
            if not self.folder:
                raise ParameterError("no prediction folder given")
            files = find_prediction_files(self.folder, self.stem or None)
            self._advance()
            hr_shape, ps_hr = _tif_info(files["predicted"])
            wf_shape, wf_ps = _tif_info(files["widefield"])
            if hr_shape is None:
                hr_shape, ps_hr = wf_shape, wf_ps
            elif ps_hr is None:
                ps_hr = wf_ps
            self._movie_path = None
            movie = self._open_movie(files["stem"])
            image_shape = movie.shape if movie is not None else None
            movie_ps = movie.pixel_size if movie is not None else None
            stacked_pages = None
            if files["stacked"] is not None:
                with open_movie(files["stacked"]) as st:
                    stacked_pages = st.n_frames
                    hr_shape = hr_shape or st.shape
            u = self._derive_upsampling(hr_shape, image_shape, movie_ps, ps_hr)
            truth = None
            if self.ground_truth:
                fallback = movie_ps or (ps_hr * u if ps_hr is not None and u is not None else None)
                truth = self._read_truth(fallback)
                if image_shape is None and truth.meta.image_shape is not None:
                    image_shape = tuple(truth.meta.image_shape)
            known_ps = self.pixel_size or movie_ps or (truth.meta.pixel_size if truth is not None else None)
            if u is None:
                u = self._derive_upsampling(hr_shape, image_shape, known_ps, ps_hr)
            camera_ps = known_ps
            if camera_ps is None and ps_hr is not None and u is not None:
                camera_ps = ps_hr * u
            if ps_hr is None and camera_ps is not None and u is not None:
                ps_hr = camera_ps / u
            if hr_shape is not None and image_shape is not None and u is not None:
                if (hr_shape[0], hr_shape[1]) != (image_shape[0] * u, image_shape[1] * u):
                    warnings.warn(
                        f"{self.folder}: hr images are {hr_shape[0]}x{hr_shape[1]}, the camera image "
                        f"{image_shape[0]}x{image_shape[1]} at upsampling {u}"
                    )
            self._advance()
            # predictions
            if self.source == "stacked":
                if files["stacked"] is None:
                    raise FormatError(
                        f"no Predicted_stacked_{files['stem']}.tif to re-localize from", self.folder
                    )
                pred = relocalize_stack(
                    files["stacked"],
                    self.relocalize_threshold,
                    self.l2_weighting_factor,
                    self.local_average,
                    pixel_size_hr=ps_hr,
                    upsampling=u,
                )
            else:
                if files["localizations"] is None:
                    raise FormatError(
                        f"no Localizations_{files['stem']}_avg.csv or _max.csv (use source='stacked' to "
                        "re-localize from the stacked density)",
                        self.folder,
                    )
                pred = read_locs(files["localizations"], format="deepstorm-prediction")
            if "confidence" not in pred or not np.all(np.isfinite(pred["confidence"])):
                raise FormatError("predictions lack finite confidence values", files["localizations"])
            self._advance()
            # frames
            candidates = [movie.n_frames if movie is not None else None, stacked_pages]
            n_frames = next((n for n in candidates if n is not None), None)
            if n_frames is None:
                known = [t.n_frames for t in (pred, truth) if t is not None]
                n_frames = max(known) if known else 0
            pred = self._within_frames(pred, n_frames, "predictions")
            if truth is not None:
                truth = self._within_frames(truth, n_frames, "ground truth")
            meta_changes = {"n_frames": n_frames, "pixel_size": camera_ps, "image_shape": image_shape}
            pred = pred.with_meta(**{k: v for k, v in meta_changes.items() if v is not None})
            # field area
            area = None
            if hr_shape is not None and ps_hr is not None:
                area = hr_shape[0] * hr_shape[1] * ps_hr**2 / 1e6
            elif image_shape is not None and camera_ps is not None:
                area = image_shape[0] * image_shape[1] * camera_ps**2 / 1e6
            self._advance()
            if self._movie is not None and self._movie is not movie:
                self._movie.close()  # a reload replaces the previous movie
            self._movie = movie
            self._conf = np.asarray(pred["confidence"], dtype=float)
            self._pred_frame = pred.frame
            self._update(
                files={
                    **{k: (str(v) if isinstance(v, Path) else v) for k, v in files.items()},
                    "movie": self._movie_path,
                },
                predictions=pred,
                truth=truth,
                n_frames=int(n_frames),
                image_shape=None if image_shape is None else tuple(int(v) for v in image_shape),
                hr_shape=None if hr_shape is None else tuple(int(v) for v in hr_shape),
                pixel_size_hr=ps_hr,
                camera_pixel_size=camera_ps,
                upsampling_used=u,
                field_area_um2=area,
            )
            self._update_threshold_bounds()
            self._histogram()
            self._match_all()
            self._advance()
            self._update(loaded=True)
            self._apply_threshold()
            self._advance()
            self._update(status=self.summary_line())
        return self

    def _derive_upsampling(self, hr_shape, image_shape, camera_ps, ps_hr) -> int | None:
        """The param when set, else hr image size / camera image size, else camera / hr pixel size."""
        if self.upsampling is not None:
            return int(self.upsampling)
        if hr_shape is not None and image_shape is not None:
            ratio = (hr_shape[0] / image_shape[0], hr_shape[1] / image_shape[1])
            if ratio[0] == ratio[1] and float(ratio[0]).is_integer():
                return int(ratio[0])
        if camera_ps is not None and ps_hr is not None:
            return int(round(camera_ps / ps_hr))
        return None

    def _open_movie(self, stem: str):
        """The ``movie`` param, else the test movie ``<stem>.tif`` lying in the prediction folder, else None."""
        if self.movie:
            path = Path(self.movie)
        else:
            beside = [Path(self.folder) / f"{stem}{ext}" for ext in (".tif", ".tiff")]
            beside = [p for p in beside if p.is_file()]
            if len(beside) != 1:
                return None
            path = beside[0]
        self._movie_path = str(path)
        if path.is_dir():
            return ExplodedFrames(path, stem)
        return open_movie(path, pixel_size=self.pixel_size)

    def _read_truth(self, camera_ps: float | None) -> LocTable:
        fmt = None if self.ground_truth_format == "auto" else self.ground_truth_format
        try:
            return read_locs(self.ground_truth, format=fmt, pixel_size=self.pixel_size)
        except FormatError as exc:
            # Picasso files without a pixel size in their YAML: retry with the one known from the movie/images
            if self.pixel_size is None and camera_ps is not None and "pixel" in str(exc).lower():
                return read_locs(self.ground_truth, format=fmt, pixel_size=camera_ps)
            raise

    @staticmethod
    def _within_frames(table: LocTable, n_frames: int, what: str) -> LocTable:
        if len(table) and int(table.frame[-1]) >= n_frames:
            bad = int(np.count_nonzero(table.frame >= n_frames))
            warnings.warn(
                f"{table.meta.source_path}: {bad} {what} row(s) beyond the movie's {n_frames} frames dropped"
            )
            table = table.take(table.frame < n_frames)
        return table.with_meta(n_frames=n_frames)

    def _update_threshold_bounds(self) -> None:
        conf = self._conf
        lo = min(0.0, float(conf.min())) if len(conf) else 0.0
        hi = float(conf.max()) if len(conf) else 1.0
        hi = max(hi, float(self.threshold), lo + 1e-9)
        lo = min(lo, float(self.threshold))
        self.param.threshold.bounds = (lo, hi)
        self.param.threshold.softbounds = (lo, hi)

    def _histogram(self) -> None:
        conf = self._conf
        if len(conf):
            lo, hi = float(conf.min()), float(conf.max())
            if hi <= lo:
                hi = lo + 1.0
            counts, edges = np.histogram(conf, bins=self.histogram_bins, range=(lo, hi))
        else:
            counts, edges = np.zeros(0, np.int64), np.zeros(0)
        self._update(confidence_histogram={"counts": counts, "edges": edges})

    def _match_all(self) -> None:
        """(Re)build the matcher and the sweep (after loading or a tolerance change)."""
        if self.truth is None:
            self._matcher = None
            self._update(sweep={}, suggested_thresholds={})
            return
        self._matcher = Matcher(self.truth, self.predictions, self.tolerance)
        thresholds = sweep_thresholds(self._conf, self.n_thresholds)
        sweep = self._matcher.sweep(thresholds)
        self._update(sweep=sweep, suggested_thresholds=suggest_thresholds(sweep))

    # -- reacting to settings -------------------------------------------------------------------------------
    @param.depends("threshold", watch=True)
    def _apply_threshold(self) -> None:
        if not self.loaded:
            return
        pred: LocTable = self.predictions
        keep = self._conf >= self.threshold
        filtered = pred.take(keep)
        n = self.n_frames
        pred_counts = np.bincount(self._pred_frame[keep], minlength=n)[:n]
        area = self.field_area_um2
        density = {"frame": np.arange(n, dtype=np.int64)}
        scale = (1.0 / area) if area else np.nan
        density["predictions"] = pred_counts * scale
        updates = {"filtered": filtered}
        if self._matcher is not None:
            truth: LocTable = self.truth
            gt_counts = truth.counts_per_frame(n)
            density["ground_truth"] = gt_counts * scale
            result = self._matcher.match(self.threshold)
            metrics = result.metrics
            metrics["threshold"] = float(self.threshold)
            metrics["tolerance_nm"] = float(self.tolerance)
            updates["metrics"] = metrics
            updates["frame_metrics"] = result.per_frame(gt_counts, pred_counts)
        else:
            updates["metrics"] = {}
            updates["frame_metrics"] = {}
        updates["density"] = density
        self._update(**updates)
        self._update(status=self.summary_line())

    @param.depends("tolerance", "n_thresholds", watch=True)
    def _tolerance_changed(self) -> None:
        if self.loaded:
            self._match_all()
            self._apply_threshold()

    @param.depends("histogram_bins", watch=True)
    def _bins_changed(self) -> None:
        if self.loaded:
            self._histogram()

    # -- outputs --------------------------------------------------------------------------------------------
    def movie_frame(self, k: int) -> np.ndarray | None:
        """Camera frame ``k`` (0-based) of the test movie or its exploded frames; None without a movie."""
        if self._movie is None:
            return None
        return self._movie.frame(k)

    def close(self) -> None:
        """Release the test movie's file handle (the review stays usable except for ``movie_frame``)."""
        if self._movie is not None:
            self._movie.close()
            self._movie = None

    def summary_line(self) -> str:
        n_pred = len(self.filtered) if self.filtered is not None else 0
        text = f"{n_pred} of {len(self.predictions)} predictions kept at threshold {self.threshold:g}"
        if self.metrics:
            m = self.metrics
            text += (
                f"; vs {m['n_gt']} ground truth within {self.tolerance:g} nm: Jaccard {m['jaccard']:.4f}, "
                f"F1 {m['f1']:.4f}, RMSE {m['rmse_nm']:.2f} nm"
            )
        return text

    def save(self, path: str | Path, format: str = "deepstorm-prediction", overwrite: bool = False) -> list[Path]:
        """Write the filtered localizations (DeepSTORM prediction layout by default, or any writer format).

        Atomic; refuses to replace an existing file unless ``overwrite``; never writes over an input file or a
        name the prediction-folder search would pick up as a prediction.
        """
        if not self.loaded:
            raise ParameterError("nothing to save: call load() first")
        if format not in WRITE_FORMATS:
            raise ParameterError(f"cannot write format {format!r} (choose from {', '.join(WRITE_FORMATS)})", path)
        targets = [Path(p) for p in output_paths(path, format)]
        roles = ("localizations", "predicted", "widefield", "stacked", "movie")
        inputs = [Path(self.files[r]) for r in roles if self.files.get(r)]
        inputs += [Path(p) for p in (self.ground_truth, self.movie) if p]
        for t in targets:
            if any(t.resolve() == i.resolve() for i in inputs if i.exists()):
                raise ParameterError("refusing to write over an input file", t)
            if t.parent.resolve() == Path(self.folder).resolve() and any(
                p.match(t.name) for p in _PATTERNS.values()
            ):
                raise ParameterError(
                    "this name would be taken for a prediction file of the folder: choose another name", t
                )
        return write_locs(self.filtered, path, format=format, overwrite=overwrite)

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
        }
        if self.metrics:
            out.update(self.metrics)
        else:  # no ground truth: only the prediction count is known
            out.update({k: None for k in METRIC_NAMES})
            out["n_pred"] = len(self.filtered) if self.filtered is not None else 0
        keys = ("threshold", "jaccard", "f1", "precision", "recall", "rmse_nm", "efficiency", "tp", "fp", "fn")
        sw = self.sweep
        out["sweep"] = [
            {k: (int(sw[k][i]) if k in ("tp", "fp", "fn") else float(sw[k][i])) for k in keys}
            for i in range(len(sw.get("threshold", [])))
        ]
        out["suggested_thresholds"] = dict(self.suggested_thresholds)
        return out
