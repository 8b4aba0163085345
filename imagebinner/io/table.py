"""The one canonical localization table.

Conventions (see docs/conventions.md):

* ``frame``: 0-based integer page index of the movie (int64).
* ``x``, ``y``: nanometres, origin at the top-left *corner* of pixel (0, 0); camera pixel ``j`` covers
  ``[j*ps, (j+1)*ps)``. ``x`` is the column direction, ``y`` the row direction (float64).
* optional standard columns: ``photons`` (photons), ``sigma`` (PSF width, nm), ``z`` (nm), ``confidence``
  (a.u.), ``uncertainty`` (lateral localization precision, nm), ``background`` (photons per pixel).
* any other column is carried along under its source name and unit (e.g. Picasso ``lpx`` in camera pixels).

Rows are sorted stably by frame once, at construction; ``frame_offsets`` gives the rows of frame ``f`` as
``offsets[f]:offsets[f+1]`` (one ``searchsorted``, then O(1) per frame).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from imagebinner.errors import FormatError

REQUIRED = ("frame", "x", "y")
OPTIONAL = ("photons", "sigma", "z", "confidence", "uncertainty", "background")
STANDARD = REQUIRED + OPTIONAL


@dataclasses.dataclass(frozen=True)
class LocMeta:
    """Metadata that travel with a :class:`LocTable`.

    ``image_shape`` is ``(height, width)`` in camera pixels; ``conversion`` is a human-readable record of what was
    applied to the source values to reach the canonical convention (e.g. the Picasso half-pixel shift).
    ``picasso_yaml`` keeps the source's YAML documents so a Picasso writer can re-emit them.
    """

    pixel_size: float | None = None
    image_shape: tuple[int, int] | None = None
    n_frames: int | None = None
    source_format: str = "memory"
    source_path: str | None = None
    conversion: str = "none"
    picasso_yaml: tuple[dict, ...] = ()

    def replace(self, **changes: Any) -> "LocMeta":
        return dataclasses.replace(self, **changes)


class LocTable:
    """Localizations as contiguous NumPy columns, sorted by frame, with metadata.

    Construct from a mapping of column name to 1-D array. ``frame``, ``x`` and ``y`` are required; values are
    validated (finite coordinates, integral non-negative frames).
    """

    __slots__ = ("_columns", "meta", "_offsets")

    def __init__(
        self,
        columns: Mapping[str, Any],
        meta: LocMeta | None = None,
        *,
        presorted: bool = False,
        validate: bool = True,
    ):
        self.meta = meta or LocMeta()
        path = self.meta.source_path
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise FormatError(f"missing required column(s) {', '.join(missing)}", path)
        cols: dict[str, np.ndarray] = {}
        n = None
        for name, values in columns.items():
            arr = np.asarray(values)
            if arr.ndim != 1:
                raise FormatError(f"column {name!r} is not one-dimensional", path)
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise FormatError(f"column {name!r} has {len(arr)} rows, expected {n}", path)
            cols[name] = arr
        cols["frame"] = _as_frames(cols["frame"], path, validate)
        for name in ("x", "y"):
            cols[name] = _as_float(cols[name], name, path, validate, finite=True)
        for name in OPTIONAL:
            if name in cols:
                cols[name] = _as_float(cols[name], name, path, False, finite=False)
        if not presorted and len(cols["frame"]) > 1 and np.any(np.diff(cols["frame"]) < 0):
            order = np.argsort(cols["frame"], kind="stable")
            cols = {k: v[order] for k, v in cols.items()}
        self._columns = {k: np.ascontiguousarray(v) for k, v in cols.items()}
        self._offsets: np.ndarray | None = None

    # -- access ---------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._columns["frame"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self._columns[name]

    def __contains__(self, name: str) -> bool:
        return name in self._columns

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    @property
    def frame(self) -> np.ndarray:
        return self._columns["frame"]

    @property
    def x(self) -> np.ndarray:
        return self._columns["x"]

    @property
    def y(self) -> np.ndarray:
        return self._columns["y"]

    @property
    def pixel_size(self) -> float | None:
        return self.meta.pixel_size

    @property
    def n_frames(self) -> int:
        """Frames covered: the movie's frame count when known, else last localized frame + 1."""
        if self.meta.n_frames is not None:
            return int(self.meta.n_frames)
        return int(self.frame[-1]) + 1 if len(self) else 0

    @property
    def frame_offsets(self) -> np.ndarray:
        """``offsets[f]:offsets[f+1]`` are the rows of frame ``f``; length ``n_frames + 1``."""
        if self._offsets is None or len(self._offsets) != self.n_frames + 1:
            n = max(self.n_frames, int(self.frame[-1]) + 1 if len(self) else 0)
            self._offsets = np.searchsorted(self.frame, np.arange(n + 1), side="left")
        return self._offsets

    def frame_rows(self, f: int) -> slice:
        """Row slice of frame ``f`` (empty slice for frames without localizations or beyond the table)."""
        off = self.frame_offsets
        if f < 0 or f + 1 >= len(off):
            return slice(0, 0)
        return slice(int(off[f]), int(off[f + 1]))

    def counts_per_frame(self, n_frames: int | None = None) -> np.ndarray:
        """Localizations per frame, including empty frames (length ``n_frames``)."""
        n = self.n_frames if n_frames is None else n_frames
        return np.bincount(self.frame, minlength=n)[:n] if len(self) else np.zeros(n, dtype=np.int64)

    # -- derivation -----------------------------------------------------------------------------------------
    def take(self, index: Any, meta: LocMeta | None = None) -> "LocTable":
        """Rows selected by a boolean mask, a slice or an increasing index array (order is preserved)."""
        return LocTable(
            {k: v[index] for k, v in self._columns.items()},
            meta or self.meta,
            presorted=True,
            validate=False,
        )

    def with_columns(self, meta: LocMeta | None = None, **columns: Any) -> "LocTable":
        """A copy with columns replaced or added (``frame`` changes re-sort the rows)."""
        cols = dict(self._columns)
        cols.update(columns)
        return LocTable(cols, meta or self.meta, presorted="frame" not in columns, validate=False)

    def with_meta(self, **changes: Any) -> "LocTable":
        t = LocTable.__new__(LocTable)
        t._columns = self._columns
        t.meta = self.meta.replace(**changes)
        t._offsets = None
        return t

    def to_dict(self) -> dict[str, np.ndarray]:
        return dict(self._columns)

    def to_dataframe(self):
        """A pandas DataFrame view of the columns (canonical names and units)."""
        import pandas as pd

        return pd.DataFrame(self._columns, copy=False)

    @classmethod
    def concat(cls, tables: list["LocTable"], meta: LocMeta | None = None) -> "LocTable":
        """Rows of several tables (frames as they are). Columns missing in some tables are filled with NaN."""
        if not tables:
            return empty_table(meta)
        names: list[str] = []
        for t in tables:
            names += [c for c in t.columns if c not in names]
        cols = {}
        for name in names:
            parts = []
            for t in tables:
                if name in t:
                    parts.append(t[name])
                else:
                    parts.append(np.full(len(t), np.nan))
            cols[name] = np.concatenate(parts) if parts else np.empty(0)
        return cls(cols, meta or tables[0].meta, validate=False)

    def __repr__(self) -> str:
        m = self.meta
        return (
            f"LocTable({len(self)} rows, columns={self.columns}, pixel_size={m.pixel_size}, "
            f"image_shape={m.image_shape}, n_frames={m.n_frames}, source={m.source_format})"
        )


