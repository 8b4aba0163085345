"""``imagebinner info PATH``: what a movie or localization file holds (format, frames, shape, pixel size, ...)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from imagebinner.cli.common import add_param_options, make_tool
from imagebinner.io import is_movie_path, locformats, open_movie, read_locs
from imagebinner.tools.convert import Convert
from imagebinner.tools.settings import CameraSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``info`` subcommand (``--pixel-size`` and ``--input-format`` as declared by the tools)."""
    parser = subparsers.add_parser(
        "info",
        help="describe a movie (TIF, Picasso .raw) or a localization file",
        description="Print format, frames, shape, dtype and pixel size of a movie, or format, number of "
        "localizations, frame range, pixel size, image shape and columns of a localization file.",
    )
    parser.add_argument("path", metavar="PATH", help="Movie (.tif, .tiff, .raw) or localization file (.hdf5, .h5, _sml.mat, .csv).")
    add_param_options(parser, CameraSettings, ["pixel_size"])
    add_param_options(parser, Convert, ["input_format"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the description of one file."""
    if args.pixel_size is not None:
        make_tool(CameraSettings, pixel_size=args.pixel_size)  # the param's bounds: a positive number of nm
    for line in describe(args.path, args.pixel_size, args.input_format):
        print(line)
    return 0


def describe(path: str | Path, pixel_size: float | None = None, input_format: str | None = None) -> list[str]:
    """Lines describing a movie or a localization file."""
    path = Path(path)
    if is_movie_path(path):
        with open_movie(path, pixel_size=pixel_size) as movie:
            ps = movie.pixel_size
            source = "argument" if pixel_size is not None else "metadata"
            unknown = "unknown (give --pixel-size)"
            if movie.suggested_pixel_size is not None:
                unknown = (f"unknown (the YAML's Camera.Pixelsize suggests {movie.suggested_pixel_size:g} nm; "
                           "confirm with --pixel-size)")
            return [
                f"file: {path}",
                f"kind: movie ({movie.format})",
                f"frames: {movie.n_frames}",
                f"shape: {movie.shape[0]} x {movie.shape[1]} px (height x width)",
                f"dtype: {np.dtype(movie.dtype).name}",
                f"pixel size: {unknown if ps is None else f'{ps:g} nm (from {source})'}",
            ]
    table = read_locs(path, format=input_format, pixel_size=pixel_size)
    meta = table.meta
    fmt = meta.source_format
    base = locformats.FRAME_BASE[fmt]
    lines = [
        f"file: {path}",
        "kind: localizations",
        f"format: {fmt} ({locformats.FORMAT_TITLES[fmt]}; frames in the file are {base}-based)",
        f"localizations: {len(table)}",
    ]
    if len(table):
        f0, f1 = int(table.frame[0]), int(table.frame[-1])
        n_with = int(np.count_nonzero(np.diff(table.frame)) + 1)
        lines.append(f"frame range: {f0}..{f1} (0-based page index) = {f0 + 1}..{f1 + 1} (1-based)")
        lines.append(f"frames with localizations: {n_with}")
    else:
        lines.append("frame range: none (no localizations)")
    lines.append(f"frames (metadata): {meta.n_frames if meta.n_frames is not None else 'unknown'}")
    ps = meta.pixel_size
    lines.append(f"pixel size: {'unknown' if ps is None else f'{ps:g} nm'}")
    shape = meta.image_shape
    lines.append(
        f"image shape: {'unknown' if shape is None else f'{shape[0]} x {shape[1]} px (height x width)'}"
    )
    if len(table):
        lines.append(
            f"x range: {table.x.min():.6g}..{table.x.max():.6g} nm, "
            f"y range: {table.y.min():.6g}..{table.y.max():.6g} nm (canonical: origin at the corner of pixel (0, 0))"
        )
    lines.append(f"columns: {', '.join(table.columns)}")
    lines.append(f"conversion: {meta.conversion}")
    return lines
