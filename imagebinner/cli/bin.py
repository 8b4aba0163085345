"""``imagebinner bin --movie M1 --locs L1 [--movie M2 --locs L2 ...] -o OUTDIR``: the Binner on the command line."""

from __future__ import annotations

import argparse

from imagebinner.cli.common import add_param_options, make_tool, param_values, progress_bar
from imagebinner.errors import ParameterError
from imagebinner.tools.binner import Binner

OPTIONS = (
    "pixel_size",
    "camera_offset",
    "patch_size",
    "n_patches",
    "n_binned",
    "bin_size",
    "min_emitters",
    "seed",
    "reuse_patches",
    "output_dtype",
    "half_pixel",
    "max_attempts",
    "output_name",
    "overwrite",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bin",
        help="sum random patches of measurements into a dense DeepSTORM training movie (TIF + CSV + JSON)",
        description=(Binner.__doc__ or "").strip().split("\n\n")[0]
        + " Writes <OUTDIR>/<name>.tif, .csv (DeepSTORM training CSV) and .json (provenance).",
    )
    parser.add_argument("--movie", action="append", default=[], metavar="MOVIE", required=True,
                        help="movie (TIF or Picasso .raw); repeat once per measurement, in the order of --locs")
    parser.add_argument("--locs", action="append", default=[], metavar="LOCS", required=True,
                        help="localizations of the preceding --movie (Picasso HDF5, ThunderSTORM or DeepSTORM CSV, "
                        "...); formats may be mixed")
    parser.add_argument("-o", "--output", dest="output_folder", metavar="OUTDIR", required=True,
                        help=Binner.param.output_folder.doc)
    add_param_options(parser, Binner, OPTIONS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if len(args.movie) != len(args.locs):
        raise ParameterError(
            f"got {len(args.movie)} --movie and {len(args.locs)} --locs; give one --locs per --movie"
        )
    values = param_values(args, ("output_folder", *OPTIONS))
    values["measurements"] = list(zip(args.movie, args.locs))
    tool = make_tool(Binner, **values)
    try:
        tool.check_outputs()
        tool.load()
        with progress_bar(tool, "binning"):
            tool.run()
        for line in tool.summary_lines():
            print(line)
    finally:
        tool.close()
    return 0
