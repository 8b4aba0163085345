"""SMAP localization files (``*_sml.mat``, MATLAB v7.3 = HDF5 with a 512-byte user block), read with h5py.

Conventions as SMAP's own code defines them (jries/SMAP): ``saveloc.loc`` holds one column per field (``xnm``,
``ynm``, ``znm``, ``frame``, ``phot``, ``bg``, ``locprecnm``, ``PSFxnm``, ``filenumber``, ...), in nm and 1-based
frames (``LocalizationData.savelocs``; DECODE's ``load_smap`` subtracts 1 from ``frame``). Positions come from
``fitloc2locdata``: ``xnm = (xpix + roi(1)) * pixelsize`` with ``xpix`` the MATLAB (1-based) pixel coordinate whose
pixel ``k`` is centred at ``k`` (``nm2pixLoc`` rounds ``xnm / pixelsize - roi(1)`` to the MATLAB index). So camera
pixel ``j`` (0-based) is centred at ``(j + 1) * ps`` and the canonical corner convention is
``x = xnm - roi(1) * ps - 0.5 * ps``; the pixel size is ``saveloc.file.info.cam_pixelsize_um`` (um).
MATLAB stores an N x 1 column as an HDF5 dataset of shape (1, N); a struct as a group (a struct array as object
references).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from imagebinner.errors import FormatError
from imagebinner.io.table import LocMeta, LocTable

_STANDARD = {"znm": "z", "phot": "photons", "bg": "background", "locprecnm": "uncertainty"}


def read_smap(path: Path, pixel_size: float | None, half_pixel: bool) -> LocTable:
    """An SMAP ``*_sml.mat`` (v7.3) as the canonical table."""
    import h5py

    with h5py.File(path, "r") as h5:
        loc = h5["saveloc"]["loc"]
        fields = {}
        for name, ds in loc.items():
            if isinstance(ds, h5py.Dataset) and ds.dtype.kind in "iuf" and "MATLAB_empty" not in ds.attrs:
                fields[name] = np.asarray(ds[...]).ravel()
        info = _file_info(h5, path)
    for required in ("frame", "xnm", "ynm"):
        if required not in fields:
            raise FormatError(f"saveloc.loc lacks the field {required!r} (fields: {sorted(fields)})", path)
    n = len(fields["frame"])
    fields = {k: v for k, v in fields.items() if len(v) == n}
    ps = _pixel_size(info, pixel_size, path)
    roi = info.get("roi")
    x0, y0 = (float(roi[0]), float(roi[1])) if roi is not None and len(roi) >= 2 else (0.0, 0.0)
    shift = 0.5 if half_pixel else 0.0
    frames = fields.pop("frame")
    if not np.array_equal(np.floor(frames), frames):
        raise FormatError("saveloc.loc.frame has non-integral values", path)
    frames = frames.astype(np.int64) - 1
    if len(frames) and frames.min() < 0:
        raise FormatError(f"frame {int(frames.min()) + 1} below 1 (SMAP frames are 1-based)", path)
    out: dict[str, np.ndarray] = {
        "frame": frames,
        "x": fields.pop("xnm").astype(np.float64) - (x0 + shift) * ps,
        "y": fields.pop("ynm").astype(np.float64) - (y0 + shift) * ps,
    }
    for name, canonical in _STANDARD.items():
        if name in fields:
            out[canonical] = fields.pop(name).astype(np.float64)
    if "PSFxnm" in fields:
        sx = fields.pop("PSFxnm").astype(np.float64)
        out["sigma"] = (sx + fields.pop("PSFynm")) / 2 if "PSFynm" in fields else sx
    for name, values in fields.items():
        out[f"smap_{name}" if name in out else name] = values
    if "filenumber" in out and len(np.unique(out["filenumber"])) > 1:
        warnings.warn(f"{path}: localizations of {len(np.unique(out['filenumber']))} files (column filenumber); "
                      "their frames overlap", stacklevel=5)
    conversion = (
        f"smap nm (pixel j centred at (j + 1) * ps, 1-based MATLAB pixels) -> nm corner convention: "
        f"x = xnm - ({x0:g} + {shift:g}) * {ps:g} (roi offset, half pixel); frame - 1 (1-based -> 0-based)"
    )
    shape = info.get("shape")
    meta = LocMeta(pixel_size=ps, image_shape=shape, source_format="smap", source_path=str(path), conversion=conversion)
    return LocTable(out, meta)


def _file_info(h5, path: Path) -> dict:
    """cam_pixelsize_um, roi and the image shape of the first file in ``saveloc.file(1).info`` (when present)."""
    import h5py

    out: dict = {}
    node = h5["saveloc"].get("file")
    if isinstance(node, h5py.Group):
        node = node.get("info")
    if isinstance(node, h5py.Dataset) and node.dtype == h5py.ref_dtype:  # struct array: object references
        node = h5[np.asarray(node[...]).ravel()[0]]
    if not isinstance(node, h5py.Group):
        return out
    for name in ("cam_pixelsize_um", "roi", "Width", "Height"):
        ds = node.get(name)
        if isinstance(ds, h5py.Dataset) and ds.dtype.kind in "iuf" and "MATLAB_empty" not in ds.attrs:
            out[name] = np.asarray(ds[...], dtype=np.float64).ravel()
    if "roi" in out and len(out["roi"]) >= 4:
        out["shape"] = (int(out["roi"][3]), int(out["roi"][2]))
    elif "Width" in out and "Height" in out:
        out["shape"] = (int(out["Height"][0]), int(out["Width"][0]))
    return out


def _pixel_size(info: dict, given: float | None, path: Path) -> float:
    um = info.get("cam_pixelsize_um")
    file_ps = None
    if um is not None and len(um):
        if len(um) > 1 and um[0] != um[-1] and given is None:
            raise FormatError(f"cam_pixelsize_um {tuple(um)} differs in x and y; give one pixel_size", path,
                              params=["pixel_size"])
        file_ps = float(um[0]) * 1000.0
    if given is not None:
        if file_ps is not None and abs(float(given) - file_ps) > 1e-9 * file_ps:
            warnings.warn(f"{path}: using the given pixel size {given} nm instead of cam_pixelsize_um = "
                          f"{file_ps / 1000:g} um", stacklevel=5)
        return float(given)
    if file_ps is None:
        raise FormatError("SMAP file without saveloc.file.info.cam_pixelsize_um; give pixel_size", path,
                          params=["pixel_size"])
    return file_ps
