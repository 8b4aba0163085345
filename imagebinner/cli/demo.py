"""``imagebinner demo [-o DIR] [--overwrite] [--seed S]``: write the simulated demo folder, run the main job on it."""

from __future__ import annotations

import argparse
from pathlib import Path

from imagebinner.errors import ParameterError
from imagebinner.tools.binner import Binner

DEFAULT_DIR = "imagebinner-demo"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="write a simulated demo folder (two measurements) and run the main job on it",
        description=(
            "Write a demo folder with two simulated SMLM measurements (measurement1: movie TIF + Picasso HDF5/YAML "
            "localizations; measurement2: movie TIF + ThunderSTORM CSV), deterministic by seed, then run the main "
            "job on it."
        ),
    )
    parser.add_argument(
        "-o", "--output", dest="output", metavar="DIR", default=DEFAULT_DIR,
        help=f"Folder to write the demo into (default: {DEFAULT_DIR}).",
    )
    parser.add_argument(
        "--overwrite", action=argparse.BooleanOptionalAction, default=False,
        help="Replace existing demo files (default: refuse).",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="Random seed of the simulation: same seed, same files (default: 0)."
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imagebinner.io import check_writable
    from imagebinner.simulate import make_demo
    from imagebinner.simulate.demo import demo_files

    if args.seed < 0:
        raise ParameterError(f"--seed must be a non-negative integer, got {args.seed}")
    out_dir = Path(args.output)
    # every output of the demo and of the main job is checked before anything is written
    check_writable([*demo_files(out_dir), *main_job_outputs(out_dir)], args.overwrite)
    paths = make_demo(out_dir, seed=args.seed, overwrite=args.overwrite)
    for m in paths.measurements:
        print(f"{m.name}: simulated {m.movie} with ground truth {m.locs} ({m.loc_format})")
    run_main_job(paths, out_dir, args)
    return 0


# ------------------------------------------------------------------------------------------------------------------
# The main job on the demo folder: the Binner on both measurements, then a simulated DeepSTORM prediction folder for
# measurement1 reviewed against its ground truth.
# ------------------------------------------------------------------------------------------------------------------
BINNED_DIR = "binned"
PREDICTION_DIR = "prediction"
PREDICTION_FILES = ("Localizations_movie_avg.csv", "Predicted_movie.tif", "Widefield_movie.tif")


def main_job_outputs(out_dir: Path) -> list[Path]:
    """Every file :func:`run_main_job` writes (checked before the demo is written)."""
    binned = out_dir / BINNED_DIR
    return [binned / "binned.tif", binned / "binned.csv", binned / "binned.json",
            *[out_dir / PREDICTION_DIR / name for name in PREDICTION_FILES]]


def run_main_job(paths, out_dir: Path, args: argparse.Namespace) -> list[Path]:
    """Bin both demo measurements (Picasso + ThunderSTORM input) and review a simulated prediction folder."""
    from imagebinner.cli.common import progress_bar
    from imagebinner.io import read_locs
    from imagebinner.simulate.prediction import make_prediction_folder
    from imagebinner.tools.review import PredictionReview

    binner = Binner(
        measurements=[(str(m.movie), str(m.locs)) for m in paths.measurements],
        output_folder=str(out_dir / BINNED_DIR),
        seed=args.seed,
        overwrite=args.overwrite,
    )
    try:
        with progress_bar(binner, "binning"):
            written = [Path(p) for p in binner.save()]
        for line in binner.summary_lines():
            print(line)
    finally:
        binner.close()

    first = paths.measurements[0]
    truth = read_locs(first.locs)
    folder = out_dir / PREDICTION_DIR
    predicted = make_prediction_folder(folder, truth, first.movie, seed=args.seed, write_stacked=False,
                                       overwrite=args.overwrite)
    written += [Path(p) for p in predicted.values() if p is not None]
    review = PredictionReview(folder=str(folder), movie=str(first.movie), ground_truth=str(first.locs))
    review.load()
    s = review.result_summary()
    print(f"simulated DeepSTORM prediction folder: {folder}")
    print(f"review at confidence >= {s['threshold']:g}, tolerance {s['tolerance_nm']:g} nm: "
          f"Jaccard {s['jaccard']:.3f}, F1 {s['f1']:.3f}, RMSE {s['rmse_nm']:.1f} nm, "
          f"efficiency {s['efficiency']:.1f} %")
    best = s["suggested_thresholds"].get("jaccard")
    if best is not None:
        review.threshold = best
        m = review.metrics
        print(f"suggested threshold (max Jaccard over the sweep) {best:.3g}: Jaccard {m['jaccard']:.3f}, "
              f"F1 {m['f1']:.3f}, RMSE {m['rmse_nm']:.1f} nm")
    review.close()
    print(f"try: imagebinner review {folder} --movie {first.movie} --ground-truth {first.locs}")
    if paths.model is not None:
        print(f"and run the demo's Deep-STORM model folder locally (a spot detector at x8, about a second per frame "
              f"on a CPU): imagebinner predict {paths.model} {first.movie} -o {out_dir / 'predicted'}")
    return written
