"""``imagebinner demo [-o DIR] [--overwrite] [--seed S]``: write the simulated demo folder, run the main job on it."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from imagebinner.errors import ParameterError

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
# MAIN JOB — wiring point for the lead.
# When the Binner (imagebinner.tools.binner.Binner) is ready, replace the body of run_main_job (and the file list in
# main_job_outputs) with a Binner run on paths.measurements. Until then the main job converts both localization
# files to DeepSTORM training CSV.
# ------------------------------------------------------------------------------------------------------------------
BINNER_AVAILABLE = importlib.util.find_spec("imagebinner.tools.binner") is not None


def main_job_outputs(out_dir: Path) -> list[Path]:
    """Every file :func:`run_main_job` writes (checked before the demo is written)."""
    from imagebinner.simulate.demo import _DEMO_MEASUREMENTS

    return [out_dir / name / "movie_deepstorm.csv" for name, _, _ in _DEMO_MEASUREMENTS]


def run_main_job(paths, out_dir: Path, args: argparse.Namespace) -> list[Path]:
    """The main job on the demo folder (``paths`` is a :class:`imagebinner.simulate.demo.DemoPaths`).

    For now: each measurement's localizations -> DeepSTORM training CSV beside its movie.
    """
    from imagebinner.io import read_locs, write_locs

    written: list[Path] = []
    for m, target in zip(paths.measurements, main_job_outputs(out_dir)):
        table = read_locs(m.locs)
        files = write_locs(table, target, format="deepstorm", overwrite=args.overwrite)
        written += [Path(f) for f in files]
        print(f"converted {m.locs} ({m.loc_format}, {len(table)} localizations) -> {target} (deepstorm)")
    return written
