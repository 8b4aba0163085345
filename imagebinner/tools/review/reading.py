"""Reading what a prediction review compares: hr image sizes, the test movie, predictions, ground truth, frames.

Predictions come from the ``Localizations_`` CSV or are re-localized from ``Predicted_stacked_``; exploded
predictions (one prediction per single frame) are concatenated into one table of the whole movie, each file read
once, frame = number − 1. The frame count comes from the movie (or its exploded frames), else the stacked density's
pages, else the highest frame of the predictions and the ground truth.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from imagebinner.errors import FormatError, ParameterError
from imagebinner.io import LocTable, open_movie, read_locs
from imagebinner.io.predictions import ExplodedFrames, first_image, movie_beside
from imagebinner.tools.relocalize import RelocalizeSettings


@dataclasses.dataclass(frozen=True)
class HrImages:
    """What the hr images of a prediction tell: their size and pixel size, and the stacked density's pages."""

    hr_shape: tuple[int, int] | None
    pixel_size_hr: float | None
    stacked_pages: int | None  # None for exploded predictions (one page per file) or without a stacked density


def _tif_info(path: Path | None) -> tuple[tuple[int, int] | None, float | None]:
    if path is None:
        return None, None
    with open_movie(path) as m:
        return m.shape, m.pixel_size


def hr_images(files: dict) -> HrImages:
    """The hr size and pixel size from ``Predicted_`` (else ``Widefield_``, whose pixel size also fills a missing
    one; else the stacked density's size), and the stacked density's page count (whole-movie predictions only)."""
    hr_shape, ps_hr = _tif_info(first_image(files, "predicted"))
    wf_shape, wf_ps = _tif_info(first_image(files, "widefield"))
    if hr_shape is None:
        hr_shape, ps_hr = wf_shape, wf_ps
    elif ps_hr is None:
        ps_hr = wf_ps
    stacked_pages = None
    first_stacked = first_image(files, "stacked")
    if first_stacked is not None:
        with open_movie(first_stacked) as st:
            if files["exploded"] is None:  # exploded: one page per file, the frame count is not the page count
                stacked_pages = st.n_frames
            hr_shape = hr_shape or st.shape
    return HrImages(hr_shape, ps_hr, stacked_pages)


def open_test_movie(movie: str, folder: str, stem: str, exploded: bool, pixel_size: float | None):
    """The test movie and its path: ``movie`` (a TIF, a Picasso .raw or a folder of exploded frames) when given,
    else the movie lying in the prediction folder (:func:`~imagebinner.io.predictions.movie_beside`); (None, None)
    when there is none. ``pixel_size`` overrides a movie file's own."""
    path = Path(movie) if movie else movie_beside(folder, stem, exploded)
    if path is None:
        return None, None
    if path.is_dir():
        return ExplodedFrames(path, stem), str(path)
    return open_movie(path, pixel_size=pixel_size), str(path)


def find_model_metadata(model_folder: str, folder: str):
    """The model's ``model_metadata.mat``: from ``model_folder`` when given (an error when it lacks one), else the
    copy beside the predictions (``imagebinner predict`` writes one), else None."""
    from imagebinner.io.deepstorm_model import METADATA_NAME, read_metadata

    if model_folder:
        if not Path(model_folder).is_dir():
            raise FormatError("model folder not found (or not a folder)", model_folder)
        return read_metadata(Path(model_folder) / METADATA_NAME)
    beside = Path(folder) / METADATA_NAME
    return read_metadata(beside) if beside.is_file() else None


def read_truth(
    path: str, format: str, pixel_size: float | None, half_pixel: bool, fallback_pixel_size: float | None
) -> LocTable:
    """The ground truth (``format`` "auto" = detected); a Picasso file without a pixel size in its YAML is read
    again with ``fallback_pixel_size`` (known from the movie or the hr images) when ``pixel_size`` is not given."""
    fmt = None if format == "auto" else format
    try:
        return read_locs(path, format=fmt, pixel_size=pixel_size, half_pixel=half_pixel)
    except FormatError as exc:
        if pixel_size is None and fallback_pixel_size is not None and "pixel" in str(exc).lower():
            return read_locs(path, format=fmt, pixel_size=fallback_pixel_size, half_pixel=half_pixel)
        raise


