"""Exception hierarchy: every error names the file (when there is one) and the cause in one line.

Messages name settings by their param name (``pixel_size``), never by a command-line flag: GUI users read them too.
An error lists the params it names in ``params``; the CLI shows those as flags (``--pixel-size``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class ImageBinnerError(Exception):
    """Base class of every error imagebinner raises on purpose (bad input, bad settings, refused writes)."""

    def __init__(self, message: str, path: str | Path | None = None, params: Iterable[str] = ()):
        self.path = None if path is None else Path(path)
        self.cause = message
        self.params = tuple(params)
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class FormatError(ImageBinnerError):
    """A file is not in a supported format, or its content violates the format (columns, values, metadata)."""


class ParameterError(ImageBinnerError):
    """A setting is impossible or inconsistent with the inputs (e.g. patch larger than the movie)."""


class OutputExistsError(ImageBinnerError):
    """An output file exists already and overwriting was not asked for."""
