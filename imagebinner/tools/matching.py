"""Exact one-to-one matching of predicted localizations to ground truth, metrics and a fast threshold sweep.

Definitions (see docs/review.md and the spec, section 8):

* **Candidate pair**: a prediction and a ground-truth localization in the *same frame* whose lateral distance is
  ``<= tolerance`` (nm).
* **Matcher**: per frame, an optimal one-to-one assignment over the candidate pairs. "Optimal" is lexicographic:
  first the largest number of matched pairs, then, among those, the smallest sum of squared distances. This is what
  ``scipy.optimize.linear_sum_assignment`` gives on squared distances with out-of-reach pairs forbidden by a large
  cost (then rejected); here the same shortest-augmenting-path algorithm runs on each connected component of the
  candidate graph (:mod:`imagebinner.tools.assignment`).
* Counts: TP = matched pairs, FP = predictions − TP, FN = ground truth − TP.
* precision = TP/(TP+FP) (NaN without predictions); recall = TP/(TP+FN) (NaN without ground truth);
  F1 = 2·TP/(2·TP+FP+FN) (= 2PR/(P+R); NaN when both sets are empty); Jaccard = TP/(TP+FP+FN) (NaN when both are
  empty); RMSE = sqrt(Σ(dx²+dy²)/TP) over matched pairs (NaN when TP = 0); bias dx, dy = mean(pred − gt) over
  matched pairs (NaN when TP = 0); efficiency E = 100 − sqrt((100 − 100·Jaccard)² + α²·RMSE²) with α = 1 nm⁻¹, in %
  (NaN when RMSE is NaN).

Speed (no scipy on this path, no Python call per component): the candidate pairs come from a grid of cells
(:mod:`imagebinner.tools.pairs`), then split into edges alone in their component (1 ground truth × 1 prediction, the
vast majority: sorted by confidence with suffix sums), stars (one ground truth or one prediction: the nearest kept
edge wins, so each edge has a threshold interval in which it is chosen) and general components. A general
component's result depends only on how many of its predictions are kept (ranked by confidence); every such state is
solved once, all components at a time (:mod:`imagebinner.tools.assignment`), each exactly as a from-scratch matching
would be. So any threshold and the sweep are lookups, and the sweep equals :func:`naive_sweep` (scipy's assignment per
frame and threshold): counts exactly, sums up to floating-point summation order (and, where several optimal matchings
tie in Σd², the bias may come from another of them).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from imagebinner.io.table import LocTable
from imagebinner.tools.assignment import BATCH_LIMIT, prefix_assignments_batched, prefix_assignments_scipy
from imagebinner.tools.pairs import bipartite_components, candidate_pairs, sort_keys

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


# -- the matcher ------------------------------------------------------------------------------------------
class Matcher:
    """Candidate pairs and components computed once; exact matching for any confidence threshold and sweeps.

    ``Matcher(gt, pred, tolerance)``; ``match(threshold)`` keeps predictions with ``confidence >= threshold``
    (all of them when ``threshold`` is None or the table has no confidence column).

    After construction every result is a lookup: isolated edges are sorted by confidence (suffix sums), each star
    edge has the threshold interval ``lo < t <= hi`` in which it is chosen, and every state ``(component, k)`` of
    every general component (its ``k`` most confident predictions kept) is solved once
    (:mod:`imagebinner.tools.assignment`): its pairs are tagged with the state ``offset[c] + k − 1``.
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
        self.confidence_order = np.argsort(self.confidence, kind="stable")
        self._conf_sorted = self.confidence[self.confidence_order]
        # isolated edges: sorted by confidence for O(log n) sums at any threshold (one edge per prediction)
        edge_of = np.full(self.n_pred, -1, np.int64)
        edge_of[pi[single]] = np.flatnonzero(single)
        order = edge_of[self.confidence_order]
        order = order[order >= 0]
        self._s_gi, self._s_pi = gi[order], pi[order]
        self._s_conf = self.confidence[self._s_pi]
        self._s_d2, self._s_dx, self._s_dy = d2[order], dx[order], dy[order]
        self._s_cum = [
            np.concatenate([[0.0], np.cumsum(v[::-1])])[::-1] for v in (self._s_d2, self._s_dx, self._s_dy)
        ]  # suffix sums: _s_cum[k][i] = sum over entries i..end
        rest = ~single
        rg, rp, rd2, rdx, rdy = gi[rest], pi[rest], d2[rest], dx[rest], dy[rest]
        e0 = np.empty(0)
        self.stars = (np.empty(0, np.int64), np.empty(0, np.int64), e0, e0, e0, e0)  # gi, pi, lo, hi, dx, dy
        self.n_general = 0
        self._g_conf, self._g_start = e0, np.empty(0, np.int64)
        self.states = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64),
                       e0, e0, 0)
        if len(rg):
            ug, g_local = _nodes(rg, self.n_gt)
            up, p_local = _nodes(rp, self.n_pred)
            g_comp = bipartite_components(g_local, p_local, len(ug), len(up))
            comp = g_comp[g_local]
            n_comp = int(comp.max()) + 1
            comp_g = np.bincount(g_comp, minlength=n_comp)  # gt nodes per component
            p_comp = np.zeros(len(up), np.int64)
            p_comp[p_local] = comp
            comp_p = np.bincount(p_comp, minlength=n_comp)
            star = (comp_g[comp] == 1) | (comp_p[comp] == 1)
            self.stars = self._star_intervals(comp[star], rg[star], rp[star], rd2[star], rdx[star], rdy[star])
            gen = ~star
            if np.any(gen):
                general = (comp_g > 1) & (comp_p > 1)
                self._build_general(general, g_comp, p_comp, up, g_local[gen], p_local[gen], comp[gen],
                                    (rg[gen], rp[gen], rd2[gen], rdx[gen], rdy[gen]))

    def _star_intervals(self, comp, gi, pi, d2, dx, dy) -> tuple[np.ndarray, ...]:
        """A star (one ground truth or one prediction) matches its nearest kept edge (ties: the lowest prediction
        row): in (component, d², pred row) order edge j is chosen for max(conf of the edges before it) < t <=
        conf of its prediction. Returns ``gi, pi, lo, hi, dx, dy`` of the edges chosen at some threshold (lo NaN:
        no lower bound)."""
        order = np.lexsort((pi, d2, comp))
        comp, gi, pi, dx, dy = comp[order], gi[order], pi[order], dx[order], dy[order]
        hi = self.confidence[pi]
        levels, level = np.unique(hi, return_inverse=True)
        span = len(levels) + 2
        c = comp.astype(np.int64) * span
        running = np.maximum.accumulate(c + level.astype(np.int64) + 1)  # running max per component
        prev = np.r_[0, running[:-1]] - c - 1
        first = np.r_[True, comp[1:] != comp[:-1]] if len(comp) else np.empty(0, bool)
        lo = np.where(first | (prev < 0), np.nan, levels[np.clip(prev, 0, max(len(levels) - 1, 0))])
        live = np.isnan(lo) | (hi > lo)
        return gi[live], pi[live], lo[live], hi[live], dx[live], dy[live]

    def _build_general(self, general, g_comp, p_comp, up, g_node, p_node, comp, edges) -> None:
        """Number the general components (``general``: mask over all components) and their nodes (ground truths in
        row order, predictions ranked by confidence, descending) and solve every state of every component."""
        gi, pi, d2, dx, dy = edges
        new_id = np.cumsum(general) - 1
        n_comp = int(general.sum())
        self.n_general = n_comp
        comp = new_id[comp]
        # gt nodes: local index = position among the nodes of their component
        g_nodes = np.flatnonzero(general[g_comp])
        g_sorted, order = sort_keys(new_id[g_comp[g_nodes]])
        g_first = np.searchsorted(g_sorted, np.arange(n_comp))
        g_index = np.zeros(len(g_comp), np.int64)
        g_index[g_nodes[order]] = np.arange(len(g_nodes)) - g_first[g_sorted]
        n_g = np.bincount(g_sorted, minlength=n_comp)
        # prediction nodes: rank = position among the component's nodes by descending confidence
        p_nodes = np.flatnonzero(general[p_comp])
        desc = np.empty(self.n_pred, np.int64)
        desc[self.confidence_order] = np.arange(self.n_pred - 1, -1, -1)  # 0 = most confident
        keys, order = sort_keys(new_id[p_comp[p_nodes]] * max(self.n_pred, 1) + desc[up[p_nodes]])
        p_sorted = keys // max(self.n_pred, 1)
        p_first = np.searchsorted(p_sorted, np.arange(n_comp))
        rank = np.zeros(len(p_comp), np.int64)
        rank[p_nodes[order]] = np.arange(len(p_nodes)) - p_first[p_sorted]
        n_p = np.bincount(p_sorted, minlength=n_comp)
        self._g_conf = self.confidence[up[p_nodes[order]]]  # per component, descending
        self._g_start = p_first
        offset = np.r_[0, np.cumsum(n_p)[:-1]].astype(np.int64)
        e_rank, e_g = rank[p_node], g_index[g_node]
        n_states = int(n_p.sum())
        state, edge = _solve_states(comp, e_rank, e_g, d2, n_g, n_p, offset, self.tolerance)
        self.states = (offset, state, gi[edge], pi[edge], dx[edge], dy[edge], n_states)
        w = dx[edge], dy[edge]
        self._state_sums = (
            np.bincount(state, minlength=n_states),
            np.bincount(state, weights=w[0] ** 2 + w[1] ** 2, minlength=n_states),
            np.bincount(state, weights=w[0], minlength=n_states),
            np.bincount(state, weights=w[1], minlength=n_states),
        )

    # -- lookups --------------------------------------------------------------------------------------------
    def general_kept_counts(self, threshold: float) -> np.ndarray:
        """Per general component: how many of its predictions have ``confidence >= threshold``."""
        kept = (self._g_conf >= threshold).astype(np.int64)
        return np.add.reduceat(kept, self._g_start) if len(kept) else np.zeros(0, np.int64)

    def active_states(self, threshold: float) -> np.ndarray:
        """The state of each general component that has predictions kept at ``threshold``."""
        counts = self.general_kept_counts(threshold)
        on = counts > 0
        return self.states[0][on] + counts[on] - 1

    def _star_on(self, threshold: float) -> np.ndarray:
        lo, hi = self.stars[2], self.stars[3]
        return (hi >= threshold) & ~(lo >= threshold)

    def n_pred_kept(self, threshold: float | None) -> int:
        if threshold is None:
            return self.n_pred
        return int(len(self._conf_sorted) - np.searchsorted(self._conf_sorted, threshold, side="left"))

    def match(self, threshold: float | None = None) -> MatchResult:
        """The optimal matching of the predictions with ``confidence >= threshold`` to the ground truth."""
        t = -np.inf if threshold is None else float(threshold)
        i0 = np.searchsorted(self._s_conf, t, side="left")
        parts = [(self._s_gi[i0:], self._s_pi[i0:], self._s_dx[i0:], self._s_dy[i0:])]
        on = self._star_on(t)
        sg, sp, _, _, sdx, sdy = self.stars
        parts.append((sg[on], sp[on], sdx[on], sdy[on]))
        _, state, ggi, gpi, gdx, gdy, n_states = self.states
        active = np.zeros(n_states + 1, bool)
        active[self.active_states(t)] = True
        sel = active[state]
        parts.append((ggi[sel], gpi[sel], gdx[sel], gdy[sel]))
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
        i0 = np.searchsorted(self._s_conf, thr, side="left")  # isolated edges: suffix sums
        tp += len(self._s_conf) - i0
        for k in range(3):
            sums[k] += self._s_cum[k][i0]
        _, _, _, _, sdx, sdy = self.stars
        star_w = (sdx * sdx + sdy * sdy, sdx, sdy)
        for j, t in enumerate(thr):
            on = self._star_on(t)
            tp[j] += int(on.sum())
            for k in range(3):
                sums[k, j] += star_w[k][on].sum()
            if self.n_general:
                active = self.active_states(t)
                tp[j] += int(self._state_sums[0][active].sum())
                for k in range(3):
                    sums[k, j] += self._state_sums[k + 1][active].sum()
        n_pred = len(self._conf_sorted) - np.searchsorted(self._conf_sorted, thr, side="left")
        out = {"threshold": thr}
        out.update(metrics_from_sums(tp, np.full(n, self.n_gt), n_pred, sums[0], sums[1], sums[2]))
        return out


