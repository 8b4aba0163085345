"""``imagebinner split | merge | explode``: the add-ons, built from the Split, Merge and Explode params."""

from __future__ import annotations

import argparse

from imagebinner.cli.common import add_param_options, make_tool, param_values, progress_bar
from imagebinner.tools.addons import Explode, Merge, Split

COMMON = ("to", "overwrite", "pixel_size", "half_pixel")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``split``, ``merge`` and ``explode`` subcommands."""
    p = subparsers.add_parser(
        "split",
        help="split a movie and its localizations at a frame into two parts",
        description=_first_paragraph(Split),
    )
    p.add_argument("movie", metavar="MOVIE", help=Split.param.movie.doc)
    p.add_argument("locs", metavar="LOCS", help=Split.param.locs.doc)
    add_param_options(p, Split, ["at"], required=["at"])
    _output_folder(p, Split)
    add_param_options(p, Split, COMMON)
    p.set_defaults(func=_run_split)

    p = subparsers.add_parser(
        "merge",
        help="merge movies and their localizations (frames offset by the movie lengths)",
        description=_first_paragraph(Merge),
    )
    p.add_argument(
        "--movie", dest="movies", action="append", required=True, metavar="MOVIE",
        help="a movie to merge (repeat, in order; each followed by its --locs)",
    )
    p.add_argument(
        "--locs", dest="locs", action="append", required=True, metavar="LOCS",
        help="the localization file of the preceding --movie (repeat, same order)",
    )
    _output_folder(p, Merge)
    add_param_options(p, Merge, ["output_name", *COMMON])
    p.set_defaults(func=_run_merge)

    p = subparsers.add_parser(
        "explode",
        help="explode a movie and its localizations into one movie + table per frame",
        description=_first_paragraph(Explode),
    )
    p.add_argument("movie", metavar="MOVIE", help=Explode.param.movie.doc)
    p.add_argument("locs", metavar="LOCS", help=Explode.param.locs.doc)
    _output_folder(p, Explode)
    add_param_options(p, Explode, COMMON)
    p.set_defaults(func=_run_explode)


def _first_paragraph(cls) -> str:
    return (cls.__doc__ or "").strip().split("\n\n")[0].replace("\n    ", " ").replace("%", "%%")


def _output_folder(parser: argparse.ArgumentParser, cls) -> None:
    parser.add_argument(
        "-o", "--output-folder", dest="output_folder", default=None, metavar="OUTDIR",
        help=f"{cls.param.output_folder.doc} (default: current folder)",
    )


def _run(tool, desc: str) -> int:
    with progress_bar(tool, desc):
        written = tool.run()
    print(tool.status)
    folders = sorted({str(p.parent) for p in written})
    print(f"{len(written)} file(s) written to {', '.join(folders)}")
    return 0


def _run_split(args: argparse.Namespace) -> int:
    values = param_values(args, ["at", "output_folder", *COMMON])
    return _run(make_tool(Split, movie=args.movie, locs=args.locs, **values), "split")


def _run_merge(args: argparse.Namespace) -> int:
    if len(args.movies) != len(args.locs):
        from imagebinner.errors import ParameterError

        raise ParameterError(
            f"give one --locs per --movie (got {len(args.movies)} --movie and {len(args.locs)} --locs)"
        )
    values = param_values(args, ["output_folder", "output_name", *COMMON])
    return _run(make_tool(Merge, movies=list(args.movies), locs=list(args.locs), **values), "merge")


def _run_explode(args: argparse.Namespace) -> int:
    values = param_values(args, ["output_folder", *COMMON])
    return _run(make_tool(Explode, movie=args.movie, locs=args.locs, **values), "explode")

