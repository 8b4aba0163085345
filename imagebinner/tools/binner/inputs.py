"""The Binner's inputs: loading and validating measurements, one pixel size, the global localization index.

A localization belongs to window ``(n, m)`` of size ``P`` iff ``m <= floor(x/ps) < m+P`` and ``n <= floor(y/ps) <
n+P``; inside it sits at ``(x - m*ps, y - n*ps)``. :meth:`GlobalIndex.window_locs` is the one place that applies
this rule (the pool draw counts with the same pixel indices).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imagebinner.errors import ParameterError
from imagebinner.io import LocTable, Movie, open_movie, read_locs
from imagebinner.io.table import OPTIONAL
from imagebinner.tools.binner.windows import pixel_indices


@dataclasses.dataclass
class Measurement:
    """One loaded measurement: a lazily opened movie and its localizations (canonical, inside the image)."""

    index: int
    movie_path: Path
    locs_path: Path | None
    movie: Movie
    table: LocTable
    offsets: np.ndarray  # rows of frame f: offsets[f]:offsets[f+1] (length n_frames + 1)
    n_dropped_outside: int

    @property
    def n_frames(self) -> int:
        return self.movie.n_frames

    @property
    def shape(self) -> tuple[int, int]:
        return self.movie.shape

    def locs_per_frame(self) -> np.ndarray:
        """Localizations per frame of the movie, empty frames included."""
        return np.diff(self.offsets)


def unpack(pair: Any) -> tuple[Any, Any]:
    """``(movie, localizations)`` of one entry of ``measurements``; a clear error for anything else."""
    try:
        movie, locs = pair
    except (TypeError, ValueError):
        raise ParameterError(
            f"a measurement must be a (movie, localizations) pair, got {pair!r}", params=["measurements"]
        ) from None
    return movie, locs


def input_files(measurements: Sequence[Any]) -> list[Path]:
    """The files a job reads (movies and localization files; in-memory tables only when they name their file)."""
    files: list[Path] = []
    for pair in measurements:
        movie, locs = unpack(pair)
        files.append(Path(movie))
        if isinstance(locs, LocTable):
            if locs.meta.source_path:
                files.append(Path(locs.meta.source_path))
        else:
            files.append(Path(locs))
    return files


def load_measurements(
    measurements: Sequence[Any], pixel_size: float | None, half_pixel: bool
) -> tuple[list[Measurement], float]:
    """Open the movies lazily, read the tables, agree on one pixel size and validate every pair.

    Returns the measurements and the pixel size used; on error every movie opened so far is closed.
    """
    if not measurements:
        raise ParameterError("no measurements given (pairs of movie and localization file)", params=["measurements"])
    movies: list[Movie] = []
    tables: list[LocTable] = []
    locs_paths: list[Path | None] = []
    try:
        for pair in measurements:
            movie_path, locs = unpack(pair)
            movies.append(open_movie(movie_path, pixel_size=pixel_size))
            if isinstance(locs, LocTable):
                table = locs
                if pixel_size is not None and table.pixel_size != pixel_size:
                    table = table.with_meta(pixel_size=float(pixel_size))
                locs_paths.append(Path(table.meta.source_path) if table.meta.source_path else None)
            else:
                table = read_locs(locs, pixel_size=pixel_size, half_pixel=half_pixel)
                locs_paths.append(Path(locs))
            tables.append(table)
        ps = agree_pixel_size(pixel_size, movies, tables, locs_paths)
        loaded = [
            validate(i, movie, table, path, ps)
            for i, (movie, table, path) in enumerate(zip(movies, tables, locs_paths))
        ]
    except BaseException:
        for movie in movies:
            movie.close()
        raise
    return loaded, ps


def agree_pixel_size(
    pixel_size: float | None, movies: Sequence[Movie], tables: Sequence[LocTable], locs_paths: Sequence[Path | None]
) -> float:
    """The given pixel size, else the one every movie and table with metadata agrees on."""
    if pixel_size is not None:
        return float(pixel_size)
    known: list[tuple[float, str]] = []
    for movie, table, lpath in zip(movies, tables, locs_paths):
        if movie.pixel_size is not None:
            known.append((float(movie.pixel_size), str(movie.path)))
        if table.pixel_size is not None:
            known.append((float(table.pixel_size), str(lpath or "table")))
    if not known:
        raise ParameterError(
            "no pixel size in the movies' or localization files' metadata; give pixel_size", params=["pixel_size"]
        )
    values = [v for v, _ in known]
    if max(values) > min(values) * (1 + 1e-6):
        listing = ", ".join(f"{Path(p).name}: {v:g} nm" for v, p in known)
        raise ParameterError(
            f"measurements disagree on the pixel size ({listing}); give one pixel_size if they really share it",
            params=["pixel_size"],
        )
    return known[0][0]


def validate(index: int, movie: Movie, table: LocTable, locs_path: Path | None, ps: float) -> Measurement:
    """Check a movie/table pair (image size, frame range) and drop localizations outside the image (warning)."""
    where = locs_path if locs_path is not None else movie.path
    if table.meta.image_shape is not None and tuple(table.meta.image_shape) != tuple(movie.shape):
        raise ParameterError(
            f"localizations are for images of {table.meta.image_shape[0]}x{table.meta.image_shape[1]} px but "
            f"movie {movie.path.name} is {movie.shape[0]}x{movie.shape[1]} px (wrong pair?)",
            where,
        )
    if len(table) and int(table.frame[-1]) >= movie.n_frames:
        n_beyond = int(np.count_nonzero(table.frame >= movie.n_frames))
        raise ParameterError(
            f"{n_beyond} localization(s) in frames up to {int(table.frame[-1])} (0-based) but movie "
            f"{movie.path.name} has {movie.n_frames} frames (wrong pair or frame base?)",
            where,
        )
    height, width = movie.shape
    px = pixel_indices(table.x, ps)
    py = pixel_indices(table.y, ps)
    outside = (px < 0) | (px >= width) | (py < 0) | (py >= height)
    n_out = int(np.count_nonzero(outside))
    if n_out:
        warnings.warn(
            f"{where}: dropped {n_out} of {len(table)} localization(s) outside the {height}x{width} px image",
            stacklevel=4,
        )
        table = table.take(~outside)
    table = table.with_meta(n_frames=movie.n_frames)  # frame_offsets then cover every page of the movie
    return Measurement(index, movie.path, locs_path, movie, table, table.frame_offsets, n_out)


def check_settings(
    ms: Sequence[Measurement], patch_size: int, n_patches: int, n_binned: int, bin_size: int, reuse_patches: bool
) -> None:
    """Raise when the settings cannot work with these measurements (before any drawing)."""
    small = min(ms, key=lambda m: min(m.shape))
    if patch_size > min(small.shape):
        raise ParameterError(
            f"patch_size {patch_size} px is larger than movie {small.movie_path.name} ({small.shape[0]}x"
            f"{small.shape[1]} px); use patch_size <= {min(small.shape)}",
            params=["patch_size"],
        )
    if bin_size > n_patches:
        raise ParameterError(
            f"bin_size {bin_size} exceeds the pool of n_patches {n_patches} (a binned frame needs distinct "
            "patches); raise n_patches or lower bin_size",
            params=["bin_size", "n_patches"],
        )
    need = n_binned * bin_size
    if not reuse_patches and need > n_patches:
        raise ParameterError(
            f"without reuse_patches, n_binned*bin_size = {need} patches are needed but n_patches is {n_patches}; "
            "raise n_patches, lower n_binned or bin_size, or allow reuse_patches",
            params=["reuse_patches", "n_binned", "bin_size", "n_patches"],
        )


@dataclasses.dataclass(frozen=True, eq=False)
class GlobalIndex:
    """All localizations of the loaded measurements concatenated once, addressed by global row numbers.

    Rows of frame ``f`` of measurement ``i``: ``bases[i] + offsets[i][f] : bases[i] + offsets[i][f+1]``.
    """

    pixel_size: float
    bases: np.ndarray  # first global row of each measurement (length n_measurements + 1)
    offsets: tuple[np.ndarray, ...]  # frame offsets of each measurement
    shapes: np.ndarray  # (n_measurements, 2) height, width
    n_frames: np.ndarray  # frames of each measurement
    x: np.ndarray  # nm, canonical
    y: np.ndarray
    px: np.ndarray  # pixel indices floor(x/ps), floor(y/ps)
    py: np.ndarray
    extra: dict[str, np.ndarray]  # optional label columns (NaN where a measurement lacks one)

    @classmethod
    def build(cls, ms: Sequence[Measurement], ps: float) -> GlobalIndex:
        """The index of ``ms`` (pixel size ``ps``)."""
        bases = np.cumsum([0] + [len(m.table) for m in ms]).astype(np.int64)
        x = np.concatenate([m.table.x for m in ms]) if ms else np.empty(0)
        y = np.concatenate([m.table.y for m in ms]) if ms else np.empty(0)
        names = [c for c in OPTIONAL if any(c in m.table for m in ms)]
        extra = {
            c: np.concatenate([m.table[c] if c in m.table else np.full(len(m.table), np.nan) for m in ms])
            for c in names
        }
        return cls(
            pixel_size=float(ps),
            bases=bases,
            offsets=tuple(np.asarray(m.offsets, dtype=np.int64) for m in ms),
            shapes=np.array([m.shape for m in ms], dtype=np.int64).reshape(-1, 2),
            n_frames=np.array([m.n_frames for m in ms], dtype=np.int64),
            x=x,
            y=y,
            px=pixel_indices(x, ps),
            py=pixel_indices(y, ps),
            extra=extra,
        )

    def frame_rows(self, measurement: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global ``(start, stop)`` rows of frame ``frame[k]`` of measurement ``measurement[k]`` (vectorised)."""
        measurement = np.asarray(measurement, dtype=np.int64)
        frame = np.asarray(frame, dtype=np.int64)
        starts = np.zeros(len(frame), dtype=np.int64)
        stops = np.zeros(len(frame), dtype=np.int64)
        for i, offsets in enumerate(self.offsets):
            mine = measurement == i
            if mine.any():
                starts[mine] = self.bases[i] + offsets[frame[mine]]
                stops[mine] = self.bases[i] + offsets[frame[mine] + 1]
        return starts, stops

    def window_locs(
        self, measurement: np.ndarray, frame: np.ndarray, row: np.ndarray, column: np.ndarray, size: int
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Window-local localizations of several windows, concatenated window after window, and their counts.

        Window ``k`` is rows ``row[k]..row[k]+size-1``, columns ``column[k]..column[k]+size-1`` of frame
        ``frame[k]`` of measurement ``measurement[k]``; its localizations are at ``x - column*ps``,
        ``y - row*ps`` (nm, in ``[0, size*ps)``), in table order. Returns ``(columns, counts)``: ``x``, ``y`` and
        the optional label columns, and the number of localizations of each window.
        """
        row = np.asarray(row, dtype=np.int64)
        column = np.asarray(column, dtype=np.int64)
        starts, stops = self.frame_rows(measurement, frame)
        lengths = stops - starts
        owner = np.repeat(np.arange(len(starts)), lengths)
        rows = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows += np.repeat(starts, lengths)
        n, m = row[owner], column[owner]
        px, py = self.px[rows], self.py[rows]
        inside = (px >= m) & (px < m + size) & (py >= n) & (py < n + size)
        rows, owner, n, m = rows[inside], owner[inside], n[inside], m[inside]
        ps = self.pixel_size
        out = {"x": self.x[rows] - m * ps, "y": self.y[rows] - n * ps}
        for name, values in self.extra.items():
            out[name] = values[rows]
        return out, np.bincount(owner, minlength=len(starts)).astype(np.int64)
