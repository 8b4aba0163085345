"""Readers and writers: one canonical localization table, lazy movies, atomic outputs.

Public API (everything above this layer imports from here)::

    read_locs(path, format=None, pixel_size=None, half_pixel=True) -> LocTable
    write_locs(table, path, format=None, overwrite=False, ...) -> list[Path]
    detect_format(path) -> str
    open_movie(path, pixel_size=None) -> Movie;  write_tif(...);  TifWriter(...)
"""

from imagebinner.io.atomic import (
    atomic_group,
    atomic_path,
    check_outputs,
    check_writable,
    protected_inputs,
    sidecars,
)
from imagebinner.io.discovery import find_measurement_pairs
from imagebinner.io.locformats import (
    LOC_FORMATS,
    WRITE_FORMATS,
    detect_format,
    format_for_output,
    output_paths,
    read_locs,
    write_locs,
)
from imagebinner.io.movie import MOVIE_SUFFIXES, Movie, file_signature, is_movie_path, open_movie
from imagebinner.io.tif_writer import TifWriter, to_output_dtype, write_tif
from imagebinner.io.table import LocMeta, LocTable, empty_table

__all__ = [
    "LocMeta",
    "LocTable",
    "Movie",
    "MOVIE_SUFFIXES",
    "TifWriter",
    "atomic_group",
    "atomic_path",
    "check_outputs",
    "check_writable",
    "find_measurement_pairs",
    "protected_inputs",
    "sidecars",
    "empty_table",
    "file_signature",
    "is_movie_path",
    "open_movie",
    "to_output_dtype",
    "write_tif",
    "read_locs",
    "write_locs",
    "detect_format",
    "format_for_output",
    "output_paths",
    "LOC_FORMATS",
    "WRITE_FORMATS",
]
