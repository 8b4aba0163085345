"""Picasso HDF5 localizations (``/locs`` + the YAML sidecar): read into and write from the canonical table.

Picasso pixel ``j`` is centred at coordinate ``j`` and frames are 0-based; the canonical table has its origin at the
corner of pixel (0, 0), so ``x_nm = (x_px + 0.5) * pixel size`` (``half_pixel``) and back, applied exactly once.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np

from imagebinner import __version__
from imagebinner.errors import FormatError
from imagebinner.io import picasso_yaml
from imagebinner.io.atomic import atomic_group
from imagebinner.io.table import OPTIONAL, LocMeta, LocTable

#: lpx/lpy written to Picasso when neither an uncertainty nor sigma and photons are known (camera pixels).
PICASSO_LP_PLACEHOLDER_PX = 0.1

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ================================================================================================== reading
def is_hdf5(path: Path) -> bool:
    """True when the file starts with the HDF5 signature."""
    with open(path, "rb") as fh:
        return fh.read(8) == _HDF5_SIGNATURE


def check_picasso_hdf5(path: Path) -> None:
    """Raise FormatError unless the HDF5 file holds a compound ``/locs`` dataset."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            ds = h5.get("locs")
            if not isinstance(ds, h5py.Dataset) or ds.dtype.names is None:
                raise FormatError(
                    "HDF5 file without a compound /locs dataset: not a Picasso localization file "
                    f"(top-level keys: {sorted(h5.keys())})",
                    path,
                )
    except OSError as exc:
        raise FormatError(f"cannot open HDF5 file ({exc})", path) from None


def read_picasso(path: Path, pixel_size: float | None, half_pixel: bool) -> LocTable:
    """A Picasso HDF5 file and its YAML as the canonical table (pixel size from the YAML unless given)."""
    import h5py

    meta = picasso_meta(path, pixel_size, half_pixel)
    with h5py.File(path, "r") as h5:
        ds = h5["locs"]
        fields = list(ds.dtype.names)
        n = ds.shape[0] if ds.shape else 0
        raw: dict[str, np.ndarray] = {name: np.empty(n, dtype=ds.dtype[name].newbyteorder("=")) for name in fields}
        block = 1 << 21
        for start in range(0, n, block):
            chunk = ds[start : start + block]
            for name in fields:
                raw[name][start : start + len(chunk)] = chunk[name]
    return LocTable(picasso_columns(raw, meta.pixel_size, half_pixel, path), meta, validate=False)


