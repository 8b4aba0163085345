"""Add-ons: split a movie and its localizations at a frame, merge several, explode one into single frames.

Everything works in the canonical table (0-based frames, nm, corner convention); the readers and writers of
:mod:`imagebinner.io` translate from and to each file format, so a frame written as 0 in the canonical table becomes
the format's first frame (1 for DeepSTORM/ThunderSTORM, 0 for Picasso).

Rules (docs/addons.md):

* **Split** at frame ``k`` (``1 <= k < n_frames``): part 1 = frames ``0..k-1``, part 2 = frames ``k..end`` shifted
  by ``-k``.
* **Merge**: each file's frames are offset by the total *movie length* (page count) of the movies before it, never
  by its last localized frame. Movies must agree in height, width and pixel size; pixel dtypes are promoted to the
  smallest of uint8/uint16/float32 that holds every input.
* **Explode**: one movie + localization file per frame, frames without localizations included (header-only table);
  every file's frames start at the first frame. One-frame movies (every exploded frame, a split part of one frame)
  are written so that the notebook's reader gives a ``(1, height, width)`` stack (:func:`write_single_frame`).

Movies are streamed frame by frame into the output TIFs (memory stays bounded for movies larger than RAM). All
outputs are checked before anything is written, written into a hidden staging folder beside them and moved into
place only when every file of the job was written.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import param

from imagebinner.errors import FormatError, ParameterError
from imagebinner.io import (
    WRITE_FORMATS,
    LocTable,
    Movie,
    TifWriter,
    atomic_group,
    check_outputs,
    open_movie,
    output_paths,
    read_locs,
    write_locs,
)
from imagebinner.io.predictions import exploded_stem
from imagebinner.tools.base import Task
from imagebinner.tools.settings import CameraSettings, OutputFolder

#: output formats offered by ``to`` (None = the input's format)
OUTPUT_FORMATS = ("deepstorm", "thunderstorm", "picasso")
#: what a read-only input format is written as when ``to`` is not given
_READ_ONLY_FALLBACK = {"picasso-csv": "thunderstorm"}
_LOSSLESS_IN_FLOAT32 = {np.dtype(t) for t in ("bool", "uint8", "int8", "uint16", "int16", "float16", "float32")}
_PIXEL_SIZE_RTOL = 1e-6


# -- helpers --------------------------------------------------------------------------------------------------
def loc_extension(fmt: str) -> str:
    """File extension of a localization output format (Picasso: ``.hdf5`` + its ``.yaml``; others ``.csv``)."""
    return ".hdf5" if fmt == "picasso" else ".csv"


def output_dtype(dtypes: Sequence[np.dtype]) -> tuple[str, bool]:
    """Smallest TIF output dtype (uint8, uint16, float32) that holds every input dtype.

    Returns ``(dtype, lossless)``; ``lossless`` is False when some input (32/64-bit integers, float64) has values
    float32 may not hold exactly; the writers then count the pixels that actually changed.
    """
    dts = [np.dtype(d) for d in dtypes]
    if all(d == np.bool_ or d == np.uint8 for d in dts):
        return "uint8", True
    if all(d == np.bool_ or (d.kind == "u" and d.itemsize <= 2) for d in dts):
        return "uint16", True
    return "float32", all(d in _LOSSLESS_IN_FLOAT32 for d in dts)


def write_single_frame(path: Path, frame: np.ndarray, pixel_size: float | None, dtype: str) -> None:
    """A one-frame movie the ZeroCostDL4Mic notebook can read: its ``io.imread`` (tifffile) must give a
    ``(1, height, width)`` stack, since it unpacks ``(nFrames, M, N) = Images.shape``. An ImageJ TIF of one frame
    reads back 2-D (ImageJ metadata are squeezed), so the frame is written as a tifffile "shaped" stack of shape
    ``(1, height, width)`` (axes TYX in its JSON description), with the pixel size in the resolution tags in pixels
    per cm (what the notebook's ``getPixelSizeTIFFmetadata`` reads) and ``photometric='minisblack'``."""
    import tifffile

    from imagebinner.io import to_output_dtype

    data, _ = to_output_dtype(np.asarray(frame), dtype)
    tags = {} if pixel_size is None else {"resolution": (1e7 / pixel_size, 1e7 / pixel_size),
                                          "resolutionunit": "CENTIMETER"}
    tifffile.imwrite(path, data[None], photometric="minisblack", metadata={"axes": "TYX"}, **tags)


def _same_size(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_PIXEL_SIZE_RTOL)


def _with_ext(base: Path, ext: str) -> Path:
    """``base`` + ``ext`` (not ``with_suffix``: a dotted stem such as ``run.2`` keeps its whole name)."""
    return base.with_name(base.name + ext)


class _Pair:
    """One movie and its localization table, opened and checked against each other."""

    def __init__(self, movie_path: str, locs_path: str, pixel_size: float | None, half_pixel: bool):
        self.movie: Movie = open_movie(movie_path, pixel_size=pixel_size)
        try:
            table = read_locs(locs_path, pixel_size=pixel_size, half_pixel=half_pixel)
        except Exception:
            self.movie.close()
            raise
        self.movie_path, self.locs_path = Path(movie_path), Path(locs_path)
        movie = self.movie
        n = movie.n_frames
        if len(table) and int(table.frame[-1]) >= n:
            self.movie.close()
            raise FormatError(
                f"localizations on frame {int(table.frame[-1])} (0-based) but the movie {movie.path} has only "
                f"{n} frames; wrong movie for these localizations?",
                locs_path,
            )
        meta = table.meta
        if meta.n_frames is not None and int(meta.n_frames) != n:
            warnings.warn(
                f"{locs_path}: metadata say {meta.n_frames} frames, the movie {movie.path} has {n}; "
                f"using the movie's {n}",
                stacklevel=3,
            )
        if meta.image_shape is not None and tuple(meta.image_shape) != tuple(movie.shape):
            warnings.warn(
                f"{locs_path}: metadata say {meta.image_shape[0]}x{meta.image_shape[1]} pixels (height x width), "
                f"the movie {movie.path} has {movie.shape[0]}x{movie.shape[1]}; using the movie's",
                stacklevel=3,
            )
        if (
            pixel_size is None
            and movie.pixel_size is not None
            and meta.pixel_size is not None
            and not _same_size(movie.pixel_size, meta.pixel_size)
        ):
            warnings.warn(
                f"{locs_path}: pixel size {meta.pixel_size} nm differs from the movie's {movie.pixel_size} nm "
                f"({movie.path}); each output keeps its own (set pixel_size for both)",
                stacklevel=3,
            )
        #: pixel size written into the TIF outputs / used for the localization outputs
        self.movie_pixel_size = movie.pixel_size if movie.pixel_size is not None else meta.pixel_size
        self.locs_pixel_size = meta.pixel_size if meta.pixel_size is not None else movie.pixel_size
        self.table: LocTable = table.with_meta(
            n_frames=n, image_shape=tuple(movie.shape), pixel_size=self.locs_pixel_size
        )

    @property
    def n_frames(self) -> int:
        return self.movie.n_frames

    def close(self) -> None:
        self.movie.close()


# -- the tools ------------------------------------------------------------------------------------------------
class _AddOn(Task, CameraSettings, OutputFolder):
    """Settings and results shared by Split, Merge and Explode."""

    settings = ("to", "pixel_size", "half_pixel")
    outputs = ("output_folder", "overwrite")
    actions = {"request_run": "run"}

    to = param.Selector(
        default=None,
        objects=[None, *OUTPUT_FORMATS],
        allow_None=True,
        doc="Localization output format; None (not given) = the input's format (for Merge: the first input's; "
        "Picasso's CSV export, which cannot be written, as thunderstorm). Picasso writes .hdf5 + .yaml, the "
        "others .csv.",
    )
    output_folder = param.String(default=".")
    request_run = param.Event(label="Run", doc="Write the outputs (runs the tool).")

    written = param.List(default=[], item_type=Path, constant=True, doc="Files written by the last run.")

    # -- shared steps -----------------------------------------------------------------------------------------
    def _output_format(self, source_format: str) -> str:
        if self.to is not None:
            return self.to
        if source_format in WRITE_FORMATS:
            return source_format
        fallback = _READ_ONLY_FALLBACK.get(source_format, "deepstorm")
        warnings.warn(
            f"{source_format!r} files cannot be written; writing {fallback!r} (the to setting chooses)", stacklevel=3
        )
        return fallback

    def _targets(self, bases: Sequence[Path], fmt: str) -> tuple[list[Path], list[Path], list[Path]]:
        """Movie and localization files of each output base, and every file written (sidecars included)."""
        movie_targets = [_with_ext(b, ".tif") for b in bases]
        loc_targets = [_with_ext(b, loc_extension(fmt)) for b in bases]
        every = list(movie_targets)
        for lt in loc_targets:
            every += output_paths(lt, fmt)
        return movie_targets, loc_targets, every

    def _frames(self, movie: Movie, start: int, stop: int, lossless: bool, counter: list[int]) -> Iterator[np.ndarray]:
        """Frames ``start..stop-1`` one at a time, advancing the progress by one step per frame."""
        for k in range(start, stop):
            frame = movie.frame(k)
            if not lossless:
                back = frame.astype(np.float32)
                same = back == frame
                if frame.dtype.kind == "f":
                    same |= np.isnan(frame) & np.isnan(back)
                counter[0] += int(frame.size - np.count_nonzero(same))
            yield frame
            self._advance()

    def _write_movie(
        self,
        target: Path,
        frames: Iterator[np.ndarray],
        n_frames: int,
        pixel_size: float | None,
        dtype: str,
    ) -> None:
        if n_frames == 1:
            first = next(frames)
            for _ in frames:  # finish the generator (it advances the progress after each frame)
                pass
            write_single_frame(target, first, pixel_size, dtype)
            return
        with TifWriter(target, pixel_size=pixel_size, dtype=dtype, overwrite=True) as writer:
            writer.write_stream(frames, n_frames)

    def _write_table(self, table: LocTable, staged: Path, target: Path, fmt: str) -> None:
        """Write ``table`` to its staged path; the writers' warnings name the final ``target``."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            write_locs(table, staged, format=fmt, overwrite=True, half_pixel=self.half_pixel,
                       pixel_size=table.meta.pixel_size)
        for w in caught:
            warnings.warn(str(w.message).replace(str(staged), str(target)), w.category, stacklevel=3)

    def _warn_lossy(self, changed: int, dtypes: Sequence[np.dtype]) -> str:
        if not changed:
            return ""
        names = ", ".join(sorted({str(np.dtype(d)) for d in dtypes}))
        note = f"{changed} pixel value(s) of the {names} input could not be held exactly in float32"
        warnings.warn(note, stacklevel=3)
        return f"; note: {note}"

    def _finish(self, written: list[Path], status: str) -> list[Path]:
        self._update(written=list(written), status=status)
        return list(written)


class _OneMovie(_AddOn):
    """An add-on working on one movie and its localization file."""

    __abstract = True

    inputs = ("movie", "locs")

    movie = param.String(default=None, allow_None=True, doc="Movie (TIF, or Picasso .raw with its .yaml).")
    locs = param.String(
        default=None,
        allow_None=True,
        doc="Localization file of that movie (Picasso .hdf5, ThunderSTORM or DeepSTORM CSV).",
    )

    def run(self) -> list[Path]:
        """Write the outputs; returns the written paths (also in ``written``)."""
        if not self.movie or not self.locs:
            raise ParameterError(f"{type(self).__name__.lower()} needs a movie and a localization file")
        self._update(written=[])
        pair = _Pair(self.movie, self.locs, self.pixel_size, self.half_pixel)
        try:
            return self._run(pair)
        finally:
            pair.close()

    def _run(self, pair: _Pair) -> list[Path]:
        raise NotImplementedError


class Split(_OneMovie):
    """Split a movie and its localizations at frame ``at``: part 1 = frames 0..at-1, part 2 = frames at..end.

    Part 2's frames start again at the format's first frame. Works when frame ``at`` (or any frame) has no
    localizations. Outputs: ``<stem>_part1.tif`` + ``<stem>_part1.<ext>`` and ``<stem>_part2...`` in
    ``output_folder`` (``<stem>`` = the movie's stem).
    """

    settings = ("at", *_AddOn.settings)

    at = param.Integer(
        default=1,
        bounds=(1, None),
        doc="First frame of part 2, as a count of frames in part 1 (1 <= at < number of frames of the movie).",
    )

    def _run(self, pair: _Pair) -> list[Path]:
        n, k = pair.n_frames, int(self.at)
        if not 1 <= k < n:
            raise ParameterError(
                f"split frame at={k} must satisfy 1 <= at < {n} (frames of the movie)", pair.movie_path
            )
        table = pair.table
        fmt = self._output_format(table.meta.source_format)
        folder, stem = Path(self.output_folder), pair.movie_path.stem
        dtype, lossless = output_dtype([pair.movie.dtype])
        off = table.frame_offsets
        cut = int(off[k])
        conv = table.meta.conversion
        part1 = table.take(slice(0, cut)).with_meta(
            n_frames=k, conversion=f"{conv}; split at frame {k}: part 1 = frames 0..{k - 1}"
        )
        rest = table.take(slice(cut, len(table)))
        part2 = rest.with_columns(frame=rest.frame - k).with_meta(
            n_frames=n - k, conversion=f"{conv}; split at frame {k}: part 2 = frames {k}..{n - 1}, frame - {k}"
        )
        parts = [(part1, 0, k), (part2, k, n)]
        movie_targets, loc_targets, targets = self._targets([folder / f"{stem}_part1", folder / f"{stem}_part2"], fmt)
        check_outputs(targets, [pair.movie_path, pair.locs_path], self.overwrite)
        changed = [0]
        with self._job(n, status=f"splitting {pair.movie_path.name} at frame {k}"):
            with atomic_group(targets, self.overwrite, keep_names=True) as staged:
                stage = dict(zip(targets, staged))
                for (part, start, stop), mt, lt in zip(parts, movie_targets, loc_targets):
                    frames = self._frames(pair.movie, start, stop, lossless, changed)
                    self._write_movie(stage[mt], frames, stop - start, pair.movie_pixel_size, dtype)
                    self._write_table(part, stage[lt], lt, fmt)
        note = self._warn_lossy(changed[0], [pair.movie.dtype])
        return self._finish(
            targets,
            f"split {pair.movie_path.name} at frame {k}: part 1 {k} frames / {len(part1)} locs, "
            f"part 2 {n - k} frames / {len(part2)} locs ({fmt}){note}",
        )


class Merge(_AddOn):
    """Merge movies and their localizations, in the order given, into ``merged.tif`` + ``merged.<ext>``.

    Each file's frames are offset by the total number of frames of the movies before it (the movie length, not
    the last localized frame), so trailing empty frames are kept. Movies must agree in height, width and pixel
    size; dtypes are promoted to the smallest of uint8/uint16/float32 that holds all inputs. The localization
    format is the first input's unless ``to`` is given.
    """

    inputs = ("movies", "locs")
    outputs = ("output_folder", "output_name", "overwrite")

    movies = param.List(default=[], item_type=str, doc="Movies to merge, in order (TIF or Picasso .raw).")
    locs = param.List(default=[], item_type=str, doc="Localization files, one per movie, in the same order.")
    output_name = param.String(default="merged", doc="Stem of the output files (merged.tif + merged.<ext>).")

    def run(self) -> list[Path]:
        """Write the merged movie and table; returns the written paths (also in ``written``)."""
        if len(self.movies) < 1 or len(self.movies) != len(self.locs):
            raise ParameterError(
                f"merge needs one localization file per movie (got {len(self.movies)} movie(s), "
                f"{len(self.locs)} localization file(s))"
            )
        self._update(written=[])
        if not self.output_name or Path(self.output_name).name != self.output_name:
            raise ParameterError(f"output_name must be a plain file stem, got {self.output_name!r}")
        pairs: list[_Pair] = []
        try:
            for m, lf in zip(self.movies, self.locs):
                pairs.append(_Pair(m, lf, self.pixel_size, self.half_pixel))
            return self._run(pairs)
        finally:
            for p in pairs:
                p.close()

    def _check_compatible(self, pairs: list[_Pair]) -> tuple[float | None, float | None]:
        first = pairs[0]
        for p in pairs[1:]:
            if tuple(p.movie.shape) != tuple(first.movie.shape):
                raise ParameterError(
                    f"movie is {p.movie.shape[0]}x{p.movie.shape[1]} pixels (height x width) but "
                    f"{first.movie_path} is {first.movie.shape[0]}x{first.movie.shape[1]}; cannot merge",
                    p.movie_path,
                )
        sizes = []
        for attr, what in (("movie_pixel_size", "movie"), ("locs_pixel_size", "localization")):
            known = [(getattr(p, attr), p.movie_path if what == "movie" else p.locs_path) for p in pairs]
            known = [(v, path) for v, path in known if v is not None]
            for v, path in known[1:]:
                if not _same_size(v, known[0][0]):
                    raise ParameterError(
                        f"{what} pixel size {v} nm differs from {known[0][0]} nm of {known[0][1]}; cannot merge "
                        f"(pixel_size sets one for all inputs)",
                        path,
                        params=["pixel_size"],
                    )
            sizes.append(known[0][0] if known else None)
        return sizes[0], sizes[1]

    def _run(self, pairs: list[_Pair]) -> list[Path]:
        movie_ps, locs_ps = self._check_compatible(pairs)
        first = pairs[0]
        fmt = self._output_format(first.table.meta.source_format)
        lengths = [p.n_frames for p in pairs]
        starts = np.concatenate([[0], np.cumsum(lengths)])
        total = int(starts[-1])
        shifted = [p.table.with_columns(frame=p.table.frame + int(s)) for p, s in zip(pairs, starts[:-1])]
        source_paths = ", ".join(str(p.locs_path) for p in pairs)
        meta = first.table.meta.replace(
            n_frames=total,
            pixel_size=locs_ps,
            source_path=None,
            picasso_yaml=next((p.table.meta.picasso_yaml for p in pairs if p.table.meta.picasso_yaml), ()),
            conversion=f"{first.table.meta.conversion}; merged from {source_paths} "
            f"(frames offset by the movie lengths {lengths})",
        )
        merged = LocTable.concat(shifted, meta=meta)
        dtypes = [p.movie.dtype for p in pairs]
        dtype, lossless = output_dtype(dtypes)
        (movie_target,), (loc_target,), targets = self._targets([Path(self.output_folder) / self.output_name], fmt)
        inputs = [q for p in pairs for q in (p.movie_path, p.locs_path)]
        check_outputs(targets, inputs, self.overwrite)
        changed = [0]

        def all_frames() -> Iterator[np.ndarray]:
            for p in pairs:
                yield from self._frames(p.movie, 0, p.n_frames, lossless, changed)

        with self._job(total, status=f"merging {len(pairs)} movies"):
            with atomic_group(targets, self.overwrite, keep_names=True) as staged:
                stage = dict(zip(targets, staged))
                self._write_movie(stage[movie_target], all_frames(), total, movie_ps, dtype)
                self._write_table(merged, stage[loc_target], loc_target, fmt)
        note = self._warn_lossy(changed[0], dtypes)
        return self._finish(
            targets,
            f"merged {len(pairs)} movies: {total} frames ({dtype}), {len(merged)} locs ({fmt}){note}",
        )


class Explode(_OneMovie):
    """Explode a movie and its localizations into one TIF + one localization file per frame.

    Frames without localizations get a table with the header and no rows; every file's frame is the format's
    first frame. Names: ``<stem>_frame00001.tif`` + ``<stem>_frame00001.<ext>`` (1-based, at least 5 digits).
    """

    def _run(self, pair: _Pair) -> list[Path]:
        n = pair.n_frames
        table = pair.table
        fmt = self._output_format(table.meta.source_format)
        folder, stem = Path(self.output_folder), pair.movie_path.stem
        dtype, lossless = output_dtype([pair.movie.dtype])
        movie_targets, loc_targets, targets = self._targets([folder / exploded_stem(stem, f, n) for f in range(n)], fmt)
        check_outputs(targets, [pair.movie_path, pair.locs_path], self.overwrite)
        off = table.frame_offsets
        conv = table.meta.conversion
        changed = [0]
        with self._job(n, status=f"exploding {pair.movie_path.name} into {n} frames"):
            with atomic_group(targets, self.overwrite, keep_names=True) as staged:
                stage = dict(zip(targets, staged))
                frames = self._frames(pair.movie, 0, n, lossless, changed)
                for f, frame in enumerate(frames):
                    rows = table.take(slice(int(off[f]), int(off[f + 1])))
                    single = rows.with_columns(frame=np.zeros(len(rows), np.int64)).with_meta(
                        n_frames=1, conversion=f"{conv}; exploded: frame {f} of {n} -> frame 0"
                    )
                    self._write_movie(stage[movie_targets[f]], iter([frame]), 1, pair.movie_pixel_size, dtype)
                    self._write_table(single, stage[loc_targets[f]], loc_targets[f], fmt)
        note = self._warn_lossy(changed[0], [pair.movie.dtype])
        empty = int(np.count_nonzero(np.diff(off[: n + 1]) == 0))
        return self._finish(
            targets,
            f"exploded {pair.movie_path.name} into {n} frames ({empty} without localizations), {fmt}{note}",
        )
