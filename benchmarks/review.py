"""Benchmark: the whole ``imagebinner review FOLDER --ground-truth T --json`` process on 1 M vs 1 M localizations.

Two cases, each written to files first, then reviewed by a fresh process (``python -m imagebinner.cli review``):

* ``issue`` (the case issue 11 measured: 6.9 s, 0.7 GB, 35 k general components = 70 k ``np.unique`` calls):
  10,000 frames, 100 ground-truth localizations per frame on average in a 6.4 µm × 6.4 µm field (64 px at 100 nm,
  2.4 per µm²); predictions = 90 % of them with 20 nm Gaussian jitter (confidence 0.3–2.5) plus false positives at
  random places (confidence 0.1–0.8), as many predictions as ground truth. Tolerance 100 nm.
* ``dense``: the same 100 per frame in a 3.2 µm × 3.2 µm field (9.8 per µm²: 115 k general components, up to
  10 × 10).
* ``sparse`` (optional): the same in a 25.6 µm field (the project's earlier benchmark; 2.4 k general components).

Files: ``Localizations_bench_avg.csv`` (the notebook's header ``frame,x [nm],y [nm],confidence [a.u]``, 1-based
frames) and ``truth.csv`` (ThunderSTORM CSV, 1-based frames). Measured per case: wall time of the review process and
its CPU time and peak RSS (``resource.getrusage(RUSAGE_CHILDREN)`` of a wrapper process that runs only that
review; medians of ``--repeat`` runs); with ``--baseline-tree`` an older source tree's review runs interleaved with
it (same files, same machine load) for side-by-side ratios, the figures the issue quotes as baseline (6.9 s, 0.7 GB on the issue's case), and a check that the
reported sweep equals a naive re-matching (scipy ``linear_sum_assignment`` per frame, from scratch) at
``--naive-thresholds`` of the thresholds (in this process, not timed).

    .venv/bin/python benchmarks/review.py [--n 1000000] [--frames 10000] [--repeat 3] [--cases issue,dense,sparse]

Prints the figures; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BASELINE = {"issue": {"wall_s": 6.9, "peak_mb": 700.0}}  # issue 11, measured before this work
GOAL = {"wall_s": 3.0, "peak_mb": 1000.0}
CASES = {"issue": 6_400.0, "dense": 3_200.0, "sparse": 25_600.0}  # field side in nm

_RUN = """
import resource, subprocess, sys, time, json
t0 = time.perf_counter()
res = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
wall = time.perf_counter() - t0
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stderr.write(res.stderr.decode()[-2000:])
print(json.dumps({"rc": res.returncode, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                  "peak_kb": usage.ru_maxrss, "out": res.stdout.decode()}))
"""


def make_tables(n: int, n_frames: int, field: float, seed: int = 0) -> tuple[dict, dict]:
    """Ground truth and predictions as column dicts (0-based frames, nm)."""
    rng = np.random.default_rng(seed)
    frame = np.sort(rng.integers(0, n_frames, n))
    x, y = rng.uniform(0, field, n), rng.uniform(0, field, n)
    hit = rng.random(n) < 0.9
    n_hit = int(hit.sum())
    n_fp = n - n_hit
    pf = np.r_[frame[hit], rng.integers(0, n_frames, n_fp)]
    px = np.r_[x[hit] + rng.normal(0, 20, n_hit), rng.uniform(0, field, n_fp)]
    py = np.r_[y[hit] + rng.normal(0, 20, n_hit), rng.uniform(0, field, n_fp)]
    conf = np.r_[rng.uniform(0.3, 2.5, n_hit), rng.uniform(0.1, 0.8, n_fp)]
    order = np.argsort(pf, kind="stable")
    truth = {"frame": frame, "x": x, "y": y}
    pred = {"frame": pf[order], "x": np.clip(px[order], 0, field), "y": np.clip(py[order], 0, field),
            "confidence": conf[order]}
    return truth, pred


def write_case(folder: Path, truth: dict, pred: dict) -> tuple[Path, Path]:
    """The prediction folder and the ground-truth file (plain text, written with numpy)."""
    folder.mkdir(parents=True, exist_ok=True)
    pred_path = folder / "Localizations_bench_avg.csv"
    table = np.column_stack([pred["frame"] + 1, pred["x"], pred["y"], pred["confidence"]])
    np.savetxt(pred_path, table, fmt=["%d", "%.3f", "%.3f", "%.6f"], delimiter=",",
               header="frame,x [nm],y [nm],confidence [a.u]", comments="")
    truth_path = folder.parent / f"{folder.name}_truth.csv"
    table = np.column_stack([np.arange(1, len(truth["x"]) + 1), truth["frame"] + 1, truth["x"], truth["y"]])
    np.savetxt(truth_path, table, fmt=["%d", "%d", "%.3f", "%.3f"], delimiter=",",
               header='"id","frame","x [nm]","y [nm]"', comments="")
    return pred_path, truth_path


def review_process(folder: Path, truth_path: Path, n_thresholds: int, tree: str | None = None) -> dict:
    """One whole review process: wall time, CPU time, peak RSS and its JSON output (``tree``: a source tree of
    imagebinner to run instead of the installed one, e.g. an older commit for a side-by-side baseline)."""
    cmd = [sys.executable, "-m", "imagebinner.cli", "review", str(folder), "--ground-truth", str(truth_path),
           "--n-thresholds", str(n_thresholds), "--json"]
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = os.pathsep.join([tree, *filter(None, [env.get("PYTHONPATH")])])
    # cwd: the data folder, so that ``-m`` does not put a source tree in the current folder first on the path
    res = subprocess.run([sys.executable, "-c", _RUN, *cmd], capture_output=True, text=True, check=True, env=env,
                         cwd=folder.parent)
    got = json.loads(res.stdout)
    if got["rc"] != 0:
        raise SystemExit(f"review failed ({got['rc']}): {res.stderr}")
    return {"wall_s": got["wall_s"], "cpu_s": got["cpu_s"], "peak_mb": got["peak_kb"] / 1024.0,
            "summary": json.loads(got["out"])}


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def naive_check(truth: dict, pred: dict, summary: dict, tolerance: float, n_check: int) -> bool:
    """The process's sweep equals a from-scratch per-threshold matching at ``n_check`` of its thresholds."""
    from imagebinner.io.table import LocTable
    from imagebinner.tools.matching import naive_sweep

    rows = summary["sweep"]
    pick = np.unique(np.linspace(0, len(rows) - 1, max(1, n_check)).round().astype(int))
    # the values as the process read them back from the files (3 decimals written)
    gt = LocTable({k: np.round(v, 3) if k != "frame" else v for k, v in truth.items()})
    pr = LocTable({k: np.round(v, 3 if k != "confidence" else 6) if k != "frame" else v for k, v in pred.items()})
    thresholds = np.array([rows[i]["threshold"] for i in pick])
    naive = naive_sweep(gt, pr, tolerance, thresholds)
    ok = True
    for j, i in enumerate(pick):
        ok &= all(rows[i][k] == int(naive[k][j]) for k in ("tp", "fp", "fn"))
        ok &= all(
            (rows[i][k] is None and not np.isfinite(naive[k][j])) or np.isclose(rows[i][k], naive[k][j], rtol=1e-9)
            for k in ("jaccard", "f1", "rmse_nm")
        )
    return bool(ok)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="ground-truth (and predicted) localizations")
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--n-thresholds", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3, help="review processes per case (median reported)")
    ap.add_argument("--naive-thresholds", type=int, default=3, help="thresholds checked against naive re-matching")
    ap.add_argument("--cases", default="issue,dense")
    ap.add_argument("--keep", metavar="DIR", help="write the files here (and keep them) instead of a temp folder")
    ap.add_argument("--baseline-tree", metavar="DIR",
                    help="source tree of an older imagebinner (e.g. `git archive <commit> | tar -x -C DIR`): its "
                         "review runs interleaved with this one, for ratios under the same machine load")
    args = ap.parse_args()

    figures: dict = {"n_gt": args.n, "n_pred": args.n, "n_frames": args.frames, "n_thresholds": args.n_thresholds,
                     "goal": GOAL, "cases": {}}
    with tempfile.TemporaryDirectory(prefix="imagebinner-review-bench-") as tmp:
        root = Path(args.keep or tmp)
        for case in args.cases.split(","):
            truth, pred = make_tables(args.n, args.frames, CASES[case])
            t0 = time.perf_counter()
            folder = root / case
            write_case(folder, truth, pred)
            t_write = time.perf_counter() - t0
            runs, base_runs = [], []
            for _ in range(args.repeat):  # interleaved: both see the same load
                runs.append(review_process(folder, root / f"{case}_truth.csv", args.n_thresholds))
                if args.baseline_tree:
                    base_runs.append(review_process(folder, root / f"{case}_truth.csv", args.n_thresholds,
                                                    args.baseline_tree))
            wall, cpu, peak = (_median(runs, k) for k in ("wall_s", "cpu_s", "peak_mb"))
            summary = runs[0]["summary"]
            equal = naive_check(truth, pred, summary, summary["tolerance_nm"], args.naive_thresholds)
            out = {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "peak_mb": round(peak, 1),
                   "wall_runs_s": [round(r["wall_s"], 3) for r in runs], "write_files_s": round(t_write, 2),
                   "jaccard": summary["jaccard"], "tp": summary["tp"], "sweep_equals_naive": equal,
                   "goal_met": bool(wall <= GOAL["wall_s"] and peak <= GOAL["peak_mb"])}
            text = ""
            if base_runs:
                bw, bc, bp = (_median(base_runs, k) for k in ("wall_s", "cpu_s", "peak_mb"))
                same = all(base_runs[0]["summary"][k] == summary[k] for k in ("tp", "fp", "fn"))
                out["side_by_side"] = {"tree": args.baseline_tree, "wall_s": round(bw, 3), "cpu_s": round(bc, 3),
                                       "peak_mb": round(bp, 1), "speedup_wall": round(bw / wall, 2),
                                       "speedup_cpu": round(bc / cpu, 2), "same_counts": same}
                text = (f"; side by side with {args.baseline_tree}: {bw:.2f} s wall, {bc:.2f} s CPU, {bp:.0f} MB "
                        f"(x{bw / wall:.2f} wall, x{bc / cpu:.2f} CPU; same TP/FP/FN: {same})")
            base = BASELINE.get(case)
            if base:
                out["issue_baseline"] = base
                out["speedup_vs_issue_figure"] = round(base["wall_s"] / wall, 2)
            figures["cases"][case] = out
            print(f"{case}: review process {wall:.2f} s wall (runs {out['wall_runs_s']}), {cpu:.2f} s CPU, peak "
                  f"{peak:.0f} MB, Jaccard {summary['jaccard']:.4f}; goal <= {GOAL['wall_s']} s and "
                  f"<= {GOAL['peak_mb']:.0f} MB: {'met' if out['goal_met'] else 'MISSED'}; sweep equals naive: "
                  f"{equal}{text}", flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
