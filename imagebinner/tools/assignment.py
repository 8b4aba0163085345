"""Optimal assignments for every prefix of ranked predictions, batched over many small components in numpy.

A component holds ``n_g`` ground truths and ``n_p`` predictions ranked by confidence (row 0 the most confident), with
squared distances on the candidate edges (other pairs forbidden). For each prefix ``k = 1..n_p`` (the ``k`` most
confident predictions kept) the optimal one-to-one assignment is wanted: the most pairs, then the least Σd² (see
:mod:`imagebinner.tools.matching`).

Method: the shortest augmenting path algorithm (Jonker–Volgenant as in Crouse 2016, the one behind
``scipy.optimize.linear_sum_assignment``) adds the rows one at a time and keeps dual potentials ``u, v`` with
``u_i + v_j <= c_ij`` (tight on matched edges) and ``v_j <= 0`` (zero on free columns); so after adding row ``k − 1``
the assignment of rows ``0..k−1`` is a minimum-cost one for that prefix, and one run gives every prefix. Every
prediction also gets a private dummy column of cost ``L = (min(n_g, n_p) + 1)·tol² + 1`` (stays unmatched): ``L``
exceeds any sum of real costs, so minimum cost means most pairs first. The run is vectorised across all components
of a size bucket (one numpy operation per search step for thousands of components); components above
:data:`BATCH_LIMIT` go through scipy one prefix at a time.
"""

from __future__ import annotations

import numpy as np

BATCH_LIMIT = 16  # components with more ground truths or predictions than this are solved with scipy per prefix


def unmatched_cost(n: int, tolerance: float) -> float:
    """The cost of leaving a row unmatched in a problem with at most ``n`` pairs: more than any sum of real costs."""
    return (n + 1) * tolerance * tolerance + 1.0


def prefix_assignments_batched(cost: np.ndarray, n_rows: np.ndarray, tolerance: float) -> tuple[np.ndarray, ...]:
    """Every prefix's optimal assignment for a batch of components padded to one shape.

    ``cost``: ``(B, R, G)`` squared distances, ``inf`` where forbidden or padded; ``n_rows``: each component's
    number of rows (sorted descending). Returns ``(comp, k, row, col)`` of every matched pair of every prefix
    ``k = 1..n_rows[comp]``.
    """
    n_b, n_r, n_g = cost.shape
    n_c = n_g + n_r
    full = np.full((n_b, n_r, n_c), np.inf)
    full[:, :, :n_g] = cost
    large = unmatched_cost(min(n_g, n_r), tolerance)
    full[:, np.arange(n_r), n_g + np.arange(n_r)] = large  # each row's private dummy column
    u = np.zeros((n_b, n_r))
    v = np.zeros((n_b, n_c))
    col4row = np.full((n_b, n_r), -1, np.int64)
    row4col = np.full((n_b, n_c), -1, np.int64)
    out: list[tuple[np.ndarray, ...]] = []
    for i in range(n_r):
        nb = int(np.searchsorted(-n_rows, -i, side="left"))  # components with more than i rows (a prefix)
        if nb == 0:
            break
        _add_row(full[:nb], u[:nb], v[:nb], col4row[:nb], row4col[:nb], i)
        comp, row = np.nonzero((col4row[:nb, : i + 1] >= 0) & (col4row[:nb, : i + 1] < n_g))
        out.append((comp, np.full(len(comp), i + 1, np.int64), row, col4row[comp, row]))
    return tuple(np.concatenate([o[j] for o in out]) if out else np.empty(0, np.int64) for j in range(4))


def _add_row(cost, u, v, col4row, row4col, i: int) -> None:
    """One shortest augmenting path from row ``i`` in every component (arrays updated in place)."""
    n_b, _, n_c = cost.shape
    spc = np.full((n_b, n_c), np.inf)  # shortest path costs to the columns
    path = np.full((n_b, n_c), -1, np.int64)
    scanned_rows = np.zeros(u.shape, bool)
    scanned_cols = np.zeros((n_b, n_c), bool)
    min_val = np.zeros(n_b)
    cur = np.full(n_b, i, np.int64)
    sink = np.full(n_b, -1, np.int64)
    active = np.arange(n_b)
    while active.size:
        a, r = active, cur[active]
        scanned_rows[a, r] = True
        reduced = min_val[a, None] + cost[a, r, :] - u[a, r][:, None] - v[a]
        remaining = ~scanned_cols[a]
        s = spc[a]
        better = remaining & (reduced < s)
        s = np.where(better, reduced, s)
        spc[a] = s
        path[a] = np.where(better, r[:, None], path[a])
        cand = np.where(remaining, s, np.inf)
        low = cand.min(axis=1)
        is_low = cand == low[:, None]
        free_low = is_low & (row4col[a] < 0)  # among equal lowest, a free column ends the search at once
        j = np.where(free_low.any(axis=1), free_low.argmax(axis=1), is_low.argmax(axis=1))
        min_val[a] = low
        scanned_cols[a, j] = True
        owner = row4col[a, j]
        free = owner < 0
        sink[a[free]] = j[free]
        cur[a[~free]] = owner[~free]
        active = a[~free]
    # dual update
    scanned_rows[:, i] = False
    assigned = np.clip(col4row, 0, None)
    du = min_val[:, None] - np.take_along_axis(spc, assigned, axis=1)
    u += np.where(scanned_rows, du, 0.0)
    u[:, i] += min_val
    v -= np.where(scanned_cols, min_val[:, None] - np.where(scanned_cols, spc, 0.0), 0.0)
    # augment along the path back to row i
    j = sink.copy()
    active = np.arange(n_b)
    while active.size:
        jj = j[active]
        r = path[active, jj]
        row4col[active, jj] = r
        previous = col4row[active, r]
        col4row[active, r] = jj
        j[active] = previous
        active = active[r != i]


def solve_dense(d2: np.ndarray, allowed: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal assignment (max pairs, then min Σd²) on a dense matrix with scipy; returns matched (row, col)."""
    from scipy.optimize import linear_sum_assignment

    cost = np.where(allowed, d2, unmatched_cost(min(d2.shape), tolerance))
    rows, cols = linear_sum_assignment(cost)
    keep = allowed[rows, cols]
    return rows[keep], cols[keep]


def prefix_assignments_scipy(rows: np.ndarray, cols: np.ndarray, d2: np.ndarray, shape: tuple[int, int],
                             tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Every prefix of one large component with scipy: ``rows`` are prediction ranks, ``cols`` ground truths.
    Returns ``(k, edge index)`` of the matched edges of every prefix ``k = 1..n_p``."""
    n_p, n_g = shape
    dense = np.full((n_p, n_g), np.inf)
    dense[rows, cols] = d2
    edge = np.full((n_p, n_g), -1, np.int64)
    edge[rows, cols] = np.arange(len(rows))
    ks, picked = [], []
    for k in range(1, n_p + 1):
        r, c = solve_dense(dense[:k], np.isfinite(dense[:k]), tolerance)
        ks.append(np.full(len(r), k, np.int64))
        picked.append(edge[r, c])
    return np.concatenate(ks), np.concatenate(picked)
