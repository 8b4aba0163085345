"""``imagebinner convert IN -o OUT``: one localization file to another format (flags from the Convert params)."""

from __future__ import annotations

import argparse

from imagebinner.cli.common import add_param_options, make_tool, param_values, progress_bar
from imagebinner.tools.convert import Convert

OPTIONS = ("to", "pixel_size", "half_pixel", "overwrite", "input_format", "drop_outside")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert localizations between Picasso, ThunderSTORM and DeepSTORM formats",
        description=(Convert.__doc__ or "").strip().split("\n\n")[0],
    )
    parser.add_argument("input_path", metavar="IN", help=Convert.param.input_path.doc)
    parser.add_argument("-o", "--output", dest="output_path", metavar="OUT", required=True,
                        help=Convert.param.output_path.doc)
    add_param_options(parser, Convert, OPTIONS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    values = param_values(args, ("input_path", "output_path", *OPTIONS))
    tool = make_tool(Convert, **values)
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
    for path in s["written"]:
        print(f"wrote {path}")
    return 0
