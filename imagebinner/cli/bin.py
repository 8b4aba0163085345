"""``imagebinner bin --movie M1 --locs L1 [--movie M2 --locs L2 ...] -o OUTDIR``: the Binner on the command line."""

from __future__ import annotations

import argparse

from imagebinner.cli.common import add_tool_options, make_tool, param_values, progress_bar
from imagebinner.errors import ParameterError
from imagebinner.tools.binner import Binner


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bin",
        help="sum random patches of measurements into a dense DeepSTORM training movie (TIF + CSV + JSON)",
        description=Binner.description()
        + " Writes <OUT>/<name>.tif, .csv (DeepSTORM training CSV) and .json (provenance).",
    )
    parser.add_argument("--movie", action="append", default=[], metavar="MOVIE", required=True,
                        help="movie (TIF or Picasso .raw); repeat once per measurement, in the order of --locs")
    parser.add_argument("--locs", action="append", default=[], metavar="LOCS", required=True,
                        help="localizations of the preceding --movie (Picasso HDF5, ThunderSTORM or DeepSTORM CSV, "
                        "...); formats may be mixed")
    names = add_tool_options(parser, Binner, skip=("measurements",), required=(Binner.output_location(),))
    parser.set_defaults(func=run, names=names)


def run(args: argparse.Namespace) -> int:
    if len(args.movie) != len(args.locs):
        raise ParameterError(
            f"got {len(args.movie)} --movie and {len(args.locs)} --locs; give one --locs per --movie"
        )
    values = param_values(args, args.names)
    values["measurements"] = list(zip(args.movie, args.locs))
    tool = make_tool(Binner, **values)
    try:
        with progress_bar(tool, "binning"):
            tool.save()
        for line in tool.summary_lines():
            print(line)
    finally:
        tool.close()
    return 0
