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

Exploded predictions (the notebook run on the single frames ``<base>_frame00001.tif``, ... written by ``Explode``)
are reviewed as one prediction of the whole movie: every stem ``<base>_frame<digits>`` (one base, one digit width),
frame index = number − 1; the per-frame CSVs are concatenated (each read once), the per-frame ``Predicted_`` /
``Widefield_`` images summed by :meth:`PredictionReview.merged_image`. Frames without files are frames without
predictions; the frame count comes from the movie (or its exploded frames), else the highest number.
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


_EXPLODED_STEM = re.compile(r"^(?P<base>.+)_frame(?P<n>\d+)$")
_ROLES = ("localizations", "predicted", "widefield", "stacked")


def _names(paths: list[Path], limit: int = 3) -> str:
    """A short listing of file names: the first ``limit`` and the count of the rest."""
    shown = ", ".join(p.name for p in paths[:limit])
    return shown if len(paths) <= limit else f"{shown}, ... ({len(paths)} files)"


def _stem_files(roles: dict[str, list[Path]]) -> list[Path]:
    return [p for ps in roles.values() for p in ps]


def find_prediction_files(folder: str | Path, stem: str | None = None) -> dict:
    """The prediction files of one stem in ``folder``: ``{"stem", "localizations", "variant", "predicted",
    "widefield", "stacked", "exploded"}`` (paths or None; ``variant`` is "avg" or "max"; ``exploded`` is None).

    Exploded predictions (the notebook run on single frames ``<base>_frame00001.tif``, ...): when every stem of the
    folder is ``<base>_frame<digits>`` with one common ``<base>`` (or ``stem`` names that base), the result is the
    whole movie's prediction: ``stem`` = base, the role entries None, and ``exploded`` = ``{"numbers": sorted 1-based
    frame numbers (int64 array), "digits": width, "localizations" | "predicted" | "widefield" | "stacked": one path
    or None per number}``; frame index = number − 1.

    Errors (one line, naming the folder): folder missing; no prediction file; several stems without ``stem``; the
    given stem absent; both ``_avg`` and ``_max`` for the stem (or among exploded frames); two files for one role
    (``.tif`` and ``.tiff``); a whole-movie prediction beside exploded ones of the same base; exploded frame numbers
    of different widths or numbered 0.
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
    groups: dict[str, dict[str, str]] = {}  # exploded base -> {digit string: stem}
    for s in found:
        m = _EXPLODED_STEM.match(s)
        if m:
            groups.setdefault(m["base"], {})[m["n"]] = s
    if stem:
        if stem in found and stem in groups:
            _raise_whole_and_exploded(found, groups, stem, folder)
        if stem in found:
            return _one_stem(found, stem, folder)
        if stem in groups:
            return _exploded(found, stem, groups[stem], folder)
        raise FormatError(
            f"no prediction files for stem {stem!r} (stems found: {_stem_listing(found, groups, names=False)})",
            folder,
        )
    if len(groups) == 1:
        base, members = next(iter(groups.items()))
        others = set(found) - set(members.values())
        if not others:
            return _exploded(found, base, members, folder)
        if others == {base}:
            _raise_whole_and_exploded(found, groups, base, folder)
    if len(found) > 1:
        raise FormatError(
            f"several predictions in one folder, choose one with stem ({_stem_listing(found, groups)})", folder
        )
    return _one_stem(found, next(iter(found)), folder)


def _stem_listing(found: dict, groups: dict, names: bool = True) -> str:
    """Stems with their files; exploded groups (two or more frames) summarised as one entry."""
    grouped = {s for members in groups.values() if len(members) > 1 for s in members.values()}
    parts = []
    for s in sorted(set(found) - grouped):
        parts.append(f"{s}: {', '.join(p.name for p in _stem_files(found[s]))}" if names else s)
    for base in sorted(groups):
        members = groups[base]
        if len(members) > 1:
            files = [p for d in sorted(members) for p in _stem_files(found[members[d]])]
            text = f"{base} (exploded, {len(members)} frames)"
            parts.append(f"{text}: {_names(files)}" if names else text)
    return "; ".join(parts) if names else ", ".join(parts)


def _raise_whole_and_exploded(found: dict, groups: dict, base: str, folder: Path) -> None:
    members = groups[base]
    exploded = [p for d in sorted(members) for p in _stem_files(found[members[d]])]
    raise FormatError(
        f"ambiguous: a whole-movie prediction for {base!r} ({', '.join(p.name for p in _stem_files(found[base]))}) "
        f"and {len(members)} exploded single-frame predictions ({_names(exploded)}): keep one kind in the folder",
        folder,
    )


def _one_stem(found: dict, stem: str, folder: Path) -> dict:
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
        "exploded": None,
    }


def _exploded(found: dict, base: str, members: dict[str, str], folder: Path) -> dict:
    """The per-frame files of the exploded predictions of ``base`` (``members``: digit string -> stem)."""
    widths = sorted({len(d) for d in members})
    if len(widths) > 1:
        examples = ", ".join(members[min(d for d in members if len(d) == w)] for w in widths)
        raise FormatError(
            f"exploded predictions of {base!r} with frame numbers of different widths ({examples}): "
            "keep the files of one explode in the folder",
            folder,
        )
    digit_strings = sorted(members)  # one width: string order = number order
    numbers = np.array([int(d) for d in digit_strings], dtype=np.int64)
    if numbers[0] == 0:
        raise FormatError(f"exploded prediction {members[digit_strings[0]]} is numbered 0 (numbers start at 1)", folder)
    per_stem = [_one_stem(found, members[d], folder) for d in digit_strings]
    by_variant: dict[str, list[Path]] = {}
    for entry in per_stem:
        if entry["variant"] is not None:
            by_variant.setdefault(entry["variant"], []).append(entry["localizations"])
    if len(by_variant) > 1:
        raise FormatError(
            f"both _avg and _max localizations among the exploded predictions of {base!r} "
            f"({_names(by_variant['avg'])} and {_names(by_variant['max'])}): keep one kind in the folder",
            folder,
        )
    exploded = {"numbers": numbers, "digits": widths[0]}
    exploded.update({role: [entry[role] for entry in per_stem] for role in _ROLES})
    return {
        "stem": base,
        "localizations": None,
        "variant": next(iter(by_variant), None),
        "predicted": None,
        "widefield": None,
        "stacked": None,
        "exploded": exploded,
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


def _first_image(files: dict, role: str) -> Path | None:
    """The role's file, or for exploded predictions the first per-frame file of the role."""
    if files["exploded"] is None:
        return files[role]
    return next((p for p in files["exploded"][role] if p is not None), None)