def read_predictions(
    files: dict,
    source: str,
    relocalizer: RelocalizeSettings,
    pixel_size_hr: float | None,
    upsampling: int | None,
    folder: str,
    l2: float | None = None,
) -> LocTable:
    """All predictions of the found ``files``: the Localizations CSV (``source`` "localizations") or re-localized
    from the stacked density ("stacked", with ``relocalizer``'s settings and ``l2`` when its own is empty);
    exploded predictions as one table."""
    if files["exploded"] is not None:
        pred = _read_exploded(files, source, relocalizer, pixel_size_hr, upsampling, folder, l2)
    elif source == "stacked":
        if files["stacked"] is None:
            raise FormatError(f"no Predicted_stacked_{files['stem']}.tif to re-localize from", folder)
        pred = _relocalize(relocalizer, files["stacked"], pixel_size_hr, upsampling, l2)
    else:
        if files["localizations"] is None:
            raise FormatError(
                f"no Localizations_{files['stem']}_avg.csv or _max.csv (use source='stacked' to re-localize from "
                "the stacked density)",
                folder,
                params=["source"],
            )
        pred = read_locs(files["localizations"], format="deepstorm-prediction")
    if "confidence" not in pred or not np.all(np.isfinite(pred["confidence"])):
        raise FormatError("predictions lack finite confidence values", files["localizations"] or folder)
    return pred


def _relocalize(
    relocalizer: RelocalizeSettings, path: Path, pixel_size_hr: float | None, upsampling: int | None,
    l2: float | None = None,
) -> LocTable:
    """Re-localize one stacked density; without an hr pixel size from the review's geometry or the TIF's tags the
    error names the review's settings that give one."""
    try:
        return relocalizer.relocalize(path, pixel_size_hr, upsampling, l2_weighting_factor=l2)
    except ParameterError as exc:
        if pixel_size_hr is not None or "pixel_size_hr" not in exc.params:
            raise
        raise ParameterError(
            "hr pixel size unknown (the stacked TIF has no resolution tags, and no Predicted_/Widefield_ image or "
            "movie tells it): give pixel_size and upsampling",
            path,
            params=["pixel_size", "upsampling"],
        ) from None


def _read_exploded(
    files: dict,
    source: str,
    relocalizer: RelocalizeSettings,
    pixel_size_hr: float | None,
    upsampling: int | None,
    folder: str,
    l2: float | None = None,
) -> LocTable:
    """One canonical table from the per-frame predictions: each file read once, its frame set to number − 1."""
    exploded, stem = files["exploded"], files["stem"]
    numbers = exploded["numbers"]
    role = "stacked" if source == "stacked" else "localizations"
    paths = exploded[role]
    if all(p is None for p in paths):
        if role == "stacked":
            raise FormatError(f"no Predicted_stacked_{stem}_frame<number>.tif to re-localize from", folder)
        raise FormatError(
            f"no Localizations_{stem}_frame<number>_avg.csv or _max.csv (use source='stacked' to re-localize from "
            "the stacked densities)",
            folder,
            params=["source"],
        )
    tables, frames = [], []
    for number, path in zip(numbers.tolist(), paths):
        if path is None:
            continue
        if role == "stacked":
            table = _relocalize(relocalizer, path, pixel_size_hr, upsampling, l2)
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
            f"{folder}: {len(numbers) - n_files} of {len(numbers)} exploded predictions of {stem!r} lack a {role} "
            "file; their frames count as frames without predictions"
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
        source_path=str(folder),
        n_frames=int(numbers[-1]),
        conversion=f"{first.conversion}; {n_files} exploded single-frame predictions of {stem!r} merged: file "
        "number N -> frame N-1",
    )
    return LocTable(columns, meta, presorted=True)


def frame_count(movie, stacked_pages: int | None, pred: LocTable, truth: LocTable | None) -> int:
    """The frames of the measurement: the movie's, else the stacked density's pages, else the last frame of the
    predictions (for exploded ones: the highest number) or of the ground truth."""
    if movie is not None:
        return int(movie.n_frames)
    if stacked_pages is not None:
        return int(stacked_pages)
    return max(t.n_frames for t in (pred, truth) if t is not None)


def within_frames(table: LocTable, n_frames: int, what: str) -> LocTable:
    """``table`` with rows beyond the measurement's ``n_frames`` frames dropped (with a warning) and that count."""
    if len(table) and int(table.frame[-1]) >= n_frames:
        bad = int(np.count_nonzero(table.frame >= n_frames))
        warnings.warn(f"{table.meta.source_path}: {bad} {what} row(s) beyond the movie's {n_frames} frames dropped")
        table = table.take(table.frame < n_frames)
    return table.with_meta(n_frames=n_frames)


def sum_images(paths: list[Path], role: str) -> np.ndarray | None:
    """The sum of every page of the hr images ``paths`` (one whole-movie image, or one per exploded frame, read one
    at a time) in float64; None without a file; an error naming the file whose size differs from the first."""
    total = None
    for path in paths:
        with open_movie(path) as m:
            if total is None:
                total = np.zeros(m.shape, dtype=np.float64)
            elif m.shape != total.shape:
                raise FormatError(
                    f"image is {m.shape[0]}x{m.shape[1]}, the first {role} image {total.shape[0]}x{total.shape[1]}",
                    path,
                )
            for page in m.frames():
                total += page
    return total
