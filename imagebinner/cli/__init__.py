"""The ``imagebinner`` command line. Each subcommand lives in its own module and is built from a tool's params."""

from __future__ import annotations

import argparse
import sys
import warnings

from imagebinner import __version__
from imagebinner.errors import ImageBinnerError

SUBCOMMAND_MODULES = ("info", "convert", "bin", "addons", "review", "demo")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="imagebinner",
        description="Dense, correctly labelled DeepSTORM2D training data from SMLM measurements.",
    )
    parser.add_argument("--version", action="version", version=f"imagebinner {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"imagebinner.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"imagebinner.cli.{name}":
                continue  # subcommand not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: errors are one line on stderr and exit code 2, no traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show_warning
        try:
            result = args.func(args)
        except ImageBinnerError as exc:
            print(f"imagebinner: error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # permissions, full disk, vanished folders: the file and the cause, no traceback
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"imagebinner: error: {where}{exc.strerror or exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("imagebinner: interrupted", file=sys.stderr)
            return 130
    return int(result or 0)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"imagebinner: warning: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
