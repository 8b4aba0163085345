"""DECODE emitter HDF5 (``EmitterSet.save(*.h5)``): read into and write from the canonical table.

Layout and conventions as DECODE's own code defines them (TuragaLab/DECODE ``decode/utils/emitter_io.py``
``save_h5``/``load_h5``, ``decode/generic/emitter.py``, ``decode/generic/utils.py`` ``frame_grid``):

* ``/data``: ``xyz`` (N x 3), ``phot``, ``frame_ix`` (int64, **0-based**), ``id`` (-1 unset), ``prob``, ``bg``, and
  ``xyz_sig``, ``xyz_cr``, ``phot_sig``, ``phot_cr``, ``bg_sig``, ``bg_cr`` (an empty dataset when all NaN);
  ``/meta`` attributes ``xy_unit`` (``"px"`` or ``"nm"``) and ``px_size`` (x, y); ``/decode`` attribute ``version``.
* ``xyz[:, 0]`` runs along the first image axis (frames are indexed ``[x, y]``; ``torch.meshgrid`` 'ij' over the bin
  centres), i.e. along the *rows* of the TIFF movie: DECODE x is the canonical y and DECODE y the canonical x (SMAP's
  DECODE importer swaps them the same way). Pixel ``j`` is centred at ``j`` (frame extent ``-0.5 .. W - 0.5``), and
  nm are ``px * px_size`` without a shift, so canonical ``y_nm = (x_px + 0.5) * ps`` (``half_pixel``); z is nm.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from imagebinner import __version__
from imagebinner.errors import FormatError
from imagebinner.io.atomic import atomic_group
from imagebinner.io.table import LocMeta, LocTable


def read_decode(path: Path, pixel_size: float | None, half_pixel: bool) -> LocTable:
    """A DECODE emitter file as the canonical table (pixel size from ``/meta`` ``px_size`` unless given)."""
    import h5py

    with h5py.File(path, "r") as h5:
        data = {k: v for k, v in h5["data"].items() if isinstance(v, h5py.Dataset) and v.shape is not None}
        meta = dict(h5["meta"].attrs) if "meta" in h5 else {}
        xyz = np.asarray(data["xyz"][...], dtype=np.float64)
        frames = np.asarray(data["frame_ix"][...])
        cols = {k: np.asarray(v[...]) for k, v in data.items() if k not in ("xyz", "frame_ix")}
    if xyz.ndim != 2 or xyz.shape[1] not in (2, 3) or len(xyz) != len(frames):
        raise FormatError(f"/data/xyz has shape {xyz.shape}, expected ({len(frames)}, 3)", path)
    unit = _text(meta.get("xy_unit", "px"))
    if unit not in ("px", "nm"):
        raise FormatError(f"/meta xy_unit is {unit!r}, expected 'px' or 'nm'", path)
    ps = _pixel_size(meta.get("px_size"), pixel_size, path)
    if frames.dtype.kind not in "iu":
        raise FormatError(f"/data/frame_ix is {frames.dtype}, expected integers (DECODE frames are 0-based)", path)
    if len(frames) and frames.min() < 0:
        raise FormatError(f"negative frame_ix {int(frames.min())} (DECODE frames are 0-based)", path)
    shift = 0.5 if half_pixel else 0.0
    scale = ps if unit == "px" else 1.0
    # DECODE x runs along the rows (canonical y), DECODE y along the columns (canonical x)
    out: dict[str, np.ndarray] = {
        "frame": frames.astype(np.int64),
        "x": xyz[:, 1] * scale + shift * ps,
        "y": xyz[:, 0] * scale + shift * ps,
    }
    if xyz.shape[1] == 3 and np.any(xyz[:, 2] != 0):
        out["z"] = xyz[:, 2]
    for name, canonical in (("phot", "photons"), ("bg", "background"), ("prob", "confidence")):
        if name in cols and cols[name].ndim == 1:
            out[canonical] = cols[name].astype(np.float64)
    sig = cols.get("xyz_sig")
    if sig is not None and sig.ndim == 2 and sig.shape[1] >= 2:
        out["uncertainty"] = (sig[:, 0].astype(np.float64) + sig[:, 1]) / 2 * scale
    if "id" in cols and cols["id"].ndim == 1 and np.any(cols["id"] != -1):
        out["decode_id"] = cols["id"]
    for name, values in cols.items():
        if name not in ("phot", "bg", "prob", "id", "xyz_sig") and values.ndim == 1 and values.dtype.kind in "iuf":
            out[f"decode_{name}"] = values
    step = f"(x_px + 0.5) * {ps:g}" if unit == "px" else f"x_nm + 0.5 * {ps:g}"
    if not half_pixel:
        step = f"x_px * {ps:g}" if unit == "px" else "x_nm"
    conversion = (
        f"decode {unit} (pixel centres at integers; DECODE x along image rows) -> nm corner convention: "
        f"x = DECODE y, y = DECODE x, each {step}; frame_ix unchanged (0-based)"
    )
    meta_out = LocMeta(pixel_size=ps, source_format="decode", source_path=str(path), conversion=conversion)
    return LocTable(out, meta_out)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pixel_size(px_size, given: float | None, path: Path) -> float:
    file_ps = None
    if px_size is not None:
        values = np.atleast_1d(np.asarray(px_size, dtype=np.float64))
        if values.size and np.all(np.isfinite(values)):
            if values.size > 1 and values[0] != values[1]:
                if given is None:
                    raise FormatError(
                        f"/meta px_size {tuple(values)} has different x and y sizes; give one pixel_size", path,
                        params=["pixel_size"],
                    )
            file_ps = float(values[0])
    if given is not None:
        if file_ps is not None and float(given) != file_ps:
            warnings.warn(f"{path}: using the given pixel size {given} nm instead of px_size = {file_ps} nm", stacklevel=5)
        return float(given)
    if file_ps is None:
        raise FormatError("DECODE file without /meta px_size; give pixel_size", path, params=["pixel_size"])
    return file_ps


def write_decode(table: LocTable, target: Path, overwrite: bool, half_pixel: bool, pixel_size: float | None) -> None:
    """Write ``table`` as a DECODE emitter file (``xy_unit = 'px'``, the layout of DECODE's ``save_h5``)."""
    import h5py

    ps = pixel_size if pixel_size is not None else table.meta.pixel_size
    if ps is None or not (np.isfinite(ps) and ps > 0):
        raise FormatError(
            "writing DECODE HDF5 needs the camera pixel size to convert nm to pixels; give pixel_size", target,
            params=["pixel_size"],
        )
    ps = float(ps)
    shift = 0.5 if half_pixel else 0.0
    n = len(table)
    z = table["z"] if "z" in table else np.zeros(n)
    xyz = np.stack([table.y / ps - shift, table.x / ps - shift, z], axis=1).astype(np.float32)

    def column(name: str, default: float) -> np.ndarray:
        return (table[name] if name in table else np.full(n, default)).astype(np.float32)

    with atomic_group([target], overwrite) as (tmp,):
        with h5py.File(tmp, "w") as h5:
            h5.create_group("meta").attrs.update({"xy_unit": "px", "px_size": np.array([ps, ps], dtype=np.float32)})
            h5.create_group("decode").attrs.update({"version": f"imagebinner {__version__}"})
            g = h5.create_group("data")
            g.create_dataset("xyz", data=xyz)
            if "uncertainty" in table and np.any(np.isfinite(table["uncertainty"])):
                u = table["uncertainty"] / ps
                g.create_dataset("xyz_sig", data=np.stack([u, u, np.full(n, np.nan)], axis=1).astype(np.float32))
            else:
                g.create_dataset("xyz_sig", data=h5py.Empty("f"))
            g.create_dataset("xyz_cr", data=h5py.Empty("f"))
            g.create_dataset("phot", data=column("photons", np.nan))
            g.create_dataset("phot_cr", data=h5py.Empty("f"))
            g.create_dataset("phot_sig", data=h5py.Empty("f"))
            g.create_dataset("frame_ix", data=table.frame.astype(np.int64))
            g.create_dataset("id", data=np.full(n, -1, dtype=np.int64))
            g.create_dataset("prob", data=column("confidence", 1.0))
            g.create_dataset("bg", data=column("background", np.nan))
            g.create_dataset("bg_cr", data=h5py.Empty("f"))
            g.create_dataset("bg_sig", data=h5py.Empty("f"))
