"""Benchmark: ``imagebinner predict`` on a 200-frame 64 × 64 movie at ×8 (the notebook's default upsampling), CPU.

A model folder with the notebook's architecture and random weights (``imagebinner.simulate.model.random_blocks``;
the cost does not depend on the values) and a simulated movie are written to a temporary folder, then a fresh
process runs ``python -m imagebinner.cli predict MODEL MOVIE -o OUT --device cpu`` (and ``--device cuda`` when
onnxruntime has a CUDA provider here). Measured per device: wall time of that process, frames per second of the
network part (from the wall time minus the same command on a 1-frame movie: start-up, model reading, graph building),
peak RSS of the process (``resource.getrusage(RUSAGE_CHILDREN)`` in a wrapper process that runs only it).

    .venv/bin/python benchmarks/predict.py [--frames 200] [--size 64] [--batch-size 4] [--repeat 1]

TensorFlow is not a project dependency: the comparison with the notebook's own code on TensorFlow (CPU) is made
separately in a throw-away venv (see docs/predict.md, "Speed"). Prints the figures; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

_RUN = """
import resource, subprocess, sys, time, json
t0 = time.perf_counter()
res = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
wall = time.perf_counter() - t0
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.stderr.write(res.stderr.decode()[-2000:])
print(json.dumps({"rc": res.returncode, "wall_s": wall, "peak_kb": peak_kb}))
"""


def _measure(cmd: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", _RUN, *cmd], stdout=subprocess.PIPE, check=True)
    result = json.loads(out.stdout.decode().strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--upsampling", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    from imagebinner.io import write_tif
    from imagebinner.simulate.model import random_blocks, write_model_folder
    from imagebinner.tools.predict.network import PROVIDERS, available_providers

    devices = ["cpu"] + (["cuda"] if PROVIDERS["cuda"] in available_providers() else [])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = write_model_folder(root / "model", *random_blocks(seed=0), upsampling=args.upsampling, l2=170.2)
        rng = np.random.default_rng(0)
        for name, n in (("movie", args.frames), ("one", 1)):
            write_tif(root / f"{name}.tif", rng.poisson(110, (n, args.size, args.size)).astype(np.uint16),
                      pixel_size=107.0)
        results = {}
        for device in devices:
            runs, starts = [], []
            for k in range(args.repeat):
                base = [sys.executable, "-m", "imagebinner.cli", "predict", str(model), "--device", device,
                        "--batch-size", str(args.batch_size)]
                starts.append(_measure(base + [str(root / "one.tif"), "-o", str(root / f"one_{device}_{k}")]))
                runs.append(_measure(base + [str(root / "movie.tif"), "-o", str(root / f"out_{device}_{k}")]))
            wall = statistics.median(r["wall_s"] for r in runs)
            start = statistics.median(r["wall_s"] for r in starts)
            peak_mb = max(r["peak_kb"] for r in runs) / 1024
            fps = (args.frames - 1) / max(wall - start, 1e-9)
            results[device] = {"wall_s": round(wall, 3), "startup_s": round(start, 3), "frames_per_s": round(fps, 3),
                               "peak_mb": round(peak_mb, 1)}
            print(f"{device}: {args.frames} frames {args.size}x{args.size} at x{args.upsampling}, batch "
                  f"{args.batch_size}: {wall:.2f} s wall ({start:.2f} s for 1 frame), {fps:.2f} frames/s, "
                  f"peak {peak_mb:.0f} MB")
    print(json.dumps({"benchmark": "predict", "frames": args.frames, "size": args.size, "upsampling": args.upsampling,
                      "batch_size": args.batch_size, **results}))


if __name__ == "__main__":
    main()
