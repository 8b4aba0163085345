"""Convert a localization file between Picasso, ThunderSTORM and DeepSTORM layouts (via the canonical table)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import param

from imagebinner.errors import ParameterError
from imagebinner.io import check_outputs, locformats
from imagebinner.io.table import LocTable
from imagebinner.tools.base import Task
from imagebinner.tools.settings import CameraSettings, OutputFile

OUTPUT_FORMATS = ("deepstorm", "thunderstorm", "picasso", "deepstorm-prediction")


class Convert(Task, CameraSettings, OutputFile):
    """Read one localization file (format detected from its content) and write it in another format.

    Coordinates and frames go through the canonical convention (0-based frames, nm with the origin at the corner
    of pixel (0, 0)), so every frame-base and half-pixel conversion is applied exactly once and recorded. The
    pixel size is taken from the Picasso YAML when present; it is needed for Picasso input without Pixelsize,
    Picasso CSV exports and Picasso output from CSV.
    """

    inputs = ("input_path",)
    settings = ("to", "input_format", "pixel_size", "half_pixel", "drop_outside")
    outputs = ("output_path", "overwrite")
    actions = {"request_run": "run"}

    input_path = param.String(
        default="", doc="Localization file to read (Picasso .hdf5 + .yaml, ThunderSTORM/Picasso/DeepSTORM .csv)."
    )
    to = param.Selector(
        default=None,
        objects=[None, *OUTPUT_FORMATS],
        allow_None=True,
        doc="Output format; when not given, from the extension: .hdf5 -> picasso, .csv -> deepstorm (training CSV).",
    )
    input_format = param.Selector(
        default=None,
        objects=[None, *locformats.LOC_FORMATS],
        allow_None=True,
        doc="Input format; when not given it is detected from the file's content (HDF5 structure, CSV header, "
        "frame/id base).",
    )
    drop_outside = param.Boolean(
        default=True,
        doc="For DeepSTORM training CSV output: drop localizations outside the camera field (known from the "
        "Picasso YAML), with a warning; the notebook would clamp them onto the border pixel instead.",
    )
    request_run = param.Event(label="Run", doc="Convert the file (runs the tool).")

    written = param.List(default=[], constant=True, doc="Files written by the last run.")
    summary = param.Dict(default={}, constant=True, doc="Rows, frames, formats and the conversion of the last run.")

    def run(self) -> list[Path]:
        """Convert ``input_path`` to ``output_path``; returns the written paths."""
        if not self.input_path:
            raise ParameterError("no input file given (set input_path)")
        if not self.output_path:
            raise ParameterError("no output file given (set output_path)")
        source, target = Path(self.input_path), Path(self.output_path)
        with self._job(3, f"converting {source.name}"):
            out_format = locformats.format_for_output(target, self.to)
            check_outputs(locformats.output_paths(target, out_format), [source], self.overwrite)
            table = locformats.read_locs(source, self.input_format, self.pixel_size, self.half_pixel)
            self._advance()
            n_read = len(table)
            table, n_outside = self._drop_outside(table, out_format)
            self._advance()
            paths = locformats.write_locs(
                table, target, out_format, self.overwrite, self.half_pixel, self.pixel_size
            )
            self._advance()
            base_in = locformats.FRAME_BASE[table.meta.source_format]
            base_out = locformats.FRAME_BASE[out_format]
            frames = (int(table.frame[0]), int(table.frame[-1])) if len(table) else None
            summary = {
                "input": str(source),
                "input_format": table.meta.source_format,
                "output_format": out_format,
                "rows_read": n_read,
                "rows_written": len(table),
                "rows_dropped_outside_field": n_outside,
                "frames_0_based": frames,
                "frames_in_input": None if frames is None else tuple(f + base_in for f in frames),
                "frames_in_output": None if frames is None else tuple(f + base_out for f in frames),
                "pixel_size": table.meta.pixel_size if self.pixel_size is None else self.pixel_size,
                "half_pixel": self.half_pixel,
                "conversion": table.meta.conversion,
                "written": [str(p) for p in paths],
            }
            self._update(
                written=[str(p) for p in paths],
                summary=summary,
                status=f"wrote {len(table)} localizations to {', '.join(p.name for p in paths)}",
            )
        return paths

    def _drop_outside(self, table: LocTable, out_format: str) -> tuple[LocTable, int]:
        meta = table.meta
        if out_format != "deepstorm" or not self.drop_outside or meta.image_shape is None or not len(table):
            return table, 0
        ps = self.pixel_size if self.pixel_size is not None else meta.pixel_size
        if ps is None:
            return table, 0
        height, width = meta.image_shape
        inside = (table.x >= 0) & (table.x < width * ps) & (table.y >= 0) & (table.y < height * ps)
        n_outside = int(np.count_nonzero(~inside))
        if n_outside:
            warnings.warn(
                f"{meta.source_path}: dropped {n_outside} of {len(table)} localizations outside the "
                f"{width} x {height} px camera field (DeepSTORM would clamp them onto the border)",
                stacklevel=3,
            )
            table = table.take(inside)
        return table, n_outside


__all__ = ["Convert", "OUTPUT_FORMATS"]
