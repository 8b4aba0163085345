"""Benchmark the Binner on three simulated 1 GB uint16 movies against a whole-movie ``tifffile.imread`` baseline.

    .venv/bin/python benchmarks/bin.py [--frames 2000] [--size 512] [--repeat 5]

Writes three movies (default 2000 frames of 512x512 uint16, ~1.05 GB each) with TifWriter and a DeepSTORM CSV of
``--locs-per-frame`` (default 5) uniformly placed localizations per frame for each into a temporary folder, then times

* the Binner: ``Binner(...).save()`` end to end (reads the CSVs, draws the pool, writes TIF + CSV + JSON) for 1000
  binned frames of bin 10 and 27 px patches;
* the baseline: ``tifffile.imread`` of each whole movie, then cropping and summing the same windows (taken from the
  Binner's provenance; no tables, no output files: the baseline is given every advantage but the laziness);
* the same pixel work done lazily (open the movies, read only the windows, sum): the movie-access part alone.

All three are timed with a cold page cache (movies and localization tables evicted with
``posix_fadvise(DONTNEED)``, on the benchmark's own files only) and again warm; each Binner run writes a fresh
output folder (as a real run does: outputs are never replaced by default). Reported: the median of ``--repeat``
runs, the end-to-end ratio (baseline / Binner), the pixel-access-only ratio (baseline / lazy window reads), a
breakdown of the Binner's warm time by step, and the peak traced heap (tracemalloc) of the Binner and the
baseline. The temporary files are deleted at the end. The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import tifffile

from imagebinner.io import LocMeta, LocTable, TifWriter, open_movie, write_locs
from imagebinner.tools.binner import Binner

PIXEL_SIZE = 100.0
N_MOVIES = 3


def make_movie(
    folder: Path, index: int, n_frames: int, size: int, rng: np.random.Generator, locs_per_frame: int = 5
) -> tuple[Path, Path]:
    """A fast synthetic movie (a few cycled noise frames around offset 100) and random localizations."""
    movie_path = folder / f"movie{index}.tif"
    locs_path = folder / f"movie{index}_locs.csv"
    templates = (100 + rng.poisson(10, size=(8, size, size))).astype(np.uint16)
    with TifWriter(movie_path, pixel_size=PIXEL_SIZE) as writer:
        writer.write_stream((templates[k % len(templates)] for k in range(n_frames)), n_frames)
    n = n_frames * locs_per_frame
    table = LocTable(
        {
            "frame": np.repeat(np.arange(n_frames), locs_per_frame),
            "x": rng.uniform(0, size * PIXEL_SIZE, n),
            "y": rng.uniform(0, size * PIXEL_SIZE, n),
            "photons": rng.uniform(500, 5000, n),
            "sigma": np.full(n, 130.0),
        },
        LocMeta(pixel_size=PIXEL_SIZE, image_shape=(size, size), n_frames=n_frames),
    )
    write_locs(table, locs_path, format="deepstorm")
    return movie_path, locs_path


def drop_cache(paths: list[Path]) -> None:
    """Evict this benchmark's own movie files from the page cache (a cold read, as for a movie not just written)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def make_binner(pairs: list[tuple[Path, Path]], out: Path, seed: int) -> Binner:
    return Binner(
        measurements=[(str(m), str(l)) for m, l in pairs],
        patch_size=27,
        n_binned=1000,
        bin_size=10,
        n_patches=200,
        min_emitters=2,
        seed=seed,
        output_folder=str(out),
        overwrite=False,  # the default: each run writes a fresh folder
    )


def run_binner(pairs: list[tuple[Path, Path]], out: Path, seed: int, trace: bool) -> tuple[float, float, int, dict]:
    """End to end: read the tables, open the movies lazily, draw, write TIF + CSV + JSON."""
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    binner = make_binner(pairs, out, seed)
    binner.load()
    t_load = time.perf_counter() - t0
    binner.save()
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    if trace:
        tracemalloc.stop()
    provenance = json.loads((out / "binned.json").read_text())
    stats = binner.statistics()
    binner.close()
    return elapsed, t_load, peak, {"provenance": provenance, "stats": stats}