def picasso_meta(path: Path, pixel_size: float | None, half_pixel: bool) -> LocMeta:
    """Metadata of a Picasso file (YAML documents, pixel size, field of view, the conversion applied), with the
    checks and warnings about the pixel size and the ``/locs`` fields; reads no localizations."""
    import h5py

    check_picasso_hdf5(path)
    yaml_path = picasso_yaml.sidecar_path(path)
    if yaml_path.exists():
        docs = picasso_yaml.load_docs(yaml_path)
    elif pixel_size is not None:
        warnings.warn(f"{yaml_path}: Picasso YAML not found; using the given pixel size {pixel_size} nm", stacklevel=4)
        docs = []
    else:
        raise FormatError(
            f"Picasso metadata file {yaml_path.name} not found beside the data; it holds the pixel size "
            "(give pixel_size to read the file without it)",
            path,
            params=["pixel_size"],
        )
    yaml_ps = picasso_yaml.pixel_size(docs, yaml_path) if docs else None
    if pixel_size is not None:
        if yaml_ps is not None and float(pixel_size) != yaml_ps:
            warnings.warn(
                f"{path}: using the given pixel size {pixel_size} nm instead of Pixelsize = {yaml_ps} nm from "
                f"{yaml_path.name}",
                stacklevel=4,
            )
        ps = float(pixel_size)
    elif yaml_ps is not None:
        ps = yaml_ps
    else:
        suggestion = picasso_yaml.suggested_pixel_size(docs)
        hint = (
            f"; the movie's YAML suggests Camera.Pixelsize = {suggestion:g} nm: confirm it with pixel_size "
            f"{suggestion:g}"
            if suggestion is not None
            else ""
        )
        raise FormatError(
            f"no pixel size: no YAML document of {yaml_path.name} has Pixelsize; give pixel_size{hint}",
            path,
            params=["pixel_size"],
        )
    with h5py.File(path, "r") as h5:
        fields = list(h5["locs"].dtype.names)
    for required in ("frame", "x", "y"):
        if required not in fields:
            raise FormatError(f"/locs lacks the required field {required!r} (fields: {fields})", path)
    height = picasso_yaml.lookup(docs, "Height")
    width = picasso_yaml.lookup(docs, "Width")
    n_frames = picasso_yaml.lookup(docs, "Frames")
    if half_pixel:
        conversion = (
            f"picasso px (pixel centres at integers) -> nm corner convention: x_nm = (x_px + 0.5) * {ps:g}; "
            "frame unchanged (0-based)"
        )
    else:
        conversion = (
            f"picasso px -> nm without the half-pixel shift (half_pixel=False, Picasso-export compatible): "
            f"x_nm = x_px * {ps:g}; frame unchanged (0-based)"
        )
    return LocMeta(
        pixel_size=ps,
        image_shape=(int(height), int(width)) if height is not None and width is not None else None,
        n_frames=int(n_frames) if n_frames is not None else None,
        source_format="picasso",
        source_path=str(path),
        conversion=conversion,
        picasso_yaml=tuple(docs),
    )


def picasso_columns(raw: dict[str, np.ndarray], ps: float, half_pixel: bool, path: Path) -> dict[str, np.ndarray]:
    """Canonical columns from Picasso ``/locs`` fields (all rows or one chunk: every step is per row).

    ``raw`` is consumed (its entries are popped)."""
    shift = 0.5 if half_pixel else 0.0
    out: dict[str, np.ndarray] = {}
    frames = raw.pop("frame")
    if frames.dtype.kind == "f":
        if not np.all(np.isfinite(frames)):
            raise FormatError("field 'frame' has NaN or infinite values", path)
        floored = np.floor(frames)
        if not np.array_equal(floored, frames):
            warnings.warn(
                f"{path}: {int(np.count_nonzero(floored != frames))} frame values are not integral (e.g. mean frames "
                "of clustered molecules); frame = floor(value), the original values are kept as 'picasso_frame'",
                stacklevel=4,
            )
            out["picasso_frame"] = frames
        frames = floored
    frames = frames.astype(np.int64)
    if len(frames) and frames.min() < 0:
        raise FormatError(f"negative frame {int(frames.min())} (Picasso frames are 0-based)", path)
    out["frame"] = frames
    for axis in ("x", "y"):
        values = raw.pop(axis).astype(np.float64)
        if not np.all(np.isfinite(values)):
            bad = int(np.count_nonzero(~np.isfinite(values)))
            raise FormatError(f"field {axis!r} has {bad} NaN or infinite value(s)", path)
        out[axis] = (values + shift) * ps
    if "z" in raw:
        out["z"] = raw.pop("z").astype(np.float64)  # Picasso z is already in nm
    if "photons" in raw:
        out["photons"] = raw.pop("photons").astype(np.float64)
    if "bg" in raw:
        out["background"] = raw.pop("bg").astype(np.float64)
    if "sx" in raw and "sy" in raw:
        out["sigma"] = (raw["sx"].astype(np.float64) + raw["sy"]) / 2 * ps
    if "lpx" in raw and "lpy" in raw:
        out["uncertainty"] = (raw["lpx"].astype(np.float64) + raw["lpy"]) / 2 * ps
    for name, values in raw.items():
        if name in OPTIONAL and name not in out:
            out[name] = values.astype(np.float64)  # e.g. confidence written by imagebinner
            continue
        if name in out:
            name = f"picasso_{name}"
        out[name] = values
    return out