def empty_table(meta: LocMeta | None = None, extra: tuple[str, ...] = ()) -> LocTable:
    cols: dict[str, np.ndarray] = {"frame": np.empty(0, np.int64), "x": np.empty(0), "y": np.empty(0)}
    for name in extra:
        cols[name] = np.empty(0)
    return LocTable(cols, meta, presorted=True, validate=False)


def _as_frames(values: np.ndarray, path: str | None, validate: bool) -> np.ndarray:
    if values.dtype.kind in "iu":
        frames = values.astype(np.int64, copy=False)
    elif values.dtype.kind == "f":
        if validate and not np.all(np.isfinite(values)):
            raise FormatError("column 'frame' has NaN or infinite values", path)
        frames = values.astype(np.int64)
        if validate and not np.array_equal(frames, values):
            raise FormatError("column 'frame' has non-integral values", path)
    else:
        try:
            return _as_frames(values.astype(np.float64), path, validate)
        except (TypeError, ValueError):
            raise FormatError("column 'frame' is not numeric", path) from None
    if validate and len(frames) and frames.min() < 0:
        raise FormatError(f"negative frame {int(frames.min())} (frames are 0-based page indices)", path)
    return frames


def _as_float(values: np.ndarray, name: str, path: str | None, validate: bool, finite: bool) -> np.ndarray:
    try:
        arr = values.astype(np.float64, copy=False)
    except (TypeError, ValueError):
        raise FormatError(f"column {name!r} is not numeric", path) from None
    if validate and finite and not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise FormatError(f"column {name!r} has {bad} NaN or infinite value(s)", path)
    return arr