def binner_phases(pairs: list[tuple[Path, Path]], out: Path, seed: int) -> dict[str, float]:
    """Warm time of each step of the same job: tables + movies, pool draw, plan + labels, writing the outputs."""
    t0 = time.perf_counter()
    binner = make_binner(pairs, out, seed)
    binner.load()
    t1 = time.perf_counter()
    binner.draw_pool()
    t2 = time.perf_counter()
    binner.compose()
    binner.binned_locs()
    t3 = time.perf_counter()
    binner.save()  # reuses the pool and the plan: reads the patches, sums, writes TIF + CSV + JSON
    t4 = time.perf_counter()
    binner.close()
    return {"load_tables_open_movies_s": t1 - t0, "draw_pool_s": t2 - t1, "compose_and_labels_s": t3 - t2,
            "read_sum_write_s": t4 - t3}


def run_baseline(pairs: list[tuple[Path, Path]], provenance: dict, trace: bool) -> tuple[float, int, np.ndarray]:
    """Whole movies with tifffile.imread, then crop and sum the same windows (pixel work only)."""
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    params = provenance["parameters"]
    size, offset, bin_size = params["patch_size"], params["camera_offset"], params["bin_size"]
    frames = provenance["binned_frames"]
    sums = np.zeros((len(frames), size, size), dtype=np.int64)
    for i, (movie_path, _) in enumerate(pairs):
        movie = tifffile.imread(movie_path)  # the whole movie in memory
        for j, entry in enumerate(frames):
            for part in entry["parts"]:
                if part["measurement"] == i:
                    r, c = part["row"], part["column"]
                    sums[j] += movie[part["frame"], r : r + size, c : c + size]
        del movie
    sums -= int(offset) * (bin_size - 1)
    result = np.clip(sums, 0, 65535).astype(np.uint16)
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    if trace:
        tracemalloc.stop()
    return elapsed, peak, result


