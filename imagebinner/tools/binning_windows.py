"""Window arithmetic for the Binner: vectorised membership counts and exact counts of qualifying windows.

A window ``(n, m)`` of size ``P`` covers camera rows ``n..n+P-1`` and columns ``m..m+P-1``; a localization with
pixel indices ``(py, px)`` (``px = floor(x/ps)``) belongs to it iff ``m <= px < m+P`` and ``n <= py < n+P``.
"""

from __future__ import annotations

import numpy as np


def pixel_indices(coords_nm: np.ndarray, pixel_size: float) -> np.ndarray:
    """``floor(coord / ps)`` as int64, corrected so that ``idx*ps <= coord < (idx+1)*ps`` holds in floating point.

    The correction makes pixel membership agree exactly with the local coordinate ``coord - m*ps`` being in
    ``[0, P*ps)`` (no float rounding can put a member localization a hair outside its patch).
    """
    coords = np.asarray(coords_nm, dtype=np.float64)
    idx = np.floor(coords / pixel_size).astype(np.int64)
    idx -= coords < idx * pixel_size
    idx += coords >= (idx + 1) * pixel_size
    return idx


def window_counts(
    starts: np.ndarray,
    stops: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    loc_rows: np.ndarray,
    loc_cols: np.ndarray,
    size: int,
) -> np.ndarray:
    """Localizations inside each of ``D`` windows, vectorised over all windows at once.

    Window ``d`` looks at localizations ``starts[d]:stops[d]`` (the rows of its frame) with pixel indices
    ``loc_rows``/``loc_cols`` and covers rows ``rows[d]..rows[d]+size-1``, columns ``cols[d]..cols[d]+size-1``.
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(stops, dtype=np.int64) - starts
    n_windows = len(starts)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(n_windows, dtype=np.int64)
    owner = np.repeat(np.arange(n_windows), lengths)
    first = np.cumsum(lengths) - lengths
    idx = np.arange(total, dtype=np.int64) - np.repeat(first, lengths) + np.repeat(starts, lengths)
    py = loc_rows[idx]
    px = loc_cols[idx]
    r = np.asarray(rows, dtype=np.int64)[owner]
    c = np.asarray(cols, dtype=np.int64)[owner]
    inside = (py >= r) & (py < r + size) & (px >= c) & (px < c + size)
    return np.bincount(owner[inside], minlength=n_windows)


def qualifying_cells(
    loc_rows: np.ndarray, loc_cols: np.ndarray, height: int, width: int, size: int, min_emitters: int
) -> np.ndarray:
    """The windows ``(n, m)`` of one frame holding at least ``min_emitters`` localizations, as disjoint rectangles.

    Returns an ``(R, 4)`` int64 array of ``row0, row1, col0, col1`` (ends exclusive): the qualifying window corners
    are exactly the union of ``[row0, row1) x [col0, col1)``. Localizations must lie inside the image. Uses the
    rectangles of window corners that contain each localization on compressed coordinates (cost ~ k^2 for k
    localizations), or a summed-area table of pixel counts when that is cheaper (cost ~ height*width).
    """
    n_rows, n_cols = height - size + 1, width - size + 1
    empty = np.empty((0, 4), dtype=np.int64)
    if n_rows <= 0 or n_cols <= 0:
        return empty
    if min_emitters <= 0:
        return np.array([[0, n_rows, 0, n_cols]], dtype=np.int64)
    k = len(loc_rows)
    if k < min_emitters:
        return empty
    py = np.asarray(loc_rows, dtype=np.int64)
    px = np.asarray(loc_cols, dtype=np.int64)
    if 4 * k * k > height * width:
        counts = np.zeros((height + 1, width + 1), dtype=np.int64)
        np.add.at(counts, (py + 1, px + 1), 1)
        sat = counts.cumsum(0).cumsum(1)
        s = size
        sums = sat[s:, s:] - sat[:-s, s:] - sat[s:, :-s] + sat[:-s, :-s]
        rows, cols = np.nonzero(sums >= min_emitters)
        return np.stack([rows, rows + 1, cols, cols + 1], axis=1).astype(np.int64)
    # window corners (n, m) whose window contains a loc form the rectangle [py-P+1, py] x [px-P+1, px]
    r_lo = np.maximum(py - size + 1, 0)
    r_hi = np.minimum(py, n_rows - 1) + 1  # exclusive
    c_lo = np.maximum(px - size + 1, 0)
    c_hi = np.minimum(px, n_cols - 1) + 1
    ys = np.unique(np.concatenate([r_lo, r_hi]))
    xs = np.unique(np.concatenate([c_lo, c_hi]))
    diff = np.zeros((len(ys), len(xs)), dtype=np.int64)
    a, b = np.searchsorted(ys, r_lo), np.searchsorted(ys, r_hi)
    c, d = np.searchsorted(xs, c_lo), np.searchsorted(xs, c_hi)
    np.add.at(diff, (a, c), 1)
    np.add.at(diff, (b, c), -1)
    np.add.at(diff, (a, d), -1)
    np.add.at(diff, (b, d), 1)
    cover = diff.cumsum(0).cumsum(1)[:-1, :-1]
    ia, ib = np.nonzero(cover >= min_emitters)
    return np.stack([ys[ia], ys[ia + 1], xs[ib], xs[ib + 1]], axis=1).astype(np.int64)


def cell_areas(cells: np.ndarray) -> np.ndarray:
    """Number of windows in each rectangle of :func:`qualifying_cells`."""
    return (cells[:, 1] - cells[:, 0]) * (cells[:, 3] - cells[:, 2])


def window_at(cells: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the qualifying windows number ``index`` (0 <= index < total area), cell by cell."""
    areas = cell_areas(cells)
    ends = np.cumsum(areas)
    index = np.asarray(index, dtype=np.int64)
    cell = np.searchsorted(ends, index, side="right")
    within = index - (ends[cell] - areas[cell])
    widths = cells[cell, 3] - cells[cell, 2]
    return cells[cell, 0] + within // widths, cells[cell, 2] + within % widths


