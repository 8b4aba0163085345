"""``imagebinner split | merge | explode``: the add-ons, options from the Split, Merge and Explode params."""

from __future__ import annotations

import argparse

from imagebinner.cli.common import add_tool_options, make_tool, param_values, progress_bar
from imagebinner.errors import ParameterError
from imagebinner.tools.addons import Explode, Merge, Split

HELP = {
    Split: "split a movie and its localizations at a frame into two parts",
    Merge: "merge movies and their localizations (frames offset by the movie lengths)",
    Explode: "explode a movie and its localizations into one movie + table per frame",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``split``, ``merge`` and ``explode`` subcommands."""
    for cls in (Split, Explode):
        p = subparsers.add_parser(cls.__name__.lower(), help=HELP[cls], description=cls.description())
        add_tool_options(p, cls, positional=cls.inputs, required=["at"] if cls is Split else ())
        p.set_defaults(func=_run, tool=cls)
    p = subparsers.add_parser("merge", help=HELP[Merge], description=Merge.description())
    # the two lists come in pairs on the command line: --movie M1 --locs L1 --movie M2 --locs L2 ...
    p.add_argument("--movie", dest="movies", action="append", required=True, metavar="MOVIE",
                   help=f"{Merge.param.movies.doc} Repeat, each followed by its --locs.")
    p.add_argument("--locs", dest="locs", action="append", required=True, metavar="LOCS",
                   help=f"{Merge.param.locs.doc} Repeat, after its --movie.")
    add_tool_options(p, Merge, skip=Merge.inputs)
    p.set_defaults(func=_run, tool=Merge)


def _run(args: argparse.Namespace) -> int:
    cls = args.tool
    if cls is Merge and len(args.movies) != len(args.locs):
        raise ParameterError(
            f"give one --locs per --movie (got {len(args.movies)} --movie and {len(args.locs)} --locs)"
        )
    tool = make_tool(cls, **param_values(args, cls.user_params()))
    with progress_bar(tool, cls.__name__.lower()):
        written = tool.run()
    print(tool.status)
    folders = sorted({str(p.parent) for p in written})
    print(f"{len(written)} file(s) written to {', '.join(folders)}")
    return 0
