"""Composing the plan: which pool patches each binned frame sums (distinct, non-overlapping within a frame)."""

from __future__ import annotations

import numpy as np

from imagebinner.errors import ParameterError
from imagebinner.tools.binner.pool import Pool
from imagebinner.tools.binner.windows import windows_overlap


def compose_plan(
    pool: Pool, patch_size: int, n_binned: int, bin_size: int, reuse_patches: bool, rng: np.random.Generator
) -> np.ndarray:
    """An ``(n_binned, bin_size)`` int64 array of pool indices (read-only).

    Binned frame ``j`` takes the greedy choice in a fresh random permutation of the pool (with ``reuse_patches``),
    or of the patches not used yet (without): the first patches that overlap none chosen before. Within a binned
    frame the patches are distinct and no two windows of the same (measurement, frame) overlap (they would
    duplicate labels).
    """
    conflicts = conflicts_of(pool, patch_size)
    plan = np.empty((n_binned, bin_size), dtype=np.int64)
    if reuse_patches:
        _compose_with_reuse(rng, plan, len(pool), conflicts)
    else:
        remaining = rng.permutation(len(pool)).tolist()
        for j in range(n_binned):
            plan[j] = _choose(j, remaining, conflicts, bin_size)
            taken = set(plan[j].tolist())
            remaining = [k for k in remaining if k not in taken]
    plan.setflags(write=False)
    return plan


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


def _choose(j: int, order: list[int], conflicts: dict[int, set[int]], bin_size: int) -> list[int]:
    """Greedy choice of binned frame ``j`` in ``order``; a clear error when it cannot be filled."""
    chosen = _greedy(order, bin_size, conflicts)
    if len(chosen) < bin_size:
        raise ParameterError(
            f"binned frame {j + 1}: cannot find bin_size={bin_size} pool patches without overlapping windows of the "
            "same frame; raise n_patches, lower bin_size, use a smaller patch_size or allow reuse_patches",
            params=["bin_size", "n_patches", "patch_size", "reuse_patches"],
        )
    return chosen


def _compose_with_reuse(rng: np.random.Generator, plan: np.ndarray, n_pool: int, conflicts: dict[int, set[int]]
                        ) -> None:
    """Fill ``plan``: binned frame ``j`` takes the greedy choice in a fresh random permutation of the pool.

    The permutations of many frames are drawn at once with ``rng.permuted`` row by row, which consumes the
    generator exactly like one ``rng.permutation(n_pool)`` per frame (same plans as frame-by-frame drawing). Rows
    whose first ``bin_size`` patches overlap nothing take them directly; the others are chosen greedily, vectorised
    over rows on a short head of their permutation (the greedy choice is a prefix scan), the rare rest on their
    whole permutation.
    """
    B = plan.shape[1]
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
            plan[start + r] = _choose(start + r, orders[r].tolist(), conflicts, B)


def conflicts_of(pool: Pool, patch_size: int) -> dict[int, set[int]]:
    """Pool patches whose windows overlap another pool window of the same (measurement, frame)."""
    P = patch_size
    key = pool.measurement * (int(pool.frame.max(initial=0)) + 1) + pool.frame
    order = np.argsort(key, kind="stable")
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    sizes = np.diff(np.concatenate([[0], bounds, [len(order)]])).astype(np.int64)
    if int((sizes * sizes).sum()) <= 500_000:  # bounded memory; else group by group below
        # all ordered pairs of patches of the same (measurement, frame) at once
        per_elem = np.repeat(sizes, sizes)
        group_first = np.repeat(np.cumsum(sizes) - sizes, sizes)
        total = int(per_elem.sum())
        a_pos = np.repeat(np.arange(len(order)), per_elem)
        b_pos = np.arange(total) + np.repeat(group_first - (np.cumsum(per_elem) - per_elem), per_elem)
        a, b = order[a_pos], order[b_pos]
        hit = (a != b) & (np.abs(pool.row[a] - pool.row[b]) < P) & (np.abs(pool.column[a] - pool.column[b]) < P)
        a, b = a[hit], b[hit]
        by_a = np.argsort(a, kind="stable")
        a, b = a[by_a], b[by_a]
        keys, first = np.unique(a, return_index=True)
        return {k: set(v) for k, v in zip(keys.tolist(), (g.tolist() for g in np.split(b, first[1:])))}
    conflicts: dict[int, set[int]] = {}
    for group in np.split(order, bounds):
        if len(group) < 2:
            continue
        rows, cols = pool.row[group], pool.column[group]
        for a, k in enumerate(group):
            hit = windows_overlap(int(rows[a]), int(cols[a]), rows, cols, P)
            hit[a] = False
            if hit.any():
                conflicts[int(k)] = {int(g) for g in group[hit]}
    return conflicts


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
    """:func:`_greedy` on every row of ``orders`` at once (position by position, vectorised over rows).

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
