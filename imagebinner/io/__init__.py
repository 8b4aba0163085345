"""Readers and writers: one canonical localization table, lazy movies, atomic outputs.

Public API (everything above this layer imports from here)::

    read_locs(path, format=None, pixel_size=None, half_pixel=True) -> LocTable
    write_locs(table, path, format=None, overwrite=False, ...) -> list[Path]
    detect_format(path) -> str
    open_movie(path, pixel_size=None) -> Movie;  write_tif(...);  TifWriter(...)
"""

from __future__ import annotations

import importlib

#: public name -> the io module that defines it (imported on first use: `imagebinner <cmd> --help` needs none of
#: the readers' libraries)
_WHERE = {
    **dict.fromkeys(("atomic_group", "atomic_path", "check_outputs", "check_writable", "protected_inputs", "sidecars"),
                    "atomic"),
    "find_measurement_pairs": "discovery",
    **dict.fromkeys(("LOC_FORMATS", "WRITE_FORMATS", "detect_format", "format_for_output", "output_paths",
                     "read_locs", "write_locs"), "locformats"),
    **dict.fromkeys(("MOVIE_SUFFIXES", "Movie", "file_signature", "is_movie_path", "open_movie"), "movie"),
    **dict.fromkeys(("TifWriter", "to_output_dtype", "write_tif"), "tif_writer"),
    **dict.fromkeys(("LocMeta", "LocTable", "empty_table"), "table"),
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'imagebinner.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"imagebinner.io.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
