"""The ``imagebinner`` command line. Each subcommand lives in its own module and is built from a tool's params."""

from __future__ import annotations

import argparse
import sys
import warnings

from imagebinner import __version__
from imagebinner.cli.common import command_flags, with_flags
from imagebinner.errors import ImageBinnerError

SUBCOMMAND_MODULES = ("info", "convert", "bin", "addons", "review", "demo", "serve")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="imagebinner",
        description="Dense, correctly labelled DeepSTORM2D training data from SMLM measurements.",
    )
    parser.add_argument("--version", action="version", version=f"imagebinner {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"imagebinner.cli.{name}").register(sub)
    return parser


def _flags_of_command(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """Param name -> flag for the subcommand that runs (error messages name params; the CLI shows flags)."""
    for action in parser._subparsers._group_actions:  # argparse keeps no public handle on its subparsers
        if command in action.choices:
            return command_flags(action.choices[command])
    return {}


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors are one line on stderr and exit code 2, no traceback."""
    parser = build_parser()
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
