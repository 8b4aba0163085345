"""The Binner's provenance record: parameters, inputs and the parts of every binned frame, as a dict and as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from imagebinner import __version__
from imagebinner.io import file_signature
from imagebinner.tools.base import jsonable
from imagebinner.tools.binner.inputs import Measurement
from imagebinner.tools.binner.pool import PART_FIELDS

CONVENTIONS = (
    "parts: measurement = 0-based index into inputs, frame = 0-based page of its movie, row/column = top-left pixel "
    "of the patch (rows row..row+P-1, columns column..column+P-1); binned frame value = sum of parts - "
    "camera_offset*(number of parts-1); CSV frame = binned_frame (1-based); x, y in nm, corner convention, "
    "x' = x - column*ps, y' = y - row*ps"
)


def input_record(m: Measurement) -> dict[str, Any]:
    """Provenance of one measurement: movie and localization files (path, size, mtime), format, sizes."""
    return {
        "index": m.index,
        "movie": file_signature(m.movie_path),
        "locs": file_signature(m.locs_path) if m.locs_path and m.locs_path.exists() else None,
        "locs_format": m.table.meta.source_format,
        "conversion": m.table.meta.conversion,
        "n_frames": int(m.n_frames),
        "shape": [int(v) for v in m.shape],
        "movie_dtype": str(m.movie.dtype),
        "n_locs_used": int(len(m.table)),
        "dropped_outside": int(m.n_dropped_outside),
    }


def provenance_record(
    parameters: dict[str, Any], ms: Sequence[Measurement], patches: np.ndarray, plan: np.ndarray,
    pool_stats: dict[str, Any], target: dict[str, Any] | None = None, frame_targets: np.ndarray | None = None,
) -> dict[str, Any]:
    """The JSON-ready record: ``parameters``, the inputs, the pool statistics and, per binned frame, its parts.

    ``patches`` are the pool's ``(n, 5)`` rows of measurement, frame, row, column, n_locs and ``plan`` the
    ``(n_binned, bin_size)`` rows of ``patches`` each binned frame sums (a part used twice is one shared dict; ``-1``
    pads frames with fewer parts). Binning to a target density adds the ``target`` record and, per binned frame,
    its ``target_density`` (per µm²).
    """
    part = [dict(zip(PART_FIELDS, row)) for row in np.asarray(patches, dtype=np.int64).tolist()]
    frames = [
        {"binned_frame": j + 1, "parts": [part[k] for k in row if k >= 0]}
        for j, row in enumerate(np.asarray(plan, dtype=np.int64).tolist())
    ]
    if frame_targets is not None:
        for entry, value in zip(frames, np.asarray(frame_targets, dtype=np.float64).tolist()):
            entry["target_density"] = value
    head = {
        "tool": "imagebinner Binner",
        "version": __version__,
        "conventions": CONVENTIONS,
        "parameters": jsonable(parameters),
        "inputs": [input_record(m) for m in ms],
        "pool": jsonable(pool_stats),
    }
    if target is not None:
        head["target"] = jsonable(target)
    return {**head, "binned_frames": frames}


def with_outputs(record: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    """``record`` with an ``outputs`` entry placed before the (long) ``binned_frames``."""
    head = {k: v for k, v in record.items() if k != "binned_frames"}
    return {**head, "outputs": jsonable(outputs), "binned_frames": record.get("binned_frames", [])}


def provenance_text(record: dict[str, Any]) -> str:
    """The record as JSON text, every value written by ``json.dumps``: indented, except that each binned frame is
    one compact line (indenting 10^4 frames of 10 parts would take seconds and give 700,000 lines)."""
    head = json.dumps({k: v for k, v in record.items() if k != "binned_frames"}, indent=1)
    lines = [json.dumps(frame) for frame in record.get("binned_frames", [])]
    frames = "[\n  " + ",\n  ".join(lines) + "\n ]" if lines else "[]"
    return head[: head.rindex("\n}")] + ',\n "binned_frames": ' + frames + "\n}\n"
