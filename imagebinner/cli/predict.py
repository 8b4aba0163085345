"""``imagebinner predict MODEL_DIR MOVIE [MOVIE ...] -o OUT_DIR``: a trained Deep-STORM model run locally."""

from __future__ import annotations

import argparse

from imagebinner.cli.common import add_tool_options, make_tool, param_values, progress_bar
from imagebinner.tools.predict import Predict


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict localizations in movies with a trained DeepSTORM model (ONNX)",
        description=Predict.description()
        + " Writes, per movie <stem>, the notebook's Localizations_<stem>_avg.csv (or _max.csv), Predicted_<stem>.tif"
        " and Widefield_<stem>.tif, plus Predicted_stacked_<stem>.tif (one density page per frame) and a copy of"
        " model_metadata.mat, so `imagebinner review OUT_DIR` opens the folder directly.",
    )
    names = add_tool_options(parser, Predict, positional=("model_folder",), skip=("movies",),
                             required=(Predict.output_location(),))
    parser.add_argument("movies", nargs="+", metavar="MOVIE", help=Predict.param["movies"].doc)
    parser.set_defaults(func=run, names=names)


def run(args: argparse.Namespace) -> int:
    values = param_values(args, args.names)
    values["movies"] = list(args.movies)
    tool = make_tool(Predict, **values)
    with progress_bar(tool, "predicting"):
        tool.run()
    s = tool.summary
    print(f"model: {s['weights']} ({s['layout']}), upsampling {s['upsampling']}, L2 {s['l2_weighting_factor']:g}, "
          f"on {s['provider']}")
    for movie in s["movies"]:
        print(f"{movie['movie']}: {movie['frames']} frames, {movie['localizations']} localizations "
              f"(hr pixel {movie['pixel_size_hr']:g} nm)")
        if movie["constant_frames"]:
            print(f"  note: {movie['constant_frames']} constant frame(s): project_01 is undefined there "
                  "(the notebook gets NaN); normalized as all-zero frames")
    for path in tool.written:
        print(f"wrote {path}")
    return 0
