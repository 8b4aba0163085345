"""CSV writers of the canonical table: DeepSTORM training / prediction and ThunderSTORM layouts (pyarrow's writer).

A layout is a header line plus named columns computed row by row from the table, so a table written whole and the
same table written chunk by chunk (``first_index`` continues the numbering) give the same bytes.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from imagebinner.io.atomic import atomic_group
from imagebinner.io.table import OPTIONAL, LocTable

CSV_WRITE_FORMATS = ("deepstorm", "deepstorm-prediction", "thunderstorm")

DEEPSTORM_HEADER = ",frame,x [nm],y [nm],Photon #,Sigma [nm]"
DEEPSTORM_PREDICTION_HEADER = "frame,x [nm],y [nm],confidence [a.u]"

# Columns named like the standard ones (lower case) are never copied as extra ThunderSTORM columns.
STANDARD_CSV_NAMES = {
    "x [nm]", "y [nm]", "z [nm]", "sigma [nm]", "intensity [photon]", "intensity [photons]", "photon #",
    "offset [photon]", "offset [photons]", "uncertainty_xy [nm]", "uncertainty [nm]", "confidence [a.u]",
    "confidence [a.u.]",
}
# Picasso fields in camera pixels that would be misleading in a nm-based CSV.
PIXEL_UNIT_FIELDS = {"sx", "sy", "lpx", "lpy", "std_x", "std_y", "x_px", "y_px", "picasso_frame"}

_THUNDERSTORM_STANDARD = (
    ("z", "z [nm]"),
    ("sigma", "sigma [nm]"),
    ("photons", "intensity [photon]"),
    ("background", "offset [photon]"),
    ("uncertainty", "uncertainty_xy [nm]"),
    ("confidence", "confidence [a.u]"),
)
_CSV_CHUNK_ROWS = 1 << 19


def csv_layout(table: LocTable, fmt: str, first_index: int = 1) -> tuple[str, dict[str, np.ndarray | None]]:
    """Header line and columns of ``table`` in the CSV format ``fmt`` (row numbers start at ``first_index``).

    A column of None (or non-finite values) is written as empty fields."""
    n = len(table)
    index = np.arange(first_index, first_index + n, dtype=np.int64)
    if fmt == "deepstorm":
        return DEEPSTORM_HEADER, {
            "": index,
            "frame": table.frame + 1,
            "x [nm]": table.x,
            "y [nm]": table.y,
            "Photon #": table["photons"] if "photons" in table else None,
            "Sigma [nm]": table["sigma"] if "sigma" in table else None,
        }
    if fmt == "deepstorm-prediction":
        return DEEPSTORM_PREDICTION_HEADER, {
            "frame": table.frame + 1,
            "x [nm]": table.x,
            "y [nm]": table.y,
            "confidence [a.u]": table["confidence"] if "confidence" in table else None,
        }
    if fmt == "thunderstorm":
        cols = _thunderstorm_layout(table, index)
        return ",".join(f'"{name}"' for name in cols), cols
    raise ValueError(f"not a CSV output format: {fmt!r}")


def _thunderstorm_layout(table: LocTable, index: np.ndarray) -> dict[str, np.ndarray | None]:
    cols: dict[str, np.ndarray | None] = {
        "id": index,
        "frame": table.frame + 1,
        "x [nm]": table.x,
        "y [nm]": table.y,
    }
    for canonical, name in _THUNDERSTORM_STANDARD:
        if canonical in table:
            cols[name] = table[canonical]
    taken = {c.lower() for c in cols}
    for name in table.columns:
        if name in ("frame", "x", "y") or name in OPTIONAL or name in PIXEL_UNIT_FIELDS:
            continue
        if name.startswith("picasso_") or name.lower() in taken or name.lower() in STANDARD_CSV_NAMES:
            continue
        values = table[name]
        if values.dtype.kind in "iuf" and '"' not in name and "," not in name and name.strip() == name and name:
            cols[name] = values
            taken.add(name.lower())
    return cols


def arrow_table(columns: dict[str, np.ndarray | None], n: int):
    """A pyarrow table of the columns (None and non-finite values become nulls, written as empty fields)."""
    import pyarrow as pa

    arrays = []
    for values in columns.values():
        if values is None:
            arrays.append(pa.nulls(n, pa.float64()))
        elif values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            arrays.append(pa.array(values, mask=~np.isfinite(values)))
        else:
            arrays.append(pa.array(values))
    return pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(arrays))])


def write_csv(table: LocTable, fmt: str, target: Path, overwrite: bool) -> None:
    """Write ``table`` whole in the CSV format ``fmt`` to ``target`` (atomic)."""
    import pyarrow as pa

    header, columns = csv_layout(table, fmt)
    n = len(table)
    rows = arrow_table(columns, n)
    with atomic_group([target], overwrite) as (tmp,):
        with pa.OSFile(str(tmp), "wb") as sink:
            sink.write((header + "\n").encode("utf-8"))
            if n:
                write_csv_rows(rows, sink)


def write_csv_rows(table, sink) -> None:
    """Rows (no header) with pyarrow's CSV writer; large tables are formatted in row chunks on several threads
    (pyarrow releases the GIL) and written in order, with at most a few chunks in memory."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    options = pacsv.WriteOptions(include_header=False, batch_size=1 << 14, quoting_style="needed")
    n = table.num_rows
    workers = min(4, os.cpu_count() or 1)
    if n <= _CSV_CHUNK_ROWS or workers == 1:
        pacsv.write_csv(table, sink, options)
        return

    def encode(start: int):
        buffer = pa.BufferOutputStream()
        pacsv.write_csv(table.slice(start, _CSV_CHUNK_ROWS), buffer, options)
        return buffer.getvalue()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for start in range(0, n, _CSV_CHUNK_ROWS):
            pending.append(pool.submit(encode, start))
            if len(pending) > workers:
                sink.write(pending.popleft().result())
        while pending:
            sink.write(pending.popleft().result())
