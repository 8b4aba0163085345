"""Lazy movie access, TIF writing and simulation speed.

* 10.5 GB ImageJ '>4 GB' TIF (raw data behind one header; a sparse file, so no real disk is used): open time and
  random frame access time (memory-mapped).
* Compressed (zlib) 5000-frame TIF: open + random frame time, page-wise, against tifffile's series (parses every
  page header at open) and a full ``tifffile.imread``.
* TifWriter streaming throughput against ``tifffile.imwrite`` of the same in-memory stack.
* Simulator: frames per second (64x64 and 256x256).

Run: ``.venv/bin/python benchmarks/movie.py``. Prints the figures, then one JSON line. Temporary files are removed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import tifffile

from imagebinner.io import TifWriter, open_movie
from imagebinner.simulate import simulate_measurement


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="imagebinner-bench-movie-"))
    rng = np.random.default_rng(0)
    results: dict[str, float] = {}
    try:
        # -- 10 GB sparse ImageJ movie --------------------------------------------------------------------------
        big = tmp / "huge_imagej.tif"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mm = tifffile.memmap(big, shape=(20000, 512, 512), dtype="uint16", imagej=True)
        del mm
        t0 = time.perf_counter()
        movie = open_movie(big)
        results["huge_open_s"] = time.perf_counter() - t0
        frames = rng.integers(0, movie.n_frames, 50)
        it = iter(frames)
        results["huge_frame_ms"] = 1e3 * _median_time(lambda: movie.frame(next(it)), 50)
        results["huge_size_gb"] = big.stat().st_size / 1e9
        movie.close()
        big.unlink()

        # -- compressed, page-wise -----------------------------------------------------------------------------
        n = 5000
        data = rng.integers(90, 400, (n, 64, 64)).astype(np.uint16)
        comp = tmp / "compressed.tif"
        with tifffile.TiffWriter(comp) as tw:
            for fr in data:
                tw.write(fr, photometric="minisblack", metadata=None, compression="zlib")
        t0 = time.perf_counter()
        movie = open_movie(comp)
        results["compressed_open_s"] = time.perf_counter() - t0
        frames = iter(rng.integers(0, n, 200))
        results["compressed_frame_ms"] = 1e3 * _median_time(lambda: movie.frame(next(frames)), 200)
        assert np.array_equal(movie.frame(4321), data[4321])
        movie.close()
        t0 = time.perf_counter()
        with tifffile.TiffFile(comp) as tif:
            _ = tif.series[0].shape
        results["tifffile_series_open_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        tifffile.imread(comp)
        results["tifffile_full_read_s"] = time.perf_counter() - t0

        # -- writer ----------------------------------------------------------------------------------------------
        stack = rng.integers(90, 4000, (2000, 256, 256)).astype(np.uint16)
        t0 = time.perf_counter()
        with TifWriter(tmp / "stream.tif", pixel_size=107) as w:
            w.write_stream(iter(stack), len(stack))
        t_stream = time.perf_counter() - t0
        t0 = time.perf_counter()
        tifffile.imwrite(tmp / "plain.tif", stack, imagej=True, photometric="minisblack")
        t_plain = time.perf_counter() - t0
        results["writer_mb_s"] = stack.nbytes / 1e6 / t_stream
        results["tifffile_imwrite_mb_s"] = stack.nbytes / 1e6 / t_plain
        del stack

        # -- simulator -------------------------------------------------------------------------------------------
        for size in (64, 256):
            m = simulate_measurement(n_frames=300, height=size, width=size, density=0.3, seed=1)
            t0 = time.perf_counter()
            for _ in m.frames():
                pass
            results[f"simulate_{size}px_frames_per_s"] = 300 / (time.perf_counter() - t0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"10.5 GB ImageJ TIF (sparse): open {results['huge_open_s'] * 1e3:.2f} ms, "
          f"random frame {results['huge_frame_ms']:.2f} ms (512x512 uint16, memory-mapped)")
    print(f"compressed 5000-frame TIF: open {results['compressed_open_s'] * 1e3:.1f} ms, random frame "
          f"{results['compressed_frame_ms']:.3f} ms; tifffile series at open "
          f"{results['tifffile_series_open_s'] * 1e3:.1f} ms, "
          f"full imread {results['tifffile_full_read_s'] * 1e3:.1f} ms")
    print(f"TifWriter streaming {results['writer_mb_s']:.0f} MB/s vs tifffile.imwrite "
          f"{results['tifffile_imwrite_mb_s']:.0f} MB/s")
    print(f"simulator: {results['simulate_64px_frames_per_s']:.0f} frames/s at 64x64, "
          f"{results['simulate_256px_frames_per_s']:.0f} frames/s at 256x256")
    rounded = {k: round(v, 4) for k, v in results.items()}
    print(json.dumps(rounded))
    return rounded


if __name__ == "__main__":
    main()
