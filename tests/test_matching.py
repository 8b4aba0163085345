"""Matching and metrics: hand-computed cases, optimality against brute force, sweep against the naive re-run."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import imagebinner.tools.matching as matching
from imagebinner.io import LocTable
from imagebinner.tools.matching import (
    Matcher,
    efficiency,
    match,
    naive_sweep,
    suggest_thresholds,
    sweep_thresholds,
)


def table(frame, x, y, confidence=None) -> LocTable:
    cols = {"frame": np.asarray(frame, np.int64), "x": np.asarray(x, float), "y": np.asarray(y, float)}
    if confidence is not None:
        cols["confidence"] = np.asarray(confidence, float)
    return LocTable(cols)


def test_efficiency_decode_test_vector():
    assert efficiency(0.91204, 32.077) == pytest.approx(66.7, abs=0.05)
    assert efficiency(1.0, 0.0) == 100.0


def test_metrics_by_hand_with_known_jitter_misses_and_false_positives():
    n_frames, per_frame = 4, 6
    # ground truth on a coarse grid (neighbours 2000 nm apart): no ambiguity at 100 nm tolerance
    gx, gy, gf = [], [], []
    for f in range(n_frames):
        for k in range(per_frame):
            gf.append(f)
            gx.append(1000.0 + 2000.0 * k)
            gy.append(1000.0 + 3000.0 * f)
    gf, gx, gy = np.array(gf), np.array(gx), np.array(gy)
    # known jitter: (3, 4) -> 5 nm, (-6, 8) -> 10 nm, (0, -30) -> 30 nm, cycled
    jit = np.array([[3.0, 4.0], [-6.0, 8.0], [0.0, -30.0]])
    missed = np.zeros(len(gf), bool)
    missed[[2, 9, 20]] = True  # three misses
    keep = np.flatnonzero(~missed)
    d = jit[keep % 3]
    # an extra gt (frame 1) whose only prediction is 100.5 nm away (FP + FN), and two far false positives
    gx2, gy2, gf2 = np.r_[gx, 21_000.0], np.r_[gy, 1000.0], np.r_[gf, 1]
    px = np.r_[gx[keep] + d[:, 0], 21_100.5, 50_000.0, 60_000.0]
    py = np.r_[gy[keep] + d[:, 1], 1000.0, 50_000.0, 100.0]
    pf = np.r_[gf[keep], 1, 0, 3]
    gt = table(gf2, gx2, gy2)
    pred = table(pf, px, py)
    m = match(gt, pred, tolerance=100.0).metrics
    n_gt, n_pred = len(gt), len(pred)
    tp = len(keep)
    assert (m["n_gt"], m["n_pred"], m["tp"]) == (n_gt, n_pred, tp)
    assert m["fp"] == n_pred - tp == 3
    assert m["fn"] == n_gt - tp == 4
    sse = float(np.sum(d**2))
    assert m["rmse_nm"] == pytest.approx(math.sqrt(sse / tp), rel=1e-12)
    assert m["bias_x_nm"] == pytest.approx(d[:, 0].mean(), rel=1e-12)
    assert m["bias_y_nm"] == pytest.approx(d[:, 1].mean(), rel=1e-12)
    assert m["precision"] == pytest.approx(tp / n_pred)
    assert m["recall"] == pytest.approx(tp / n_gt)
    assert m["jaccard"] == pytest.approx(tp / (n_gt + n_pred - tp))
    p, r = tp / n_pred, tp / n_gt
    assert m["f1"] == pytest.approx(2 * p * r / (p + r))
    assert m["efficiency"] == pytest.approx(
        100 - math.sqrt((100 - 100 * m["jaccard"]) ** 2 + m["rmse_nm"] ** 2)
    )
    # per frame sums back to the totals; empty frames included
    res = match(gt, pred, tolerance=100.0)
    pf_metrics = res.per_frame(gt.counts_per_frame(6), pred.counts_per_frame(6))
    assert len(pf_metrics["tp"]) == 6 and pf_metrics["tp"][5] == 0 and np.isnan(pf_metrics["precision"][5])
    assert pf_metrics["tp"].sum() == tp and pf_metrics["fp"].sum() == 3 and pf_metrics["fn"].sum() == 4


def test_same_position_in_another_frame_never_matches():
    gt = table([0, 1], [500.0, 500.0], [500.0, 500.0])
    pred = table([1, 2], [500.0, 500.0], [500.0, 500.0])
    m = match(gt, pred, 100.0).metrics
    assert m["tp"] == 1 and m["fp"] == 1 and m["fn"] == 1
    res = match(gt, pred, 100.0)
    assert res.gt_index.tolist() == [1] and res.pred_index.tolist() == [0]


def test_empty_cases_are_nan_not_errors():
    gt = table([0, 0], [0.0, 1000.0], [0.0, 0.0])
    none = table([], [], [])
    m = match(gt, none, 100.0).metrics
    assert m["tp"] == 0 and m["fn"] == 2 and math.isnan(m["precision"]) and m["recall"] == 0.0
    assert m["f1"] == 0.0 and m["jaccard"] == 0.0 and math.isnan(m["rmse_nm"]) and math.isnan(m["efficiency"])
    m = match(none, gt, 100.0).metrics
    assert m["fp"] == 2 and math.isnan(m["recall"]) and m["precision"] == 0.0
    m = match(none, none, 100.0).metrics
    assert math.isnan(m["jaccard"]) and math.isnan(m["f1"])


def test_optimal_not_greedy():
    # greedy nearest-first would pair g0-p0 (distance 10) and leave g1 unmatched; the optimum matches both
    gt = table([0, 0], [0.0, 90.0], [0.0, 0.0])
    pred = table([0, 0], [10.0, -80.0], [0.0, 0.0])
    res = match(gt, pred, 100.0)
    assert res.tp == 2
    assert sorted(zip(res.gt_index.tolist(), res.pred_index.tolist())) == [(0, 1), (1, 0)]


def _brute_force(gx, gy, px, py, tol):
    """(max pairs, min Σd²) over all one-to-one matchings of one frame."""
    n_g, n_p = len(gx), len(px)
    d2 = (np.subtract.outer(gx, px)) ** 2 + (np.subtract.outer(gy, py)) ** 2
    best = (0, 0.0)
    for k in range(1, min(n_g, n_p) + 1):
        for gs in itertools.combinations(range(n_g), k):
            for ps in itertools.permutations(range(n_p), k):
                if all(d2[g, p] <= tol * tol for g, p in zip(gs, ps)):
                    cost = sum(d2[g, p] for g, p in zip(gs, ps))
                    if k > best[0] or (k == best[0] and cost < best[1]):
                        best = (k, cost)
    return best


coords = st.lists(st.tuples(st.integers(0, 1), st.floats(0, 250), st.floats(0, 250)), min_size=0, max_size=5)


@settings(max_examples=150, deadline=None)
@given(coords, coords)
def test_assignment_is_one_to_one_and_optimal_against_brute_force(gts, preds):
    tol = 100.0
    gt = table([g[0] for g in gts], [g[1] for g in gts], [g[2] for g in gts])
    pred = table([p[0] for p in preds], [p[1] for p in preds], [p[2] for p in preds])
    res = match(gt, pred, tol)
    # one-to-one, same frame, within reach
    assert len(set(res.gt_index.tolist())) == res.tp and len(set(res.pred_index.tolist())) == res.tp
    assert np.all(gt.frame[res.gt_index] == pred.frame[res.pred_index])
    assert np.all(res.dx**2 + res.dy**2 <= tol * tol)
    assert np.allclose(res.dx, pred.x[res.pred_index] - gt.x[res.gt_index])
    total_k, total_cost = 0, 0.0
    for f in (0, 1):
        g = gt.frame == f
        p = pred.frame == f
        k, c = _brute_force(gt.x[g], gt.y[g], pred.x[p], pred.y[p], tol)
        total_k += k
        total_cost += c
    assert res.tp == total_k
    assert float(np.sum(res.dx**2 + res.dy**2)) == pytest.approx(total_cost, rel=1e-9, abs=1e-6)


def _crowded(seed: int, n: int = 3000, frames: int = 6, field: float = 3000.0):
    rng = np.random.default_rng(seed)
    f = rng.integers(0, frames, n)
    x, y = rng.uniform(0, field, n), rng.uniform(0, field, n)
    hit = rng.random(n) < 0.85
    n_fp = n // 8
    pf = np.r_[f[hit], rng.integers(0, frames, n_fp)]
    px = np.r_[x[hit] + rng.normal(0, 25, hit.sum()), rng.uniform(0, field, n_fp)]
    py = np.r_[y[hit] + rng.normal(0, 25, hit.sum()), rng.uniform(0, field, n_fp)]
    conf = np.r_[rng.uniform(0.3, 2.2, hit.sum()), rng.uniform(0.1, 0.7, n_fp)]
    conf[:20] = 1.0  # ties in confidence
    return table(f, x, y), table(pf, px, py, conf)


def _assert_sweeps_equal(fast, naive):
    for k in ("n_gt", "n_pred", "tp", "fp", "fn"):
        assert np.array_equal(fast[k], naive[k]), k
    for k in ("precision", "recall", "f1", "jaccard", "rmse_nm", "bias_x_nm", "bias_y_nm", "efficiency"):
        np.testing.assert_allclose(fast[k], naive[k], rtol=1e-10, atol=1e-9, equal_nan=True, err_msg=k)


@pytest.mark.parametrize("batch_limit", [matching.BATCH_LIMIT, 2, 0])
def test_sweep_equals_naive_per_threshold_matching(monkeypatch, batch_limit):
    # 2: larger components through scipy, 0: every component through scipy one prefix at a time
    monkeypatch.setattr(matching, "BATCH_LIMIT", batch_limit)
    gt, pred = _crowded(11)
    matcher = Matcher(gt, pred, 100.0)
    # all three kinds of components occur: lone pairs, stars and general components
    assert len(matcher._s_gi) > 0 and len(matcher.stars[0]) > 0 and matcher.n_general > 0
    thresholds = np.r_[sweep_thresholds(pred["confidence"], 25), 1.0, 5.0]  # incl. a tie value and above all
    fast = matcher.sweep(thresholds)
    _assert_sweeps_equal(fast, naive_sweep(gt, pred, 100.0, thresholds))
    # and the single-threshold matching agrees with the sweep
    for j in (0, 7, 25):
        m = matcher.match(thresholds[j]).metrics
        assert m["tp"] == fast["tp"][j] and m["rmse_nm"] == pytest.approx(fast["rmse_nm"][j], rel=1e-10)
    assert fast["tp"][-1] == 0 and fast["n_pred"][-1] == 0


def test_suggested_thresholds_pick_the_maxima():
    gt, pred = _crowded(3, n=800)
    thresholds = sweep_thresholds(pred["confidence"], 30)
    sw = Matcher(gt, pred, 100.0).sweep(thresholds)
    best = suggest_thresholds(sw)
    assert sw["jaccard"][list(thresholds).index(best["jaccard"])] == np.nanmax(sw["jaccard"])
    assert sw["f1"][list(thresholds).index(best["f1"])] == np.nanmax(sw["f1"])
    # false positives have low confidences: the best threshold is above the lowest one
    assert best["jaccard"] > thresholds[0]


def test_bad_tolerance_is_a_parameter_error():
    from imagebinner.errors import ParameterError

    gt = table([0], [0.0], [0.0])
    with pytest.raises(ParameterError):
        match(gt, gt, 0.0)


def test_threshold_index_gives_the_matching_of_every_threshold_exactly():
    """The review's per-threshold lookups (ThresholdIndex) equal a from-scratch matching: per-prediction true
    positives, per-truth matches, totals and per-frame counts, at thresholds between, at and beyond the confidences."""
    from imagebinner.tools.review.status import DROPPED, TP, ThresholdIndex

    gt, pred = _crowded(5)
    matcher = Matcher(gt, pred, 100.0)
    assert len(matcher.stars[0]) > 0 and matcher.n_general > 0
    n = int(max(gt.frame.max(), pred.frame.max())) + 1
    index = ThresholdIndex(pred, matcher, n)
    for t in np.r_[sweep_thresholds(pred["confidence"], 13), 1.0, 0.05, 9.0]:
        at = index.at(t)
        ref = Matcher(gt, pred, 100.0).match(t)
        tp = np.zeros(len(pred), bool)
        tp[ref.pred_index] = True
        matched = np.zeros(len(gt), bool)
        matched[ref.gt_index] = True
        codes = at.status.prediction
        assert np.array_equal(codes == TP, tp) and np.array_equal(codes != DROPPED, pred["confidence"] >= t)
        assert np.array_equal(at.status.truth_matched, matched)
        rows = pred.frame_rows(2)  # a frame's slice gives that frame's part
        assert np.array_equal(at.status.predictions_of(rows), codes[rows])
        got, want = at.metrics(len(gt)), ref.metrics
        assert got["tp"] == want["tp"] and got["n_pred"] == want["n_pred"]
        assert got["rmse_nm"] == pytest.approx(want["rmse_nm"], rel=1e-9, nan_ok=True)
        per_frame = ref.per_frame(gt.counts_per_frame(n), np.bincount(pred.frame[pred["confidence"] >= t],
                                                                      minlength=n))
        assert np.array_equal(at.frame_metrics(gt.counts_per_frame(n))["tp"], per_frame["tp"])


# -- the fast path's parts against plain references ------------------------------------------------------
ties = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 8), st.integers(0, 8), st.sampled_from([0.2, 0.5, 0.5, 0.9])),
    min_size=0, max_size=14,
)


@settings(max_examples=120, deadline=None)
@given(ties, ties)
def test_sweep_equals_scipy_per_frame_and_threshold_with_ties(gts, preds):
    """Crowded frames on a 40 nm grid (tied distances, chains of ambiguous pairs) and tied confidences: at every
    confidence, between them and beyond, the sweep and the single-threshold matching give the counts and the
    squared error of scipy's assignment re-run from scratch per frame."""
    gt = table([g[0] for g in gts], [40.0 * g[1] for g in gts], [40.0 * g[2] for g in gts])
    pred = table([p[0] for p in preds], [40.0 * p[1] + 3 for p in preds], [40.0 * p[2] for p in preds],
                 [p[3] for p in preds])
    thresholds = np.array([0.0, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0])
    matcher = Matcher(gt, pred, 100.0)
    fast, naive = matcher.sweep(thresholds), naive_sweep(gt, pred, 100.0, thresholds)
    for k in ("n_gt", "n_pred", "tp", "fp", "fn"):
        assert np.array_equal(fast[k], naive[k]), k
    np.testing.assert_allclose(fast["rmse_nm"], naive["rmse_nm"], rtol=1e-12, equal_nan=True)
    for j, t in enumerate(thresholds):
        res = matcher.match(t)
        assert res.tp == naive["tp"][j]
        assert len(set(res.pred_index.tolist())) == res.tp and len(set(res.gt_index.tolist())) == res.tp
        assert np.all(pred["confidence"][res.pred_index] >= t)


