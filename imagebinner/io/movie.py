"""Lazy movies (TIF and Picasso ``.raw`` + YAML) and ImageJ/DeepSTORM-compatible TIF writing.

A :class:`Movie` never reads more than the frames asked for: contiguous TIF data and ``.raw`` files are
memory-mapped, other TIFs are read page by page. Frames come back in native byte order with the stored dtype.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import tifffile

from imagebinner.errors import FormatError, ParameterError
from imagebinner.io import picasso_yaml
from imagebinner.io.atomic import atomic_path

MOVIE_SUFFIXES = (".tif", ".tiff", ".raw")
_SPATIAL = set("YX")


class Movie:
    """A read-only, lazily read movie of ``n_frames`` frames of ``shape = (height, width)`` pixels.

    ``pixel_size`` (nm) comes from the file's metadata when present (TIF resolution tags or ImageJ unit,
    Picasso YAML ``Pixelsize``) or from the ``pixel_size`` argument, which takes precedence.
    """

    def __init__(self, path: str | Path, pixel_size: float | None = None):
        self.path = Path(path)
        if not self.path.exists():
            raise FormatError("movie file not found", self.path)
        self._tif: tifffile.TiffFile | None = None
        self._pages = None
        self._memmap: np.ndarray | None = None
        self._page_index: list[tuple[int, ...]] | None = None
        suffix = self.path.suffix.lower()
        if suffix == ".raw":
            meta_pixel_size = self._open_raw()
            self.format = "picasso-raw"
        elif suffix in (".tif", ".tiff"):
            meta_pixel_size = self._open_tif()
            self.format = "tif"
        else:
            raise FormatError(f"unknown movie format {suffix!r} (expected .tif, .tiff or .raw)", self.path)
        if pixel_size is not None and not pixel_size > 0:
            raise ParameterError(f"pixel size must be positive, got {pixel_size}", self.path)
        self.metadata_pixel_size = meta_pixel_size
        self.pixel_size: float | None = float(pixel_size) if pixel_size is not None else meta_pixel_size

    # -- opening --------------------------------------------------------------------------------------------
    def _open_raw(self) -> float | None:
        docs = picasso_yaml.load_docs(picasso_yaml.sidecar_path(self.path))
        try:
            width = int(picasso_yaml.lookup(docs, "Width"))
            height = int(picasso_yaml.lookup(docs, "Height"))
            frames = int(picasso_yaml.lookup(docs, "Frames"))
            dtype = np.dtype(picasso_yaml.lookup(docs, "Data Type", "uint16"))
        except (TypeError, ValueError):
            raise FormatError("YAML lacks Width, Height, Frames or a valid Data Type", self.path) from None
        order = picasso_yaml.lookup(docs, "Byte Order", "<")
        dtype = dtype.newbyteorder(order if order in "<>" else "<")
        expected = width * height * frames * dtype.itemsize
        size = self.path.stat().st_size
        if size < expected:
            raise FormatError(
                f"file holds {size} bytes but the YAML promises {frames} frames of {height}x{width} {dtype} "
                f"({expected} bytes)",
                self.path,
            )
        self._memmap = np.memmap(self.path, dtype=dtype, mode="r", shape=(frames, height, width))
        self.n_frames, self.shape, self.stored_dtype = frames, (height, width), dtype
        return picasso_yaml.pixel_size(docs, self.path)

    def _open_tif(self) -> float | None:
        try:
            tif = tifffile.TiffFile(self.path)
        except (tifffile.TiffFileError, ValueError, OSError) as exc:
            raise FormatError(f"not a readable TIF ({exc})", self.path) from None
        self._tif = tif
        if not tif.series:
            raise FormatError("TIF holds no image data", self.path)
        series = tif.series[0]
        axes, shape = series.axes, series.shape
        if "S" in axes and shape[axes.index("S")] > 1:
            raise FormatError("TIF holds RGB/multi-sample images, expected single-channel camera frames", self.path)
        if not ("Y" in axes and "X" in axes):
            raise FormatError(f"TIF series has no Y/X axes (axes {axes!r})", self.path)
        other = [(a, n) for a, n in zip(axes, shape) if a not in _SPATIAL]
        long_axes = [(a, n) for a, n in other if n > 1]
        if len(long_axes) > 1:
            desc = ", ".join(f"{a}={n}" for a, n in long_axes)
            raise FormatError(
                f"TIF has several non-spatial axes longer than 1 ({desc}); cannot tell which one is time", self.path
            )
        # a single non-spatial axis of length > 1 is the time axis, whatever its label (ImageJ 'channels')
        n_frames = long_axes[0][1] if long_axes else 1
        height, width = shape[axes.index("Y")], shape[axes.index("X")]
        if axes.index("Y") > axes.index("X"):
            raise FormatError(f"TIF axes {axes!r} store X before Y; not supported", self.path)
        dtype = series.dtype
        self.n_frames, self.shape, self.stored_dtype = int(n_frames), (int(height), int(width)), dtype
        offset = series.dataoffset
        if offset is not None and dtype.kind in "uif":
            byteorder = tif.byteorder
            self._memmap = np.memmap(
                self.path,
                dtype=dtype.newbyteorder(byteorder),
                mode="r",
                offset=offset,
                shape=(self.n_frames, height, width),
            )
        else:
            self._pages = series.pages if len(series.pages) == self.n_frames else None
            if self._pages is None:
                # e.g. one page per frame but series shape with extra singleton axes; fall back to series.asarray
                self._pages = series
        return _tif_pixel_size(tif)

    # -- reading --------------------------------------------------------------------------------------------
    @property
    def dtype(self) -> np.dtype:
        """Native-byte-order dtype of the frames returned."""
        return self.stored_dtype.newbyteorder("=")

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def nbytes(self) -> int:
        return self.n_frames * self.shape[0] * self.shape[1] * self.dtype.itemsize

    def __len__(self) -> int:
        return self.n_frames

    def _check(self, k: int) -> int:
        k = int(k)
        if not 0 <= k < self.n_frames:
            raise IndexError(f"{self.path}: frame {k} outside 0..{self.n_frames - 1}")
        return k

    def frame(self, k: int) -> np.ndarray:
        """Frame ``k`` (0-based) as a new native-order array of shape ``(height, width)``."""
        k = self._check(k)
        if self._memmap is not None:
            return np.array(self._memmap[k], dtype=self.dtype)
        if isinstance(self._pages, tifffile.TiffPageSeries):
            data = self._pages.asarray(key=k) if len(self._pages.pages) == self.n_frames else None
            if data is None:
                raise FormatError("TIF layout not supported for lazy reading", self.path)
        else:
            data = self._pages[k].asarray()
        return np.asarray(data, dtype=self.dtype).reshape(self.shape)

    def window(self, k: int, row: int, col: int, size: int) -> np.ndarray:
        """Pixels ``[row:row+size, col:col+size]`` of frame ``k`` (reads only those rows when memory-mapped)."""
        k = self._check(k)
        if self._memmap is not None:
            return np.array(self._memmap[k, row : row + size, col : col + size], dtype=self.dtype)
        return self.frame(k)[row : row + size, col : col + size]

    def __getitem__(self, k: int) -> np.ndarray:
        return self.frame(k)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Iterate frames ``start..stop-1`` one at a time (bounded memory)."""
        stop = self.n_frames if stop is None else stop
        for k in range(start, stop):
            yield self.frame(k)

    def read(self) -> np.ndarray:
        """The whole movie in memory (only when the user asks for it)."""
        return np.stack(list(self.frames())) if self.n_frames else np.empty((0, *self.shape), self.dtype)

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()
            self._tif = None
        if self._memmap is not None:
            mm = getattr(self._memmap, "_mmap", None)
            self._memmap = None
            if mm is not None:
                with contextlib.suppress(Exception):
                    mm.close()

    def __enter__(self) -> "Movie":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Movie({str(self.path)!r}, frames={self.n_frames}, shape={self.shape}, dtype={self.dtype}, "
            f"pixel_size={self.pixel_size})"
        )


