"""The Binner: dense DeepSTORM2D training movies by summing patches of several measurements.

A *patch* is rows ``n..n+P-1`` and columns ``m..m+P-1`` of frame ``f`` of measurement ``i``; windows are drawn
uniformly over all valid ``(i, f, n, m)`` (every frame, the last one included). A localization belongs to the patch
iff ``m <= floor(x/ps) < m+P`` and ``n <= floor(y/ps) < n+P``; inside the patch it sits at ``(x - m*ps, y - n*ps)``.
A pool of ``n_patches`` distinct patches with at least ``min_emitters`` localizations is drawn; each binned frame is
the sum of ``bin_size`` distinct, non-overlapping pool patches minus ``camera_offset * (bin_size - 1)`` and its
labels are the union of its parts' localizations.

Steps a GUI can drive one by one: :meth:`Binner.load` (cheap: movies opened lazily, tables read),
:meth:`Binner.statistics`, :meth:`Binner.draw_pool`, :meth:`Binner.compose`, :meth:`Binner.binned_frame` and
:meth:`Binner.save` (or :meth:`Binner.run` for all of them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import param

from imagebinner.errors import ParameterError
from imagebinner.io import (
    LocMeta,
    LocTable,
    Movie,
    TifWriter,
    atomic_group,
    check_writable,
    file_signature,
    open_movie,
    to_output_dtype,
)
from imagebinner.io.table import OPTIONAL
from imagebinner.tools.base import Task
from imagebinner.tools.binning_windows import (
    count_qualifying_per_frame,
    frames_may_qualify,
    pixel_indices,
    qualifying_windows_at,
    window_counts,
    windows_overlap,
)

_ELEMENTS_PER_BATCH = 200_000  # localization-window tests per vectorised batch (bounded memory)
_OUTPUT_SUFFIXES = (".tif", ".tiff", ".csv", ".json")
_PART_FIELDS = ("measurement", "frame", "row", "column", "n_locs")
_PATCH_CACHE_BYTES = 64 * 2**20  # pool patches kept in memory while writing (read on demand beyond)
_STACK_WRITE_BYTES = 32 * 2**20  # binned movies up to this size are written in one contiguous write


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


@dataclasses.dataclass
class BinnedFrame:
    """One binned frame: the wide sum, the image in the output dtype, its labels and its parts."""

    index: int  # 0-based binned frame number
    sum: np.ndarray  # int64 (integer movies) or float64, after the offset subtraction, before clipping
    image: np.ndarray  # output dtype (uint16 clipped or float32)
    clipped: int
    locs: LocTable  # patch-local nm coordinates, frame = index
    parts: list[dict]  # measurement, frame, row, column, n_locs of each patch


class Binner(Task):
    """Sum random patches of several measurements into dense binned frames with correct DeepSTORM labels."""

    measurements = param.List(
        default=[],
        doc="Measurements as (movie path, localization file) pairs; the localization file may be any supported "
        "format (Picasso HDF5, ThunderSTORM CSV, DeepSTORM CSV, ...), formats may be mixed.",
    )
    pixel_size = param.Number(
        default=None,
        bounds=(0, None),
        inclusive_bounds=(False, True),
        allow_None=True,
        doc="Camera pixel size in nm; empty = from the files' metadata (all measurements must agree).",
    )
    camera_offset = param.Number(
        default=100,
        bounds=(0, None),
        doc="Camera offset (baseline) in ADU; subtracted (bin_size - 1) times so a binned frame keeps it once.",
    )
    patch_size = param.Integer(
        default=27,
        bounds=(1, None),
        doc="Patch edge in camera pixels; export P_ds + 1 to train Deep-STORM with patch_size P_ds.",
    )
    n_patches = param.Integer(default=200, bounds=(1, None), doc="Number of patches in the pool the sums draw from.")
    n_binned = param.Integer(default=100, bounds=(1, None), doc="Number of binned frames to produce.")
    bin_size = param.Integer(default=10, bounds=(1, None), doc="Number of patches summed into one binned frame.")
    min_emitters = param.Integer(
        default=2, bounds=(0, None), doc="Minimum localizations a patch needs to enter the pool."
    )
    seed = param.Integer(
        default=None,
        allow_None=True,
        bounds=(0, None),
        doc="Random seed; the same seed gives identical outputs. Empty = a fresh seed (recorded in the JSON).",
    )
    reuse_patches = param.Boolean(
        default=True,
        doc="Allow a pool patch in several binned frames (needed when n_binned*bin_size > n_patches); within one "
        "binned frame patches are always distinct and never overlap.",
    )
    output_dtype = param.Selector(
        default="uint16",
        objects=["uint16", "float32"],
        doc="Pixel type of the binned TIF: uint16 (sums clipped to 0..65535, clipped pixels counted) or float32.",
    )
    half_pixel = param.Boolean(
        default=True,
        doc="Picasso input: shift pixel centres to the corner convention (+0.5 px, exact). Off = like Picasso's "
        "own CSV export.",
    )
    max_attempts = param.Integer(
        default=2_000_000,
        bounds=(1, None),
        doc="Random windows tested (rejection sampling) before switching to exact sampling among the qualifying "
        "windows (sparse data); the result stays a uniform draw either way.",
    )
    output_folder = param.String(default="", doc="Folder receiving the binned TIF, CSV and JSON.")
    output_name = param.String(default="binned", doc="Base name of the output files (<name>.tif/.csv/.json).")
    overwrite = param.Boolean(default=False, doc="Replace existing output files.")

    # -- results (constant) ---------------------------------------------------------------------------------
    stats = param.Dict(default={}, constant=True, doc="Statistics of the last load/draw/save.")
    clipped_pixels = param.Integer(default=0, constant=True, doc="Pixels clipped to the uint16 range in the output.")
    written_paths = param.List(default=[], constant=True, doc="Files written by the last save.")
    seed_used = param.Integer(default=None, allow_None=True, constant=True, doc="Seed of the last draw.")

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._loaded: list[Measurement] | None = None
        self._load_key: tuple | None = None
        self._ps: float | None = None
        self._pool: dict[str, np.ndarray] | None = None
        self._pool_key: tuple | None = None
        self._plan: np.ndarray | None = None
        self._plan_key: tuple | None = None
        self._draw_stats: dict = {}
        self._patch_cache: dict | None = None
        self._publish_steps = True  # each step publishes its statistics (the stats param) when it computes
        self._validated_pixels: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _update(self, **values: Any) -> None:
        """Set constant (output) params, unlocking only those for the moment (``param.edit_constant``, used by
        :meth:`Task._update`, unlocks every param of the class: twice as slow, and a save sets several)."""
        params = [self.param[name] for name in values]
        constant = [p.constant for p in params]
        for p in params:
            p.constant = False
        try:
            self.param.update(**values)
        finally:
            for p, was in zip(params, constant):
                p.constant = was

    def _advance(self, steps: int = 1) -> None:
        self._update(progress=min(self.progress + steps, self.n_steps))

    # -- loading --------------------------------------------------------------------------------------------
    def _measurement_key(self) -> tuple:
        pairs = []
        for pair in self.measurements:
            movie, locs = self._unpack(pair)
            pairs.append((str(movie), locs if isinstance(locs, LocTable) else str(locs)))
        return (tuple((m, id(l) if isinstance(l, LocTable) else l) for m, l in pairs), self.pixel_size,
                self.half_pixel)

    @staticmethod
    def _unpack(pair: Any) -> tuple[Any, Any]:
        try:
            movie, locs = pair
        except (TypeError, ValueError):
            raise ParameterError(f"a measurement must be a (movie, localizations) pair, got {pair!r}") from None
        return movie, locs

    def load(self) -> list[Measurement]:
        """Open the movies lazily, read the tables, agree on one pixel size and validate; cached."""
        key = self._measurement_key()
        if self._loaded is not None and key == self._load_key:
            return self._loaded
        self._close()
        if not self.measurements:
            raise ParameterError("no measurements given (pairs of movie and localization file)")
        from imagebinner.io import read_locs

        movies: list[Movie] = []
        tables: list[LocTable] = []
        locs_paths: list[Path | None] = []
        self._validated_pixels = {}
        try:
            for pair in self.measurements:
                movie_path, locs = self._unpack(pair)
                movies.append(open_movie(movie_path, pixel_size=self.pixel_size))
                if isinstance(locs, LocTable):
                    table = locs
                    if self.pixel_size is not None and table.pixel_size != self.pixel_size:
                        table = table.with_meta(pixel_size=float(self.pixel_size))
                    locs_paths.append(Path(table.meta.source_path) if table.meta.source_path else None)
                else:
                    table = read_locs(locs, pixel_size=self.pixel_size, half_pixel=self.half_pixel)
                    locs_paths.append(Path(locs))
                tables.append(table)
            ps = self._agree_pixel_size(movies, tables, locs_paths)
            loaded = [
                self._validate(i, movie, table, path, ps)
                for i, (movie, table, path) in enumerate(zip(movies, tables, locs_paths))
            ]
        except BaseException:
            for movie in movies:
                movie.close()
            raise
        self._loaded, self._load_key, self._ps = loaded, key, ps
        self._pool = self._plan = None
        self._build_global_index()
        self._update(stats=self.statistics())
        return loaded

    def _agree_pixel_size(self, movies: list[Movie], tables: list[LocTable], locs_paths: list) -> float:
        if self.pixel_size is not None:
            return float(self.pixel_size)
        known: list[tuple[float, str]] = []
        for movie, table, lpath in zip(movies, tables, locs_paths):
            if movie.pixel_size is not None:
                known.append((float(movie.pixel_size), str(movie.path)))
            if table.pixel_size is not None:
                known.append((float(table.pixel_size), str(lpath or "table")))
        if not known:
            raise ParameterError(
                "no pixel size in the movies' or localization files' metadata; give pixel_size (--pixel-size NM)"
            )
        values = [v for v, _ in known]
        if max(values) > min(values) * (1 + 1e-6):
            listing = ", ".join(f"{Path(p).name}: {v:g} nm" for v, p in known)
            raise ParameterError(
                f"measurements disagree on the pixel size ({listing}); give one pixel_size (--pixel-size NM) if "
                "they really share it"
            )
        return known[0][0]

    def _validate(self, index: int, movie: Movie, table: LocTable, locs_path: Path | None, ps: float) -> Measurement:
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
                stacklevel=3,
            )
            table = table.take(~outside)
            px, py = px[~outside], py[~outside]
        self._validated_pixels[index] = (px, py)  # reused by _build_global_index (elementwise: same values)
        table = table.with_meta(n_frames=movie.n_frames)  # frame_offsets then cover every page of the movie
        return Measurement(index, movie.path, locs_path, movie, table, table.frame_offsets, n_out)

    def _build_global_index(self) -> None:
        """Concatenate all tables once: pixel indices and label columns addressed by global row numbers."""
        ms = self._loaded or []
        ps = self._ps
        bases = np.cumsum([0] + [len(m.table) for m in ms])
        self._bases = bases
        self._gx = np.concatenate([m.table.x for m in ms]) if ms else np.empty(0)
        self._gy = np.concatenate([m.table.y for m in ms]) if ms else np.empty(0)
        pixels = [self._validated_pixels.get(m.index) for m in ms]
        if ms and all(p is not None and len(p[0]) == len(m.table) for p, m in zip(pixels, ms)):
            self._gpx = np.concatenate([p[0] for p in pixels])
            self._gpy = np.concatenate([p[1] for p in pixels])
        else:
            self._gpx = pixel_indices(self._gx, ps)
            self._gpy = pixel_indices(self._gy, ps)
        self._validated_pixels = {}
        extra = [c for c in OPTIONAL if any(c in m.table for m in ms)]
        self._gextra = {
            c: np.concatenate([m.table[c] if c in m.table else np.full(len(m.table), np.nan) for m in ms])
            for c in extra
        }

    def _close(self) -> None:
        for m in self._loaded or []:
            m.movie.close()
        self._loaded = None
        self._load_key = None

    def close(self) -> None:
        """Close the movies (the next step reloads them)."""
        self._close()

    # -- checks ---------------------------------------------------------------------------------------------
    def _check_settings(self, ms: list[Measurement]) -> None:
        P = self.patch_size
        small = min(ms, key=lambda m: min(m.shape))
        if P > min(small.shape):
            raise ParameterError(
                f"patch_size {P} px is larger than movie {small.movie_path.name} ({small.shape[0]}x{small.shape[1]} "
                f"px); use patch_size <= {min(small.shape)}"
            )
        if self.bin_size > self.n_patches:
            raise ParameterError(
                f"bin_size {self.bin_size} exceeds the pool of n_patches {self.n_patches} (a binned frame needs "
                "distinct patches); raise n_patches or lower bin_size"
            )
        need = self.n_binned * self.bin_size
        if not self.reuse_patches and need > self.n_patches:
            raise ParameterError(
                f"without reuse_patches, n_binned*bin_size = {need} patches are needed but n_patches is "
                f"{self.n_patches}; raise n_patches, lower n_binned or bin_size, or allow reuse_patches"
            )

    # -- drawing the pool -------------------------------------------------------------------------------------
    def _draw_key(self) -> tuple:
        return (self._load_key, self.patch_size, self.n_patches, self.min_emitters, self.seed, self.max_attempts)

    def _resolved_seed(self) -> int:
        if self.seed is not None:
            return int(self.seed)
        if self.seed_used is not None and self._pool is not None:
            return int(self.seed_used)
        return int(np.random.SeedSequence().entropy % (2**32))

    def draw_pool(self) -> dict[str, np.ndarray]:
        """Draw ``n_patches`` distinct qualifying windows uniformly; arrays measurement, frame, row, column, n_locs.

        Only frames with at least ``min_emitters`` localizations are drawn from, each weighted by its number of
        valid windows, so the draw is uniform over all valid ``(i, f, n, m)`` conditioned on qualifying. Windows
        are tested in vectorised batches; the number of draws is capped by ``max_attempts``. When too few windows
        qualify, fails with the exact number of qualifying windows and what to change.
        """
        with self._preview_job(2, "loading the measurements", current=self._pool_is_current()) as own:
            if own:
                self.load()
                self._update(progress=1, status="drawing the patch pool")
            pool = self._draw_pool()
            if own:
                self._update(progress=2, status=f"drew a pool of {len(pool['frame'])} patches")
        return pool

    def _pool_is_current(self) -> bool:
        """True when the cached pool matches the measurements and draw settings (draw_pool would return it)."""
        return (self._loaded is not None and self._load_key == self._measurement_key()
                and self._pool is not None and self._pool_key == self._draw_key())

    def _plan_is_current(self) -> bool:
        """True when the cached plan matches the pool and compose settings (compose would return it)."""
        return (self._pool_is_current() and self._plan is not None
                and self._plan_key == (self._pool_key, self.n_binned, self.bin_size, self.reuse_patches))

    @contextlib.contextmanager
    def _preview_job(self, n_steps: int, status: str, current: bool) -> Iterator[bool]:
        """A job (``running``, ``progress``/``n_steps``) around a preview step called on its own; yields whether it
        owns the job. Nested in a running job (``save``), or with a cached result, nothing is reported."""
        if self.running or current:
            yield False
            return
        with self._job(n_steps, status=status):
            yield True

    def _draw_pool(self) -> dict[str, np.ndarray]:
        ms = self.load()
        self._check_settings(ms)
        key = self._draw_key()
        if self._pool is not None and key == self._pool_key:
            return self._pool
        seed = self._resolved_seed()
        rng = np.random.default_rng(seed)
        P, need, emin = self.patch_size, self.n_patches, self.min_emitters

        c_meas, c_frame, c_start, c_stop, c_nwin, c_ncols, total_windows = self._candidates()
        cum = np.cumsum(c_nwin)
        cand_windows = int(cum[-1]) if len(cum) else 0
        if cand_windows == 0:
            most = max(int(m.locs_per_frame().max(initial=0)) for m in ms)
            raise ParameterError(
                f"no frame holds min_emitters={emin} localizations (the most in one frame is {most}), so 0 windows "
                "qualify; lower min_emitters"
            )
        if cand_windows < need:
            self._fail_pool(need, self.count_qualifying_windows(), total_windows)

        mean_locs = float(((c_stop - c_start) * c_nwin).sum()) / cand_windows
        locate = _window_locator(c_meas, c_nwin)
        pool_keys: set[tuple[int, int, int, int]] = set()
        pool: list[tuple[int, int, int, int, int]] = []
        draws = accepted = 0
        # frames where no window can hold min_emitters localizations (cheap pair test), computed once a batch
        # would cost more to count than the test itself; their draws are rejected without counting
        c_lengths = c_stop - c_start
        filter_cost = int(np.where(c_lengths <= 64, c_lengths**2, 0).sum()) + len(c_lengths)
        maybe: np.ndarray | None = None
        # 1) rejection sampling: uniform windows of the candidate frames, tested in vectorised batches
        while len(pool) < need and draws < self.max_attempts:
            rate = (accepted + 1) / (draws + 1)
            batch = int(min((need - len(pool)) / rate * 1.5 + 256, _ELEMENTS_PER_BATCH / max(mean_locs, 1.0)))
            batch = max(1, min(batch, self.max_attempts - draws))
            r = rng.integers(0, cand_windows, size=batch)
            c, within = locate(r)
            rows, cols = np.divmod(within, c_ncols[c])
            if maybe is None and emin >= 2 and batch * mean_locs > filter_cost:
                maybe = self._may_qualify(c_start, c_stop)
            if maybe is None:
                counts = window_counts(c_start[c], c_stop[c], rows, cols, self._gpy, self._gpx, P)
            else:
                counts = np.zeros(batch, dtype=np.int64)  # < min_emitters: rejected as counting would
                test = np.flatnonzero(maybe[c])
                ct = c[test]
                counts[test] = window_counts(
                    c_start[ct], c_stop[ct], rows[test], cols[test], self._gpy, self._gpx, P
                )
            ok = np.flatnonzero(counts >= emin)
            used = batch
            for k in ok:
                wkey = (int(c_meas[c[k]]), int(c_frame[c[k]]), int(rows[k]), int(cols[k]))
                accepted += 1
                if wkey not in pool_keys:
                    pool_keys.add(wkey)
                    pool.append((*wkey, int(counts[k])))
                    if len(pool) == need:
                        used = int(k) + 1
                        break
            draws += used
            missing = need - len(pool)
            hopeless = draws >= 5_000 and missing * draws > (accepted + 1) * (self.max_attempts - draws)
            if missing > 0 and (hopeless or accepted >= 10 * need + 100):
                break  # rare or few qualifying windows: sample them exactly instead
        # 2) exact sampling among the qualifying windows themselves (sparse data, or too few of them)
        qualifying = None
        if len(pool) < need:
            q = self._qualifying_per_candidate(c_meas, c_frame, c_start, c_stop, maybe)
            qualifying = int(q.sum())
            if qualifying < need:
                self._fail_pool(need, qualifying, total_windows)
            self._draw_exact(rng, q, c_meas, c_frame, c_start, c_stop, need, pool, pool_keys)

        arr = np.array(pool, dtype=np.int64).reshape(-1, 5)
        self._pool = {
            "measurement": arr[:, 0],
            "frame": arr[:, 1],
            "row": arr[:, 2],
            "column": arr[:, 3],
            "n_locs": arr[:, 4],
        }
        self._pool_key = key
        self._plan = None
        self._draw_stats = {
            "draws": int(draws),
            "accepted": int(accepted),
            "acceptance_rate": accepted / draws if draws else 0.0,
            "candidate_windows": cand_windows,
            "valid_windows": int(total_windows),
            "candidate_frames": int(len(c_frame)),
            "mode": "rejection" if qualifying is None else "rejection + exact",
            "qualifying_windows": qualifying,
        }
        if self._publish_steps:
            self._update(seed_used=seed, stats=self.statistics())
        else:
            self._update(seed_used=seed)
        return self._pool

    def _fail_pool(self, need: int, qualifying: int, total: int) -> None:
        P, emin = self.patch_size, self.min_emitters
        raise ParameterError(
            f"cannot fill a pool of n_patches={need} {P}x{P} px patches: only {qualifying} of {total} windows hold "
            f">= {emin} localizations; lower min_emitters, use a smaller n_patches, or a larger patch_size"
        )

    def _candidate_shapes(self, c_meas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        heights = np.array([m.shape[0] for m in self._loaded], dtype=np.int64)
        widths = np.array([m.shape[1] for m in self._loaded], dtype=np.int64)
        c_meas = np.asarray(c_meas, dtype=np.int64)
        return heights[c_meas], widths[c_meas]

    def _may_qualify(self, c_start: np.ndarray, c_stop: np.ndarray) -> np.ndarray:
        """False for candidate frames where no window can hold ``min_emitters`` localizations (pair test)."""
        return frames_may_qualify(c_start, c_stop, self._gpy, self._gpx, self.patch_size, self.min_emitters)

    def _qualifying_per_candidate(self, c_meas, c_frame, c_start, c_stop, maybe=None) -> np.ndarray:
        """Exact number of qualifying windows in each candidate frame (vectorised over frames)."""
        heights, widths = self._candidate_shapes(c_meas)
        if maybe is None:
            maybe = self._may_qualify(c_start, c_stop)
        q = np.zeros(len(c_meas), dtype=np.int64)
        q[maybe] = count_qualifying_per_frame(
            c_start[maybe], c_stop[maybe], heights[maybe], widths[maybe], self._gpy, self._gpx, self.patch_size,
            self.min_emitters,
        )
        return q

    def _draw_exact(self, rng, q, c_meas, c_frame, c_start, c_stop, need, pool, pool_keys) -> None:
        """Add distinct windows drawn uniformly among the qualifying ones until the pool holds ``need``."""
        total = int(q.sum())
        ends = np.cumsum(q)
        heights, widths = self._candidate_shapes(c_meas)

        def windows(numbers: np.ndarray):
            c = np.searchsorted(ends, numbers, side="right")
            within = numbers - (ends[c] - q[c])
            rows, cols = qualifying_windows_at(
                c, within, c_start, c_stop, heights, widths, self._gpy, self._gpx, self.patch_size,
                self.min_emitters,
            )
            return c, rows, cols

        if total <= 20 * need:
            order = rng.permutation(total)  # few qualifying windows: a permutation of all of them
            batches = [order]
        else:
            batches = None
        while len(pool) < need:
            numbers = batches.pop(0) if batches is not None else rng.integers(0, total, 2 * (need - len(pool)) + 16)
            c, rows, cols = windows(numbers)
            counts = window_counts(c_start[c], c_stop[c], rows, cols, self._gpy, self._gpx, self.patch_size)
            keys = np.stack([c_meas[c], c_frame[c], rows, cols, counts], axis=1).tolist()
            for k in range(len(numbers)):
                wkey = tuple(keys[k][:4])
                if wkey not in pool_keys:
                    pool_keys.add(wkey)
                    pool.append(tuple(keys[k]))
                    if len(pool) == need:
                        return

    def _candidates(self):
        """Candidate frames (at least ``min_emitters`` localizations): measurement, frame, global row range,
        windows per frame, window columns per row; and the number of valid windows of all frames."""
        P, emin = self.patch_size, self.min_emitters
        c_meas, c_frame, c_start, c_stop, c_nwin, c_ncols = [], [], [], [], [], []
        total_windows = 0
        for m in self._loaded:
            rows, cols = m.shape[0] - P + 1, m.shape[1] - P + 1
            if rows <= 0 or cols <= 0:
                continue
            total_windows += m.n_frames * rows * cols
            frames = np.flatnonzero(m.locs_per_frame() >= emin)
            c_meas.append(np.full(len(frames), m.index))
            c_frame.append(frames)
            c_start.append(m.offsets[frames] + self._bases[m.index])
            c_stop.append(m.offsets[frames + 1] + self._bases[m.index])
            c_nwin.append(np.full(len(frames), rows * cols, dtype=np.int64))
            c_ncols.append(np.full(len(frames), cols, dtype=np.int64))
        cat = [np.concatenate(v) if v else np.empty(0, np.int64) for v in
               (c_meas, c_frame, c_start, c_stop, c_nwin, c_ncols)]
        return (*cat, total_windows)

    def count_qualifying_windows(self) -> int:
        """Exact number of valid windows holding at least ``min_emitters`` localizations (all measurements)."""
        self.load()
        c_meas, c_frame, c_start, c_stop, *_ = self._candidates()
        return int(self._qualifying_per_candidate(c_meas, c_frame, c_start, c_stop).sum())

    # -- composing binned frames ------------------------------------------------------------------------------
    def compose(self) -> np.ndarray:
        """Assign pool patches to binned frames: an ``(n_binned, bin_size)`` array of pool indices.

        Within a binned frame the patches are distinct and no two windows of the same (measurement, frame)
        overlap (they would duplicate labels). With ``reuse_patches`` off, every pool patch is used at most once.
        """
        with self._preview_job(3, "loading the measurements", current=self._plan_is_current()) as own:
            if own:
                self.load()
                self._update(progress=1, status="drawing the patch pool")
                self.draw_pool()
                self._update(progress=2, status="composing the binned frames")
            plan = self._compose()
            if own:
                self._update(progress=3, status=f"composed {len(plan)} binned frames of {plan.shape[1]} patches")
        return plan

    def _compose(self) -> np.ndarray:
        pool = self.draw_pool()
        key = (self._pool_key, self.n_binned, self.bin_size, self.reuse_patches)
        if self._plan is not None and key == self._plan_key:
            return self._plan
        rng = np.random.default_rng([int(self.seed_used), 1])
        B = self.bin_size
        n_pool = len(pool["frame"])
        conflicts = self._conflicts(pool)
        plan = np.empty((self.n_binned, B), dtype=np.int64)
        if self.reuse_patches:
            self._compose_with_reuse(rng, plan, n_pool, conflicts)
        else:
            remaining = rng.permutation(n_pool).tolist()
            for j in range(self.n_binned):
                plan[j] = self._choose(j, remaining, conflicts, B)
                taken = set(plan[j].tolist())
                remaining = [k for k in remaining if k not in taken]
        self._plan, self._plan_key = plan, key
        if self._publish_steps:
            self._update(stats=self.statistics())
        return plan

    @staticmethod
    def _greedy(order: list[int], size: int, conflicts: dict[int, set[int]]) -> list[int]:
        """The first ``size`` patches of ``order`` that overlap none chosen before (fewer if impossible)."""
        chosen: list[int] = []
        blocked: set[int] = set()
        for idx in order:
            if idx in blocked:
                continue
            chosen.append(idx)
            hit = conflicts.get(idx)
            if hit:
                blocked |= hit
            if len(chosen) == size:
                break
        return chosen

    def _choose(self, j: int, order: list[int], conflicts: dict[int, set[int]], bin_size: int) -> list[int]:
        """Greedy choice of binned frame ``j`` in ``order``; a clear error when it cannot be filled."""
        chosen = self._greedy(order, bin_size, conflicts)
        if len(chosen) < bin_size:
            raise ParameterError(
                f"binned frame {j + 1}: cannot find bin_size={bin_size} pool patches without overlapping windows "
                "of the same frame; raise n_patches, lower bin_size, use a smaller patch_size or allow "
                "reuse_patches"
            )
        return chosen

    def _compose_with_reuse(self, rng, plan: np.ndarray, n_pool: int, conflicts: dict[int, set[int]]) -> None:
        """Fill ``plan``: binned frame ``j`` takes the greedy choice in a fresh random permutation of the pool.

        The permutations of many frames are drawn at once with ``rng.permuted`` row by row, which consumes the
        generator exactly like one ``rng.permutation(n_pool)`` per frame (same plans as frame-by-frame drawing).
        Rows whose first ``bin_size`` patches overlap nothing take them directly; the others are chosen greedily,
        vectorised over rows on a short head of their permutation (the greedy choice is a prefix scan), the rare
        rest on their whole permutation.
        """
        B = self.bin_size
        conflicted = np.zeros(n_pool, dtype=bool)
        conflicted[list(conflicts)] = True
        rows_per_chunk = max(1, (4 << 20) // max(n_pool * 8, 1))  # ~4 MB of permutations at a time
        identity = np.arange(n_pool, dtype=np.int64)
        head = min(n_pool, 3 * B + 16)
        indptr, neighbours = _conflict_lists(conflicts, n_pool)
        for start in range(0, len(plan), rows_per_chunk):
            stop = min(start + rows_per_chunk, len(plan))
            orders = rng.permuted(np.tile(identity, (stop - start, 1)), axis=1)
            if n_pool >= B:
                plan[start:stop] = orders[:, :B]
                redo = np.flatnonzero(conflicted[orders[:, :B]].any(axis=1))
            else:
                redo = np.arange(stop - start)
            chosen, count = _greedy_rows(orders[redo, :head], B, indptr, neighbours, n_pool)
            plan[start + redo] = chosen
            for r in redo[count < B].tolist():  # rare: the head was not enough, scan the whole permutation
                plan[start + r] = self._choose(start + r, orders[r].tolist(), conflicts, B)

    def _conflicts(self, pool: dict[str, np.ndarray]) -> dict[int, set[int]]:
        """Pool patches whose windows overlap another pool window of the same (measurement, frame)."""
        P = self.patch_size
        key = pool["measurement"] * (int(pool["frame"].max(initial=0)) + 1) + pool["frame"]
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        bounds = np.flatnonzero(np.diff(sorted_key)) + 1
        sizes = np.diff(np.concatenate([[0], bounds, [len(order)]])).astype(np.int64)
        if int((sizes * sizes).sum()) <= 500_000:  # bounded memory; else group by group below
            # all ordered pairs of patches of the same (measurement, frame) at once
            per_elem = np.repeat(sizes, sizes)
            group_first = np.repeat(np.cumsum(sizes) - sizes, sizes)
            total = int(per_elem.sum())
            a_pos = np.repeat(np.arange(len(order)), per_elem)
            b_pos = np.arange(total) + np.repeat(group_first - (np.cumsum(per_elem) - per_elem), per_elem)
            a, b = order[a_pos], order[b_pos]
            hit = (a != b) & (np.abs(pool["row"][a] - pool["row"][b]) < P) & (
                np.abs(pool["column"][a] - pool["column"][b]) < P
            )
            a, b = a[hit], b[hit]
            by_a = np.argsort(a, kind="stable")
            a, b = a[by_a], b[by_a]
            keys, first = np.unique(a, return_index=True)
            return {k: set(v) for k, v in zip(keys.tolist(), (g.tolist() for g in np.split(b, first[1:])))}
        conflicts: dict[int, set[int]] = {}
        for group in np.split(order, bounds):
            if len(group) < 2:
                continue
            rows, cols = pool["row"][group], pool["column"][group]
            for a, k in enumerate(group):
                hit = windows_overlap(int(rows[a]), int(cols[a]), rows, cols, P)
                hit[a] = False
                if hit.any():
                    conflicts[int(k)] = {int(g) for g in group[hit]}
        return conflicts

    # -- building binned frames -------------------------------------------------------------------------------
    def patch_locs(self, pool_index: int) -> dict[str, np.ndarray]:
        """Patch-local localizations of one pool patch (x, y in nm within ``[0, P*ps)``, plus optional columns)."""
        pool = self.draw_pool()
        return self._patch_locs(pool, pool_index)

    def _patch_locs(self, pool: dict[str, np.ndarray], pool_index: int) -> dict[str, np.ndarray]:
        i, f = int(pool["measurement"][pool_index]), int(pool["frame"][pool_index])
        n, m = int(pool["row"][pool_index]), int(pool["column"][pool_index])
        meas = self._loaded[i]
        base = self._bases[i]
        sl = slice(base + meas.offsets[f], base + meas.offsets[f + 1])
        px, py, P = self._gpx[sl], self._gpy[sl], self.patch_size
        inside = (px >= m) & (px < m + P) & (py >= n) & (py < n + P)
        ps = self._ps
        out = {"x": self._gx[sl][inside] - m * ps, "y": self._gy[sl][inside] - n * ps}
        for name, values in self._gextra.items():
            out[name] = values[sl][inside]
        return out

    def _all_patch_locs(self, pool: dict[str, np.ndarray], indices: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`_patch_locs` of the pool patches ``indices`` at once, concatenated in that order (vectorised
        membership); ``"_count"`` holds the number of localizations of each patch."""
        indices = np.asarray(indices, dtype=np.int64)
        meas, frame = pool["measurement"][indices], pool["frame"][indices]
        starts = np.zeros(len(indices), dtype=np.int64)
        stops = np.zeros(len(indices), dtype=np.int64)
        for m in self._loaded:
            mine = meas == m.index
            starts[mine] = self._bases[m.index] + m.offsets[frame[mine]]
            stops[mine] = self._bases[m.index] + m.offsets[frame[mine] + 1]
        lengths = stops - starts
        owner = np.repeat(np.arange(len(indices)), lengths)
        rows = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows += np.repeat(starts, lengths)
        n, m_, P = pool["row"][indices][owner], pool["column"][indices][owner], self.patch_size
        px, py = self._gpx[rows], self._gpy[rows]
        inside = (px >= m_) & (px < m_ + P) & (py >= n) & (py < n + P)
        rows, owner, n, m_ = rows[inside], owner[inside], n[inside], m_[inside]
        ps = self._ps
        out = {"x": self._gx[rows] - m_ * ps, "y": self._gy[rows] - n * ps}
        for name, values in self._gextra.items():
            out[name] = values[rows]
        out["_count"] = np.bincount(owner, minlength=len(indices))
        return out

    def patch_image(self, pool_index: int) -> np.ndarray:
        """Pixels of one pool patch, read lazily from its movie (stored dtype, native order)."""
        pool = self.draw_pool()
        return self._patch_image(pool, pool_index)

    def _patch_image(self, pool: dict[str, np.ndarray], pool_index: int) -> np.ndarray:
        cache = self._patch_cache
        if cache is not None and cache.get("key") == self._pool_key and pool_index in cache:
            return cache[pool_index]
        meas = self._loaded[int(pool["measurement"][pool_index])]
        return meas.movie.window(
            int(pool["frame"][pool_index]), int(pool["row"][pool_index]), int(pool["column"][pool_index]),
            self.patch_size,
        )

    def _prefetch(self, pool: dict[str, np.ndarray], indices: np.ndarray) -> None:
        """Read the used pool patches once, in file order, into a stack when it fits in ``_PATCH_CACHE_BYTES``."""
        indices = np.unique(indices)
        wide = self._stack_dtype()
        self._patch_cache = None
        if len(indices) * self.patch_size**2 * wide.itemsize > _PATCH_CACHE_BYTES:
            return
        stack = np.zeros((len(pool["frame"]), self.patch_size, self.patch_size), dtype=wide)
        for meas in self._loaded:
            mine = indices[pool["measurement"][indices] == meas.index]
            if not len(mine):
                continue
            # in file order; announced to the OS first so that cold reads happen in parallel
            mine = mine[np.lexsort((pool["row"][mine], pool["frame"][mine]))]
            frames, rows, cols = pool["frame"][mine], pool["row"][mine], pool["column"][mine]
            meas.movie.advise_windows(zip(frames, rows, cols), self.patch_size)
            stack[mine] = meas.movie.windows(frames, rows, cols, self.patch_size)  # one vectorised gather
        self._patch_cache = {"key": self._pool_key, "stack": stack}

    def _stack_dtype(self) -> np.dtype:
        """Dtype of the cached pool patches: int32 holds any movie of (u)int8/(u)int16 exactly, else the wide type."""
        dtypes = [m.movie.dtype for m in self._loaded]
        if all(d.kind in "uib" and d.itemsize <= 2 for d in dtypes):
            return np.dtype(np.int32)
        return self._wide_dtype()

    def _wide_dtype(self) -> np.dtype:
        kinds = {m.movie.dtype.kind for m in self._loaded}
        return np.dtype(np.int64) if kinds <= {"u", "i", "b"} else np.dtype(np.float64)

    def binned_frame(self, j: int) -> BinnedFrame:
        """Binned frame ``j`` (0-based): sum of its parts minus ``camera_offset*(bin_size-1)``, labels, parts."""
        plan = self.compose()
        if not 0 <= j < len(plan):
            raise IndexError(f"binned frame {j} outside 0..{len(plan) - 1}")
        return self._binned_frame(plan, j, with_locs=True)

    def _binned_frame(self, plan: np.ndarray, j: int, with_locs: bool) -> BinnedFrame:
        pool = self._pool
        wide = self._wide_dtype()
        cache = self._patch_cache
        if cache is not None and cache["key"] == self._pool_key:
            total = cache["stack"][plan[j]].sum(axis=0, dtype=wide)
        else:
            total = np.zeros((self.patch_size, self.patch_size), dtype=wide)
            for idx in plan[j]:
                total += self._patch_image(pool, int(idx))
        parts = [
            {
                "measurement": int(pool["measurement"][idx]),
                "frame": int(pool["frame"][idx]),
                "row": int(pool["row"][idx]),
                "column": int(pool["column"][idx]),
                "n_locs": int(pool["n_locs"][idx]),
            }
            for idx in plan[j]
        ]
        offset = self.camera_offset * (self.bin_size - 1)
        if wide.kind == "i" and float(offset).is_integer():
            total -= int(offset)
        else:
            total = total.astype(np.float64) - offset
        image, clipped = to_output_dtype(total, self.output_dtype)
        table = None
        if with_locs:
            locs = [self._patch_locs(pool, int(idx)) for idx in plan[j]]
            cols = {name: np.concatenate([part[name] for part in locs]) for name in locs[0]}
            cols["frame"] = np.full(len(cols["x"]), j, dtype=np.int64)
            table = LocTable(cols, self._output_meta(), presorted=True, validate=False)
        return BinnedFrame(j, total, image, clipped, table, parts)

    def _binned_chunks(self, plan: np.ndarray, per_frame: bool = True):
        """Yield ``(start, images, clipped)`` for consecutive chunks of binned frames from the cached patches:
        ``images`` in the output dtype, ``clipped`` the clipped pixels of each frame (int array), or of the whole
        chunk (int) when not ``per_frame``.

        Integer sums are exact in any order: they are accumulated part by part, in int32 when no sum can
        overflow it (uint16 movies up to ~30000 parts), else in int64; float movies are summed in float64.
        """
        stack = self._patch_cache["stack"]
        wide = self._wide_dtype()
        offset = self.camera_offset * (self.bin_size - 1)
        integral = wide.kind == "i" and float(offset).is_integer()
        dtype = self.output_dtype
        accumulator = wide
        if stack.dtype.kind == "i" and stack.dtype.itemsize == 4:
            # the cached patches come from (u)int8/(u)int16 movies: |sum| <= bin_size * 65535 (+ the offset)
            bound = plan.shape[1] * 65536 + (abs(int(offset)) if integral else 0)
            accumulator = np.dtype(np.int32) if bound < 2**31 - 1 else np.dtype(np.int64)
        # chunks of ~1 MB of sums (and for float movies of the (chunk, bin_size, P, P) gather): they stay in the
        # CPU cache, which makes the summing about twice as fast as on the whole movie at once
        frame_bytes = stack[0].size * accumulator.itemsize * (plan.shape[1] if wide.kind == "f" else 1)
        chunk = int(max(1, min(256, (1 << 20) // max(frame_bytes, 1))))
        for start in range(0, len(plan), chunk):
            rows = plan[start : start + chunk]
            if wide.kind == "f":
                sums = stack[rows].sum(axis=1, dtype=wide)
            else:
                sums = stack[rows[:, 0]].astype(accumulator)
                for b in range(1, rows.shape[1]):
                    sums += stack[rows[:, b]]
            if integral:
                sums -= int(offset)
            else:
                sums = sums.astype(np.float64) - offset
            images, n_clipped = to_output_dtype(sums, dtype)
            if dtype != "uint16":
                clipped = np.zeros(len(sums), dtype=np.int64) if per_frame else 0
            elif per_frame:
                clipped = ((sums < 0) | (sums > 65535)).sum(axis=(1, 2))
            elif integral:
                clipped = n_clipped  # the same count for integer sums
            else:
                clipped = int(np.count_nonzero((sums < 0) | (sums > 65535)))  # before rounding, as per frame
            yield start, images, clipped

    def _iter_binned_images(self, plan: np.ndarray):
        """Yield ``(j, image, clipped)`` for every binned frame; summed in chunks when the patches are cached."""
        cache = self._patch_cache
        if cache is None or cache["key"] != self._pool_key:
            for j in range(len(plan)):
                frame = self._binned_frame(plan, j, with_locs=False)
                yield j, frame.image, frame.clipped
            return
        for start, images, clipped in self._binned_chunks(plan):
            for k, n_clipped in enumerate(clipped.tolist()):
                yield start + k, images[k], n_clipped

    def _write_binned_tif(self, path: Path, plan: np.ndarray) -> int:
        """Write all binned frames to ``path``; returns the clipped pixel count. A small movie (the usual case:
        ``n_binned * P^2`` pixels) is built in memory and written in one contiguous write, a large one streamed."""
        writer = TifWriter(path, pixel_size=self._ps, dtype=self.output_dtype, overwrite=True)
        cache = self._patch_cache
        n, P = len(plan), self.patch_size
        every = max(1, n // 20)  # progress updates cost a param event each
        done = 0

        def advance(j: int) -> None:
            nonlocal done
            if j // every > done // every or j == n:
                self._advance(j - done)
                done = j

        clipped = 0
        out_bytes = n * P * P * np.dtype(self.output_dtype).itemsize
        if cache is not None and cache["key"] == self._pool_key and out_bytes <= _STACK_WRITE_BYTES:
            images = np.empty((n, P, P), dtype=self.output_dtype)
            for start, chunk, chunk_clipped in self._binned_chunks(plan, per_frame=False):
                images[start : start + len(chunk)] = chunk
                clipped += int(chunk_clipped)
            advance(n)  # all frames summed (a few ms; progress per chunk would cost more than it shows)
            with writer:
                writer.write_array(images)
            return clipped

        def frames():
            nonlocal clipped
            for j, image, n_clipped in self._iter_binned_images(plan):
                clipped += n_clipped
                advance(j + 1)
                yield image

        with writer:
            writer.write_stream(frames(), n)
        return clipped

    def _output_meta(self) -> LocMeta:
        return LocMeta(
            pixel_size=self._ps,
            image_shape=(self.patch_size, self.patch_size),
            n_frames=self.n_binned,
            source_format="binner",
            conversion="patch-local nm, corner convention: x' = x - m*ps, y' = y - n*ps",
        )

    def binned_locs(self) -> LocTable:
        """Labels of all binned frames (canonical: frame 0-based binned frame number, patch-local nm)."""
        plan = self.compose()
        pool = self._pool
        used = np.unique(plan)
        per_used = self._all_patch_locs(pool, used)  # columns of all used patches' labels, patch after patch
        lengths = np.zeros(len(pool["frame"]), dtype=np.int64)
        lengths[used] = per_used.pop("_count")
        starts = np.zeros_like(lengths)
        starts[used] = np.cumsum(lengths[used]) - lengths[used]
        flat = plan.ravel()
        n_each = lengths[flat]
        total = int(n_each.sum())
        rows = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(n_each) - n_each, n_each)
        rows += np.repeat(starts[flat], n_each)
        cols = {name: values[rows] for name, values in per_used.items()}
        per_frame = n_each.reshape(plan.shape).sum(axis=1)
        cols["frame"] = np.repeat(np.arange(len(plan), dtype=np.int64), per_frame)
        return LocTable(cols, self._output_meta(), presorted=True, validate=False)

    # -- statistics -------------------------------------------------------------------------------------------
    def statistics(self) -> dict:
        """Statistics so far: per measurement localizations per frame and density; pool draw; emitters per frame.

        ``measurements[i]["locs_per_frame"]`` counts every frame (empty frames included); density is localizations
        per µm² of the whole image (area = height*width*ps²) averaged over all frames.
        """
        out: dict = {"pixel_size": self._ps, "measurements": []}
        for m in self._loaded or []:
            per_frame = m.locs_per_frame()
            height, width = m.shape
            area_um2 = height * width * (self._ps / 1000.0) ** 2
            out["measurements"].append(
                {
                    "index": m.index,
                    "movie": str(m.movie_path),
                    "locs": str(m.locs_path) if m.locs_path else None,
                    "n_frames": int(m.n_frames),
                    "shape": [int(height), int(width)],
                    "n_locs": int(len(m.table)),
                    "dropped_outside": int(m.n_dropped_outside),
                    "empty_frames": int(np.count_nonzero(per_frame == 0)),
                    "locs_per_frame": per_frame,
                    "mean_locs_per_frame": float(per_frame.mean()) if len(per_frame) else 0.0,
                    "density_per_um2": float(per_frame.mean() / area_um2) if len(per_frame) else 0.0,
                    "density_per_frame_per_um2": per_frame / area_um2,
                }
            )
        if self._pool is not None and self._pool_key == self._draw_key():
            out["pool"] = dict(self._draw_stats, n_patches=int(len(self._pool["frame"])),
                               mean_locs_per_patch=float(self._pool["n_locs"].mean()))
        if self._plan is not None:
            emitters = self._pool["n_locs"][self._plan].sum(axis=1)
            out["binned"] = {
                "n_binned": int(len(self._plan)),
                "emitters_per_frame": emitters,
                "mean_emitters": float(emitters.mean()),
                "min_emitters": int(emitters.min()),
                "max_emitters": int(emitters.max()),
                "density_per_um2": float(emitters.mean() / (self.patch_size * self._ps / 1000.0) ** 2),
            }
        return out

    def summary_lines(self) -> list[str]:
        """Human-readable statistics (for the CLI)."""
        s = self.statistics()
        lines = [f"pixel size: {s['pixel_size']:g} nm"]
        for m in s["measurements"]:
            lpf = m["locs_per_frame"]
            lines.append(
                f"measurement {m['index'] + 1}: {Path(m['movie']).name}: {m['n_frames']} frames of "
                f"{m['shape'][0]}x{m['shape'][1]} px, {m['n_locs']} locs, "
                f"{m['mean_locs_per_frame']:.3g} locs/frame (min {int(lpf.min(initial=0))}, "
                f"max {int(lpf.max(initial=0))}, {m['empty_frames']} empty frames), "
                f"density {m['density_per_um2']:.4g} locs/µm²"
                + (f", {m['dropped_outside']} outside the image dropped" if m["dropped_outside"] else "")
            )
        if "pool" in s:
            p = s["pool"]
            lines.append(
                f"pool: {p['n_patches']} patches, {p['mean_locs_per_patch']:.3g} locs/patch; {p['draws']} windows "
                f"drawn in {p['candidate_frames']} candidate frames, {p['accepted']} accepted "
                f"(acceptance rate {p['acceptance_rate']:.3g})"
            )
        if "binned" in s:
            b = s["binned"]
            lines.append(
                f"binned: {b['n_binned']} frames, emitters per frame mean {b['mean_emitters']:.3g} "
                f"(min {b['min_emitters']}, max {b['max_emitters']}), {b['density_per_um2']:.4g} locs/µm²"
            )
        if self.written_paths:
            lines.append(f"clipped pixels: {self.clipped_pixels}")
            lines.extend(f"wrote {p}" for p in self.written_paths)
        return lines

    # -- saving -----------------------------------------------------------------------------------------------
    def output_paths(self) -> list[Path]:
        """The three outputs: ``<output_folder>/<output_name>.tif``, ``.csv`` and ``.json``."""
        if not self.output_folder:
            raise ParameterError("no output folder given (-o OUTDIR)")
        name = self.output_name or "binned"
        if any(ch in name for ch in "/\\") or name in (".", ".."):
            raise ParameterError(f"output_name must be a plain file name, got {name!r}")
        folder = Path(self.output_folder)
        return [folder / f"{name}.tif", folder / f"{name}.csv", folder / f"{name}.json"]

    def check_outputs(self) -> list[Path]:
        """Raise before any work when an output exists (without ``overwrite``) or the folder holds other data."""
        targets = self.output_paths()
        self._check_outputs(targets)
        return targets

    def _check_outputs(self, targets: list[Path]) -> None:
        folder = targets[0].parent
        if folder.exists() and not folder.is_dir():
            raise ParameterError("output folder is a file", folder)
        check_writable(targets, self.overwrite)
        if folder.is_dir():
            others = sorted(
                p.name for p in folder.iterdir()
                if p.suffix.lower() in _OUTPUT_SUFFIXES and p not in targets and not p.name.startswith(".")
            )
            if others:
                raise ParameterError(
                    f"output folder already holds other data files ({', '.join(others[:3])}"
                    f"{', ...' if len(others) > 3 else ''}); the notebook needs exactly one TIF and one CSV there: "
                    "choose an empty folder",
                    folder,
                )

    def provenance(self, frames: bool = True) -> dict:
        """Parameters, inputs (path, size, mtime) and the parts of every binned frame (JSON-ready)."""
        self.compose()  # provenance describes the current plan
        names = (
            "pixel_size camera_offset patch_size n_patches n_binned bin_size min_emitters reuse_patches "
            "output_dtype half_pixel max_attempts"
        ).split()
        params = {n: getattr(self, n) for n in names}
        params["pixel_size"] = self._ps
        params["seed"] = int(self.seed_used)
        params["seed_given"] = self.seed
        inputs = []
        for m in self._loaded:
            entry = {
                "index": m.index,
                "movie": file_signature(m.movie_path),
                "locs": file_signature(m.locs_path) if m.locs_path and m.locs_path.exists() else None,
                "locs_format": m.table.meta.source_format,
                "conversion": m.table.meta.conversion,
                "n_frames": int(m.n_frames),
                "shape": [int(v) for v in m.shape],
                "movie_dtype": str(m.movie.dtype),
                "n_locs_used": int(len(m.table)),
                "dropped_outside": int(m.n_dropped_outside),
            }
            inputs.append(entry)
        binned_frames = []
        if frames:
            binned_frames = [
                {"binned_frame": j + 1, "parts": [dict(zip(_PART_FIELDS, part)) for part in parts]}
                for j, parts in enumerate(self._parts_table().tolist())
            ]
        stats = self.statistics()
        pool_stats = {k: v for k, v in stats.get("pool", {}).items()}
        from imagebinner import __version__

        return {
            "tool": "imagebinner Binner",
            "version": __version__,
            "conventions": (
                "parts: measurement = 0-based index into inputs, frame = 0-based page of its movie, row/column = "
                "top-left pixel of the patch (rows row..row+P-1, columns column..column+P-1); binned frame value = "
                "sum of parts - camera_offset*(bin_size-1); CSV frame = binned_frame (1-based); x, y in nm, "
                "corner convention, x' = x - column*ps, y' = y - row*ps"
            ),
            "parameters": params,
            "inputs": inputs,
            "pool": pool_stats,
            "binned_frames": binned_frames,
        }

    def _parts_table(self) -> np.ndarray:
        """``(n_binned, bin_size, 5)`` int array of measurement, frame, row, column, n_locs of every part."""
        plan, pool = self.compose(), self._pool
        return np.stack([pool[name] for name in _PART_FIELDS], axis=-1)[plan]

    def save(self) -> list[Path]:
        """Write the binned TIF, the DeepSTORM training CSV and the JSON provenance, atomically.

        The TIF is written in one contiguous write when the binned movie is small (the usual case, at most
        ``_STACK_WRITE_BYTES``), else streamed frame by frame (bounded memory)."""
        from imagebinner.io import write_locs

        targets = self.check_outputs()
        ms = self.load()
        self._check_settings(ms)
        with self._job(self.n_binned + 2, status="drawing the patch pool"):
            # the intermediate statistics of draw_pool/compose are not published: save publishes the final ones
            self._publish_steps = False
            try:
                self.draw_pool()
                self._advance()
                plan = self.compose()
            except Exception:
                self._publish_steps = True
                self._update(stats=self.statistics())  # what the failed step got to (as when called alone)
                raise
            finally:
                self._publish_steps = True
            labels = self.binned_locs()
            provenance = self.provenance(frames=False)
            self._update(progress=min(self.progress + 1, self.n_steps), status="writing binned frames")
            clipped = 0
            with atomic_group(targets, overwrite=self.overwrite) as (tmp_tif, tmp_csv, tmp_json):
                self._prefetch(self._pool, plan.ravel())
                clipped = self._write_binned_tif(tmp_tif, plan)
                write_locs(labels, tmp_csv, format="deepstorm", overwrite=True)
                provenance["outputs"] = {
                    "tif": targets[0].name,
                    "csv": targets[1].name,
                    "clipped_pixels": int(clipped),
                    "n_labels": int(len(labels)),
                }
                pool = self._pool
                patches = np.stack([pool[name] for name in _PART_FIELDS], axis=-1)
                tmp_json.write_text(provenance_json(provenance, patches=patches, index=plan))
            self._update(
                clipped_pixels=int(clipped),
                written_paths=[str(t) for t in targets],
                status=f"wrote {len(plan)} binned frames ({len(labels)} localizations) to {targets[0].parent}",
            )
            if clipped:
                warnings.warn(f"{targets[0]}: {clipped} pixel(s) clipped to the uint16 range 0..65535", stacklevel=2)
        self._update(stats=self.statistics())
        return targets

    def run(self) -> list[Path]:
        """Load, draw, compose and save in one go; returns the written paths."""
        return self.save()


def _window_locator(c_meas: np.ndarray, c_nwin: np.ndarray):
    """``locate(r) -> (c, within)``: window number ``r`` of the concatenated candidate frames is window ``within``
    of candidate ``c``, i.e. ``c = searchsorted(cumsum(c_nwin), r, "right")`` — computed by integer division
    inside each run of frames with the same window count (a measurement), which is exact and much faster."""
    bounds = np.flatnonzero(np.diff(c_meas) != 0) + 1
    run_first = np.concatenate([[0], bounds]).astype(np.int64)
    run_nwin = c_nwin[run_first].astype(np.int64)
    run_frames = np.diff(np.concatenate([run_first, [len(c_meas)]]))
    run_ends = np.cumsum(run_frames * run_nwin)
    run_starts = run_ends - run_frames * run_nwin
    if not np.array_equal(c_nwin, np.repeat(run_nwin, run_frames)):  # not one window count per run: plain search
        cum = np.cumsum(c_nwin)

        def locate_search(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            c = np.searchsorted(cum, r, side="right")
            return c, r - (cum[c] - c_nwin[c])

        return locate_search

    def locate(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        run = np.searchsorted(run_ends, r, side="right") if len(run_ends) > 1 else np.zeros(len(r), np.int64)
        offset = r - run_starts[run]
        k, within = np.divmod(offset, run_nwin[run])
        return run_first[run] + k, within

    return locate


def _conflict_lists(conflicts: dict[int, set[int]], n_pool: int) -> tuple[np.ndarray, np.ndarray]:
    """The conflict sets as CSR arrays: patch ``k`` overlaps ``neighbours[indptr[k]:indptr[k+1]]``."""
    degree = np.zeros(n_pool, dtype=np.int64)
    for k, hit in conflicts.items():
        degree[k] = len(hit)
    indptr = np.concatenate([[0], np.cumsum(degree)])
    neighbours = np.empty(int(indptr[-1]), dtype=np.int64)
    for k, hit in conflicts.items():
        neighbours[indptr[k] : indptr[k + 1]] = sorted(hit)
    return indptr, neighbours


def _greedy_rows(
    orders: np.ndarray, size: int, indptr: np.ndarray, neighbours: np.ndarray, n_pool: int
) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`Binner._greedy` on every row of ``orders`` at once (position by position, vectorised over rows).

    Returns the ``(rows, size)`` choices and how many were found per row (``< size`` when the row ran out).
    """
    n_rows, width = orders.shape
    chosen = np.zeros((n_rows, size), dtype=np.int64)
    count = np.zeros(n_rows, dtype=np.int64)
    blocked = np.zeros((n_rows, n_pool), dtype=bool)
    rows = np.arange(n_rows)
    for p in range(width):
        idx = orders[:, p]
        take = (count < size) & ~blocked[rows, idx]
        taken_rows, taken = rows[take], idx[take]
        chosen[taken_rows, count[taken_rows]] = taken
        count[taken_rows] += 1
        degree = indptr[taken + 1] - indptr[taken]
        if degree.any():
            first = np.repeat(indptr[taken] - np.cumsum(degree) + degree, degree)
            blocked[np.repeat(taken_rows, degree), neighbours[first + np.arange(int(degree.sum()))]] = True
        if count.min(initial=size) >= size:
            break
    return chosen, count


def provenance_json(
    provenance: dict,
    parts: np.ndarray | None = None,
    *,
    patches: np.ndarray | None = None,
    index: np.ndarray | None = None,
) -> str:
    """The provenance as JSON text: indented, one line per binned frame (fast to write, easy to read).

    ``parts`` (``(n_binned, bin_size, 5)``, see :meth:`Binner._parts_table`) replaces ``provenance["binned_frames"]``;
    so do ``patches`` (``(n, 5)`` rows of measurement, frame, row, column, n_locs) with ``index`` (``(n_binned,
    bin_size)`` rows of ``patches``), the same table without repeating the patches used several times.
    """
    rest = {k: v for k, v in provenance.items() if k != "binned_frames"}
    head = json.dumps(rest, indent=1, default=_json_default)
    if patches is None:
        if parts is None:
            frames = provenance.get("binned_frames", [])
            parts = [[[p[name] for name in _PART_FIELDS] for p in f["parts"]] for f in frames]
        parts = np.asarray(parts, dtype=np.int64)
        if not parts.size:
            parts = np.zeros((0, 0, len(_PART_FIELDS)), dtype=np.int64)
        patches, index = np.unique(parts.reshape(-1, len(_PART_FIELDS)), axis=0, return_inverse=True)
        index = index.reshape(parts.shape[:2])
    frames = _binned_frames_json(patches, index)
    return head[:-2] + ',\n "binned_frames": [\n' + frames + "\n ]\n}\n"


def _binned_frames_json(patches: np.ndarray, index: np.ndarray) -> str:
    """The ``binned_frames`` lines of :func:`provenance_json`: each patch's text is formatted once, then all lines
    are filled with one ``%`` operation."""
    index = np.asarray(index, dtype=np.int64)
    if not index.size:
        return ""
    n_frames, n_parts = index.shape
    part = '{"measurement": %d, "frame": %d, "row": %d, "column": %d, "n_locs": %d}'
    texts = np.array([part % tuple(row) for row in np.asarray(patches, dtype=np.int64).tolist()], dtype=object)
    cells = np.empty((n_frames, n_parts + 1), dtype=object)
    cells[:, 0] = np.arange(1, n_frames + 1).tolist()
    cells[:, 1:] = texts[index]
    line = '  {"binned_frame": %d, "parts": [' + ", ".join(["%s"] * n_parts) + "]}"
    return ",\n".join([line] * n_frames) % tuple(cells.ravel().tolist())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


__all__ = ["Binner", "BinnedFrame", "Measurement", "provenance_json"]
