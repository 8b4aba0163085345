"""Lazy movies: TIF and Picasso ``.raw`` + YAML, read frame by frame (writing: :mod:`imagebinner.io.tif_writer`).

A :class:`Movie` never reads more than the frames asked for. Frames come back in native byte order with the
stored dtype. What each access costs:

* **Memory-mapped** (O(1) open, O(frame) per frame, whatever the movie size): Picasso ``.raw``; TIFs whose image
  data are one contiguous, uncompressed block: files written by tifffile or by ImageJ, ImageJ ">4 GB" TIFs that
  are raw data behind one small header (frame count from the ImageJ metadata), single-page TIFs, BigTIFF.
  ``window()`` touches only the rows of the window.
* **Page-wise** (compressed TIFs, or pages interleaved with their headers): opening walks the chain of page
  headers once to count the pages (a few bytes per page, no tag parsing); ``frame(k)`` then parses and decodes
  page ``k`` only. Vendor formats that tifffile must interpret as a whole (OME, Micro-Manager, LSM, ...) fall
  back to tifffile's series, which parses every page header once at open (still without reading pixel data).
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from imagebinner.errors import FormatError, ParameterError
from imagebinner.io import picasso_yaml
from imagebinner.io.tif_writer import (  # noqa: F401 (re-exported: the writer of the movies read here)
    BIGTIFF_THRESHOLD,
    OUTPUT_DTYPES,
    TifWriter,
    to_output_dtype,
    write_tif,
)

MOVIE_SUFFIXES = (".tif", ".tiff", ".raw")
_SPATIAL = set("YX")
# tifffile flags of plain multi-page files whose pages are the frames (anything else goes through tifffile's series)
_PLAIN_TIF_FLAGS = {"uniform", "imagej", "shaped", "bigtiff", "multipage", "appendable"}
# ImageJ 'unit' values (description) -> nm per unit
_IMAGEJ_UNITS = {
    "nm": 1.0,
    "nanometer": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "\\u00B5m": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "mm": 1e6,
    "cm": 1e7,
    "inch": 2.54e7,
}


class Movie:
    """A read-only, lazily read movie of ``n_frames`` frames of ``shape = (height, width)`` pixels.

    ``pixel_size`` (nm) comes from the ``pixel_size`` argument when given, else from the file's metadata
    (ImageJ ``unit`` with the resolution tags, TIF resolution tags in cm or inch, Picasso YAML ``Pixelsize``),
    else None. ``access`` is ``"memmap"`` or ``"pages"`` (see the module docstring for the costs).
    """

    def __init__(self, path: str | Path, pixel_size: float | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FormatError("movie file not found", self.path)
        if pixel_size is not None and not _positive(pixel_size):
            raise ParameterError(f"pixel size must be a positive number of nm, got {pixel_size!r}", self.path)
        self._tif: tifffile.TiffFile | None = None
        self._pages: list | None = None  # page objects of tifffile's series (vendor formats)
        self._lazy_pages = False  # frame k = tif.pages[k], parsed on demand
        self._memmap: np.ndarray | None = None
        self._lock = threading.Lock()
        self.suggested_pixel_size: float | None = None  # a default to confirm (Picasso raw: Camera.Pixelsize)
        suffix = self.path.suffix.lower()
        if suffix == ".raw":
            meta_pixel_size = self._open_raw()
            self.format = "picasso-raw"
        elif suffix in (".tif", ".tiff"):
            meta_pixel_size = self._open_tif()
            self.format = "tif"
        else:
            raise FormatError(f"unknown movie format {suffix!r} (expected .tif, .tiff or .raw)", self.path)
        self.metadata_pixel_size = meta_pixel_size
        self.pixel_size: float | None = float(pixel_size) if pixel_size is not None else meta_pixel_size

    # -- opening --------------------------------------------------------------------------------------------
    def _open_raw(self) -> float | None:
        yaml_path = picasso_yaml.sidecar_path(self.path)
        docs = picasso_yaml.load_docs(yaml_path)
        try:
            width = int(picasso_yaml.lookup(docs, "Width"))
            height = int(picasso_yaml.lookup(docs, "Height"))
            frames = int(picasso_yaml.lookup(docs, "Frames"))
            dtype = np.dtype(picasso_yaml.lookup(docs, "Data Type", "uint16"))
        except (TypeError, ValueError):
            raise FormatError("YAML lacks Width, Height, Frames or a valid Data Type", yaml_path) from None
        if width < 1 or height < 1 or frames < 1:
            raise FormatError(f"YAML gives an empty movie ({frames} frames of {height}x{width})", yaml_path)
        order = picasso_yaml.lookup(docs, "Byte Order", "<")
        dtype = dtype.newbyteorder(order if order in ("<", ">") else "<")
        expected = width * height * frames * dtype.itemsize
        size = self.path.stat().st_size
        if size < expected:
            raise FormatError(
                f"file holds {size} bytes but the YAML promises {frames} frames of {height}x{width} "
                f"{dtype.name} ({expected} bytes)",
                self.path,
            )
        self._memmap = np.memmap(self.path, dtype=dtype, mode="r", shape=(frames, height, width))
        self.n_frames, self.shape, self.stored_dtype = frames, (height, width), dtype
        self.access = "memmap"
        self.suggested_pixel_size = picasso_yaml.suggested_pixel_size(docs)
        return picasso_yaml.pixel_size(docs, yaml_path)

    def _open_tif(self) -> float | None:
        import tifffile

        try:
            tif = tifffile.TiffFile(self.path)
        except (tifffile.TiffFileError, ValueError, OSError, struct.error) as exc:
            raise FormatError(f"not a readable TIF ({exc})", self.path) from None
        self._tif = tif
        try:
            try:
                page0 = tif.pages.first  # cheap: len(tif.pages) would walk every page header of the file
            except IndexError:
                raise FormatError("TIF holds no image data", self.path) from None
            if page0.samplesperpixel > 1:
                raise FormatError(
                    "TIF holds RGB/multi-sample images, expected single-channel camera frames", self.path
                )
            if page0.ndim != 2:
                raise FormatError(f"TIF pages have shape {page0.shape}, expected 2-D frames", self.path)
            maybe_contiguous = page0.is_contiguous and (tif.is_imagej or tif.is_shaped or not tif.pages.is_multipage)
            # tif.flags evaluates is_uniform, which walks every page header: only needed for non-contiguous files
            if not maybe_contiguous and tif.flags <= _PLAIN_TIF_FLAGS and self._open_pages_lazily(tif, page0):
                pass
            else:
                self._open_series(tif)
        except FormatError:
            tif.close()
            raise
        except (tifffile.TiffFileError, ValueError, OSError, RuntimeError, KeyError, IndexError) as exc:
            tif.close()
            raise FormatError(f"not a readable TIF ({exc})", self.path) from None
        return _tif_pixel_size(tif)

    def _check_axis_counts(self, counts: list[tuple[str, int]]) -> None:
        """A single non-spatial axis longer than 1 is time, whatever its label; several are ambiguous."""
        long_axes = [(a, n) for a, n in counts if n > 1]
        if len(long_axes) > 1:
            desc = ", ".join(f"{a}={n}" for a, n in long_axes)
            raise FormatError(
                f"TIF has several non-spatial axes longer than 1 ({desc}); cannot tell which one is time", self.path
            )

    def _open_pages_lazily(self, tif: tifffile.TiffFile, page0) -> bool:
        """Page-wise access without parsing every page; False when the pages are not uniform frames."""
        import tifffile

        if tif.is_imagej:
            meta = tif.imagej_metadata or {}
            self._check_axis_counts([(a, int(meta.get(k, 1))) for a, k in zip("TZC", ("frames", "slices", "channels"))])
        elif tif.is_shaped:
            desc = page0.shaped_description  # the first page's JSON (tif.shaped_metadata would parse all pages)
            shape = tuple(tifffile.tifffile.shaped_description_metadata(desc).get("shape", ())) if desc else ()
            self._check_axis_counts([("Q", int(n)) for n in shape[: max(len(shape) - 2, 0)]])
        n_pages = len(tif.pages)  # walks the chain of page headers (a few bytes each)
        if n_pages > 1:
            pages = tif.pages
            pages.useframes = False
            last = pages[n_pages - 1]  # one fully parsed page as a consistency check
            pages.useframes = True
            pages.set_keyframe(0)
            if last.shape != page0.shape or last.dtype != page0.dtype:
                return False  # several series (thumbnails, mixed sizes): let tifffile sort them out
        if tif.is_imagej:
            images = int((tif.imagej_metadata or {}).get("images", n_pages))
            if images > n_pages:
                warnings.warn(
                    f"{self.path}: ImageJ metadata announce {images} images but the file holds {n_pages} pages "
                    "(truncated?); using the pages present",
                    stacklevel=4,
                )
        self._lazy_pages = True
        self.n_frames, self.shape = n_pages, (int(page0.shape[0]), int(page0.shape[1]))
        self.stored_dtype = np.dtype(page0.dtype).newbyteorder(tif.byteorder)
        self.access = "pages"
        return True

    def _open_series(self, tif: tifffile.TiffFile) -> None:
        if not tif.series:
            raise FormatError("TIF holds no image series", self.path)
        # the largest series is the movie (others: thumbnails, previews, masks)
        series = max(tif.series, key=lambda s: math.prod(s.shape))
        axes, shape = series.axes, tuple(series.shape)
        core = [(a, int(n)) for a, n in zip(axes, shape) if not (a == "S" and n == 1)]
        if "S" in (a for a, _ in core):
            raise FormatError("TIF holds RGB/multi-sample images, expected single-channel camera frames", self.path)
        if len(core) < 2 or core[-2][0] != "Y" or core[-1][0] != "X":
            raise FormatError(f"TIF series axes {axes!r} do not end with the image rows and columns (YX)", self.path)
        self._check_axis_counts(core[:-2])
        height, width = core[-2][1], core[-1][1]
        n_frames = math.prod(n for _, n in core[:-2])
        dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
        frame_bytes = height * width * dtype.itemsize
        offset = series.dataoffset
        announced = int((tif.imagej_metadata or {}).get("images", 1)) if tif.is_imagej else 1
        if series.kind != "imagej" and announced > n_frames and len(tif.pages) == 1 and offset is not None:
            # an ImageJ raw-behind-header file cut short: tifffile rejected the metadata; map the whole frames present
            n_frames = max((self.path.stat().st_size - offset) // frame_bytes, 1)
            warnings.warn(
                f"{self.path}: ImageJ metadata announce {announced} frames but the file holds only {n_frames} "
                "(truncated?); using the frames present",
                stacklevel=4,
            )
        self.n_frames, self.shape, self.stored_dtype = int(n_frames), (height, width), dtype
        if offset is not None and dtype.kind in "uif":
            if offset + n_frames * frame_bytes > self.path.stat().st_size:
                raise FormatError("TIF is shorter than its image data (truncated file?)", self.path)
            self._memmap = np.memmap(self.path, dtype=dtype, mode="r", offset=offset, shape=(n_frames, height, width))
            self.access = "memmap"
            return
        pages = list(series.pages)
        if len(pages) != n_frames or any(p is None for p in pages):
            raise FormatError(
                f"TIF layout not supported for lazy reading ({len(pages)} pages for {n_frames} frames)", self.path
            )
        self._pages = pages
        self.access = "pages"

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

    def _closed(self) -> None:
        raise ValueError(f"{self.path}: movie is closed")

    def frame(self, k: int) -> np.ndarray:
        """Frame ``k`` (0-based) as a new native-order array of shape ``(height, width)``."""
        k = self._check(k)
        if self._memmap is not None:
            return np.array(self._memmap[k], dtype=self.dtype)
        import tifffile

        if self._tif is None:
            self._closed()
        with self._lock:
            try:
                page = self._tif.pages[k] if self._lazy_pages else self._pages[k]
                data = page.asarray()
            except (RuntimeError, ValueError, IndexError, OSError, tifffile.TiffFileError) as exc:
                raise FormatError(f"cannot read page {k} ({exc})", self.path) from None
        if data.size != self.shape[0] * self.shape[1]:
            raise FormatError(f"page {k} has shape {data.shape}, expected {self.shape}", self.path)
        return np.asarray(data, dtype=self.dtype).reshape(self.shape)

    def window(self, k: int, row: int, col: int, size: int) -> np.ndarray:
        """Pixels ``[row:row+size, col:col+size]`` of frame ``k`` (reads only those rows when memory-mapped).

        The window must start inside the frame; it is cut at the frame's edge.
        """
        k = self._check(k)
        if not (0 <= row < self.shape[0] and 0 <= col < self.shape[1] and size >= 0):
            raise IndexError(f"{self.path}: window at row {row}, column {col} outside the {self.shape} frame")
        if self._memmap is not None:
            return np.array(self._memmap[k, row : row + size, col : col + size], dtype=self.dtype)
        return self.frame(k)[row : row + size, col : col + size].copy()

    def windows(self, frames: Iterable[int], rows: Iterable[int], cols: Iterable[int], size: int) -> np.ndarray:
        """Pixels of several ``size x size`` windows ``[row:row+size, col:col+size]`` of frame ``frame``, at once, as
        a ``(n, size, size)`` native-order array. Each window must lie wholly inside its frame. Memory-mapped
        movies gather all of them in one vectorised read (only their rows are touched); others read window by
        window."""
        frames = np.asarray(frames, dtype=np.int64).reshape(-1)
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        cols = np.asarray(cols, dtype=np.int64).reshape(-1)
        size = int(size)
        if not len(frames) == len(rows) == len(cols):
            raise ValueError("windows: frames, rows and cols differ in length")
        if not len(frames):
            return np.empty((0, size, size), dtype=self.dtype)
        if frames.min() < 0 or frames.max() >= self.n_frames:
            bad = int(frames[(frames < 0) | (frames >= self.n_frames)][0])
            raise IndexError(f"{self.path}: frame {bad} outside 0..{self.n_frames - 1}")
        height, width = self.shape
        if rows.min() < 0 or cols.min() < 0 or (rows + size).max() > height or (cols + size).max() > width:
            raise IndexError(f"{self.path}: a {size} px window reaches outside the {self.shape} frame")
        if self._memmap is not None:
            span = np.arange(size)
            window_rows = (rows[:, None] + span)[:, :, None]
            window_cols = (cols[:, None] + span)[:, None, :]
            data = self._memmap[frames[:, None, None], window_rows, window_cols]
            return np.asarray(data, dtype=self.dtype)
        return np.stack([self.window(k, r, c, size) for k, r, c in zip(frames, rows, cols)])

    def __getitem__(self, k: int) -> np.ndarray:
        return self.frame(k)

    def advise_windows(self, windows: Iterable[tuple[int, int, int]], size: int) -> None:
        """Ask the OS to read the rows of the windows ``(frame, row, col)`` of ``size`` px ahead, all at once.

        Only a hint (memory-mapped movies on POSIX; a no-op otherwise); it turns many scattered window reads from a
        cold page cache into one batch of parallel reads.
        """
        mm = self._memmap
        if mm is None or not hasattr(os, "posix_fadvise"):
            return
        height, width = self.shape
        item = mm.dtype.itemsize
        offset = int(getattr(mm, "offset", 0) or 0)
        with contextlib.suppress(OSError):
            fd = os.open(self.path, os.O_RDONLY)
            try:
                for k, row, _col in windows:
                    start = offset + ((int(k) * height + int(row)) * width) * item
                    os.posix_fadvise(fd, start, int(size) * width * item, os.POSIX_FADV_WILLNEED)
            finally:
                os.close(fd)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Iterate frames ``start..stop-1`` one at a time (bounded memory)."""
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        for k in range(max(start, 0), stop):
            yield self.frame(k)

    def read(self) -> np.ndarray:
        """The whole movie in memory (only when the user asks for it)."""
        if self._memmap is not None:
            return np.array(self._memmap, dtype=self.dtype)
        out = np.empty((self.n_frames, *self.shape), dtype=self.dtype)
        for k, fr in enumerate(self.frames()):
            out[k] = fr
        return out

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
            f"pixel_size={self.pixel_size}, access={self.access!r})"
        )


