"""Exact one-to-one matching of predicted localizations to ground truth, metrics and a fast threshold sweep.

Definitions (see docs/review.md and the spec, section 8):

* **Candidate pair**: a prediction and a ground-truth localization in the *same frame* whose lateral distance is
  ``<= tolerance`` (nm).
* **Matcher**: per frame, an optimal one-to-one assignment over the candidate pairs. "Optimal" is lexicographic:
  first the largest number of matched pairs, then, among those, the smallest sum of squared distances. This is what
  ``scipy.optimize.linear_sum_assignment`` gives on squared distances with out-of-reach pairs forbidden by a large
  cost (then rejected), which is how it is computed here, on each connected component of the candidate graph.
* Counts: TP = matched pairs, FP = predictions − TP, FN = ground truth − TP.
* precision = TP/(TP+FP) (NaN without predictions); recall = TP/(TP+FN) (NaN without ground truth);
  F1 = 2·TP/(2·TP+FP+FN) (= 2PR/(P+R); NaN when both sets are empty); Jaccard = TP/(TP+FP+FN) (NaN when both are
  empty); RMSE = sqrt(Σ(dx²+dy²)/TP) over matched pairs (NaN when TP = 0); bias dx, dy = mean(pred − gt) over
  matched pairs (NaN when TP = 0); efficiency E = 100 − sqrt((100 − 100·Jaccard)² + α²·RMSE²) with α = 1 nm⁻¹, in %
  (NaN when RMSE is NaN).

Speed: the candidate pairs are found once with a KD-tree (frames separated by a coordinate offset larger than the
tolerance), then split into edges that are alone in their component (1 ground truth × 1 prediction, the vast
majority), stars (one ground truth or one prediction: the best kept edge wins) and general components (solved with
``linear_sum_assignment`` on a small dense matrix). For a threshold sweep, a component's result depends only on
how many of its predictions are kept (its predictions sorted by confidence); it is re-solved only when that number
changes between consecutive thresholds. Every state is solved exactly as a from-scratch matching would, so the sweep
equals :func:`naive_sweep` exactly (up to the floating-point summation order of RMSE and bias).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, min_weight_full_bipartite_matching
from scipy.spatial import cKDTree

from imagebinner.errors import ParameterError
from imagebinner.io.table import LocTable

EFFICIENCY_ALPHA = 1.0  # nm^-1, lateral (Sage et al. 2019; DECODE)
METRIC_NAMES = (
    "n_gt",
    "n_pred",
    "tp",
    "fp",
    "fn",
    "precision",
    "recall",
    "f1",
    "jaccard",
    "rmse_nm",
    "bias_x_nm",
    "bias_y_nm",
    "efficiency",
)


# -- metrics -------------------------------------------------------------------------------------------------
def efficiency(jaccard: float | np.ndarray, rmse_nm: float | np.ndarray, alpha: float = EFFICIENCY_ALPHA):
    """E = 100 − sqrt((100 − 100·JI)² + α²·RMSE²) in % (JI in 0–1, RMSE in nm, α in nm⁻¹)."""
    ji = np.asarray(jaccard, dtype=float) * 100.0
    rmse = np.asarray(rmse_nm, dtype=float)
    out = 100.0 - np.sqrt((100.0 - ji) ** 2 + (alpha * rmse) ** 2)
    return float(out) if out.ndim == 0 else out


def _div(num, den):
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out


def metrics_from_sums(tp, n_gt, n_pred, sse, sum_dx, sum_dy) -> dict:
    """All metrics from counts and sums (scalars or arrays of equal shape; see the module docstring)."""
    tp = np.asarray(tp, dtype=np.int64)
    n_gt = np.asarray(n_gt, dtype=np.int64)
    n_pred = np.asarray(n_pred, dtype=np.int64)
    fp = n_pred - tp
    fn = n_gt - tp
    rmse = np.sqrt(_div(sse, tp))
    jac = _div(tp, tp + fp + fn)
    out = {
        "n_gt": n_gt,
        "n_pred": n_pred,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": _div(tp, tp + fp),
        "recall": _div(tp, tp + fn),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "jaccard": jac,
        "rmse_nm": rmse,
        "bias_x_nm": _div(sum_dx, tp),
        "bias_y_nm": _div(sum_dy, tp),
        "efficiency": efficiency(jac, rmse),
    }
    if out["tp"].ndim == 0:
        return {k: (int(v) if k in ("n_gt", "n_pred", "tp", "fp", "fn") else float(v)) for k, v in out.items()}
    return out


@dataclasses.dataclass
class MatchResult:
    """Matched pairs of one matching: row indices into the ground-truth and prediction tables.

    The pair order is deterministic but unspecified (sort by ``gt_index`` when needed).
    """

    gt_index: np.ndarray
    pred_index: np.ndarray
    dx: np.ndarray  # pred − gt, nm
    dy: np.ndarray
    frame: np.ndarray  # frame of each pair
    n_gt: int
    n_pred: int
    tolerance: float

    @property
    def tp(self) -> int:
        return len(self.gt_index)

    @property
    def metrics(self) -> dict:
        """Totals (see :func:`metrics_from_sums`)."""
        return metrics_from_sums(
            self.tp,
            self.n_gt,
            self.n_pred,
            float(np.sum(self.dx**2 + self.dy**2)),
            float(np.sum(self.dx)),
            float(np.sum(self.dy)),
        )

    def per_frame(self, gt_counts: np.ndarray, pred_counts: np.ndarray) -> dict:
        """Metrics per frame (arrays, empty frames included) given the per-frame localization counts."""
        n = len(gt_counts)
        tp = np.bincount(self.frame, minlength=n)[:n]
        sse = np.bincount(self.frame, weights=self.dx**2 + self.dy**2, minlength=n)[:n]
        sdx = np.bincount(self.frame, weights=self.dx, minlength=n)[:n]
        sdy = np.bincount(self.frame, weights=self.dy, minlength=n)[:n]
        out = {"frame": np.arange(n, dtype=np.int64)}
        out.update(metrics_from_sums(tp, gt_counts, pred_counts, sse, sdx, sdy))
        return out


# -- candidate pairs ---------------------------------------------------------------------------------------
def candidate_pairs(gt: LocTable, pred: LocTable, tolerance: float) -> tuple[np.ndarray, ...]:
    """All (gt row, pred row) pairs in the same frame within ``tolerance`` nm.

    Returns ``gi, pi, d2, dx, dy`` (dx = pred − gt), sorted by ``(gi, pi)``; distances are exact (recomputed from the
    original coordinates).
    """
    if not tolerance > 0 or not math.isfinite(tolerance):
        raise ParameterError(f"tolerance must be a positive number of nm, got {tolerance}")
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0))
    if len(gt) == 0 or len(pred) == 0:
        return empty
    x0 = min(gt.x.min(), pred.x.min())
    span = max(gt.x.max(), pred.x.max()) - x0
    stride = span + 4.0 * tolerance + 1.0  # frames are separated by more than the tolerance along x
    ag = np.column_stack([(gt.x - x0) + gt.frame * stride, gt.y])
    ap = np.column_stack([(pred.x - x0) + pred.frame * stride, pred.y])
    tg = cKDTree(ag, balanced_tree=False, compact_nodes=False)
    tp = cKDTree(ap, balanced_tree=False, compact_nodes=False)
    # a little slack for rounding of the shifted coordinates; the exact test follows
    found = tg.sparse_distance_matrix(tp, tolerance * (1 + 1e-9) + 1e-3, output_type="ndarray")
    gi = found["i"].astype(np.int64)
    pi = found["j"].astype(np.int64)
    same = gt.frame[gi] == pred.frame[pi]
    gi, pi = gi[same], pi[same]
    dx = pred.x[pi] - gt.x[gi]
    dy = pred.y[pi] - gt.y[gi]
    d2 = dx * dx + dy * dy
    ok = d2 <= tolerance * tolerance
    gi, pi, d2, dx, dy = gi[ok], pi[ok], d2[ok], dx[ok], dy[ok]
    order = np.lexsort((pi, gi))
    return gi[order], pi[order], d2[order], dx[order], dy[order]


def solve_dense(d2: np.ndarray, allowed: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Optimal assignment (max pairs, then min Σd²) on a small dense matrix; returns matched (row, col) indices."""
    n = min(d2.shape)
    large = (n + 1) * tolerance * tolerance + 1.0  # more than any sum of allowed costs
    cost = np.where(allowed, d2, large)
    rows, cols = linear_sum_assignment(cost)
    keep = allowed[rows, cols]
    return rows[keep], cols[keep]


