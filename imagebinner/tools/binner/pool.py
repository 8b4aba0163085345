"""Drawing the patch pool: a pure function of the global index, the draw settings and a random generator.

A *patch* is rows ``n..n+P-1`` and columns ``m..m+P-1`` of frame ``f`` of measurement ``i``; windows are drawn
uniformly over all valid ``(i, f, n, m)`` (every frame, the last one included), conditioned on holding at least
``min_emitters`` localizations. The pool holds ``n_patches`` distinct such windows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from imagebinner.errors import ParameterError
from imagebinner.tools.binner.inputs import GlobalIndex
from imagebinner.tools.binner.windows import (
    count_qualifying_per_frame,
    frames_may_qualify,
    qualifying_windows_at,
    window_counts,
)

ELEMENTS_PER_BATCH = 200_000  # localization-window tests per vectorised batch (bounded memory)
PART_FIELDS = ("measurement", "frame", "row", "column", "n_locs")


@dataclasses.dataclass(frozen=True, eq=False)
class Pool:
    """The drawn pool: per patch its measurement, frame, top-left row and column and its localizations (int64,
    read-only), the seed it was drawn with and the statistics of the draw."""

    measurement: np.ndarray
    frame: np.ndarray
    row: np.ndarray
    column: np.ndarray
    n_locs: np.ndarray
    seed: int
    draw_stats: dict

    def __post_init__(self) -> None:
        for name in PART_FIELDS:
            values = np.array(getattr(self, name), dtype=np.int64)
            values.setflags(write=False)
            object.__setattr__(self, name, values)

    def __len__(self) -> int:
        return len(self.frame)

    def table(self) -> np.ndarray:
        """``(len, 5)`` int64 rows of measurement, frame, row, column, n_locs."""
        return np.stack([getattr(self, name) for name in PART_FIELDS], axis=-1)


@dataclasses.dataclass(frozen=True)
class PoolSettings:
    """What the draw depends on besides the index and the generator."""

    patch_size: int
    n_patches: int
    min_emitters: int
    max_attempts: int
    seed: int  # recorded in the pool (the generator is seeded with it by the caller)


@dataclasses.dataclass(frozen=True, eq=False)
class Candidates:
    """Frames with at least ``min_emitters`` localizations: measurement, frame, global row range, windows per
    frame and window columns per row; ``total_windows`` counts the valid windows of all frames."""

    meas: np.ndarray
    frame: np.ndarray
    start: np.ndarray
    stop: np.ndarray
    n_windows: np.ndarray
    n_cols: np.ndarray
    heights: np.ndarray
    widths: np.ndarray
    total_windows: int

    @classmethod
    def of(cls, index: GlobalIndex, size: int, min_emitters: int) -> Candidates:
        cols = {k: [] for k in ("meas", "frame", "start", "stop", "n_windows", "n_cols")}
        total = 0
        for i, offsets in enumerate(index.offsets):
            height, width = (int(v) for v in index.shapes[i])
            rows, ncols = height - size + 1, width - size + 1
            if rows <= 0 or ncols <= 0:
                continue
            total += int(index.n_frames[i]) * rows * ncols
            frames = np.flatnonzero(np.diff(offsets) >= min_emitters)
            cols["meas"].append(np.full(len(frames), i, dtype=np.int64))
            cols["frame"].append(frames.astype(np.int64))
            cols["start"].append(offsets[frames] + index.bases[i])
            cols["stop"].append(offsets[frames + 1] + index.bases[i])
            cols["n_windows"].append(np.full(len(frames), rows * ncols, dtype=np.int64))
            cols["n_cols"].append(np.full(len(frames), ncols, dtype=np.int64))
        cat = {k: np.concatenate(v).astype(np.int64) if v else np.empty(0, np.int64) for k, v in cols.items()}
        return cls(**cat, heights=index.shapes[cat["meas"], 0], widths=index.shapes[cat["meas"], 1],
                   total_windows=total)

    def may_qualify(self, index: GlobalIndex, size: int, min_emitters: int) -> np.ndarray:
        """False for candidate frames where no window can hold ``min_emitters`` localizations (pair test)."""
        return frames_may_qualify(self.start, self.stop, index.py, index.px, size, min_emitters)

    def qualifying(self, index: GlobalIndex, size: int, min_emitters: int, maybe: np.ndarray | None = None
                   ) -> np.ndarray:
        """Exact number of qualifying windows in each candidate frame (vectorised over frames)."""
        if maybe is None:
            maybe = self.may_qualify(index, size, min_emitters)
        q = np.zeros(len(self.meas), dtype=np.int64)
        q[maybe] = count_qualifying_per_frame(
            self.start[maybe], self.stop[maybe], self.heights[maybe], self.widths[maybe], index.py, index.px, size,
            min_emitters,
        )
        return q


def count_qualifying(index: GlobalIndex, size: int, min_emitters: int) -> int:
    """Exact number of valid windows holding at least ``min_emitters`` localizations (all measurements)."""
    return int(Candidates.of(index, size, min_emitters).qualifying(index, size, min_emitters).sum())


def draw_pool(index: GlobalIndex, settings: PoolSettings, rng: np.random.Generator) -> Pool:
    """Draw ``n_patches`` distinct qualifying windows uniformly.

    Only frames with at least ``min_emitters`` localizations are drawn from, each weighted by its number of valid
    windows, so the draw is uniform over all valid ``(i, f, n, m)`` conditioned on qualifying. Windows are tested
    in vectorised batches (rejection sampling, at most ``max_attempts`` draws); when qualifying windows are rare
    the rest is drawn exactly among them. When too few windows qualify, fails with their exact number.
    """
    P, need, emin = settings.patch_size, settings.n_patches, settings.min_emitters
    cand = Candidates.of(index, P, emin)
    cum = np.cumsum(cand.n_windows)
    cand_windows = int(cum[-1]) if len(cum) else 0
    if cand_windows == 0:
        most = int(max((np.diff(o).max(initial=0) for o in index.offsets), default=0))
        raise ParameterError(
            f"no frame holds min_emitters={emin} localizations (the most in one frame is {most}), so 0 windows "
            "qualify; lower min_emitters",
            params=["min_emitters"],
        )
    if cand_windows < need:
        _fail(settings, count_qualifying(index, P, emin), cand.total_windows)

    mean_locs = float(((cand.stop - cand.start) * cand.n_windows).sum()) / cand_windows
    locate = _window_locator(cand.meas, cand.n_windows)
    pool_keys: set[tuple[int, int, int, int]] = set()
    pool: list[tuple[int, int, int, int, int]] = []
    draws = accepted = 0
    # frames where no window can hold min_emitters localizations (cheap pair test), computed once a batch would
    # cost more to count than the test itself; their draws are rejected without counting
    lengths = cand.stop - cand.start
    filter_cost = int(np.where(lengths <= 64, lengths**2, 0).sum()) + len(lengths)
    maybe: np.ndarray | None = None
    # 1) rejection sampling: uniform windows of the candidate frames, tested in vectorised batches
    while len(pool) < need and draws < settings.max_attempts:
        rate = (accepted + 1) / (draws + 1)
        batch = int(min((need - len(pool)) / rate * 1.5 + 256, ELEMENTS_PER_BATCH / max(mean_locs, 1.0)))
        batch = max(1, min(batch, settings.max_attempts - draws))
        r = rng.integers(0, cand_windows, size=batch)
        c, within = locate(r)
        rows, cols = np.divmod(within, cand.n_cols[c])
        if maybe is None and emin >= 2 and batch * mean_locs > filter_cost:
            maybe = cand.may_qualify(index, P, emin)
        if maybe is None:
            counts = window_counts(cand.start[c], cand.stop[c], rows, cols, index.py, index.px, P)
        else:
            counts = np.zeros(batch, dtype=np.int64)  # < min_emitters: rejected as counting would
            test = np.flatnonzero(maybe[c])
            ct = c[test]
            counts[test] = window_counts(cand.start[ct], cand.stop[ct], rows[test], cols[test], index.py, index.px,
                                         P)
        ok = np.flatnonzero(counts >= emin)
        used = batch
        for k in ok:
            wkey = (int(cand.meas[c[k]]), int(cand.frame[c[k]]), int(rows[k]), int(cols[k]))
            accepted += 1
            if wkey not in pool_keys:
                pool_keys.add(wkey)
                pool.append((*wkey, int(counts[k])))
                if len(pool) == need:
                    used = int(k) + 1
                    break
        draws += used
        missing = need - len(pool)
        hopeless = draws >= 5_000 and missing * draws > (accepted + 1) * (settings.max_attempts - draws)
        if missing > 0 and (hopeless or accepted >= 10 * need + 100):
            break  # rare or few qualifying windows: sample them exactly instead
    # 2) exact sampling among the qualifying windows themselves (sparse data, or too few of them)
    qualifying = None
    if len(pool) < need:
        q = cand.qualifying(index, P, emin, maybe)
        qualifying = int(q.sum())
        if qualifying < need:
            _fail(settings, qualifying, cand.total_windows)
        _draw_exact(index, cand, settings, rng, q, pool, pool_keys)

    arr = np.array(pool, dtype=np.int64).reshape(-1, 5)
    stats = {
        "draws": int(draws),
        "accepted": int(accepted),
        "acceptance_rate": accepted / draws if draws else 0.0,
        "candidate_windows": cand_windows,
        "valid_windows": int(cand.total_windows),
        "candidate_frames": int(len(cand.frame)),
        "mode": "rejection" if qualifying is None else "rejection + exact",
        "qualifying_windows": qualifying,
    }
    return Pool(*arr.T, seed=int(settings.seed), draw_stats=stats)


def _fail(settings: PoolSettings, qualifying: int, total: int) -> None:
    P, emin = settings.patch_size, settings.min_emitters
    raise ParameterError(
        f"cannot fill a pool of n_patches={settings.n_patches} {P}x{P} px patches: only {qualifying} of {total} "
        f"windows hold >= {emin} localizations; lower min_emitters, use a smaller n_patches, or a larger patch_size",
        params=["n_patches", "min_emitters", "patch_size"],
    )


def _draw_exact(index: GlobalIndex, cand: Candidates, settings: PoolSettings, rng: np.random.Generator,
                q: np.ndarray, pool: list, pool_keys: set) -> None:
    """Add distinct windows drawn uniformly among the qualifying ones until the pool holds ``n_patches``."""
    P, need, emin = settings.patch_size, settings.n_patches, settings.min_emitters
    total = int(q.sum())
    ends = np.cumsum(q)

    def windows(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = np.searchsorted(ends, numbers, side="right")
        within = numbers - (ends[c] - q[c])
        rows, cols = qualifying_windows_at(c, within, cand.start, cand.stop, cand.heights, cand.widths, index.py,
                                           index.px, P, emin)
        return c, rows, cols

    batches = [rng.permutation(total)] if total <= 20 * need else None  # few: a permutation of all of them
    while len(pool) < need:
        numbers = batches.pop(0) if batches is not None else rng.integers(0, total, 2 * (need - len(pool)) + 16)
        c, rows, cols = windows(numbers)
        counts = window_counts(cand.start[c], cand.stop[c], rows, cols, index.py, index.px, P)
        keys = np.stack([cand.meas[c], cand.frame[c], rows, cols, counts], axis=1).tolist()
        for key in keys:
            wkey = tuple(key[:4])
            if wkey not in pool_keys:
                pool_keys.add(wkey)
                pool.append(tuple(key))
                if len(pool) == need:
                    return


def _window_locator(c_meas: np.ndarray, c_nwin: np.ndarray) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
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