def test_prefix_assignments_equal_scipy_on_every_prefix():
    from scipy.optimize import linear_sum_assignment

    from imagebinner.tools.assignment import prefix_assignments_batched, unmatched_cost

    rng = np.random.default_rng(1)
    tol = 100.0
    for trial in range(60):
        n_b, n_r, n_g = int(rng.integers(1, 12)), int(rng.integers(1, 8)), int(rng.integers(1, 8))
        n_rows = np.sort(rng.integers(1, n_r + 1, n_b))[::-1]
        pts = rng.uniform(0, 160, (n_b, n_r + n_g, 2))
        if trial % 2:
            pts = np.round(pts / 40) * 40  # tied distances
        d2 = ((pts[:, :n_r, None, :] - pts[:, None, n_r:, :]) ** 2).sum(-1)
        cost = np.where(d2 <= tol * tol, d2, np.inf)
        for b in range(n_b):
            cost[b, n_rows[b]:] = np.inf
        comp, k, row, col = prefix_assignments_batched(cost, n_rows, tol)
        for b in range(n_b):
            for kk in range(1, n_rows[b] + 1):
                sub = cost[b, :kk]
                r, c = linear_sum_assignment(np.where(np.isfinite(sub), sub, unmatched_cost(min(sub.shape), tol)))
                ok = np.isfinite(sub[r, c])
                sel = (comp == b) & (k == kk)
                assert np.all(row[sel] < kk) and np.all(np.isfinite(sub[row[sel], col[sel]]))
                assert len(set(row[sel].tolist())) == len(set(col[sel].tolist())) == sel.sum() == ok.sum()
                assert sub[row[sel], col[sel]].sum() == pytest.approx(sub[r[ok], c[ok]].sum(), rel=1e-12, abs=1e-9)