def _positive(value) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        return False


def open_movie(path: str | Path, pixel_size: float | None = None) -> Movie:
    """Open a TIF or Picasso ``.raw`` movie lazily (see :class:`Movie`)."""
    return Movie(path, pixel_size=pixel_size)


def _tif_pixel_size(tif: "tifffile.TiffFile") -> float | None:
    """Pixel size in nm from the resolution tags, in the ImageJ ``unit`` when present, else in the TIF unit
    (cm or inch); None when not recorded (no tags, unit NONE, or 1 pixel per unit)."""
    page = tif.pages.first
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    num, den = tag.value
    if not num or not den:
        return None
    pixels_per_unit = num / den
    ij_unit = (tif.imagej_metadata or {}).get("unit") if tif.is_imagej else None
    if isinstance(ij_unit, str) and ij_unit.strip() in _IMAGEJ_UNITS:
        return _IMAGEJ_UNITS[ij_unit.strip()] / pixels_per_unit
    unit = page.tags.get("ResolutionUnit")
    unit_value = int(unit.value) if unit is not None else 2  # the TIF default unit is the inch
    nm_per_unit = {3: 1e7, 2: 2.54e7}.get(unit_value)  # centimetre, inch
    if nm_per_unit is None:
        return None
    size = nm_per_unit / pixels_per_unit
    # 72 or 300 dpi and 1 pixel/cm are writer defaults, not a microscope calibration (pixels >= 100 um)
    return size if size < 1e5 else None


def is_movie_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in MOVIE_SUFFIXES


def file_signature(path: str | Path) -> dict:
    """Path, size and modification time of an input (for provenance records)."""
    p = Path(path)
    st = os.stat(p)
    return {"path": str(p.resolve()), "size": st.st_size, "mtime": st.st_mtime}
