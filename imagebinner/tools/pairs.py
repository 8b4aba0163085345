"""Candidate pairs (same frame, within the tolerance) on a grid of tolerance-sized cells, and graph components.

Both in plain numpy (no KD-tree, no sparse-graph import on the review's path): localizations are keyed by
``(frame, cell row, cell column)`` with cells a little over ``2·tolerance`` wide, the ground truth sorted by key once;
a prediction's disc of radius ``tolerance`` lies in the 2 × 2 cells on the side of the half cell it sits in, i.e. two
runs of two consecutive keys found with binary searches. Connected components of the bipartite candidate graph come from label propagation with pointer jumping.
"""

from __future__ import annotations

import math

import numpy as np

from imagebinner.errors import ParameterError
from imagebinner.io.table import LocTable

CHUNK_PAIRS = 4_000_000  # candidate pairs examined at once (bounds the memory of crowded data)


def candidate_pairs(gt: LocTable, pred: LocTable, tolerance: float) -> tuple[np.ndarray, ...]:
    """All (gt row, pred row) pairs in the same frame within ``tolerance`` nm.

    Returns ``gi, pi, d2, dx, dy`` (dx = pred − gt) in a deterministic but unspecified order; distances are exact
    (computed from the original coordinates, ``d2 <= tolerance²``). Rows with a non-finite coordinate have no
    candidates.
    """
    if not tolerance > 0 or not math.isfinite(tolerance):
        raise ParameterError(f"tolerance must be a positive number of nm, got {tolerance}")
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0))
    (gx, gy, gf, g_rows), (px, py, pf, p_rows) = _finite(gt), _finite(pred)
    if len(gx) == 0 or len(px) == 0:
        return empty
    x0, y0 = min(gx.min(), px.min()), min(gy.min(), py.min())
    f0 = min(gf.min(), pf.min())
    # cells a little wider than 2·tolerance: a prediction's disc lies in the 2 × 2 cells on the side of its half
    # cell; indices shifted by one so that every neighbour index is >= 0
    size = 2.0 * tolerance * (1.0 + 1e-6)
    gcx, _ = _cell(gx, x0, size)
    gcy, _ = _cell(gy, y0, size)
    pcx, right = _cell(px, x0, size)
    pcy, up = _cell(py, y0, size)
    nx = int(max(gcx.max(), pcx.max())) + 2
    ny = int(max(gcy.max(), pcy.max())) + 2
    n_frames = int(max(gf.max(), pf.max()) - f0) + 1
    if float(nx) * ny * n_frames >= 2.0**62:
        raise ParameterError(f"tolerance {tolerance} nm is too small for the field and frame range of the tables")
    gkey, gorder = sort_keys(((gf - f0) * ny + gcy) * nx + gcx)
    # each prediction's first cell of its 2 × 2 block, sorted (sorted queries make the binary searches ~10x faster)
    first, porder = sort_keys(((pf - f0) * ny + pcy - 1 + up) * nx + pcx - 1 + right)
    px, py = px[porder], py[porder]
    parts = []
    for row in (0, nx):  # the block's two cell rows, two cells each
        lo = np.searchsorted(gkey, first + row, side="left")
        hi = np.searchsorted(gkey, first + row + 1, side="right")
        parts.extend(_expand(lo, hi - lo, gorder, gx, gy, px, py, tolerance))
    if not parts:
        return empty
    gi, pi, dx, dy = (np.concatenate([p[j] for p in parts]) for j in range(4))
    pi = porder[pi]
    if g_rows is not None:
        gi = g_rows[gi]
    if p_rows is not None:
        pi = p_rows[pi]
    return gi, pi, dx * dx + dy * dy, dx, dy


def _finite(table: LocTable) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``x, y, frame`` of the rows with finite coordinates, and those rows (None: every row)."""
    x, y, f = table.x, table.y, table.frame.astype(np.int64, copy=False)
    if np.isfinite(x).all() and np.isfinite(y).all():
        return x, y, f, None
    rows = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    return x[rows], y[rows], f[rows], rows


def _cell(v: np.ndarray, v0: float, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Cell index (shifted by one) and whether the value lies in the upper half of its cell."""
    u = (v - v0) / size
    cell = np.floor(u)
    upper = (u - cell) >= 0.5
    return cell.astype(np.int64) + 1, upper


def sort_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sorted keys, order)`` of non-negative int64 keys, equal keys by position; with one ``np.sort`` of the keys
    packed with their positions when they fit in 63 bits (faster than ``argsort``)."""
    n = len(keys)
    bits = max(int(n - 1).bit_length(), 1)
    top = int(keys.max()) if n else 0
    if top < 2 ** (62 - bits):
        packed = np.sort((keys << bits) | np.arange(n, dtype=np.int64))
        return packed >> bits, packed & ((1 << bits) - 1)
    order = np.argsort(keys, kind="stable")
    return keys[order], order


def _expand(lo, count, order, gx, gy, px, py, tolerance: float):
    """The pairs (gt, pred) of each prediction with the sorted gt entries ``lo .. lo + count``, kept within reach;
    in chunks of about :data:`CHUNK_PAIRS`."""
    ends = np.cumsum(count)
    total = int(ends[-1]) if len(ends) else 0
    cut = np.searchsorted(ends, np.arange(CHUNK_PAIRS, total, CHUNK_PAIRS), side="left")
    for s, e in zip(np.r_[0, cut], np.r_[cut, len(count)]):
        c = count[s:e]
        n = int(c.sum())
        if n == 0:
            continue
        pi = np.repeat(np.arange(s, e), c)
        start = np.repeat(lo[s:e] - (np.cumsum(c) - c), c)
        gi = order[start + np.arange(n)]
        dx = px[pi] - gx[gi]
        dy = py[pi] - gy[gi]
        ok = dx * dx + dy * dy <= tolerance * tolerance
        yield gi[ok], pi[ok], dx[ok], dy[ok]


def bipartite_components(g_local: np.ndarray, p_local: np.ndarray, n_g: int, n_p: int) -> np.ndarray:
    """Component label (0..n−1, numbered by their smallest ground-truth node) of every ground-truth node of the
    bipartite graph with edges ``(g_local, p_local)``; every node must have an edge."""
    label = np.arange(n_g, dtype=np.int64)
    big = np.iinfo(np.int64).max
    while True:
        lp = np.full(n_p, big)
        np.minimum.at(lp, p_local, label[g_local])
        new = label.copy()
        np.minimum.at(new, g_local, lp[p_local])
        new = new[new]  # pointer jumping: a label's label is in the same component and not larger
        if np.array_equal(new, label):
            break
        label = new
    used = np.zeros(n_g, bool)
    used[label] = True
    return (np.cumsum(used) - 1)[label]