def run_lazy_pixels(pairs: list[tuple[Path, Path]], provenance: dict) -> tuple[float, np.ndarray]:
    """The baseline's pixel work done lazily: open the movies, read only the windows (what the Binner does)."""
    t0 = time.perf_counter()
    params = provenance["parameters"]
    size, offset, bin_size = params["patch_size"], params["camera_offset"], params["bin_size"]
    frames = provenance["binned_frames"]
    movies = [open_movie(m) for m, _ in pairs]
    windows = sorted({(p["measurement"], p["frame"], p["row"], p["column"]) for f in frames for p in f["parts"]})
    for i, movie in enumerate(movies):
        movie.advise_windows([(k, r, c) for j, k, r, c in windows if j == i], size)
    patches = {w: movies[w[0]].window(w[1], w[2], w[3], size).astype(np.int64) for w in windows}
    sums = np.zeros((len(frames), size, size), dtype=np.int64)
    for j, entry in enumerate(frames):
        for p in entry["parts"]:
            sums[j] += patches[(p["measurement"], p["frame"], p["row"], p["column"])]
    sums -= int(offset) * (bin_size - 1)
    result = np.clip(sums, 0, 65535).astype(np.uint16)
    for movie in movies:
        movie.close()
    return time.perf_counter() - t0, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=2000, help="frames per movie (default 2000: ~1.05 GB)")
    parser.add_argument("--size", type=int, default=512, help="frame edge in pixels (default 512)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--locs-per-frame", type=int, default=5, help="uniformly placed localizations per frame")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per condition (median reported)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="imagebinner-bench-"))
    try:
        rng = np.random.default_rng(args.seed)
        t0 = time.perf_counter()
        pairs = [make_movie(tmp, i, args.frames, args.size, rng, args.locs_per_frame) for i in range(N_MOVIES)]
        gen_time = time.perf_counter() - t0
        movie_bytes = [p.stat().st_size for p, _ in pairs]
        print(f"generated {N_MOVIES} movies of {args.frames} x {args.size}x{args.size} uint16 "
              f"({sum(movie_bytes) / 1e9:.2f} GB) in {gen_time:.1f} s")
        movies = [m for m, _ in pairs]
        inputs = movies + [loc for _, loc in pairs]  # what a cold run must read from disk
        # warm-up on a small copy of the job (imports of pandas/pyarrow etc. are not what is measured)
        small = [make_movie(tmp, 10 + i, 20, 64, rng) for i in range(N_MOVIES)]
        run_binner(small, tmp / "warmup", args.seed, trace=False)
        results = {}
        for cache in ("cold", "warm"):
            t_bins, t_loads, t_bases, t_lazys = [], [], [], []
            identical = True
            for k in range(args.repeat):
                # a fresh output folder each run, as a real run writes (outputs are never replaced by default)
                out = tmp / f"out-{cache}-{k}"
                if cache == "cold":
                    drop_cache(inputs)
                t_bin, t_load, _, info = run_binner(pairs, out, args.seed, trace=False)
                if cache == "cold":
                    drop_cache(movies)
                t_base, _, base_frames = run_baseline(pairs, info["provenance"], trace=False)
                if cache == "cold":
                    drop_cache(movies)
                t_lazy, lazy_frames = run_lazy_pixels(pairs, info["provenance"])
                assert np.array_equal(lazy_frames, base_frames)
                with tifffile.TiffFile(out / "binned.tif") as tif:
                    identical &= bool(np.array_equal(tif.asarray(), base_frames))
                shutil.rmtree(out)
                t_bins.append(t_bin)
                t_loads.append(t_load)
                t_bases.append(t_base)
                t_lazys.append(t_lazy)
            t_bin, t_load, t_base, t_lazy = (float(np.median(v)) for v in (t_bins, t_loads, t_bases, t_lazys))
            results[cache] = {
                "binner_s": round(t_bin, 3),
                "binner_load_tables_s": round(t_load, 3),
                "baseline_s": round(t_base, 3),
                "speedup": round(t_base / t_bin, 1),
                "lazy_pixels_s": round(t_lazy, 4),
                "pixel_access_speedup": round(t_base / t_lazy, 1),
                "identical_frames": identical,
            }
            r = results[cache]
            print(f"{cache} page cache (median of {args.repeat}): Binner {r['binner_s']:.3f} s end to end (of which "
                  f"{t_load:.3f} s reading the localization tables and opening the movies), baseline imread + crop "
                  f"{r['baseline_s']:.3f} s: {r['speedup']:.1f}x faster; binned frames identical to the baseline: "
                  f"{identical}")
            print(f"  pixel access alone: lazy window reads {t_lazy:.4f} s vs imread + crop {t_base:.3f} s: "
                  f"{t_base / t_lazy:.0f}x faster")
        phase_runs = [binner_phases(pairs, tmp / f"out-phases-{k}", args.seed) for k in range(args.repeat)]
        phases = {name: round(float(np.median([p[name] for p in phase_runs])), 4) for name in phase_runs[0]}
        results["warm_steps"] = phases
        print("Binner steps, warm (median): " + ", ".join(f"{k[:-2].replace('_', ' ')} {v * 1e3:.1f} ms"
                                                          for k, v in phases.items()))
        # peak traced heap, measured in separate runs (tracemalloc slows Python code down)
        _, _, peak_bin, info = run_binner(pairs, tmp / "out-heap", args.seed, trace=True)
        _, peak_base, _ = run_baseline(pairs, info["provenance"], trace=True)
        results["heap"] = {"binner_peak_mb": round(peak_bin / 2**20, 1),
                           "baseline_peak_mb": round(peak_base / 2**20, 1)}
        print(f"peak traced heap: Binner {peak_bin / 2**20:.1f} MB, baseline {peak_base / 2**20:.1f} MB")
        pool = info["stats"]["pool"]
        print(f"pool: {pool['draws']} windows drawn, acceptance rate {pool['acceptance_rate']:.3g}, "
              f"mode {pool['mode']}")
        print()
        print(f"{'':16s}{'Binner end to end':>19s}{'baseline':>11s}{'ratio':>8s}   {'lazy pixels':>12s}"
              f"{'pixel ratio':>13s}")
        for cache in ("cold", "warm"):
            r = results[cache]
            print(f"{cache + ' cache':16s}{r['binner_s']:>17.3f} s{r['baseline_s']:>9.3f} s{r['speedup']:>7.1f}x   "
                  f"{r['lazy_pixels_s']:>10.4f} s{r['pixel_access_speedup']:>12.1f}x")
        print(f"{'peak heap':16s}{peak_bin / 2**20:>16.1f} MB{peak_base / 2**20:>8.0f} MB")
        figures = {
            "movies": N_MOVIES,
            "frames_per_movie": args.frames,
            "frame_size": args.size,
            "locs_per_frame": args.locs_per_frame,
            "pool_mode": pool["mode"],
            "movie_gb_total": round(sum(movie_bytes) / 1e9, 2),
            "n_binned": 1000,
            "bin_size": 10,
            "patch_size": 27,
            "generation_s": round(gen_time, 1),
            "repeat": args.repeat,
            **{f"{cache}_{k}": v for cache, r in results.items() for k, v in r.items()},
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
