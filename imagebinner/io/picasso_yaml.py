"""Picasso's multi-document YAML sidecar: load safely, look up keys (last document wins), write."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from imagebinner.errors import FormatError

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class PicassoLoader(_BaseLoader):
    """A safe loader that also reads ``!!python/tuple`` (what Picasso's ``yaml.dump_all`` writes for tuples).

    Every other Python tag (``!!python/object/apply:...``, ``!!python/name:...``) is refused: loading never
    creates objects or runs code named by the file.
    """


def _tuple(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> tuple:
    return tuple(loader.construct_sequence(node, deep=True))


class _RefusedTag(Exception):
    """A tag the loader does not construct (carried to :func:`load_docs`, which names the file)."""


def _refuse(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    raise _RefusedTag(node.tag.replace("tag:yaml.org,2002:", "!!"))


PicassoLoader.add_constructor("tag:yaml.org,2002:python/tuple", _tuple)
PicassoLoader.add_constructor(None, _refuse)  # any tag without a constructor (every other python/... tag too)


class PicassoDumper(_BaseDumper):
    """A safe dumper that writes tuples as ``!!python/tuple`` like Picasso (and refuses other Python objects)."""


PicassoDumper.add_representer(
    tuple, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:python/tuple", data)
)
PicassoDumper.add_multi_representer(np.generic, lambda dumper, data: dumper.represent_data(data.item()))
PicassoDumper.add_multi_representer(np.ndarray, lambda dumper, data: dumper.represent_data(data.tolist()))


def sidecar_path(path: str | Path) -> Path:
    """The YAML that belongs to a Picasso ``.hdf5`` or ``.raw`` file (same stem, ``.yaml``)."""
    return Path(path).with_suffix(".yaml")


def load_docs(path: str | Path) -> list[dict]:
    """All documents of a Picasso YAML file, in order (non-mapping documents are skipped).

    Plain YAML types and ``!!python/tuple`` are read; any other tag is refused with a :class:`FormatError`.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            docs = list(yaml.load_all(fh, Loader=PicassoLoader))
    except FileNotFoundError:
        raise FormatError("Picasso metadata file not found (Picasso needs the .yaml beside the data)", path) from None
    except _RefusedTag as exc:
        raise FormatError(f"YAML tag {exc} refused (only plain values and tuples are read)", path) from None
    except yaml.YAMLError as exc:
        raise FormatError(f"not valid YAML ({str(exc).splitlines()[0]})", path) from None
    return [d for d in docs if isinstance(d, dict)]


def lookup(docs: list[dict], key: str, default: Any = None) -> Any:
    """Value of ``key`` from the last document that has it with a non-null value (Picasso's rule)."""
    for doc in reversed(docs):
        if doc.get(key) is not None:
            return doc[key]
    return default


def pixel_size(docs: list[dict], path: str | Path | None = None) -> float | None:
    """``Pixelsize`` in nm from the last document that has it; warns when documents disagree.

    ``Camera.Pixelsize`` (written by Picasso Simulate for the raw movie) is a different key and is not used here;
    see :func:`suggested_pixel_size`.
    """
    values = [float(d["Pixelsize"]) for d in docs if d.get("Pixelsize") is not None]
    if not values:
        return None
    others = {v for v in values[:-1] if v != values[-1]}
    camera = [float(d["Camera.Pixelsize"]) for d in docs if d.get("Camera.Pixelsize") is not None]
    others |= {v for v in camera if v != values[-1]}
    if others:
        where = f"{path}: " if path else ""
        warnings.warn(
            f"{where}YAML documents disagree on the pixel size ({sorted(others)} vs {values[-1]}); "
            f"using Pixelsize = {values[-1]} nm from the last document that has it",
            stacklevel=2,
        )
    return values[-1]


def suggested_pixel_size(docs: list[dict]) -> float | None:
    """``Camera.Pixelsize`` (a default to confirm when no document has ``Pixelsize``)."""
    value = lookup(docs, "Camera.Pixelsize")
    return None if value is None else float(value)


def dump_docs(docs: list[dict], path: str | Path) -> None:
    """Write documents as Picasso does (``yaml.dump_all``, ``---`` separators, tuples as ``!!python/tuple``)."""
    with open(path, "w", encoding="utf-8") as fh:
        yaml.dump_all(docs, fh, default_flow_style=False, Dumper=PicassoDumper)
