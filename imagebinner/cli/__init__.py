"""The ``imagebinner`` command line: subcommands listed from a table, only the chosen one's module imported.

Each subcommand lives in its own module with ``register(subparsers)`` (flags built from a tool's params). The top
parser lists every command by name and one-line help from :data:`COMMANDS` without importing its module; the module
of the command being run (or asked for ``--help``) is imported and registered alone, so ``imagebinner --help`` and
``imagebinner <cmd> --help`` never import the heavy libraries of the other commands' tools
(tests/test_cli_imports.py checks it, and that each help line equals the one its module registers).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from imagebinner import __version__
from imagebinner.cli.common import command_flags, with_flags
from imagebinner.errors import ImageBinnerError

#: command -> (module under imagebinner.cli, the one-line help its module registers), in listing order
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("info", "describe a movie (TIF, Picasso .raw) or a localization file"),
    "convert": ("convert",
                "convert localizations between Picasso, ThunderSTORM, DeepSTORM, DECODE, SMAP and ONI formats"),
    "bin": ("bin", "sum random patches of measurements into a dense DeepSTORM training movie (TIF + CSV + JSON)"),
    "split": ("addons", "split a movie and its localizations at a frame into two parts"),
    "explode": ("addons", "explode a movie and its localizations into one movie + table per frame"),
    "merge": ("addons", "merge movies and their localizations (frames offset by the movie lengths)"),
    "predict": ("predict", "predict localizations in movies with a trained DeepSTORM model (ONNX)"),
    "review": ("review", "review DeepSTORM predictions: threshold, metrics against ground truth, threshold sweep"),
    "demo": ("demo", "write a simulated demo folder (two measurements) and run the main job on it"),
    "serve": ("serve", "serve the dashboards (Binner, predict, prediction review, add-ons) in the browser"),
}
ALL = None  # build_parser(ALL): every command registered (tests, docs)


def build_parser(command: str | None = ALL) -> argparse.ArgumentParser:
    """The ``imagebinner`` parser. ``command`` names the subcommand that runs: only its module is imported and
    registered, the others are listed by name and help (``""``: none registered); :data:`ALL` registers every one."""
    parser = argparse.ArgumentParser(
        prog="imagebinner",
        description="Dense, correctly labelled DeepSTORM2D training data from SMLM measurements.",
    )
    parser.add_argument("--version", action="version", version=f"imagebinner {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = None if command is ALL else COMMANDS.get(command, ("",))[0]
    for name, (module, help_line) in COMMANDS.items():
        if name in sub.choices:
            continue  # registered with another command of its module
        if command is ALL or module == chosen:
            importlib.import_module(f"imagebinner.cli.{module}").register(sub)
        else:
            sub.add_parser(name, help=help_line, add_help=False)  # listed only; never parsed (not the command)
    return parser


def chosen_command(argv: list[str]) -> str:
    """The subcommand named on the command line (the first argument not starting with ``-``; top-level options take
    no value), or ``""``."""
    return next((a for a in argv if not a.startswith("-")), "")


def _flags_of_command(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """Param name -> flag for the subcommand that runs (error messages name params; the CLI shows flags)."""
    for action in parser._subparsers._group_actions:  # argparse keeps no public handle on its subparsers
        if command in action.choices:
            return command_flags(action.choices[command])
    return {}


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors are one line on stderr and exit code 2, no traceback."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(chosen_command(argv))
    args = parser.parse_args(argv)
    flags = _flags_of_command(parser, args.command)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *rest, **kw: print(
            f"imagebinner: warning: {with_flags(str(message), flags)}", file=sys.stderr)
        try:
            result = args.func(args)
        except ImageBinnerError as exc:
            print(f"imagebinner: error: {with_flags(str(exc), flags, exc.params)}", file=sys.stderr)
            return 2
        except OSError as exc:  # permissions, full disk, vanished folders: the file and the cause, no traceback
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"imagebinner: error: {where}{exc.strerror or exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("imagebinner: interrupted", file=sys.stderr)
            return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