DENSE_LIMIT = 250_000  # components with more (gt × pred) cells are solved on a sparse graph


def solve_sparse(
    rows: np.ndarray, cols: np.ndarray, d2: np.ndarray, shape: tuple[int, int], tolerance: float
) -> np.ndarray:
    """Same objective as :func:`solve_dense` for large components: returns the indices of the matched edges.

    Every ground truth gets a private dummy partner of cost ``large`` so a full matching always exists; minimising
    Σd² + (unmatched)·large gives the most pairs, then the least Σd².
    """
    n_g, n_p = shape
    large = (min(shape) + 1) * tolerance * tolerance + 1.0
    # +1 keeps zero distances as explicit entries (sparse zeros would mean "no edge"); subtracted again below
    data = np.r_[d2 + 1.0, np.full(n_g, large)]
    r = np.r_[rows, np.arange(n_g)]
    c = np.r_[cols, n_p + np.arange(n_g)]
    graph = csr_matrix((data, (r, c)), shape=(n_g, n_p + n_g))
    g_idx, p_idx = min_weight_full_bipartite_matching(graph)
    real = p_idx < n_p
    g_idx, p_idx = g_idx[real].astype(np.int64), p_idx[real].astype(np.int64)
    # edge index of each matched (g, p): edges are unique per (g, p); look up through a sorted key
    key = rows.astype(np.int64) * n_p + cols
    order = np.argsort(key)
    return order[np.searchsorted(key[order], g_idx * n_p + p_idx)]


