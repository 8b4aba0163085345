"""Benchmark: exact matching + 50-threshold sweep on 1 M ground-truth and 1 M predicted localizations.

Data: 10,000 frames of a 25.6 µm × 25.6 µm field (256 px at 100 nm), 100 ground-truth localizations per frame;
predictions = 90 % of them with 20 nm Gaussian jitter (confidence 0.3–2.5) plus false positives at random places
(confidence 0.1–0.8), 1 M predictions in total. Tolerance 100 nm.

Timed: building the matcher (KD-tree candidate pairs, components), the match at one threshold and the 50-threshold
sweep. Baseline: the full matching re-run from scratch for each threshold (``naive_sweep``); by default it is timed
on ``--naive-thresholds`` of the 50 thresholds (equality with the fast sweep is checked on those) and extrapolated to
50; ``--naive-thresholds 50`` times all of them.

    .venv/bin/python benchmarks/review.py [--n 1000000] [--frames 10000] [--naive-thresholds 5]

Prints the figures; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from imagebinner.io.table import LocMeta, LocTable
from imagebinner.tools.matching import Matcher, naive_sweep, suggest_thresholds, sweep_thresholds


def make_data(n: int, n_frames: int, seed: int = 0) -> tuple[LocTable, LocTable]:
    rng = np.random.default_rng(seed)
    field = 25_600.0
    frame = np.sort(rng.integers(0, n_frames, n))
    x, y = rng.uniform(0, field, n), rng.uniform(0, field, n)
    meta = LocMeta(pixel_size=100.0, image_shape=(256, 256), n_frames=n_frames)
    gt = LocTable({"frame": frame, "x": x, "y": y}, meta, presorted=True)
    hit = rng.random(n) < 0.9
    n_hit = int(hit.sum())
    n_fp = n - n_hit
    pf = np.r_[frame[hit], rng.integers(0, n_frames, n_fp)]
    px = np.r_[x[hit] + rng.normal(0, 20, n_hit), rng.uniform(0, field, n_fp)]
    py = np.r_[y[hit] + rng.normal(0, 20, n_hit), rng.uniform(0, field, n_fp)]
    conf = np.r_[rng.uniform(0.3, 2.5, n_hit), rng.uniform(0.1, 0.8, n_fp)]
    pred = LocTable({"frame": pf, "x": px, "y": py, "confidence": conf}, meta)
    return gt, pred


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="ground-truth (and predicted) localizations")
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--n-thresholds", type=int, default=50)
    ap.add_argument("--naive-thresholds", type=int, default=5, help="thresholds timed for the naive baseline")
    ap.add_argument("--tolerance", type=float, default=100.0)
    args = ap.parse_args()

    gt, pred = make_data(args.n, args.frames)
    thresholds = sweep_thresholds(pred["confidence"], args.n_thresholds)

    t0 = time.perf_counter()
    matcher = Matcher(gt, pred, args.tolerance)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = matcher.match(float(np.median(pred["confidence"])))
    t_match = time.perf_counter() - t0
    t0 = time.perf_counter()
    sweep = matcher.sweep(thresholds)
    t_sweep = time.perf_counter() - t0
    total = t_build + t_match + t_sweep

    pick = np.unique(np.linspace(0, len(thresholds) - 1, max(1, args.naive_thresholds)).round().astype(int))
    t0 = time.perf_counter()
    naive = naive_sweep(gt, pred, args.tolerance, thresholds[pick])
    t_naive = time.perf_counter() - t0
    t_naive_50 = t_naive / len(pick) * len(thresholds)
    equal = all(
        np.array_equal(np.asarray(sweep[k])[pick], naive[k]) for k in ("tp", "fp", "fn", "n_pred")
    ) and all(
        np.allclose(np.asarray(sweep[k])[pick], naive[k], rtol=1e-10, atol=1e-9, equal_nan=True)
        for k in ("jaccard", "f1", "rmse_nm", "bias_x_nm", "bias_y_nm", "efficiency")
    )
    best = suggest_thresholds(sweep)
    figures = {
        "n_gt": len(gt),
        "n_pred": len(pred),
        "n_frames": args.frames,
        "tolerance_nm": args.tolerance,
        "n_thresholds": len(thresholds),
        "candidate_pairs": matcher.n_candidates,
        "general_components": len(matcher._general),
        "build_s": round(t_build, 3),
        "match_one_threshold_s": round(t_match, 3),
        "sweep_s": round(t_sweep, 3),
        "total_s": round(total, 3),
        "naive_thresholds_timed": int(len(pick)),
        "naive_timed_s": round(t_naive, 3),
        "naive_per_threshold_s": round(t_naive / len(pick), 3),
        "naive_50_extrapolated_s": round(t_naive_50, 2),
        "speedup": round(t_naive_50 / total, 1),
        "sweep_equals_naive": bool(equal),
        "goal_s": 3.0,
        "goal_met": bool(total <= 3.0),
        "jaccard_at_median_conf": round(result.metrics["jaccard"], 5),
        "best_jaccard_threshold": best["jaccard"],
        "best_f1_threshold": best["f1"],
    }
    print(f"data: {len(gt):,} ground truth, {len(pred):,} predictions, {args.frames:,} frames, "
          f"tolerance {args.tolerance} nm, {matcher.n_candidates:,} candidate pairs")
    print(f"matcher build (KD-tree pairs + components): {t_build:.3f} s")
    print(f"match at one threshold:                     {t_match:.3f} s")
    print(f"{len(thresholds)}-threshold sweep:                      {t_sweep:.3f} s")
    print(f"total:                                      {total:.3f} s (goal <= 3 s: {'met' if total <= 3 else 'MISSED'})")
    print(f"naive baseline: {t_naive:.2f} s for {len(pick)} thresholds -> {t_naive_50:.1f} s for {len(thresholds)} "
          f"(x{t_naive_50 / total:.1f}); sweep equals naive on those: {equal}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
