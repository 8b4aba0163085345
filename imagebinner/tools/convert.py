"""Convert a localization file between Picasso, ThunderSTORM, DeepSTORM, DECODE, SMAP and ONI layouts (via the
canonical table; frame-sorted inputs to CSV are streamed in bounded chunks)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import param

from imagebinner.errors import ParameterError
from imagebinner.io import check_outputs, locformats, streaming
from imagebinner.io.table import LocMeta, LocTable
from imagebinner.tools.base import Task
from imagebinner.tools.settings import CameraSettings, OutputFile

OUTPUT_FORMATS = ("deepstorm", "thunderstorm", "picasso", "deepstorm-prediction", "decode")


class Convert(Task, CameraSettings, OutputFile):
    """Read one localization file (format detected from its content) and write it in another format.

    Coordinates and frames go through the canonical convention (0-based frames, nm with the origin at the corner
    of pixel (0, 0)), so every frame-base and half-pixel conversion is applied exactly once and recorded. The
    pixel size is taken from the Picasso YAML (DECODE ``px_size``, SMAP ``cam_pixelsize_um``) when present; it is
    needed for Picasso input without Pixelsize, Picasso CSV exports and Picasso or DECODE output from CSV.
    Inputs sorted by frame (Picasso, ThunderSTORM, ...) written to CSV are streamed in bounded chunks (same bytes as
    in memory); other inputs are converted in memory, with a warning when a large input is not sorted by frame.
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
        doc="Output format; when not given, from the extension: .hdf5/.h5 -> picasso, .csv -> deepstorm (training "
        "CSV); decode writes a DECODE emitter .h5.",
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
            in_format = self.input_format
            streamed = None
            if out_format in streaming.CSV_WRITE_FORMATS:
                in_format = in_format or locformats.detect_format(source)
                if streaming.can_stream(in_format, out_format):
                    streamed = streaming.stream_convert(
                        source, target, in_format, out_format, self.pixel_size, self.half_pixel, self.overwrite,
                        self.drop_outside,
                    )
                    if not streamed.done and streamed.loud:
                        warnings.warn(
                            f"{source}: {streamed.reason}; converting in memory (sorted by frame on the way)",
                            stacklevel=2,
                        )
            self._advance()
            if streamed is not None and streamed.done:
                paths = [target]
                meta, n_read, n_written = streamed.meta, streamed.rows_read, streamed.rows_written
                n_outside = streamed.rows_outside
                frames = None if streamed.first_frame is None else (streamed.first_frame, streamed.last_frame)
                self._advance()
            else:
                table = locformats.read_locs(source, in_format, self.pixel_size, self.half_pixel)
                self._advance()
                meta, n_read = table.meta, len(table)
                table, n_outside = self._drop_outside(table, out_format)
                paths = locformats.write_locs(
                    table, target, out_format, self.overwrite, self.half_pixel, self.pixel_size
                )
                n_written = len(table)
                frames = (int(table.frame[0]), int(table.frame[-1])) if len(table) else None
            if n_outside:
                self._warn_outside(meta, n_outside, n_read)
            self._advance()
            summary = self._summary(source, meta, out_format, n_read, n_written, n_outside, frames, paths)
            summary["streamed"] = bool(streamed is not None and streamed.done)
            summary["note"] = "" if streamed is None or streamed.done else streamed.reason
            self._update(
                written=[str(p) for p in paths],
                summary=summary,
                status=f"wrote {n_written} localizations to {', '.join(p.name for p in paths)}",
            )
        return paths

    def _summary(self, source: Path, meta: LocMeta, out_format: str, n_read: int, n_written: int, n_outside: int,
                 frames: tuple[int, int] | None, paths: list[Path]) -> dict:
        base_in = locformats.FRAME_BASE[meta.source_format]
        base_out = locformats.FRAME_BASE[out_format]
        return {
            "input": str(source),
            "input_format": meta.source_format,
            "output_format": out_format,
            "rows_read": n_read,
            "rows_written": n_written,
            "rows_dropped_outside_field": n_outside,
            "frames_0_based": frames,
            "frames_in_input": None if frames is None else tuple(f + base_in for f in frames),
            "frames_in_output": None if frames is None else tuple(f + base_out for f in frames),
            "pixel_size": meta.pixel_size if self.pixel_size is None else self.pixel_size,
            "half_pixel": self.half_pixel,
            "conversion": meta.conversion,
            "written": [str(p) for p in paths],
        }

    @staticmethod
    def _warn_outside(meta: LocMeta, n_outside: int, n_read: int) -> None:
        height, width = meta.image_shape
        warnings.warn(
            f"{meta.source_path}: dropped {n_outside} of {n_read} localizations outside the "
            f"{width} x {height} px camera field (DeepSTORM would clamp them onto the border)",
            stacklevel=3,
        )

    def _drop_outside(self, table: LocTable, out_format: str) -> tuple[LocTable, int]:
        meta = table.meta
        if out_format != "deepstorm" or not self.drop_outside or meta.image_shape is None or not len(table):
            return table, 0
        ps = self.pixel_size if self.pixel_size is not None else meta.pixel_size
        if ps is None:
            return table, 0
        outside = streaming.outside_field(table, ps, meta.image_shape)
        n_outside = int(np.count_nonzero(outside))
        return (table.take(~outside) if n_outside else table), n_outside


__all__ = ["Convert", "OUTPUT_FORMATS"]