def _exploded_summary(files: dict) -> dict | None:
    """A JSON-ready description of exploded predictions: numbers, digits, file counts, example names."""
    exploded = files["exploded"]
    if exploded is None:
        return None
    numbers = exploded["numbers"]
    return {
        "n_files": {r: sum(p is not None for p in exploded[r]) for r in _ROLES},
        "first_number": int(numbers[0]),
        "last_number": int(numbers[-1]),
        "digits": int(exploded["digits"]),
        "first_files": {
            r: next((str(p) for p in exploded[r] if p is not None), None) for r in _ROLES
        },
    }


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
        self._exploded: dict | None = None
        self._merged_images: dict[str, np.ndarray | None] = {}

    # -- loading --------------------------------------------------------------------------------------------
    def load(self) -> "PredictionReview":
        """Find and read the files, match, sweep, and compute everything for the current threshold."""
        with self._job(6, "loading predictions"):
            if not self.folder:
                raise ParameterError("no prediction folder given")
            files = find_prediction_files(self.folder, self.stem or None)
            exploded = files["exploded"]
            self._advance()
            hr_shape, ps_hr = _tif_info(_first_image(files, "predicted"))
            wf_shape, wf_ps = _tif_info(_first_image(files, "widefield"))
            if hr_shape is None:
                hr_shape, ps_hr = wf_shape, wf_ps
            elif ps_hr is None:
                ps_hr = wf_ps
            self._movie_path = None
            movie = self._open_movie(files["stem"], exploded is not None)
            image_shape = movie.shape if movie is not None else None
            movie_ps = movie.pixel_size if movie is not None else None
            stacked_pages = None
            first_stacked = _first_image(files, "stacked")
            if first_stacked is not None:
                with open_movie(first_stacked) as st:
                    if exploded is None:  # exploded: one page per file, the frame count is not the page count
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
            if exploded is not None:
                pred = self._read_exploded(files, ps_hr, u)
            elif self.source == "stacked":
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
                raise FormatError(
                    "predictions lack finite confidence values", files["localizations"] or self.folder
                )
            self._advance()
            # frames
            candidates = [movie.n_frames if movie is not None else None, stacked_pages]
            n_frames = next((n for n in candidates if n is not None), None)
            if n_frames is None:
                # pred.n_frames: the last frame number of exploded predictions, or the last predicted frame
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
            self._exploded = exploded
            self._merged_images = {}
            self._update(
                files={
                    **{k: (str(v) if isinstance(v, Path) else v) for k, v in files.items()},
                    "exploded": _exploded_summary(files),
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

    def _open_movie(self, stem: str, exploded: bool = False):
        """The ``movie`` param, else the test movie ``<stem>.tif`` lying in the prediction folder, else (exploded
        predictions only) its exploded frames ``<stem>_frame00001.tif``, ... lying there, else None."""
        if self.movie:
            path = Path(self.movie)
        else:
            beside = [Path(self.folder) / f"{stem}{ext}" for ext in (".tif", ".tiff")]
            beside = [p for p in beside if p.is_file()]
            if len(beside) != 1:
                frame_file = re.compile(_FRAME_FILE.format(stem=re.escape(stem)))
                if not exploded or not any(frame_file.match(p.name) for p in Path(self.folder).iterdir()):
                    return None
                beside = [Path(self.folder)]
            path = beside[0]
        self._movie_path = str(path)
        if path.is_dir():
            return ExplodedFrames(path, stem)
        return open_movie(path, pixel_size=self.pixel_size)

    def _read_exploded(self, files: dict, ps_hr: float | None, u: int | None) -> LocTable:
        """One canonical table from the per-frame predictions: each file read once, its frame set to number − 1."""
        exploded = files["exploded"]
        numbers = exploded["numbers"]
        if self.source == "stacked":
            role, paths = "stacked", exploded["stacked"]
            if all(p is None for p in paths):
                raise FormatError(
                    f"no Predicted_stacked_{files['stem']}_frame<number>.tif to re-localize from", self.folder
                )
        else:
            role, paths = "localizations", exploded["localizations"]
            if all(p is None for p in paths):
                raise FormatError(
                    f"no Localizations_{files['stem']}_frame<number>_avg.csv or _max.csv (use source='stacked' to "
                    "re-localize from the stacked densities)",
                    self.folder,
                )
        tables, frames = [], []
        for number, path in zip(numbers.tolist(), paths):
            if path is None:
                continue
            if role == "stacked":
                table = relocalize_stack(
                    path, self.relocalize_threshold, self.l2_weighting_factor, self.local_average,
                    pixel_size_hr=ps_hr, upsampling=u,
                )
                n_pages = table.meta.n_frames
            else:
                table = read_locs(path, format="deepstorm-prediction")
                n_pages = None
            if (n_pages is not None and n_pages != 1) or (len(table) and int(table.frame[-1]) != 0):
                raise FormatError("holds more than one frame: not a single-frame (exploded) prediction", path)
            tables.append(table)
            frames.append(number - 1)
        n_files = len(tables)
        if n_files < len(numbers):
            warnings.warn(
                f"{self.folder}: {len(numbers) - n_files} of {len(numbers)} exploded predictions of "
                f"{files['stem']!r} lack a {role} file; their frames count as frames without predictions"
            )
        lengths = np.array([len(t) for t in tables], dtype=np.int64)
        names: list[str] = []
        for t in tables:
            names += [c for c in t.columns if c not in names]
        columns = {"frame": np.repeat(np.asarray(frames, dtype=np.int64), lengths)}
        for name in names:
            if name != "frame":
                columns[name] = np.concatenate([t[name] if name in t else np.full(len(t), np.nan) for t in tables])
        first = tables[0].meta
        meta = first.replace(
            source_path=str(self.folder),
            n_frames=int(numbers[-1]),
            conversion=f"{first.conversion}; {n_files} exploded single-frame predictions of {files['stem']!r} "
            "merged: file number N -> frame N-1",
        )
        return LocTable(columns, meta, presorted=True)

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

    def merged_image(self, role: str) -> np.ndarray | None:
        """The summed hr image of ``role`` ("predicted" or "widefield"): ``Predicted_<stem>.tif`` /
        ``Widefield_<stem>.tif``, or for exploded predictions the sum of the per-frame images (read one at a time,
        cached); None when there is none."""
        if role not in ("predicted", "widefield"):
            raise ParameterError(f"no merged image {role!r} (choose predicted or widefield)")
        if not self.loaded:
            return None
        if role not in self._merged_images:
            if self._exploded is None:
                paths = [self.files[role]] if self.files.get(role) else []
            else:
                paths = [p for p in self._exploded[role] if p is not None]
            total = None
            for path in paths:
                with open_movie(path) as m:
                    if total is None:
                        total = np.zeros(m.shape, dtype=np.float64)
                    elif m.shape != total.shape:
                        raise FormatError(
                            f"image is {m.shape[0]}x{m.shape[1]}, the first {role} image "
                            f"{total.shape[0]}x{total.shape[1]}",
                            path,
                        )
                    for page in m.frames():
                        total += page
            self._merged_images[role] = total
        return self._merged_images[role]

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
        if self._exploded is not None:
            inputs += [p for role in _ROLES for p in self._exploded[role] if p is not None]
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
