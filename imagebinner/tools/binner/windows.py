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
    ends = np.cumsum(lengths)
    first = ends - lengths
    idx = np.arange(total, dtype=np.int64) + np.repeat(starts - first, lengths)
    # a localization is inside iff 0 <= its row - window row < size (one unsigned comparison per axis)
    dy = np.asarray(loc_rows, dtype=np.int64)[idx] - np.repeat(np.asarray(rows, dtype=np.int64), lengths)
    dx = np.asarray(loc_cols, dtype=np.int64)[idx] - np.repeat(np.asarray(cols, dtype=np.int64), lengths)
    inside = (dy.view(np.uint64) < size) & (dx.view(np.uint64) < size)
    cumulative = np.concatenate([[0], np.cumsum(inside, dtype=np.int64)])
    return cumulative[ends] - cumulative[first]


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
    # frames of equal localization count k at once: (frames, k, k) pair tests, at most ~max_pairs per batch
    order = small[np.argsort(lengths[small], kind="stable")]
    counts = lengths[order]
    bounds = np.flatnonzero(np.diff(counts)) + 1
    for group in np.split(order, bounds):
        if not len(group):
            continue
        k = int(lengths[group[0]])
        per_batch = max(1, max_pairs // (k * k))
        for begin in range(0, len(group), per_batch):
            frames = group[begin : begin + per_batch]
            locs = starts[frames][:, None] + np.arange(k)
            rows, cols = loc_rows[locs], loc_cols[locs]
            if np.abs(rows).max() < 2**30 and np.abs(cols).max() < 2**30:  # always, for pixel indices
                rows, cols = rows.astype(np.int32), cols.astype(np.int32)  # half the memory traffic, exact
            near = (np.abs(rows[:, :, None] - rows[:, None, :]) < size) & (
                np.abs(cols[:, :, None] - cols[:, None, :]) < size
            )
            # neighbours of each localization, itself included; the frame may qualify if one has enough
            result[frames] = near.sum(axis=2).max(axis=1) >= min_emitters
    return result


_GRID_BUDGET = 1 << 19  # grid cells per vectorised batch of frames (a few int64 arrays of it: ~20 MB at most)
_GRID_MAX_LOCS = 128  # frames with more localizations go through qualifying_cells (summed-area table when cheaper)


def _frame_rows(starts: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """``(F, width)`` global row numbers of each frame's localizations, padded with -1."""
    slot = np.arange(width)
    rows = starts[:, None] + slot[None, :]
    return np.where(slot[None, :] < lengths[:, None], rows, -1)


def _qualifying_grids(
    starts: np.ndarray,
    lengths: np.ndarray,
    n_rows: np.ndarray,
    n_cols: np.ndarray,
    loc_rows: np.ndarray,
    loc_cols: np.ndarray,
    size: int,
    min_emitters: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised :func:`qualifying_cells` of ``F`` frames on a shared compressed grid per frame.

    Returns ``ys (F, G)``, ``xs (F, G)`` (each frame's sorted rectangle edges, duplicates and padding included) and
    ``areas (F, (G-1)*(G-1))``: the number of qualifying windows in each grid cell, row-major (zero for cells that do
    not qualify and for the empty slivers between duplicate edges). The qualifying cells with a positive area are
    exactly those of :func:`qualifying_cells`, in the same order. Needs ``min_emitters >= 1``.
    """
    n_frames = len(starts)
    width = int(lengths.max(initial=1))
    rows = _frame_rows(starts, lengths, width)
    pad = rows < 0
    py = np.where(pad, 0, loc_rows[np.maximum(rows, 0)])
    px = np.where(pad, 0, loc_cols[np.maximum(rows, 0)])
    nr, nc = n_rows[:, None], n_cols[:, None]
    # window corners whose window contains a loc: [py-P+1, py] x [px-P+1, px]; padding = empty rectangles at 0
    r_lo = np.where(pad, 0, np.maximum(py - size + 1, 0))
    r_hi = np.where(pad, 0, np.minimum(py, nr - 1) + 1)
    c_lo = np.where(pad, 0, np.maximum(px - size + 1, 0))
    c_hi = np.where(pad, 0, np.minimum(px, nc - 1) + 1)
    g = 2 * width
    ys = np.sort(np.concatenate([r_lo, r_hi], axis=1), axis=1)
    xs = np.sort(np.concatenate([c_lo, c_hi], axis=1), axis=1)
    # per-frame searchsorted on one flat array: frames are shifted apart by more than any coordinate
    span = int(max(ys[:, -1].max(initial=0), xs[:, -1].max(initial=0))) + 1
    shift = (np.arange(n_frames, dtype=np.int64) * span)[:, None]
    base = (np.arange(n_frames, dtype=np.int64) * g)[:, None]
    flat_ys, flat_xs = (ys + shift).ravel(), (xs + shift).ravel()
    a = np.searchsorted(flat_ys, r_lo + shift) - base
    b = np.searchsorted(flat_ys, r_hi + shift) - base
    c = np.searchsorted(flat_xs, c_lo + shift) - base
    d = np.searchsorted(flat_xs, c_hi + shift) - base
    frame = np.arange(n_frames, dtype=np.int64)[:, None] * (g * g)
    plus = np.concatenate([frame + a * g + c, frame + b * g + d], axis=1).ravel()
    minus = np.concatenate([frame + b * g + c, frame + a * g + d], axis=1).ravel()
    size_all = n_frames * g * g
    diff = np.bincount(plus, minlength=size_all) - np.bincount(minus, minlength=size_all)
    cover = diff.astype(np.int32).reshape(n_frames, g, g).cumsum(2, dtype=np.int32).cumsum(1, dtype=np.int32)
    cover = cover[:, :-1, :-1]
    dy, dx = np.diff(ys, axis=1), np.diff(xs, axis=1)
    areas = np.where(cover >= min_emitters, dy[:, :, None] * dx[:, None, :], 0).reshape(n_frames, -1)
    return ys, xs, areas


def _grid_batches(lengths: np.ndarray, eligible: np.ndarray):
    """Index batches of the ``eligible`` frames, grouped by localization count, each within ``_GRID_BUDGET``
    grid cells (a frame of ``k`` localizations takes ``(2k)^2``)."""
    frames = np.flatnonzero(eligible)
    frames = frames[np.argsort(lengths[frames], kind="stable")]
    cost = 4 * np.maximum(lengths[frames], 1) ** 2  # non-decreasing
    start = 0
    while start < len(frames):
        horizon = min(len(frames), start + _GRID_BUDGET // int(cost[start]) + 1)
        # a batch's grid width is set by its last (largest) frame: n * cost[last] must stay within the budget
        batch_cost = np.arange(1, horizon - start + 1) * cost[start:horizon]
        stop = start + max(int(np.searchsorted(batch_cost, _GRID_BUDGET, side="right")), 1)
        yield frames[start:stop]
        start = stop


def _use_grid(lengths: np.ndarray, heights: np.ndarray, widths: np.ndarray) -> np.ndarray:
    return (lengths <= _GRID_MAX_LOCS) & (4 * lengths * lengths <= heights * widths)


def count_qualifying_per_frame(
    starts: np.ndarray,
    stops: np.ndarray,
    heights: np.ndarray,
    widths: np.ndarray,
    loc_rows: np.ndarray,
    loc_cols: np.ndarray,
    size: int,
    min_emitters: int,
) -> np.ndarray:
    """Exact number of qualifying windows in each of ``F`` frames (rows ``starts[f]:stops[f]``, frame size
    ``heights[f] x widths[f]``), vectorised over frames; equals :func:`count_qualifying_windows` frame by frame."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(stops, dtype=np.int64) - starts
    heights = np.asarray(heights, dtype=np.int64)
    widths = np.asarray(widths, dtype=np.int64)
    n_rows, n_cols = heights - size + 1, widths - size + 1
    valid = (n_rows > 0) & (n_cols > 0)
    if min_emitters <= 0:
        return np.where(valid, n_rows * n_cols, 0)
    counts = np.zeros(len(starts), dtype=np.int64)
    active = valid & (lengths >= min_emitters)
    grid = active & _use_grid(lengths, heights, widths)
    for batch in _grid_batches(lengths, grid):
        _, _, areas = _qualifying_grids(
            starts[batch], lengths[batch], n_rows[batch], n_cols[batch], loc_rows, loc_cols, size, min_emitters
        )
        counts[batch] = areas.sum(axis=1)
    for f in np.flatnonzero(active & ~grid):
        sl = slice(int(starts[f]), int(starts[f] + lengths[f]))
        cells = qualifying_cells(loc_rows[sl], loc_cols[sl], int(heights[f]), int(widths[f]), size, min_emitters)
        counts[f] = cell_areas(cells).sum()
    return counts


def qualifying_windows_at(
    frames: np.ndarray,
    within: np.ndarray,
    starts: np.ndarray,
    stops: np.ndarray,
    heights: np.ndarray,
    widths: np.ndarray,
    loc_rows: np.ndarray,
    loc_cols: np.ndarray,
    size: int,
    min_emitters: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the qualifying windows number ``within[d]`` of frame ``frames[d]`` (per-frame arrays
    ``starts``... indexed by ``frames``), vectorised; identical to :func:`window_at` on :func:`qualifying_cells`."""
    frames = np.asarray(frames, dtype=np.int64)
    within = np.asarray(within, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(stops, dtype=np.int64) - starts
    heights = np.asarray(heights, dtype=np.int64)
    widths = np.asarray(widths, dtype=np.int64)
    rows = np.empty(len(frames), np.int64)
    cols = np.empty(len(frames), np.int64)
    unique, inverse = np.unique(frames, return_inverse=True)
    n_rows, n_cols = heights[unique] - size + 1, widths[unique] - size + 1
    if min_emitters <= 0:
        rows[:], cols[:] = np.divmod(within, n_cols[inverse])
        return rows, cols
    grid = _use_grid(lengths[unique], heights[unique], widths[unique])
    for batch in _grid_batches(lengths[unique], grid):
        f = unique[batch]
        ys, xs, areas = _qualifying_grids(
            starts[f], lengths[f], n_rows[batch], n_cols[batch], loc_rows, loc_cols, size, min_emitters
        )
        slot = np.full(len(unique), -1)
        slot[batch] = np.arange(len(batch))
        sel = np.flatnonzero(slot[inverse] >= 0)
        k = slot[inverse[sel]]
        ends = areas.cumsum(axis=1)
        n_cells = ends.shape[1]
        # per-frame searchsorted (side="right") on the flattened, frame-shifted cumulative areas
        shift = (np.arange(len(batch), dtype=np.int64) * (int(ends[:, -1].max(initial=0)) + 1))[:, None]
        cell = np.searchsorted((ends + shift).ravel(), within[sel] + shift[k, 0], side="right") - k * n_cells
        inside = within[sel] - (ends[k, cell] - areas[k, cell])
        g = xs.shape[1] - 1
        i, j = np.divmod(cell, g)
        cell_width = xs[k, j + 1] - xs[k, j]
        rows[sel] = ys[k, i] + inside // cell_width
        cols[sel] = xs[k, j] + inside % cell_width
    for b in np.flatnonzero(~grid):
        f = unique[b]
        sl = slice(int(starts[f]), int(starts[f] + lengths[f]))
        cells = qualifying_cells(loc_rows[sl], loc_cols[sl], int(heights[f]), int(widths[f]), size, min_emitters)
        sel = inverse == b
        rows[sel], cols[sel] = window_at(cells, within[sel])
    return rows, cols