# ================================================================================================== writing
def picasso_record_array(
    table: LocTable, pixel_size: float, half_pixel: bool = True
) -> tuple[np.ndarray, list[str]]:
    """Picasso ``/locs`` record array (little-endian, Localize dtypes) and notes on placeholders used."""
    ps = float(pixel_size)
    shift = 0.5 if half_pixel else 0.0
    n = len(table)
    notes: list[str] = []
    fields: dict[str, np.ndarray] = {}
    frames = table.frame
    if len(frames) and frames.max() >= 2**32:
        raise FormatError(
            f"frame {int(frames.max())} does not fit Picasso's uint32 frame field", table.meta.source_path
        )
    fields["frame"] = frames.astype("<u4")
    fields["x"] = (table.x / ps - shift).astype("<f4")
    fields["y"] = (table.y / ps - shift).astype("<f4")
    if "photons" in table:
        fields["photons"] = table["photons"].astype("<f4")
    if "sx" in table and "sy" in table:
        fields["sx"] = table["sx"].astype("<f4")
        fields["sy"] = table["sy"].astype("<f4")
    elif "sigma" in table:
        fields["sx"] = (table["sigma"] / ps).astype("<f4")
        fields["sy"] = fields["sx"].copy()
    if "background" in table:
        fields["bg"] = table["background"].astype("<f4")
    elif "picasso_bg" in table:
        fields["bg"] = table["picasso_bg"].astype("<f4")
    if "lpx" in table and "lpy" in table:
        fields["lpx"] = table["lpx"].astype("<f4")
        fields["lpy"] = table["lpy"].astype("<f4")
    elif "uncertainty" in table and np.all(np.isfinite(table["uncertainty"])):
        fields["lpx"] = (table["uncertainty"] / ps).astype("<f4")
        fields["lpy"] = fields["lpx"].copy()
    elif "sigma" in table and "photons" in table:
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = table["sigma"] / ps / np.sqrt(table["photons"])
        lp = np.where(np.isfinite(lp) & (lp >= 0), lp, PICASSO_LP_PLACEHOLDER_PX)
        fields["lpx"] = lp.astype("<f4")
        fields["lpy"] = fields["lpx"].copy()
        notes.append("lpx/lpy estimated as sigma / sqrt(photons) (precision not in the source)")
    else:
        fields["lpx"] = np.full(n, PICASSO_LP_PLACEHOLDER_PX, dtype="<f4")
        fields["lpy"] = fields["lpx"].copy()
        notes.append(f"lpx/lpy = {PICASSO_LP_PLACEHOLDER_PX} px placeholder (precision unknown)")
    if "z" in table:
        fields["z"] = table["z"].astype("<f4")
    if "confidence" in table:
        fields["confidence"] = table["confidence"].astype("<f4")
    for name in table.columns:
        if name in fields or name in ("frame", "x", "y") or name in OPTIONAL or not _IDENTIFIER.match(name):
            continue
        if name.startswith("picasso_"):
            continue
        values = table[name]
        if values.dtype.kind == "f":
            fields[name] = values.astype("<f4")
        elif values.dtype.kind in "iu":
            fields[name] = values.astype(values.dtype.newbyteorder("<"))
        elif values.dtype.kind == "b":
            fields[name] = values.astype("u1")
    dtype = np.dtype([(name, values.dtype) for name, values in fields.items()])
    records = np.empty(n, dtype=dtype)
    for name, values in fields.items():
        records[name] = values
    return records, notes


def _image_shape_for(table: LocTable, ps: float) -> tuple[int, int]:
    if table.meta.image_shape is not None:
        return tuple(int(v) for v in table.meta.image_shape)
    if not len(table):
        return (0, 0)
    height = int(math.floor(max(float(np.max(table.y)), 0.0) / ps)) + 1
    width = int(math.floor(max(float(np.max(table.x)), 0.0) / ps)) + 1
    return (height, width)


