"""``imagebinner convert IN -o OUT``: one localization file to another format (options from the Convert params)."""

from __future__ import annotations

import argparse

from imagebinner.cli.common import add_tool_options, make_tool, param_values, progress_bar
from imagebinner.tools.convert import Convert


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``convert`` subcommand."""
    parser = subparsers.add_parser(
        "convert",
        help="convert localizations between Picasso, ThunderSTORM, DeepSTORM, DECODE, SMAP and ONI formats",
        description=Convert.description(),
    )
    add_tool_options(parser, Convert, positional=["input_path"], required=[Convert.output_location()])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert one file and print what was done."""
    tool = make_tool(Convert, **param_values(args, Convert.user_params()))
    with progress_bar(tool, "convert"):
        tool.run()
    s = tool.summary
    frames = ""
    if s["frames_0_based"] is not None:
        f0, f1 = s["frames_0_based"]
        frames = f", frames {f0}..{f1} (0-based) = {s['frames_in_output'][0]}..{s['frames_in_output'][1]} in the output"
    print(f"{s['input_format']} -> {s['output_format']}: {s['rows_written']} localizations{frames}")
    if s["rows_dropped_outside_field"]:
        print(f"dropped outside the camera field: {s['rows_dropped_outside_field']}")
    print(f"conversion: {s['conversion']}")
    if s.get("streamed"):
        print("streamed in bounded chunks (input sorted by frame)")
    elif s.get("note"):
        print(f"converted in memory: {s['note']}")
    for path in s["written"]:
        print(f"wrote {path}")
    return 0
