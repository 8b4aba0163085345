"""Which HDF5 localization format a file is (Picasso, DECODE, SMAP v7.3 .mat) and dispatch to its reader/writer."""

from __future__ import annotations

from pathlib import Path

from imagebinner.errors import FormatError
from imagebinner.io.table import LocTable

HDF5_FORMATS = ("picasso", "decode", "smap")

_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_OFFSETS = (0, 512, 1024, 2048, 4096)  # the superblock follows a user block (MATLAB v7.3 writes 512 bytes)


def is_hdf5(path: Path) -> bool:
    """True when the file has the HDF5 signature at offset 0 or after a user block (MATLAB v7.3 .mat files)."""
    with open(path, "rb") as fh:
        for offset in _OFFSETS:
            fh.seek(offset)
            if fh.read(8) == _SIGNATURE:
                return True
    return False


def hdf5_format(path: Path, recognised: str) -> str:
    """``"picasso"``, ``"decode"`` or ``"smap"`` from the file's structure; FormatError naming what was found."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            locs = h5.get("locs")
            if isinstance(locs, h5py.Dataset) and locs.dtype.names is not None:
                return "picasso"
            if isinstance(h5.get("data"), h5py.Group) and "frame_ix" in h5["data"] and "xyz" in h5["data"]:
                return "decode"
            if isinstance(h5.get("saveloc"), h5py.Group) and isinstance(h5["saveloc"].get("loc"), h5py.Group):
                return "smap"
            keys = sorted(h5.keys())
    except OSError as exc:
        raise FormatError(f"cannot open HDF5 file ({exc})", path) from None
    raise FormatError(
        f"unknown localization format: HDF5 file without a compound /locs dataset, DECODE /data or SMAP "
        f"/saveloc/loc (top-level keys: {keys}); {recognised}",
        path,
    )


def read_hdf5_locs(path: Path, fmt: str, pixel_size: float | None, half_pixel: bool) -> LocTable:
    """Read a DECODE or SMAP file (Picasso has its own reader)."""
    if fmt == "decode":
        from imagebinner.io.decode_h5 import read_decode

        return read_decode(path, pixel_size, half_pixel)
    if fmt == "smap":
        from imagebinner.io.smap_mat import read_smap

        return read_smap(path, pixel_size, half_pixel)
    raise FormatError(f"format {fmt!r} is not a DECODE/SMAP HDF5 format", path)


def write_hdf5_locs(
    table: LocTable, target: Path, fmt: str, overwrite: bool, half_pixel: bool, pixel_size: float | None
) -> None:
    """Write a DECODE emitter file."""
    if fmt != "decode":
        raise FormatError(f"cannot write format {fmt!r} as HDF5", target)
    from imagebinner.io.decode_h5 import write_decode

    write_decode(table, target, overwrite, half_pixel, pixel_size)
