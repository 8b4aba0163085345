"""Localization file formats: the only place that knows each file's conventions (see docs/conventions.md).

Every reader returns the canonical :class:`~imagebinner.io.table.LocTable` (0-based integer frames; x, y in nm with
the origin at the top-left *corner* of pixel (0, 0)); every writer takes one and converts back. Formats:

* ``"picasso"``: Picasso HDF5 ``/locs`` + multi-document YAML (pixel centres at integer coordinates, frames 0-based;
  read and written by :mod:`imagebinner.io.picasso_hdf5`)
* ``"picasso-csv"``: Picasso's ThunderSTORM-style CSV export, old and new style (read only)
* ``"thunderstorm"``: ThunderSTORM CSV, 2D and 3D (frames 1-based, corner convention)
* ``"deepstorm"``: the ZeroCostDL4Mic DeepSTORM training CSV (unnamed index 1..N, frames 1-based)
* ``"deepstorm-prediction"``: ``Localizations_<stem>_avg|max.csv`` written by the notebook (frames 1-based)
* ``"decode"``, ``"smap"``: DECODE emitter HDF5 and SMAP ``*_sml.mat`` (:mod:`imagebinner.io.h5formats`)
* ``"oni"``: ONI Nanoimager CSV export (column names in :mod:`imagebinner.io.oni_csv`)

Large sorted inputs are converted chunk by chunk by :mod:`imagebinner.io.streaming`.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from imagebinner.errors import FormatError
from imagebinner.io import h5formats, oni_csv, picasso_yaml
from imagebinner.io.atomic import check_writable
from imagebinner.io.csv_writers import (
    CSV_WRITE_FORMATS,
    DEEPSTORM_HEADER,
    DEEPSTORM_PREDICTION_HEADER,
    PIXEL_UNIT_FIELDS as _PIXEL_UNIT_FIELDS,
    write_csv,
)
from imagebinner.io.h5formats import HDF5_FORMATS, is_hdf5
from imagebinner.io.picasso_hdf5 import (
    PICASSO_LP_PLACEHOLDER_PX,
    picasso_record_array,
    picasso_sanity_report,
    read_picasso,
    write_picasso,
)
from imagebinner.io.table import LocMeta, LocTable

CSV_FORMATS = ("picasso-csv", "thunderstorm", "deepstorm", "deepstorm-prediction", "oni")
LOC_FORMATS = ("picasso", "picasso-csv", "thunderstorm", "deepstorm", "deepstorm-prediction", "decode", "smap", "oni")
WRITE_FORMATS = ("deepstorm", "deepstorm-prediction", "thunderstorm", "picasso", "decode")

FORMAT_TITLES = {
    "picasso": "Picasso HDF5 + YAML",
    "picasso-csv": "Picasso CSV export",
    "thunderstorm": "ThunderSTORM CSV",
    "deepstorm": "DeepSTORM training CSV",
    "deepstorm-prediction": "DeepSTORM prediction CSV",
    "decode": "DECODE emitter HDF5",
    "smap": "SMAP localizations (*_sml.mat, MATLAB v7.3)",
    "oni": "ONI Nanoimager CSV export",
}

#: Frame value of the first movie page in each format.
FRAME_BASE = {
    "picasso": 0,
    "picasso-csv": 0,
    "thunderstorm": 1,
    "deepstorm": 1,
    "deepstorm-prediction": 1,
    "decode": 0,
    "smap": 1,
    "oni": oni_csv.FRAME_BASE,
}
RECOGNISED = (
    "recognised: Picasso HDF5 (/locs), DECODE emitter HDF5 (/data/xyz, /data/frame_ix), SMAP *_sml.mat "
    "(saveloc.loc), and CSV with headers frame, x [nm], y [nm] (ThunderSTORM, Picasso export, DeepSTORM) or "
    f"{oni_csv.HEADER_HINT} (ONI Nanoimager)"
)

# CSV column name (lower case, after cleaning) -> canonical column. Everything else is carried under its own name.
_CSV_STANDARD = {
    "x [nm]": "x",
    "y [nm]": "y",
    "z [nm]": "z",
    "sigma [nm]": "sigma",
    "intensity [photon]": "photons",
    "intensity [photons]": "photons",
    "photon #": "photons",
    "offset [photon]": "background",
    "offset [photons]": "background",
    "uncertainty_xy [nm]": "uncertainty",
    "uncertainty [nm]": "uncertainty",
    "confidence [a.u]": "confidence",
    "confidence [a.u.]": "confidence",
}
_INDEX_NAMES = ("", "unnamed: 0", "id")


# ================================================================================================ detection
def detect_format(path: str | Path) -> str:
    """Format name of a localization file, decided from its content (HDF5 structure or CSV header names).

    Picasso's CSV export and ThunderSTORM CSV share their column names; they are told apart by content:
    Picasso's ``id`` starts at 0 and its frames at 0, ThunderSTORM's ids and frames start at 1. A file whose
    smallest ``id`` is 0 or whose smallest ``frame`` is 0 is a Picasso export; otherwise ThunderSTORM.
    """
    path = Path(path)
    _check_exists(path)
    if is_hdf5(path):
        return h5formats.hdf5_format(path, RECOGNISED)
    header = _read_header(path)
    fmt = _format_from_header(header.names, path)
    if fmt == "thunderstorm-family":
        fmt = _thunderstorm_or_picasso(column_minima(path, header, ("id", "frame")), header)
    return fmt


def column_minima(path: Path, header: "_Header", names: tuple[str, ...]) -> dict[str, float]:
    """Smallest value of each named column present (read in blocks: bounded memory whatever the file size)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = [n for n in names if n in header.lower]
    if not wanted or not header.has_data:
        return {}
    reader = _open_csv(path, header, wanted, path)
    minima: dict[str, float] = {}
    try:
        for batch in reader:
            for name, column in zip(wanted, batch.columns):
                if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
                    continue
                value = pc.min(column).as_py()
                if value is not None and (name not in minima or value < minima[name]):
                    minima[name] = value
    except pa.ArrowInvalid:  # a type change between blocks: read the two columns whole instead
        cols = _read_csv_columns(path, header, usecols=wanted)
        return {k.lower(): float(np.nanmin(v)) for k, v in cols.items() if v.dtype.kind in "iuf" and len(v)}
    return minima