def count_qualifying_windows(
    loc_rows: np.ndarray, loc_cols: np.ndarray, height: int, width: int, size: int, min_emitters: int
) -> int:
    """Exact number of windows ``(n, m)`` of one frame holding at least ``min_emitters`` localizations."""
    return int(cell_areas(qualifying_cells(loc_rows, loc_cols, height, width, size, min_emitters)).sum())


def windows_overlap(row_a: int, col_a: int, row_b: np.ndarray, col_b: np.ndarray, size: int) -> np.ndarray:
    """Whether window ``(row_a, col_a)`` shares a pixel with each window ``(row_b, col_b)`` (same size)."""
    return (np.abs(np.asarray(row_b) - row_a) < size) & (np.abs(np.asarray(col_b) - col_a) < size)


def frames_may_qualify(
    starts: np.ndarray,
    stops: np.ndarray,
    loc_rows: np.ndarray,
    loc_cols: np.ndarray,
    size: int,
    min_emitters: int,
    max_locs: int = 64,
    max_pairs: int = 2_000_000,
) -> np.ndarray:
    """Cheap vectorised filter: False for frames where no window can hold ``min_emitters`` localizations.

    A frame can only qualify if one of its localizations has at least ``min_emitters - 1`` others within
    ``|d row| < size`` and ``|d col| < size``. Tested on all pairs of each frame's localizations at once for frames
    with at most ``max_locs`` of them (larger frames are reported as True and must be counted exactly).
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(stops, dtype=np.int64) - starts
    result = lengths >= max(min_emitters, 0)
    if min_emitters <= 1:
        return result
    small = np.flatnonzero(result & (lengths <= max_locs))
    chunk: list[int] = []
    pairs = 0

    def flush(frames: list[int]) -> None:
        if not frames:
            return
        fr = np.asarray(frames)
        lens, firsts = lengths[fr], starts[fr]
        # every localization of these frames, with its frame's first row and length
        locs = np.repeat(firsts, lens) + (np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens))
        loc_len = np.repeat(lens, lens)
        loc_first = np.repeat(firsts, lens)
        # all (loc, partner) pairs inside the same frame
        a = np.repeat(np.arange(len(locs)), loc_len)
        partner = np.repeat(loc_first, loc_len) + (np.arange(len(a)) - np.repeat(np.cumsum(loc_len) - loc_len, loc_len))
        near = (np.abs(loc_rows[locs[a]] - loc_rows[partner]) < size) & (
            np.abs(loc_cols[locs[a]] - loc_cols[partner]) < size
        )
        neighbours = np.bincount(a, weights=near, minlength=len(locs))  # includes the localization itself
        frame_of_loc = np.repeat(np.arange(len(fr)), lens)
        best = np.zeros(len(fr))
        np.maximum.at(best, frame_of_loc, neighbours)
        result[fr] = best >= min_emitters

    for f in small:
        chunk.append(int(f))
        pairs += int(lengths[f]) ** 2
        if pairs >= max_pairs:
            flush(chunk)
            chunk, pairs = [], 0
    flush(chunk)
    return result
