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

import dataclasses
import json
import warnings
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
    cell_areas,
    frames_may_qualify,
    qualifying_cells,
    window_at,
    pixel_indices,
    window_counts,
    windows_overlap,
)

_ELEMENTS_PER_BATCH = 200_000  # localization-window tests per vectorised batch (bounded memory)
_OUTPUT_SUFFIXES = (".tif", ".tiff", ".csv", ".json")
_PART_FIELDS = ("measurement", "frame", "row", "column", "n_locs")
_PATCH_CACHE_BYTES = 64 * 2**20  # pool patches kept in memory while writing (read on demand beyond)


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
        self._cells_cache: dict[int, np.ndarray] = {}

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
        offsets = np.searchsorted(table.frame, np.arange(movie.n_frames + 1), side="left")
        return Measurement(index, movie.path, locs_path, movie, table, offsets, n_out)

    def _build_global_index(self) -> None:
        """Concatenate all tables once: pixel indices and label columns addressed by global row numbers."""
        ms = self._loaded or []
        ps = self._ps
        bases = np.cumsum([0] + [len(m.table) for m in ms])
        self._bases = bases
        self._gx = np.concatenate([m.table.x for m in ms]) if ms else np.empty(0)
        self._gy = np.concatenate([m.table.y for m in ms]) if ms else np.empty(0)
        self._gpx = pixel_indices(self._gx, ps)
        self._gpy = pixel_indices(self._gy, ps)
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
        pool_keys: set[tuple[int, int, int, int]] = set()
        pool: list[tuple[int, int, int, int, int]] = []
        draws = accepted = 0
        # 1) rejection sampling: uniform windows of the candidate frames, tested in vectorised batches
        while len(pool) < need and draws < self.max_attempts:
            rate = (accepted + 1) / (draws + 1)
            batch = int(min((need - len(pool)) / rate * 1.5 + 256, _ELEMENTS_PER_BATCH / max(mean_locs, 1.0)))
            batch = max(1, min(batch, self.max_attempts - draws))
            r = rng.integers(0, cand_windows, size=batch)
            c = np.searchsorted(cum, r, side="right")
            within = r - (cum[c] - c_nwin[c])
            rows, cols = np.divmod(within, c_ncols[c])
            counts = window_counts(c_start[c], c_stop[c], rows, cols, self._gpy, self._gpx, P)
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
            q = self._qualifying_per_candidate(c_meas, c_frame, c_start, c_stop)
            qualifying = int(q.sum())
            if qualifying < need:
                self._fail_pool(need, qualifying, total_windows)
            self._draw_exact(rng, q, c_meas, c_frame, c_start, c_stop, need, pool, pool_keys)
            self._cells_cache = {}

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
        self._update(seed_used=seed)
        self._update(stats=self.statistics())
        return self._pool

    def _fail_pool(self, need: int, qualifying: int, total: int) -> None:
        P, emin = self.patch_size, self.min_emitters
        raise ParameterError(
            f"cannot fill a pool of n_patches={need} {P}x{P} px patches: only {qualifying} of {total} windows hold "
            f">= {emin} localizations; lower min_emitters, use a smaller n_patches, or a larger patch_size"
        )

    def _frame_cells(self, i: int, start: int, stop: int) -> np.ndarray:
        height, width = self._loaded[i].shape
        sl = slice(int(start), int(stop))
        return qualifying_cells(self._gpy[sl], self._gpx[sl], height, width, self.patch_size, self.min_emitters)

    def _qualifying_per_candidate(self, c_meas, c_frame, c_start, c_stop) -> np.ndarray:
        """Exact number of qualifying windows in each candidate frame (cheap pair filter first)."""
        q = np.zeros(len(c_meas), dtype=np.int64)
        maybe = frames_may_qualify(c_start, c_stop, self._gpy, self._gpx, self.patch_size, self.min_emitters)
        self._cells_cache = {}
        for k in np.flatnonzero(maybe):
            cells = self._frame_cells(c_meas[k], c_start[k], c_stop[k])
            q[k] = cell_areas(cells).sum()
            if len(cells) <= 4096:  # small: keep for the exact draw
                self._cells_cache[int(k)] = cells
        return q

    def _draw_exact(self, rng, q, c_meas, c_frame, c_start, c_stop, need, pool, pool_keys) -> None:
        """Add distinct windows drawn uniformly among the qualifying ones until the pool holds ``need``."""
        total = int(q.sum())
        ends = np.cumsum(q)
        cells_cache = self._cells_cache

        def windows(numbers: np.ndarray):
            c = np.searchsorted(ends, numbers, side="right")
            within = numbers - (ends[c] - q[c])
            rows = np.empty(len(numbers), np.int64)
            cols = np.empty(len(numbers), np.int64)
            for cand in np.unique(c):
                cells = cells_cache.get(int(cand))
                if cells is None:
                    cells = self._frame_cells(c_meas[cand], c_start[cand], c_stop[cand])
                    if len(cells) <= 4096:  # large ones (dense frames) are recomputed: bounded memory
                        cells_cache[int(cand)] = cells
                sel = c == cand
                rows[sel], cols[sel] = window_at(cells, within[sel])
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
            for k in range(len(numbers)):
                wkey = (int(c_meas[c[k]]), int(c_frame[c[k]]), int(rows[k]), int(cols[k]))
                if wkey not in pool_keys:
                    pool_keys.add(wkey)
                    pool.append((*wkey, int(counts[k])))
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
        pool = self.draw_pool()
        key = (self._pool_key, self.n_binned, self.bin_size, self.reuse_patches)
        if self._plan is not None and key == self._plan_key:
            return self._plan
        rng = np.random.default_rng([int(self.seed_used), 1])
        B = self.bin_size
        n_pool = len(pool["frame"])
        conflicts = self._conflicts(pool)
        plan = np.empty((self.n_binned, B), dtype=np.int64)
        remaining = None if self.reuse_patches else rng.permutation(n_pool).tolist()
        for j in range(self.n_binned):
            order = rng.permutation(n_pool).tolist() if remaining is None else remaining
            head = order[:B]
            if len(head) == B and not any(k in conflicts for k in head):
                chosen = head  # the greedy choice below, without the loop
            else:
                chosen = []
                blocked: set[int] = set()
                for idx in order:
                    if idx in blocked:
                        continue
                    chosen.append(idx)
                    blocked |= conflicts.get(idx, set())
                    if len(chosen) == B:
                        break
            if len(chosen) < B:
                raise ParameterError(
                    f"binned frame {j + 1}: cannot find bin_size={B} pool patches without overlapping windows of "
                    "the same frame; raise n_patches, lower bin_size, use a smaller patch_size or allow "
                    "reuse_patches"
                )
            plan[j] = chosen
            if remaining is not None:
                taken = set(chosen)
                remaining = [k for k in remaining if k not in taken]
        self._plan, self._plan_key = plan, key
        self._update(stats=self.statistics())
        return plan

    def _conflicts(self, pool: dict[str, np.ndarray]) -> dict[int, set[int]]:
        """Pool patches whose windows overlap another pool window of the same (measurement, frame)."""
        P = self.patch_size
        key = pool["measurement"] * (int(pool["frame"].max(initial=0)) + 1) + pool["frame"]
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        bounds = np.flatnonzero(np.diff(sorted_key)) + 1
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
        wide = self._wide_dtype()
        self._patch_cache = None
        if len(indices) * self.patch_size**2 * wide.itemsize > _PATCH_CACHE_BYTES:
            return
        order = np.lexsort((pool["row"][indices], pool["frame"][indices], pool["measurement"][indices]))
        for meas in self._loaded:
            mine = indices[pool["measurement"][indices] == meas.index]
            if len(mine) and hasattr(meas.movie, "advise_windows"):
                meas.movie.advise_windows(
                    zip(pool["frame"][mine], pool["row"][mine], pool["column"][mine]), self.patch_size
                )
        stack = np.zeros((len(pool["frame"]), self.patch_size, self.patch_size), dtype=wide)
        for idx in indices[order]:
            stack[idx] = self._patch_image(pool, int(idx))
        self._patch_cache = {"key": self._pool_key, "stack": stack}

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

    def _iter_binned_images(self, plan: np.ndarray, chunk: int = 64):
        """Yield ``(j, image, clipped)`` for every binned frame; summed in chunks when the patches are cached."""
        cache = self._patch_cache
        if cache is None or cache["key"] != self._pool_key:
            for j in range(len(plan)):
                frame = self._binned_frame(plan, j, with_locs=False)
                yield j, frame.image, frame.clipped
            return
        wide = cache["stack"].dtype
        offset = self.camera_offset * (self.bin_size - 1)
        integral = wide.kind == "i" and float(offset).is_integer()
        dtype = self.output_dtype
        for start in range(0, len(plan), chunk):
            sums = cache["stack"][plan[start : start + chunk]].sum(axis=1, dtype=wide)
            if integral:
                sums -= int(offset)
            else:
                sums = sums.astype(np.float64) - offset
            images, _ = to_output_dtype(sums, dtype)
            if dtype == "uint16":
                clipped = ((sums < 0) | (sums > 65535)).sum(axis=(1, 2)).tolist()
            else:
                clipped = [0] * len(sums)
            for k in range(len(sums)):
                yield start + k, images[k], clipped[k]

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
        per_patch = [self._patch_locs(pool, int(k)) for k in used]
        lengths = np.zeros(len(pool["frame"]), dtype=np.int64)
        lengths[used] = [len(p["x"]) for p in per_patch]
        starts = np.zeros_like(lengths)
        starts[used] = np.cumsum(lengths[used]) - lengths[used]
        flat = plan.ravel()
        n_each = lengths[flat]
        total = int(n_each.sum())
        rows = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(n_each) - n_each, n_each)
        rows += np.repeat(starts[flat], n_each)
        cols = {name: np.concatenate([p[name] for p in per_patch])[rows] for name in per_patch[0]}
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
        plan, pool = self.compose(), self._pool
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
        """Write the binned TIF (streamed), the DeepSTORM training CSV and the JSON provenance, atomically."""
        from imagebinner.io import write_locs

        targets = self.check_outputs()
        ms = self.load()
        self._check_settings(ms)
        with self._job(self.n_binned + 2, status="drawing the patch pool"):
            self.draw_pool()
            self._advance()
            plan = self.compose()
            labels = self.binned_locs()
            provenance = self.provenance(frames=False)
            self._advance()
            self._update(status="writing binned frames")
            clipped = 0
            with atomic_group(targets, overwrite=self.overwrite) as (tmp_tif, tmp_csv, tmp_json):
                writer = TifWriter(tmp_tif, pixel_size=self._ps, dtype=self.output_dtype, overwrite=True)

                self._prefetch(self._pool, plan.ravel())

                every = max(1, len(plan) // 20)  # progress updates cost a param event each (~0.5 ms)

                def frames():
                    nonlocal clipped
                    for j, image, n_clipped in self._iter_binned_images(plan):
                        clipped += n_clipped
                        if (j + 1) % every == 0 or j + 1 == len(plan):
                            self._advance(j + 1 - (self.progress - 2))
                        yield image

                with writer:
                    writer.write_stream(frames(), len(plan))
                write_locs(labels, tmp_csv, format="deepstorm", overwrite=True)
                provenance["outputs"] = {
                    "tif": targets[0].name,
                    "csv": targets[1].name,
                    "clipped_pixels": int(clipped),
                    "n_labels": int(len(labels)),
                }
                tmp_json.write_text(provenance_json(provenance, self._parts_table()))
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


def provenance_json(provenance: dict, parts: np.ndarray | None = None) -> str:
    """The provenance as JSON text: indented, one line per binned frame (fast to write, easy to read).

    ``parts`` (``(n_binned, bin_size, 5)``, see :meth:`Binner._parts_table`) replaces ``provenance["binned_frames"]``.
    """
    rest = {k: v for k, v in provenance.items() if k != "binned_frames"}
    head = json.dumps(rest, indent=1, default=_json_default)
    if parts is None:
        parts = np.array(
            [[[p[name] for name in _PART_FIELDS] for p in f["parts"]] for f in provenance.get("binned_frames", [])],
            dtype=np.int64,
        )
    part = '{"measurement": %d, "frame": %d, "row": %d, "column": %d, "n_locs": %d}'
    frames = ",\n".join(
        '  {"binned_frame": %d, "parts": [' % (j + 1) + ", ".join(part % tuple(p) for p in frame) + "]}"
        for j, frame in enumerate(parts.tolist())
    )
    return head[:-2] + ',\n "binned_frames": [\n' + frames + "\n ]\n}\n"


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