def test_candidate_pairs_equal_brute_force_on_cell_edges_and_odd_coordinates():
    from imagebinner.tools.pairs import candidate_pairs

    rng = np.random.default_rng(7)
    n = 400
    frame = rng.integers(3, 6, n)
    x = np.r_[rng.choice([-100.0, 0.0, 100.0, 200.0, 300.0], n // 2), rng.uniform(-250, 350, n - n // 2)]
    y = np.r_[rng.uniform(-250, 350, n // 2), rng.choice([-100.0, 0.0, 100.0, 200.0], n - n // 2)]
    y[:100] = rng.choice([-100.0, 0.0, 100.0], 100)  # gt and predictions on the cell grid: exact distances of 100
    x[n // 2: n // 2 + 100] = rng.choice([-100.0, 0.0, 100.0], 100)
    gt = table(frame[: n // 2], x[: n // 2], y[: n // 2])
    pred = table(frame[n // 2:], x[n // 2:], y[n // 2:])
    gi, pi, d2, dx, dy = candidate_pairs(gt, pred, 100.0)
    ddx = np.subtract.outer(gt.x, pred.x)
    ddy = np.subtract.outer(gt.y, pred.y)
    want = (ddx**2 + ddy**2 <= 100.0**2) & np.equal.outer(gt.frame, pred.frame)
    assert sorted(zip(gi.tolist(), pi.tolist())) == sorted(zip(*np.nonzero(want)))
    assert np.array_equal(dx, pred.x[pi] - gt.x[gi]) and np.array_equal(d2, dx * dx + dy * dy)
    assert np.any(d2 == 100.0**2)  # pairs exactly at the tolerance are candidates


def test_components_equal_scipy_connected_components():
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from imagebinner.tools.pairs import bipartite_components

    rng = np.random.default_rng(3)
    n_g, n_p, n_e = 300, 280, 420
    g = np.r_[np.arange(n_g), rng.integers(0, n_g, n_e - n_g)]
    p = np.r_[rng.integers(0, n_p, n_g), rng.integers(0, n_p, n_e - n_g)]
    p[:n_p] = np.arange(n_p)  # every node has an edge
    label = bipartite_components(g, p, n_g, n_p)
    graph = coo_matrix((np.ones(n_e), (g, p + n_g)), shape=(n_g + n_p, n_g + n_p))
    _, ref = connected_components(graph, directed=False)
    ref = ref[:n_g]
    # the same partition of the ground-truth nodes
    assert len(set(zip(label.tolist(), ref.tolist()))) == len(set(label.tolist())) == len(set(ref.tolist()))


grid_points = st.lists(st.tuples(st.integers(0, 1), st.integers(-6, 6), st.integers(-6, 6),
                                 st.sampled_from([0.0, 1e-9, -1e-9, 0.5, 33.3])), min_size=1, max_size=25)


@settings(max_examples=150, deadline=None)
@given(grid_points, grid_points, st.sampled_from([100.0, 50.0, 0.7]))
def test_candidate_pairs_equal_brute_force_at_exact_tolerance_distances(gts, preds, tol):
    """Points on a grid of half the tolerance (distances of exactly the tolerance, cell edges) nudged by ±1e-9."""
    from imagebinner.tools.pairs import candidate_pairs

    def make(points):
        return table([p[0] for p in points], [p[1] * tol / 2 + p[3] for p in points],
                     [p[2] * tol / 2 - p[3] for p in points])

    gt, pred = make(gts), make(preds)
    gi, pi, d2, _, _ = candidate_pairs(gt, pred, tol)
    dx, dy = np.subtract.outer(pred.x, gt.x), np.subtract.outer(pred.y, gt.y)
    want = (dx * dx + dy * dy <= tol * tol) & np.equal.outer(pred.frame, gt.frame)
    assert sorted(zip(pi.tolist(), gi.tolist())) == sorted(zip(*np.nonzero(want)))


def test_general_components_are_solved_in_a_few_batched_calls(monkeypatch):
    """No Python call per component: thousands of general components go through one batched call per size
    bucket, every prefix state included."""
    calls = []
    real = matching.prefix_assignments_batched

    def counting(cost, n_rows, tolerance):
        calls.append(len(n_rows))
        return real(cost, n_rows, tolerance)

    monkeypatch.setattr(matching, "prefix_assignments_batched", counting)
    gt, pred = _crowded(2, n=20_000, frames=10, field=12_000.0)
    matcher = Matcher(gt, pred, 100.0)
    assert matcher.n_general > 1000
    assert sum(calls) == matcher.n_general and len(calls) <= 16
    assert matcher.states[-1] == sum(len(c) for c in np.split(matcher._g_conf, matcher._g_start[1:]))


def test_matching_path_imports_no_scipy():
    """The review's matching (pairs, components, every state, sweep, threshold index) runs without scipy (whose
    import alone costs a good part of the whole-process budget)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from imagebinner.io import LocTable\n"
        "from imagebinner.tools.matching import Matcher, sweep_thresholds\n"
        "from imagebinner.tools.review.status import ThresholdIndex\n"
        "rng = np.random.default_rng(0)\n"
        "n = 3000; f = rng.integers(0, 5, n); x = rng.uniform(0, 8000, n); y = rng.uniform(0, 8000, n)\n"
        "gt = LocTable({'frame': f, 'x': x, 'y': y})\n"
        "pred = LocTable({'frame': f, 'x': x + rng.normal(0, 30, n), 'y': y, 'confidence': rng.random(n)})\n"
        "m = Matcher(gt, pred, 100.0); m.sweep(sweep_thresholds(pred['confidence'], 50))\n"
        "ThresholdIndex(pred, m, 5).at(0.5)\n"
        "assert m.n_general > 0\n"
        "print(sorted({k.split('.')[0] for k in sys.modules} & {'scipy', 'numba', 'pandas'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_batches_split_into_chunks_give_the_same_sweep(monkeypatch):
    gt, pred = _crowded(4, n=4000, frames=4, field=6000.0)
    thresholds = sweep_thresholds(pred["confidence"], 20)
    whole = Matcher(gt, pred, 100.0).sweep(thresholds)
    monkeypatch.setattr(matching, "BATCH_CELLS", 1)  # one component per batched run
    _assert_sweeps_equal(Matcher(gt, pred, 100.0).sweep(thresholds), whole)
