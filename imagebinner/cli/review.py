"""``imagebinner review FOLDER``: DeepSTORM predictions against ground truth (options from the review's params)."""

from __future__ import annotations

import argparse
import json
import math

from imagebinner.cli.common import add_tool_options, make_tool, param_values, progress_bar
from imagebinner.tools.base import jsonable
from imagebinner.tools.review import PredictionReview


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "review",
        help="review DeepSTORM predictions: threshold, metrics against ground truth, threshold sweep",
        description=(
            "Review a ZeroCostDL4Mic DeepSTORM prediction folder: keep predictions with confidence >= threshold, "
            "match them one-to-one per frame to the ground truth within the tolerance (optimal assignment), "
            "report precision, recall, F1, Jaccard, RMSE, bias and efficiency, sweep the threshold and suggest "
            "the thresholds maximising Jaccard and F1. With -o, save the kept localizations. A folder of "
            "predictions of exploded single frames (Localizations_<stem>_frame00001_avg.csv, ...) is reviewed as "
            "one prediction of the whole movie."
        ),
    )
    names = add_tool_options(parser, PredictionReview, positional=("folder",))
    parser.add_argument("--json", action="store_true", help="print one JSON object (NaN as null) instead of text")
    parser.set_defaults(func=run, tool_params=names)


def _json(value) -> str:
    """One JSON line; NaN and infinities become null."""
    plain = json.loads(json.dumps(jsonable(value)), parse_constant=lambda _constant: None)
    return json.dumps(plain, allow_nan=False)


def _fmt(value, spec: str = ".4f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def run(args: argparse.Namespace) -> int:
    tool = make_tool(PredictionReview, **param_values(args, args.tool_params))
    with progress_bar(tool, "review"):
        tool.load()
    written = [str(p) for p in tool.save()] if tool.output_path else []
    summary = tool.result_summary()
    summary["written"] = written
    if args.json:
        print(_json(summary))
        return 0
    s = summary
    print(f"prediction folder: {s['folder']} (stem {s['stem']!r}, source {s['source']})")
    exploded = s["files"].get("exploded")
    if exploded:
        counts = exploded["n_files"]
        print(
            f"exploded single-frame predictions: frame numbers {exploded['first_number']}..{exploded['last_number']}, "
            f"{counts['localizations']} Localizations, {counts['predicted']} Predicted, {counts['widefield']} Widefield, "
            f"{counts['stacked']} Predicted_stacked files (frame = number - 1)"
        )
    ps = (
        f"hr pixel {_fmt(s['pixel_size_hr_nm'], '.3f')} nm, camera pixel {_fmt(s['camera_pixel_size_nm'], '.3f')} nm, "
        f"upsampling {s['upsampling'] if s['upsampling'] is not None else 'n/a'}"
    )
    print(f"{s['n_frames']} frames; {ps}")
    if s["source"] == "stacked":
        print(f"re-localized with L2 weighting factor {s['l2_weighting_factor_used']:.6g} ({s['l2_source']})")
    elif s["model_metadata"]:
        print(f"model metadata: {s['model_metadata']['path']} (L2 {s['model_metadata']['l2_weighting_factor']:g}, "
              f"upsampling {s['model_metadata']['upsampling']})")
    print(f"predictions: {s['n_pred']} of {s['n_pred_total']} kept at confidence >= {s['threshold']:g}")
    if tool.truth is None:
        print("no ground truth given: no metrics (use --ground-truth)")
    else:
        print(
            f"matching: optimal one-to-one per frame (most pairs, then least sum of squared distances), "
            f"tolerance {s['tolerance_nm']:g} nm"
        )
        print(f"ground truth {s['n_gt']}: TP {s['tp']}, FP {s['fp']}, FN {s['fn']}")
        print(
            f"precision {_fmt(s['precision'])}, recall {_fmt(s['recall'])}, F1 {_fmt(s['f1'])}, "
            f"Jaccard {_fmt(s['jaccard'])}"
        )
        print(
            f"RMSE {_fmt(s['rmse_nm'], '.2f')} nm (matched pairs, lateral), bias dx {_fmt(s['bias_x_nm'], '.2f')} nm, "
            f"dy {_fmt(s['bias_y_nm'], '.2f')} nm, efficiency {_fmt(s['efficiency'], '.2f')} % (alpha 1/nm)"
        )
        sug = s["suggested_thresholds"]
        print(
            f"suggested thresholds ({len(s['sweep'])}-step sweep): max Jaccard at {_fmt(sug.get('jaccard'), '.4g')}, "
            f"max F1 at {_fmt(sug.get('f1'), '.4g')}"
        )
    for path in written:
        print(f"wrote {path}")
    return 0
