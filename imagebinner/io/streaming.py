"""Streaming conversion: a frame-sorted localization file to a CSV format in bounded chunks (same bytes as in memory).

Picasso HDF5 is read in row slices of ``/locs`` (h5py), CSV with pyarrow's streaming reader; every chunk goes
through the same per-row conversion as the whole-file readers (:func:`picasso_hdf5.picasso_columns`,
``locformats._csv_to_table``) and the same CSV layout (:func:`csv_writers.csv_layout`, row numbers continued), while a
small thread pool formats the previous chunks. The canonical table is sorted stably by frame; each chunk is sorted
the same way, which equals the whole-file sort as long as no chunk starts below the last frame of the one before.
That is checked chunk by chunk, and anything unexpected (rows out of frame order across chunks, a column changing
type between blocks, a bad value) abandons the stream (the temporary output is removed) so the caller converts in
memory instead, which gives the sorted output or the exact error message.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from imagebinner.errors import FormatError
from imagebinner.io import locformats
from imagebinner.io.atomic import atomic_group
from imagebinner.io.csv_writers import CSV_WRITE_FORMATS, arrow_table, csv_layout
from imagebinner.io.table import LocMeta, LocTable

#: rows per chunk read from Picasso HDF5; CSV blocks are sized in bytes (about the same number of rows)
CHUNK_ROWS = 1 << 16
CSV_BLOCK_BYTES = 1 << 20  # pyarrow's streaming reader keeps a few dozen blocks read ahead
#: rows per slice handed to one formatting thread
_ENCODE_ROWS = 1 << 16
STREAM_INPUTS = ("picasso", *locformats.CSV_FORMATS)


@dataclasses.dataclass
class StreamResult:
    """What a streamed conversion did; ``done`` is False (with ``reason``) when the caller must convert in memory."""

    done: bool
    reason: str = ""
    loud: bool = False  # True when the fallback is worth a warning (large unsorted input)
    meta: LocMeta | None = None
    rows_read: int = 0
    rows_written: int = 0
    rows_outside: int = 0
    first_frame: int | None = None
    last_frame: int | None = None


class _Abandon(Exception):
    def __init__(self, reason: str, loud: bool = False):
        super().__init__(reason)
        self.reason, self.loud = reason, loud


def can_stream(in_format: str, out_format: str) -> bool:
    """True for the format pairs :func:`stream_convert` handles (frame-sorted inputs, CSV outputs)."""
    return in_format in STREAM_INPUTS and out_format in CSV_WRITE_FORMATS


def stream_convert(
    source: Path,
    target: Path,
    in_format: str,
    out_format: str,
    pixel_size: float | None,
    half_pixel: bool,
    overwrite: bool,
    drop_outside: bool,
    chunk_rows: int = CHUNK_ROWS,
    csv_block_bytes: int = CSV_BLOCK_BYTES,
) -> StreamResult:
    """Convert ``source`` (format ``in_format``, already resolved) to the CSV format ``out_format`` chunk by chunk.

    ``drop_outside`` drops rows outside the camera field for DeepSTORM training output when the field is known
    (as :class:`~imagebinner.tools.convert.Convert` does in memory). Nothing is written unless the whole stream
    succeeds; a result with ``done=False`` says why it was abandoned.
    """
    if not can_stream(in_format, out_format):
        return StreamResult(False, f"{in_format} -> {out_format} is converted in memory")
    if in_format == "picasso":
        chunks = _picasso_chunks(source, pixel_size, half_pixel, chunk_rows, _PICASSO_FIELDS_USED.get(out_format))
    else:
        chunks = _csv_chunks(source, in_format, pixel_size, half_pixel, csv_block_bytes, chunk_rows)
    result = StreamResult(True)
    try:
        with atomic_group([target], overwrite) as (tmp,):
            _write_stream(chunks, tmp, out_format, pixel_size, drop_outside, result)
    except _Abandon as exc:
        return StreamResult(False, exc.reason, exc.loud)
    finally:
        chunks.close()
    return result


def _write_stream(
    chunks: Iterator[LocTable], tmp: Path, out_format: str, pixel_size: float | None, drop: bool, result: StreamResult
) -> None:
    import pyarrow as pa
    from pyarrow import csv as pacsv

    options = pacsv.WriteOptions(include_header=False, batch_size=1 << 14, quoting_style="needed")

    def encode(rows) -> bytes:
        buffer = pa.BufferOutputStream()
        pacsv.write_csv(rows, buffer, options)
        return buffer.getvalue()

    workers = max(1, min(4, os.cpu_count() or 1))
    header = None
    last = -1
    with pa.OSFile(str(tmp), "wb") as sink, ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for table in chunks:
            frames = table.frame  # each chunk is sorted stably; exact while the chunks follow each other in frame
            if len(frames):
                if frames[0] < last:
                    raise _Abandon("input not sorted by frame", loud=True)
                last = int(frames[-1])
            if result.meta is None:
                result.meta = table.meta
            result.rows_read += len(table)
            table = _drop_outside(table, out_format, pixel_size, drop, result)
            chunk_header, columns = csv_layout(table, out_format, first_index=result.rows_written + 1)
            if header is None:
                header = chunk_header
                sink.write((header + "\n").encode("utf-8"))
            elif chunk_header != header:
                raise _Abandon("columns differ between blocks of the input")
            n = len(table)
            if n:
                if result.first_frame is None:
                    result.first_frame = int(table.frame[0])
                result.last_frame = int(table.frame[-1])
                rows = arrow_table(columns, n)
                for start in range(0, n, _ENCODE_ROWS):
                    pending.append(pool.submit(encode, rows.slice(start, _ENCODE_ROWS)))
                    while len(pending) > workers:
                        sink.write(pending.popleft().result())
            result.rows_written += n
        while pending:
            sink.write(pending.popleft().result())
        if header is None:
            raise _Abandon("empty input")


def outside_field(table: LocTable, pixel_size: float, shape: tuple[int, int]) -> np.ndarray:
    """Mask of the rows outside the camera field ``shape`` = (height, width) px of ``pixel_size`` nm."""
    height, width = shape
    x, y = table.x, table.y
    return ~((x >= 0) & (x < width * pixel_size) & (y >= 0) & (y < height * pixel_size))


def _drop_outside(table: LocTable, out_format: str, pixel_size, drop: bool, result: StreamResult) -> LocTable:
    meta = table.meta
    if out_format != "deepstorm" or not drop or meta.image_shape is None or not len(table):
        return table
    ps = pixel_size if pixel_size is not None else meta.pixel_size
    if ps is None:
        return table
    outside = outside_field(table, ps, meta.image_shape)
    n_outside = int(np.count_nonzero(outside))
    if not n_outside:
        return table
    result.rows_outside += n_outside
    return table.take(~outside)


#: the Picasso fields a DeepSTORM layout uses (the other fields would be converted and dropped); None: all fields
_PICASSO_FIELDS_USED = {
    "deepstorm": ("frame", "x", "y", "photons", "sx", "sy"),
    "deepstorm-prediction": ("frame", "x", "y", "confidence"),
}


def _picasso_chunks(
    path: Path, pixel_size, half_pixel: bool, chunk_rows: int, fields: tuple[str, ...] | None = None
) -> Iterator[LocTable]:
    import h5py

    from imagebinner.io.picasso_hdf5 import picasso_columns, picasso_meta

    try:
        meta = picasso_meta(path, pixel_size, half_pixel)
    except FormatError as exc:
        raise _Abandon(str(exc)) from None
    with h5py.File(path, "r") as h5:
        ds = h5["locs"]
        if ds.dtype["frame"].kind == "f":
            raise _Abandon("Picasso frames stored as floats (possibly non-integral)")
        n = ds.shape[0] if ds.shape else 0
        for start in range(0, n, chunk_rows):
            chunk = ds[start : start + chunk_rows]
            raw = {name: chunk[name] for name in ds.dtype.names if fields is None or name in fields}
            try:
                cols = picasso_columns(raw, meta.pixel_size, half_pixel, path)
            except FormatError as exc:
                raise _Abandon(str(exc)) from None
            yield LocTable(cols, meta, validate=False)


def _csv_chunks(
    path: Path, fmt: str, pixel_size, half_pixel: bool, block_bytes: int, chunk_rows: int
) -> Iterator[LocTable]:
    import pyarrow as pa

    try:
        header = locformats._read_header(path)
        if not header.has_data:
            raise _Abandon("no data rows")
        reader = locformats._open_csv(path, header, None, path, block_bytes)
        names = locformats._column_names(header, path)
    except FormatError as exc:
        raise _Abandon(str(exc)) from None
    def convert(batches: list) -> LocTable:
        table = pa.Table.from_batches(batches)
        cols = {name: locformats.arrow_to_numpy(column) for name, column in zip(names, table.columns)}
        return locformats._csv_to_table(cols, header, fmt, path, pixel_size, half_pixel)

    try:
        batches: list = []
        n = 0
        for batch in reader:  # small blocks (the reader reads ahead), converted together in chunks of rows
            batches.append(batch)
            n += batch.num_rows
            if n >= chunk_rows:
                yield convert(batches)
                batches, n = [], 0
        if batches:
            yield convert(batches)
    except (FormatError, pa.ArrowInvalid) as exc:
        raise _Abandon(str(exc).splitlines()[0]) from None


__all__ = ["StreamResult", "can_stream", "stream_convert", "outside_field", "CHUNK_ROWS", "STREAM_INPUTS"]