def open_movie(path: str | Path, pixel_size: float | None = None) -> Movie:
    """Open a TIF or Picasso ``.raw`` movie lazily (see :class:`Movie`)."""
    return Movie(path, pixel_size=pixel_size)


def _tif_pixel_size(tif: tifffile.TiffFile) -> float | None:
    """Pixel size in nm from resolution tags (cm, inch) or the ImageJ ``unit``; None when not recorded."""
    page = tif.pages.first
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    num, den = tag.value
    if not num or not den:
        return None
    pixels_per_unit = num / den
    unit = page.tags.get("ResolutionUnit")
    unit_value = int(unit.value) if unit is not None else 1
    if unit_value == 3:  # centimetre
        return 1e7 / pixels_per_unit
    if unit_value == 2:  # inch
        return 2.54e7 / pixels_per_unit
    ij_unit = (tif.imagej_metadata or {}).get("unit") if tif.is_imagej else None
    scale = {"nm": 1.0, "nanometer": 1.0, "um": 1e3, "µm": 1e3, "\\u00B5m": 1e3, "micron": 1e3, "microns": 1e3}
    if ij_unit in scale and pixels_per_unit != 1.0:
        return scale[ij_unit] / pixels_per_unit
    return None


# -- writing ------------------------------------------------------------------------------------------------
OUTPUT_DTYPES = ("uint8", "uint16", "float32")