@dataclasses.dataclass
class _General:
    gt: np.ndarray  # gt rows
    pred: np.ndarray  # pred rows, sorted by confidence descending
    conf: np.ndarray  # their confidences (descending)
    edges: tuple  # (gt local, pred rank, d2, dx, dy) of the candidate pairs
    dense: tuple | None  # (d2, dx, dy, allowed) dense (n_gt, n_pred) matrices for small components


class Matcher:
    """Candidate pairs and components computed once; exact matching for any confidence threshold and sweeps.

    ``Matcher(gt, pred, tolerance)``; ``match(threshold)`` keeps predictions with ``confidence >= threshold``
    (all of them when ``threshold`` is None or the table has no confidence column).
    """

    def __init__(self, gt: LocTable, pred: LocTable, tolerance: float = 100.0):
        self.gt, self.pred, self.tolerance = gt, pred, float(tolerance)
        self.n_gt, self.n_pred = len(gt), len(pred)
        if "confidence" in pred:
            conf = np.asarray(pred["confidence"], dtype=float)
            self.confidence = np.where(np.isnan(conf), -np.inf, conf)
        else:
            self.confidence = np.full(len(pred), np.inf)
        gi, pi, d2, dx, dy = candidate_pairs(gt, pred, self.tolerance)
        self.n_candidates = len(gi)
        deg_g = np.bincount(gi, minlength=self.n_gt)
        deg_p = np.bincount(pi, minlength=self.n_pred)
        single = (deg_g[gi] == 1) & (deg_p[pi] == 1)
        # isolated edges: sorted by confidence for O(log n) sums at any threshold
        s_conf = self.confidence[pi[single]]
        order = np.argsort(s_conf, kind="stable")
        self._s_gi, self._s_pi = gi[single][order], pi[single][order]
        self._s_conf = s_conf[order]
        self._s_d2, self._s_dx, self._s_dy = d2[single][order], dx[single][order], dy[single][order]
        self._s_cum = [
            np.concatenate([[0.0], np.cumsum(v[::-1])])[::-1] for v in (self._s_d2, self._s_dx, self._s_dy)
        ]  # suffix sums: _s_cum[k][i] = sum over entries i..end
        # the rest: connected components
        rest = ~single
        rg, rp, rd2, rdx, rdy = gi[rest], pi[rest], d2[rest], dx[rest], dy[rest]
        self._star_edges = None
        self._general: list[_General] = []
        if len(rg):
            ug, g_local = np.unique(rg, return_inverse=True)
            up, p_local = np.unique(rp, return_inverse=True)
            n_nodes = len(ug) + len(up)
            graph = coo_matrix(
                (np.ones(len(rg), np.int8), (g_local, p_local + len(ug))), shape=(n_nodes, n_nodes)
            )
            _, labels = connected_components(graph, directed=False)
            comp = labels[g_local]
            comp_g = np.bincount(labels[: len(ug)])  # gt nodes per component
            comp_p = np.bincount(labels[len(ug) :], minlength=len(comp_g))
            star = (comp_g[comp] == 1) | (comp_p[comp] == 1)
            self._star_edges = (comp[star], rg[star], rp[star], rd2[star], rdx[star], rdy[star])
            gen = ~star
            if np.any(gen):
                self._general = self._build_general(comp[gen], rg[gen], rp[gen], rd2[gen], rdx[gen], rdy[gen])
        self._cache: dict[tuple[int, int], tuple] = {}
        # per-general-component sorted confidences, concatenated, for vectorised kept counts
        if self._general:
            self._g_conf = np.concatenate([c.conf for c in self._general])
            self._g_start = np.cumsum([0] + [len(c.conf) for c in self._general])[:-1]
        self._conf_sorted = np.sort(self.confidence)

    def _build_general(self, comp, gi, pi, d2, dx, dy) -> list[_General]:
        order = np.argsort(comp, kind="stable")
        comp, gi, pi, d2, dx, dy = comp[order], gi[order], pi[order], d2[order], dx[order], dy[order]
        bounds = np.flatnonzero(np.diff(comp)) + 1
        out = []
        for s, e in zip(np.r_[0, bounds], np.r_[bounds, len(comp)]):
            g_rows, g_loc = np.unique(gi[s:e], return_inverse=True)
            p_rows, p_loc = np.unique(pi[s:e], return_inverse=True)
            conf = self.confidence[p_rows]
            by_conf = np.argsort(-conf, kind="stable")
            rank = np.empty_like(by_conf)
            rank[by_conf] = np.arange(len(by_conf))
            shape = (len(g_rows), len(p_rows))
            edges = (g_loc, rank[p_loc], d2[s:e], dx[s:e], dy[s:e])
            dense = None
            if shape[0] * shape[1] <= DENSE_LIMIT:
                mats = []
                for v in edges[2:]:
                    m = np.zeros(shape)
                    m[g_loc, rank[p_loc]] = v
                    mats.append(m)
                allowed = np.zeros(shape, bool)
                allowed[g_loc, rank[p_loc]] = True
                dense = (*mats, allowed)
            out.append(_General(g_rows, p_rows[by_conf], conf[by_conf], edges, dense))
        return out

    # -- solving ---------------------------------------------------------------------------------------------
    def _solve_general(self, c: int, k: int) -> tuple:
        key = (c, k)
        hit = self._cache.get(key)
        if hit is None:
            comp = self._general[c]
            if comp.dense is not None:
                d2, dx, dy, allowed = comp.dense
                r, q = solve_dense(d2[:, :k], allowed[:, :k], self.tolerance)
                hit = (comp.gt[r], comp.pred[q], dx[r, q], dy[r, q])
            else:
                g_loc, p_rank, d2, dx, dy = comp.edges
                sel = np.flatnonzero(p_rank < k)
                used_g, g_new = np.unique(g_loc[sel], return_inverse=True)
                picked = sel[
                    solve_sparse(g_new, p_rank[sel], d2[sel], (len(used_g), k), self.tolerance)
                ]
                hit = (comp.gt[g_loc[picked]], comp.pred[p_rank[picked]], dx[picked], dy[picked])
            self._cache[key] = hit
        return hit

    def _general_kept_counts(self, threshold: float) -> np.ndarray:
        kept = (self._g_conf >= threshold).astype(np.int64)
        return np.add.reduceat(kept, self._g_start) if len(kept) else np.zeros(0, np.int64)

    def _star_pairs(self, threshold: float) -> tuple[np.ndarray, ...]:
        comp, gi, pi, d2, dx, dy = self._star_edges
        keep = self.confidence[pi] >= threshold
        comp, gi, pi, d2, dx, dy = comp[keep], gi[keep], pi[keep], d2[keep], dx[keep], dy[keep]
        order = np.lexsort((pi, d2, comp))  # per component the nearest kept edge (ties: lowest pred row)
        first = order[np.r_[True, comp[order][1:] != comp[order][:-1]]] if len(order) else order
        return gi[first], pi[first], dx[first], dy[first]

    def n_pred_kept(self, threshold: float | None) -> int:
        if threshold is None:
            return self.n_pred
        return int(len(self._conf_sorted) - np.searchsorted(self._conf_sorted, threshold, side="left"))

    def match(self, threshold: float | None = None) -> MatchResult:
        """The optimal matching of the predictions with ``confidence >= threshold`` to the ground truth."""
        t = -np.inf if threshold is None else float(threshold)
        i0 = np.searchsorted(self._s_conf, t, side="left")
        parts = [(self._s_gi[i0:], self._s_pi[i0:], self._s_dx[i0:], self._s_dy[i0:])]
        if self._star_edges is not None:
            parts.append(self._star_pairs(t))
        if self._general:
            counts = self._general_kept_counts(t)
            for c in np.flatnonzero(counts):
                parts.append(self._solve_general(int(c), int(counts[c])))
        gi, pi, dx, dy = (np.concatenate([p[j] for p in parts]) for j in range(4))
        return MatchResult(
            gt_index=gi.astype(np.int64),
            pred_index=pi.astype(np.int64),
            dx=dx,
            dy=dy,
            frame=self.gt.frame[gi] if len(gi) else np.empty(0, np.int64),
            n_gt=self.n_gt,
            n_pred=self.n_pred_kept(threshold),
            tolerance=self.tolerance,
        )

    def sweep(self, thresholds: np.ndarray) -> dict:
        """Metrics (arrays, one value per threshold) for each ``threshold`` (predictions kept if conf >= t)."""
        thr = np.asarray(thresholds, dtype=float)
        n = len(thr)
        tp = np.zeros(n, np.int64)
        sums = np.zeros((3, n))
        # isolated edges: suffix sums
        i0 = np.searchsorted(self._s_conf, thr, side="left")
        tp += len(self._s_conf) - i0
        for k in range(3):
            sums[k] += self._s_cum[k][i0]
        # stars: vectorised per threshold
        if self._star_edges is not None:
            for j, t in enumerate(thr):
                _, _, dx, dy = self._star_pairs(t)
                tp[j] += len(dx)
                sums[:, j] += (np.sum(dx * dx + dy * dy), np.sum(dx), np.sum(dy))
        # general components: re-solve only those whose kept count changes between consecutive thresholds
        if self._general:
            n_comp = len(self._general)
            state_tp = np.zeros(n_comp, np.int64)
            state_sums = np.zeros((3, n_comp))
            prev = np.zeros(n_comp, np.int64)
            for j in np.argsort(thr, kind="stable"):
                counts = self._general_kept_counts(thr[j])
                for c in np.flatnonzero(counts != prev):
                    k = int(counts[c])
                    if k == 0:
                        state_tp[c] = 0
                        state_sums[:, c] = 0.0
                    else:
                        _, _, dx, dy = self._solve_general(int(c), k)
                        state_tp[c] = len(dx)
                        state_sums[:, c] = (np.sum(dx * dx + dy * dy), np.sum(dx), np.sum(dy))
                prev = counts
                tp[j] += state_tp.sum()
                sums[:, j] += state_sums.sum(axis=1)
        n_pred = len(self._conf_sorted) - np.searchsorted(self._conf_sorted, thr, side="left")
        out = {"threshold": thr}
        out.update(metrics_from_sums(tp, np.full(n, self.n_gt), n_pred, sums[0], sums[1], sums[2]))
        return out