def _open_csv(path: Path, header: "_Header", usecols: list[str] | None, where: Path, block_size: int = 1 << 20):
    """pyarrow's streaming CSV reader over the data rows (same options as the whole-file reader)."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    names = _column_names(header, path)
    if usecols is not None:
        usecols = [names[header.lower.index(u.lower())] for u in usecols]
    try:
        return pacsv.open_csv(path, *_csv_options(header, names, usecols, block_size))
    except pa.ArrowInvalid as exc:
        raise FormatError(f"cannot parse CSV ({str(exc).splitlines()[0]})", where) from None


def _column_names(header: "_Header", path: Path) -> list[str]:
    names = [n if n else f"__unnamed_{i}" for i, n in enumerate(header.names)]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise FormatError(f"duplicate column name(s) {dupes}", path)
    return names


def _csv_options(header: "_Header", names: list[str], usecols: list[str] | None, block_size: int) -> tuple:
    from pyarrow import csv as pacsv

    return (
        pacsv.ReadOptions(skip_rows=1, column_names=names, block_size=block_size),
        pacsv.ParseOptions(delimiter=header.delimiter),
        pacsv.ConvertOptions(
            include_columns=usecols,
            strings_can_be_null=True,
            null_values=["", "NaN", "nan", "NA", "null", "None"],
        ),
    )


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise FormatError("localization file not found", path)
    if path.is_dir():
        raise FormatError("is a folder, expected a localization file", path)


class _Header:
    def __init__(self, names: list[str], delimiter: str, has_data: bool):
        self.names = names
        self.lower = [n.lower() for n in names]
        self.delimiter = delimiter
        self.has_data = has_data


def clean_name(name: str) -> str:
    """Strip surrounding quotes and whitespace repeatedly.

    ``"id"``, ``' "id" '`` and a quoted name re-quoted by another CSV writer all become ``id``.
    """
    previous = None
    while previous != name:
        previous = name
        name = name.strip().strip('"').strip("'").replace('""', '"')
    return name


def _read_header(path: Path) -> _Header:
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if b"\x00" in head:
        raise FormatError("binary file that is not HDF5: unknown localization format", path)
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise FormatError("empty file: no CSV header (unknown localization format)", path)
    first = lines[0]
    delimiter = "," if first.count(",") >= first.count("\t") else "\t"
    fields = next(csv.reader([first], delimiter=delimiter))
    # a whole header wrapped in quotes (inner quotes doubled) parses as one field holding the delimiters
    for _ in range(3):
        if len(fields) == 1 and delimiter in fields[0]:
            fields = next(csv.reader([fields[0].strip()], delimiter=delimiter))
        else:
            break
    names = [clean_name(f) for f in fields]
    has_data = any(line.strip() for line in lines[1:]) or len(head) == 65536
    return _Header(names, delimiter, has_data)


def _format_from_header(names: list[str], path: Path) -> str:
    lower = [n.lower() for n in names]
    if oni_csv.is_oni_header(lower):
        return "oni"
    missing = [c for c in ("frame", "x [nm]", "y [nm]") if c not in lower]
    if missing:
        shown = ", ".join(repr(n) for n in names[:12])
        raise FormatError(
            f"unknown localization format: CSV header lacks {', '.join(missing)} (found {shown}); {RECOGNISED}",
            path,
        )
    unnamed_index = lower[0] in ("", "unnamed: 0")
    if "photon #" in lower or "Sigma [nm]" in names:  # ThunderSTORM/Picasso write lower-case "sigma [nm]"
        return "deepstorm"
    if unnamed_index:
        return "deepstorm-prediction" if "confidence [a.u]" in lower else "deepstorm"
    if "confidence [a.u]" in lower and not {"intensity [photon]", "sigma [nm]", "id"} & set(lower):
        return "deepstorm-prediction"
    return "thunderstorm-family"


def _thunderstorm_or_picasso(minima: dict[str, float], header: _Header) -> str:
    if minima.get("id") == 0 or minima.get("frame") == 0:
        return "picasso-csv"
    return "thunderstorm"


# ================================================================================================== reading
def read_locs(
    path: str | Path,
    format: str | None = None,
    pixel_size: float | None = None,
    half_pixel: bool = True,
) -> LocTable:
    """Read a localization file into the canonical table.

    ``format`` overrides detection. ``pixel_size`` (nm) overrides the file's metadata (with a warning when they
    differ). Picasso data need a pixel size from the YAML or the argument. ``half_pixel=True`` applies the exact
    Picasso centre -> corner shift (+0.5 px); ``False`` reproduces Picasso's own CSV export (no shift).
    """
    path = Path(path)
    _check_exists(path)
    if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
        raise FormatError(f"pixel size must be a positive number of nm, got {pixel_size}", path)
    if format is not None and format not in LOC_FORMATS:
        raise FormatError(f"unknown format {format!r} (choose from {', '.join(LOC_FORMATS)})", path)
    if format in HDF5_FORMATS or (format is None and is_hdf5(path)):
        if not is_hdf5(path):
            raise FormatError(f"not an HDF5 file, cannot read it as {FORMAT_TITLES[format]}", path)
        fmt = format or h5formats.hdf5_format(path, RECOGNISED)
        if fmt == "picasso":
            return read_picasso(path, pixel_size, half_pixel)
        return h5formats.read_hdf5_locs(path, fmt, pixel_size, half_pixel)
    if is_hdf5(path):
        raise FormatError(f"HDF5 file cannot be read as {format!r} (a CSV format)", path)
    header = _read_header(path)
    detected = _format_from_header(header.names, path) if format is None else format
    cols = _read_csv_columns(path, header)
    if detected == "thunderstorm-family":
        detected = _thunderstorm_or_picasso(_minima_of(cols), header)
    return _csv_to_table(cols, header, detected, path, pixel_size, half_pixel)


def _minima_of(cols: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for name, values in cols.items():
        if name.lower() in ("id", "frame") and values.dtype.kind in "iuf" and len(values):
            out[name.lower()] = np.nanmin(values)
    return out


def _read_csv_columns(path: Path, header: _Header, usecols: list[str] | None = None) -> dict[str, np.ndarray]:
    """All (or some) columns of a CSV as NumPy arrays, keyed by cleaned header name (pyarrow's reader)."""
    import pyarrow as pa
    from pyarrow import csv as pacsv

    names = _column_names(header, path)
    if usecols is not None:
        usecols = [names[header.lower.index(u.lower())] for u in usecols]
    if not header.has_data:
        return {n: np.empty(0) for n in (usecols or names)}
    try:
        table = pacsv.read_csv(path, *_csv_options(header, names, usecols, 1 << 24))
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            return {n: np.empty(0) for n in (usecols or names)}
        raise FormatError(f"cannot parse CSV ({str(exc).splitlines()[0]})", path) from None
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        out[name] = arrow_to_numpy(table.column(name))
    return out


#: pyarrow type name -> NumPy dtype of the numbers a CSV reader produces (read from the data buffers directly:
#: pyarrow's own ``to_numpy`` imports pandas, 0.2-0.7 s of a whole CLI run)
_PRIMITIVE_DTYPES = {"int64": "<i8", "int32": "<i4", "double": "<f8", "float": "<f4"}


def _primitive_to_numpy(column, dtype: np.dtype) -> np.ndarray:
    """A null-free numeric pyarrow column (array or chunked array) as one NumPy array, from its data buffers."""
    chunks = getattr(column, "chunks", [column])
    parts = [np.frombuffer(c.buffers()[1], dtype=dtype, count=len(c), offset=c.offset * dtype.itemsize)
             for c in chunks]
    if not parts:
        return np.empty(0, dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def arrow_to_numpy(column) -> np.ndarray:
    """A pyarrow column as NumPy (numbers as they are; nulls -> NaN; strings kept, checked only when used)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    typ = column.type
    if pa.types.is_null(typ):
        return np.full(len(column), np.nan)
    if not column.null_count and str(typ) in _PRIMITIVE_DTYPES:
        return _primitive_to_numpy(column, np.dtype(_PRIMITIVE_DTYPES[str(typ)]))
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ):
        if column.null_count:
            return column.to_numpy().astype(np.float64) if not pa.types.is_floating(typ) else column.to_numpy()
        return column.to_numpy()
    try:
        return pc.cast(column, pa.float64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return column.to_numpy(zero_copy_only=False)  # strings: checked only when the column is used


def _numeric(values: np.ndarray, name: str, path: Path, *, required: bool = False) -> np.ndarray:
    if values.dtype.kind in "iufb":
        arr = values.astype(np.float64, copy=False) if values.dtype.kind == "b" else values
    else:
        bad = next((v for v in values if not _is_number(v)), None)
        raise FormatError(f"column {name!r} is not numeric (e.g. value {bad!r})", path)
    if required and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise FormatError(f"column {name!r} has {n_bad} empty, NaN or infinite value(s)", path)
    return arr


def _is_number(value) -> bool:
    if value is None:
        return True
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def _frames_from(values: np.ndarray, fmt: str, path: Path) -> np.ndarray:
    """File frame values -> 0-based int64 page indices, with messages naming the format's frame base."""
    name = "frame"
    values = _numeric(values, name, path, required=True)
    if values.dtype.kind == "f":
        as_int = np.floor(values)
        if not np.array_equal(as_int, values):
            bad = values[as_int != values][0]
            raise FormatError(f"column 'frame' has non-integral values (e.g. {bad})", path)
        values = as_int
    frames = values.astype(np.int64) - FRAME_BASE[fmt]
    if len(frames) and frames.min() < 0:
        first = int(frames.min()) + FRAME_BASE[fmt]
        base = FRAME_BASE[fmt]
        raise FormatError(
            f"frame {first} is below the first frame of {FORMAT_TITLES[fmt]} files ({base}: frames are "
            f"{base}-based); wrong format? (use the format override to read it as another format)",
            path,
        )
    return frames


def _csv_to_table(
    cols: dict[str, np.ndarray],
    header: _Header,
    fmt: str,
    path: Path,
    pixel_size: float | None,
    half_pixel: bool,
) -> LocTable:
    if fmt not in CSV_FORMATS:
        raise FormatError(f"format {fmt!r} is not a CSV format", path)
    by_lower = {}
    for i, name in enumerate(header.names):
        key = name.lower()
        by_lower.setdefault(key, name if name else f"__unnamed_{i}")
    standard = oni_csv.STANDARD if fmt == "oni" else _CSV_STANDARD
    required_names = oni_csv.required_columns(by_lower) if fmt == "oni" else ("frame", "x [nm]", "y [nm]")
    for required in required_names:
        if required not in by_lower:
            raise FormatError(
                f"missing column {required!r} for {FORMAT_TITLES[fmt]} (found {', '.join(header.names)})", path
            )
    out: dict[str, np.ndarray] = {}
    frames = _frames_from(cols[by_lower["frame"]], fmt, path)
    out["frame"] = frames
    n = len(frames)
    sigma12 = []
    for i, name in enumerate(header.names):
        key = name.lower()
        col_name = name if name else f"__unnamed_{i}"
        if key == "frame" or key in _INDEX_NAMES or key.startswith("unnamed:"):
            continue  # index columns and ids are never reused (rows are renumbered on write)
        values = cols[col_name]
        canonical = standard.get(key)
        if canonical in ("x", "y"):
            out[canonical] = _numeric(values, name, path, required=True)
        elif canonical is not None:
            if canonical in out:
                continue
            out[canonical] = _numeric(values, name, path).astype(np.float64, copy=False)
        else:
            if key in ("sigma1 [nm]", "sigma2 [nm]") or key in oni_csv.SIGMA_PAIR:
                sigma12.append(name)
            if name in out or not name:
                continue
            out[name] = values if values.dtype.kind in "iufb" else values.astype(str)
    if "sigma" not in out and len(sigma12) == 2:
        out["sigma"] = (_numeric(out[sigma12[0]], sigma12[0], path) + _numeric(out[sigma12[1]], sigma12[1], path)) / 2
    conversion = _csv_conversion(fmt, pixel_size, half_pixel)
    if fmt == "picasso-csv" and half_pixel:
        if pixel_size is None:
            raise FormatError(
                "Picasso CSV export: the exact half-pixel shift (x_nm + 0.5 * pixel size) needs the camera pixel "
                "size, which the CSV does not carry; give pixel_size, or turn half_pixel off to keep Picasso's "
                "coordinates unchanged",
                path,
                params=["pixel_size", "half_pixel"],
            )
        out["x"] = out["x"] + 0.5 * pixel_size
        out["y"] = out["y"] + 0.5 * pixel_size
    meta = LocMeta(
        pixel_size=None if pixel_size is None else float(pixel_size),
        source_format=fmt,
        source_path=str(path),
        conversion=conversion,
    )
    if n == 0:
        out = {k: np.asarray(v, dtype=np.float64) if k != "frame" else v for k, v in out.items()}
    return LocTable(out, meta)


def _csv_conversion(fmt: str, pixel_size: float | None, half_pixel: bool) -> str:
    if fmt == "picasso-csv":
        if half_pixel:
            return (
                f"{fmt} nm (pixel centres at j*ps) -> nm corner convention: x_nm = x_export + 0.5 * {pixel_size}; "
                "frame unchanged (0-based)"
            )
        return f"{fmt} nm used unchanged (half_pixel=False: Picasso-export compatible, no +0.5 px); frame unchanged"
    base = FRAME_BASE[fmt]
    if fmt == "oni":
        return oni_csv.CONVERSION
    return f"{fmt}: x, y unchanged (nm, corner convention); frame - {base} ({base}-based -> 0-based)"


# ================================================================================================== writing
def format_for_output(path: str | Path, to: str | None = None) -> str:
    """The output format: ``to`` when given, else from the extension (``.hdf5`` -> picasso, ``.csv`` -> deepstorm)."""
    path = Path(path)
    if to is not None:
        if to not in WRITE_FORMATS:
            raise FormatError(f"cannot write format {to!r} (choose from {', '.join(WRITE_FORMATS)})", path)
        return to
    suffix = path.suffix.lower()
    if suffix in (".hdf5", ".h5"):
        return "picasso"
    if suffix == ".csv":
        return "deepstorm"
    raise FormatError(
        f"cannot tell the output format from the extension {suffix!r}: use .csv (DeepSTORM), .hdf5 (Picasso) "
        "or choose it with to",
        path,
        params=["to"],
    )


def output_paths(path: str | Path, format: str | None = None) -> list[Path]:
    """Every file :func:`write_locs` would create for ``path`` in ``format`` (for pre-checks)."""
    path = Path(path)
    fmt = format_for_output(path, format)
    if fmt == "picasso":
        if path.suffix.lower() == ".yaml":
            raise FormatError("a Picasso localization file cannot end in .yaml (its sidecar does)", path)
        return [path, picasso_yaml.sidecar_path(path)]
    return [path]


def write_locs(
    table: LocTable,
    path: str | Path,
    format: str | None = None,
    overwrite: bool = False,
    half_pixel: bool = True,
    pixel_size: float | None = None,
) -> list[Path]:
    """Write ``table`` in ``format`` (from the extension when None); returns the written paths.

    Atomic (all files of one output are checked first and renamed into place together); refuses to replace an
    existing file unless ``overwrite``. ``half_pixel`` and ``pixel_size`` matter for Picasso and DECODE only.
    """
    path = Path(path)
    fmt = format_for_output(path, format)
    targets = output_paths(path, fmt)
    check_writable(targets, overwrite)
    if fmt in CSV_WRITE_FORMATS:
        write_csv(table, fmt, targets[0], overwrite)
    elif fmt == "picasso":
        write_picasso(table, targets[0], targets[1], overwrite, half_pixel, pixel_size)
    else:
        h5formats.write_hdf5_locs(table, targets[0], fmt, overwrite, half_pixel, pixel_size)
    return targets


__all__ = [
    "LOC_FORMATS",
    "CSV_FORMATS",
    "WRITE_FORMATS",
    "RECOGNISED",
    "column_minima",
    "arrow_to_numpy",
    "FORMAT_TITLES",
    "FRAME_BASE",
    "detect_format",
    "read_locs",
    "write_locs",
    "output_paths",
    "format_for_output",
    "clean_name",
    "PICASSO_LP_PLACEHOLDER_PX",
    "picasso_record_array",
    "picasso_sanity_report",
]