def to_output_dtype(data: np.ndarray, dtype: str = "uint16") -> tuple[np.ndarray, int]:
    """Convert to the output dtype: uint8/uint16 clipped to their range (returns the number of clipped pixels), or float32.

    Never wraps around, never int64.
    """
    if dtype in ("uint8", "uint16"):
        target = np.dtype(dtype)
        if data.dtype == target:
            return data, 0
        top = np.iinfo(target).max
        clipped = int(np.count_nonzero((data < 0) | (data > top)))
        if data.dtype.kind == "f":
            data = np.rint(data)
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

    ``with TifWriter(path, pixel_size=107) as w: w.write(frame)``. Frames are converted with
    :func:`to_output_dtype`; ``clipped`` counts clipped pixels.
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
            raise ParameterError(f"output dtype must be one of {OUTPUT_DTYPES}, got {dtype!r}")
        self.path, self.pixel_size, self.dtype, self.overwrite = Path(path), pixel_size, dtype, overwrite
        self.bigtiff = bigtiff
        self.clipped = 0
        self.n_written = 0
        self._stack: contextlib.ExitStack | None = None
        self._tw: tifffile.TiffWriter | None = None

    def __enter__(self) -> "TifWriter":
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path, overwrite=self.overwrite))
        self._tmp = tmp
        return self

    def _write_pages(self, frames: Iterator[np.ndarray], n: int, shape: tuple[int, int]) -> None:
        big = self.bigtiff
        nbytes = n * shape[0] * shape[1] * np.dtype(self.dtype).itemsize
        if big is None:
            big = nbytes > 3_900_000_000
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
        """Write exactly ``n_frames`` frames from an iterable without holding them in memory."""
        shape_holder: list[tuple[int, int]] = []

        def converted() -> Iterator[np.ndarray]:
            for k, fr in enumerate(frames):
                if k >= n_frames:
                    raise ParameterError(f"more than {n_frames} frames given", self.path)
                out, c = to_output_dtype(np.asarray(fr), self.dtype)
                if shape_holder and out.shape != shape_holder[0]:
                    raise ParameterError(f"frame shape {out.shape} differs from {shape_holder[0]}", self.path)
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

        self.n_written = n_frames
        self._write_pages(chained(), n_frames, first.shape)

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._stack is not None
        if exc_type is None:
            self._stack.close()
        else:
            self._stack.__exit__(exc_type, exc, tb)


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
    with TifWriter(path, pixel_size=pixel_size, dtype=dtype, overwrite=overwrite) as w:
        w.write_stream(iter(data), len(data))
    return w.clipped


def is_movie_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in MOVIE_SUFFIXES


def file_signature(path: str | Path) -> dict:
    """Path, size and modification time of an input (for provenance records)."""
    p = Path(path)
    st = os.stat(p)
    return {"path": str(p.resolve()), "size": st.st_size, "mtime": st.st_mtime}
