"""Candidate pairs (same frame, within the tolerance) on a grid of tolerance-sized cells, and graph components.

Both in plain numpy (no KD-tree, no sparse-graph import on the review's path): localizations are keyed by
``(frame, cell row, cell column)`` with cells ``tolerance`` nm wide, the ground truth sorted by key once; each
prediction's candidates lie in the 3 × 3 cells around its own, i.e. three runs of consecutive keys found with binary
searches. Connected components of the bipartite candidate graph come from label propagation with pointer jumping.
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
    g_rows = np.flatnonzero(np.isfinite(gt.x) & np.isfinite(gt.y))
    p_rows = np.flatnonzero(np.isfinite(pred.x) & np.isfinite(pred.y))
    if len(g_rows) == 0 or len(p_rows) == 0:
        return empty
    gx, gy, gf = gt.x[g_rows], gt.y[g_rows], gt.frame[g_rows].astype(np.int64)
    px, py, pf = pred.x[p_rows], pred.y[p_rows], pred.frame[p_rows].astype(np.int64)
    x0, y0 = min(gx.min(), px.min()), min(gy.min(), py.min())
    f0 = min(gf.min(), pf.min())
    # cell indices shifted by one: the neighbours of every cell have indices >= 0 and < n
    gcx, gcy = _cell(gx, x0, tolerance), _cell(gy, y0, tolerance)
    pcx, pcy = _cell(px, x0, tolerance), _cell(py, y0, tolerance)
    nx = int(max(gcx.max(), pcx.max())) + 2
    ny = int(max(gcy.max(), pcy.max())) + 2
    n_frames = int(max(gf.max(), pf.max()) - f0) + 1
    if float(nx) * ny * n_frames >= 2.0**62:
        raise ParameterError(f"tolerance {tolerance} nm is too small for the field and frame range of the tables")
    gkey, gorder = sort_keys(((gf - f0) * ny + gcy) * nx + gcx)
    prow, porder = sort_keys(((pf - f0) * ny + pcy) * nx + pcx)  # each prediction's own cell, sorted
    px, py = px[porder], py[porder]  # sorted queries make the binary searches ~10x faster
    parts = []
    for dy in (-nx, 0, nx):  # the cell rows above, at and below
        lo = np.searchsorted(gkey, prow + dy - 1, side="left")
        hi = np.searchsorted(gkey, prow + dy + 1, side="right")
        parts.extend(_expand(lo, hi - lo, gorder, gx, gy, px, py, tolerance))
    if not parts:
        return empty
    gi, pi, dx, dy_ = (np.concatenate([p[j] for p in parts]) for j in range(4))
    return g_rows[gi], p_rows[porder[pi]], dx * dx + dy_ * dy_, dx, dy_


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


def _cell(v: np.ndarray, v0: float, size: float) -> np.ndarray:
    return np.floor((v - v0) / size).astype(np.int64) + 1


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
    return np.unique(label, return_inverse=True)[1].astype(np.int64)