def _nodes(rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(rows, return_inverse=True)`` for row indices below ``n``, without sorting."""
    mark = np.zeros(n, bool)
    mark[rows] = True
    node = np.cumsum(mark) - 1
    return np.flatnonzero(mark), node[rows]


def _solve_states(comp, rank, g, d2, n_g, n_p, offset, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """``(state, edge index)`` of the matched edges of every state of every general component: components up to
    :data:`BATCH_LIMIT` in size buckets solved together, larger ones with scipy."""
    bucket_p = _bucket(n_p)
    bucket_g = _bucket(n_g)
    big = (n_p > BATCH_LIMIT) | (n_g > BATCH_LIMIT)
    states, edges = [], []
    if big.any():
        edge_order = np.argsort(comp, kind="stable")
        edge_start = np.r_[0, np.cumsum(np.bincount(comp, minlength=len(n_p)))]
    for c in np.flatnonzero(big):
        e = edge_order[edge_start[c]: edge_start[c + 1]]
        k, picked = prefix_assignments_scipy(rank[e], g[e], d2[e], (int(n_p[c]), int(n_g[c])), tolerance)
        states.append(offset[c] + k - 1)
        edges.append(e[picked])
    key = np.where(big, -1, bucket_p * 64 + bucket_g)
    for b in np.unique(key[key >= 0]):
        members = np.flatnonzero(key == b)
        members = members[np.argsort(-n_p[members], kind="stable")]  # most rows first (prefix slices per row)
        position = np.full(len(n_p), -1, np.int64)
        position[members] = np.arange(len(members))
        r, gg = int(bucket_p[members[0]]), int(bucket_g[members[0]])
        in_b = np.flatnonzero(position[comp] >= 0)
        step = max(1, BATCH_CELLS // (r * (r + gg)))  # members solved at once (bounds the padded arrays)
        if len(members) > step:
            in_b = in_b[np.argsort(position[comp[in_b]], kind="stable")]  # edges by member, for the chunks
        pos = position[comp[in_b]]
        for s in range(0, len(members), step):
            chunk = members[s: s + step]
            lo, hi = np.searchsorted(pos, [s, s + len(chunk)]) if len(members) > step else (0, len(in_b))
            e = in_b[lo:hi]
            at = (pos[lo:hi] - s, rank[e], g[e])
            cost = np.full((len(chunk), r, gg), np.inf)
            cost[at] = d2[e]
            edge_of = np.full((len(chunk), r, gg), -1, np.int64)
            edge_of[at] = e
            bc, k, row, col = prefix_assignments_batched(cost, n_p[chunk], tolerance)
            states.append(offset[chunk[bc]] + k - 1)
            edges.append(edge_of[bc, row, col])
    return np.concatenate(states), np.concatenate(edges)


BATCH_CELLS = 2_000_000  # padded cells (components × rows × columns) solved in one batched run


def _bucket(n: np.ndarray) -> np.ndarray:
    """Padded size of a component dimension: the next power of two (at least 1)."""
    return (2 ** np.ceil(np.log2(np.maximum(n, 1)))).astype(np.int64)


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
    """Reference: for each threshold, every frame matched from scratch with ``scipy.optimize.linear_sum_assignment``
    on its dense distance matrix (slow; for tests and the benchmark). Shares no code with :class:`Matcher`."""
    from scipy.optimize import linear_sum_assignment

    conf = np.asarray(pred["confidence"], dtype=float)
    gf, pf = gt.frame, pred.frame
    frames = np.union1d(gf, pf)
    rows = []
    for t in thresholds:
        tp, sse, sdx, sdy = 0, 0.0, 0.0, 0.0
        for f in frames:
            g = np.flatnonzero(gf == f)
            p = np.flatnonzero((pf == f) & (conf >= t))
            if len(g) == 0 or len(p) == 0:
                continue
            dx = np.subtract.outer(pred.x[p], gt.x[g])
            dy = np.subtract.outer(pred.y[p], gt.y[g])
            d2 = dx * dx + dy * dy
            allowed = d2 <= tolerance * tolerance
            r, c = linear_sum_assignment(np.where(allowed, d2, (min(d2.shape) + 1) * tolerance**2 + 1.0))
            keep = allowed[r, c]
            r, c = r[keep], c[keep]
            tp += len(r)
            sse += float(d2[r, c].sum())
            sdx += float(dx[r, c].sum())
            sdy += float(dy[r, c].sum())
        rows.append(metrics_from_sums(tp, len(gt), int(np.sum(conf >= t)), sse, sdx, sdy))
    out = {"threshold": np.asarray(thresholds, dtype=float)}
    for name in METRIC_NAMES:
        out[name] = np.array([r[name] for r in rows])
    return out