def picasso_sanity_report(records: np.ndarray, width: int, height: int) -> tuple[int, list[str]]:
    """How many rows Picasso's ``lib.ensure_sanity`` drops on load, and why (as Picasso 0.11 checks them)."""
    n = len(records)
    drop = np.zeros(n, dtype=bool)
    reasons: list[str] = []

    def note(mask: np.ndarray, why: str) -> None:
        new = mask & ~drop
        if np.any(new):
            reasons.append(f"{int(np.count_nonzero(new))} {why}")
        drop[:] |= mask

    nonfinite = np.zeros(n, dtype=bool)
    for name in records.dtype.names:
        if records.dtype[name].kind == "f":
            nonfinite |= ~np.isfinite(records[name])
    note(nonfinite, "with NaN/inf values")
    note((records["x"] < 0) | (records["y"] < 0),
         "with negative pixel coordinates (x_px = x_nm/ps - 0.5 < 0: emitters in the outer half of the first "
         "pixel column/row)")
    note((records["x"] >= width) | (records["y"] >= height), f"outside Width x Height = {width} x {height} px")
    for name in ("lpx", "lpy", "lpz", "photons", "ellipticity", "sx", "sy"):
        if name in records.dtype.names:
            note(records[name] < 0, f"with negative {name}")
    return int(np.count_nonzero(drop)), reasons


def write_picasso(
    table: LocTable,
    target: Path,
    yaml_target: Path,
    overwrite: bool,
    half_pixel: bool,
    pixel_size: float | None,
) -> None:
    """Write ``/locs`` and the YAML (the source's documents + one describing this conversion), atomically."""
    ps = pixel_size if pixel_size is not None else table.meta.pixel_size
    if ps is None:
        raise FormatError(
            "writing Picasso HDF5 needs the camera pixel size to convert nm to pixels; give pixel_size",
            target,
            params=["pixel_size"],
        )
    ps = float(ps)
    if not (np.isfinite(ps) and ps > 0):
        raise FormatError(f"pixel size must be a positive number of nm, got {ps}", target)
    records, notes = picasso_record_array(table, ps, half_pixel)
    height, width = _image_shape_for(table, ps)
    n_frames = max(int(table.meta.n_frames or 0), int(table.frame[-1]) + 1 if len(table) else 0)
    if half_pixel:
        step = f"nm corner convention -> picasso px (pixel centres at integers): x_px = x_nm / {ps:g} - 0.5"
    else:
        step = f"nm -> picasso px without the half-pixel shift (half_pixel=False): x_px = x_nm / {ps:g}"
    step += "; frame unchanged (0-based)"
    doc = {
        "Generated by": f"imagebinner {__version__}",
        "Conversion": f"{table.meta.conversion} | then {step}" if table.meta.conversion != "none" else step,
        "Source format": table.meta.source_format,
        "Source": table.meta.source_path,
        "Half pixel shift": bool(half_pixel),
        "Width": int(width),
        "Height": int(height),
        "Frames": int(n_frames),
        "Pixelsize": ps,
    }
    if notes:
        doc["Notes"] = "; ".join(notes)
    docs = [dict(d) for d in table.meta.picasso_yaml] + [doc]
    dropped, reasons = picasso_sanity_report(records, width, height)
    import h5py

    with atomic_group([target, yaml_target], overwrite) as (tmp_h5, tmp_yaml):
        with h5py.File(tmp_h5, "w") as h5:
            h5.create_dataset("locs", data=records)
        picasso_yaml.dump_docs(docs, tmp_yaml)
    if dropped:
        warnings.warn(
            f"{target}: Picasso will drop {dropped} of {len(records)} localizations when it loads this file "
            f"(lib.ensure_sanity): {'; '.join(reasons)}. They are kept in the file (the conversion is exact).",
            stacklevel=3,
        )
