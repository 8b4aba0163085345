"""ImageJ/DeepSTORM-compatible TIF writing: streamed or whole stacks, atomic, pixel size in the resolution tags."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from imagebinner.errors import ParameterError
from imagebinner.io.atomic import atomic_path

OUTPUT_DTYPES = ("uint8", "uint16", "float32")
BIGTIFF_THRESHOLD = 3_900_000_000  # bytes of pixel data above which BigTIFF is used (classic TIF ends at 4 GiB)


def to_output_dtype(data: np.ndarray, dtype: str = "uint16") -> tuple[np.ndarray, int]:
    """Convert to the output dtype: uint8/uint16 rounded and clipped to their range (returns the number of clipped
    pixels; NaN counts as clipped and becomes 0), or float32. Never wraps around, never int64."""
    data = np.asarray(data)
    if dtype in ("uint8", "uint16"):
        target = np.dtype(dtype)
        if data.dtype == target:
            return data, 0
        top = np.iinfo(target).max
        if data.dtype.kind == "f":
            nan = np.isnan(data)
            data = np.rint(np.where(nan, 0, data))
            clipped = int(np.count_nonzero(nan | (data < 0) | (data > top)))
        elif data.dtype.kind in "iub":
            clipped = int(np.count_nonzero((data < 0) | (data > top))) if data.dtype.kind != "b" else 0
        else:
            raise ParameterError(f"cannot write {data.dtype} pixel data as {dtype}")
        return np.clip(data, 0, top).astype(target), clipped
    if dtype == "float32":
        return np.asarray(data, dtype=np.float32), 0
    raise ParameterError(f"output dtype must be one of {OUTPUT_DTYPES}, got {dtype!r}")


def _resolution(pixel_size: float | None) -> dict:
    if pixel_size is None:
        return {}
    # pixels per centimetre; the DeepSTORM notebook reads ps = 0.01 * 1e9 / xres for unit CENTIMETER
    return {"resolution": (1e7 / pixel_size, 1e7 / pixel_size), "resolutionunit": "CENTIMETER"}


class TifWriter:
    """Stream frames into an ImageJ-compatible TIF, atomically (the target appears only on success).

    ``with TifWriter(path, pixel_size=107) as w: w.write_stream(frames, n_frames)`` (or call ``write_stream``
    without ``with``). Frames are converted with :func:`to_output_dtype`; ``clipped`` counts clipped pixels.
    BigTIFF is used automatically above ~3.9 GB of pixel data (``bigtiff`` forces it on or off); the resolution
    tags carry the pixel size in pixels per cm.
    """

    def __init__(
        self,
        path: str | Path,
        pixel_size: float | None = None,
        dtype: str = "uint16",
        overwrite: bool = False,
        bigtiff: bool | None = None,
    ):
        if dtype not in OUTPUT_DTYPES:
            raise ParameterError(f"output dtype must be one of {OUTPUT_DTYPES}, got {dtype!r}", path)
        if pixel_size is not None and not pixel_size > 0:
            raise ParameterError(f"pixel size must be positive, got {pixel_size}", path)
        self.path, self.pixel_size, self.dtype, self.overwrite = Path(path), pixel_size, str(np.dtype(dtype)), overwrite
        self.bigtiff = bigtiff
        self.clipped = 0
        self.n_written = 0
        self._stack: contextlib.ExitStack | None = None
        self._tmp: Path | None = None

    def __enter__(self) -> "TifWriter":
        self._stack = contextlib.ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(self.path, overwrite=self.overwrite))
        return self

    def _write_pages(self, frames: Iterator[np.ndarray], n: int, shape: tuple[int, int]) -> None:
        big = self.bigtiff
        if big is None:
            big = n * shape[0] * shape[1] * np.dtype(self.dtype).itemsize > BIGTIFF_THRESHOLD
        import tifffile

        with tifffile.TiffWriter(self._tmp, bigtiff=big, imagej=not big) as tw:
            tw.write(
                frames,
                shape=(n, *shape),
                dtype=self.dtype,
                photometric="minisblack",
                metadata={"axes": "TYX"},
                **_resolution(self.pixel_size),
            )

    def write_stream(self, frames: Iterable[np.ndarray], n_frames: int) -> None:
        """Write exactly ``n_frames`` 2-D frames from an iterable, one at a time (bounded memory)."""
        if self._tmp is None:  # used without ``with``: open, write and commit in one go
            with self:
                self.write_stream(frames, n_frames)
            return
        n_frames = int(n_frames)
        if n_frames < 1:
            raise ParameterError(f"need at least one frame, got n_frames={n_frames}", self.path)
        shape_holder: list[tuple[int, int]] = []

        def converted() -> Iterator[np.ndarray]:
            for k, fr in enumerate(frames):
                if k >= n_frames:
                    raise ParameterError(f"more than {n_frames} frames given", self.path)
                out, c = to_output_dtype(np.asarray(fr), self.dtype)
                if out.ndim != 2:
                    raise ParameterError(f"frame {k} has shape {out.shape}, expected a 2-D frame", self.path)
                if shape_holder and out.shape != shape_holder[0]:
                    raise ParameterError(f"frame {k} has shape {out.shape}, expected {shape_holder[0]}", self.path)
                self.clipped += c
                yield out

        it = converted()
        first = next(it, None)
        if first is None:
            raise ParameterError("no frames to write", self.path)
        shape_holder.append(first.shape)

        def chained() -> Iterator[np.ndarray]:
            yield first
            count = 1
            for fr in it:
                count += 1
                yield fr
            if count != n_frames:
                raise ParameterError(f"got {count} frames, expected {n_frames}", self.path)

        self._write_pages(chained(), n_frames, first.shape)
        self.n_written = n_frames

    def write_array(self, stack: np.ndarray) -> None:
        """Write a whole ``(n_frames, height, width)`` stack in one contiguous write: the same file as
        :meth:`write_stream` of its frames, without the per-frame overhead (for stacks that fit in memory)."""
        if self._tmp is None:  # used without ``with``: open, write and commit in one go
            with self:
                self.write_array(stack)
            return
        stack = np.asarray(stack)
        if stack.ndim != 3 or len(stack) < 1:
            raise ParameterError(f"expected a (frames, height, width) stack, got shape {stack.shape}", self.path)
        out, clipped = to_output_dtype(stack, self.dtype)
        self.clipped += clipped
        self._write_pages(np.ascontiguousarray(out), len(out), out.shape[1:])
        self.n_written = len(out)

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._stack is not None
        stack, self._stack, self._tmp = self._stack, None, None
        if exc_type is None:
            stack.close()
        else:
            stack.__exit__(exc_type, exc, tb)


def write_tif(
    path: str | Path,
    data: np.ndarray,
    pixel_size: float | None = None,
    dtype: str = "uint16",
    overwrite: bool = False,
) -> int:
    """Write a 2-D frame or a ``(frames, height, width)`` stack as an ImageJ TIF; returns the clipped pixel count.

    Resolution tags carry ``pixel_size`` (pixels per cm) so ImageJ and the DeepSTORM notebook read it back.
    """
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ParameterError(f"expected a 2-D frame or 3-D stack, got shape {data.shape}", path)
    w = TifWriter(path, pixel_size=pixel_size, dtype=dtype, overwrite=overwrite)
    w.write_stream(iter(data), len(data))
    return w.clipped