# -- conveniences -----------------------------------------------------------------------------------------
def match(gt: LocTable, pred: LocTable, tolerance: float = 100.0, threshold: float | None = None) -> MatchResult:
    """One-to-one optimal per-frame matching (see the module docstring)."""
    return Matcher(gt, pred, tolerance).match(threshold)


def sweep_thresholds(confidence: np.ndarray, n_thresholds: int = 50) -> np.ndarray:
    """``n_thresholds`` evenly spaced thresholds from the lowest to the highest finite confidence."""
    conf = np.asarray(confidence, dtype=float)
    conf = conf[np.isfinite(conf)]
    if len(conf) == 0:
        return np.zeros(0)
    return np.linspace(conf.min(), conf.max(), int(n_thresholds))


def suggest_thresholds(sweep: dict) -> dict:
    """Thresholds maximising Jaccard and F1 (the highest threshold among equal maxima); None when undefined."""
    out = {}
    for name in ("jaccard", "f1"):
        values = np.asarray(sweep[name], dtype=float)
        if len(values) == 0 or not np.any(np.isfinite(values)):
            out[name] = None
            continue
        best = np.nanmax(values)
        idx = np.flatnonzero(values == best)[-1]
        out[name] = float(sweep["threshold"][idx])
    return out


def naive_sweep(gt: LocTable, pred: LocTable, tolerance: float, thresholds: np.ndarray) -> dict:
    """Reference: the full matching re-run from scratch for each threshold (slow; for tests and the benchmark)."""
    rows = []
    conf = np.asarray(pred["confidence"], dtype=float)
    for t in thresholds:
        rows.append(Matcher(gt, pred.take(conf >= t), tolerance).match().metrics)
    out = {"threshold": np.asarray(thresholds, dtype=float)}
    for name in METRIC_NAMES:
        out[name] = np.array([r[name] for r in rows])
    return out
