"""The demo data the dashboards open on without arguments: made once into ``<root>/imagebinner-demo/``, then reused."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
from pathlib import Path

from imagebinner.apps.paths import check_path, data_root
from imagebinner.errors import ImageBinnerError

#: the cache folder inside the data root (the default output folder of ``imagebinner demo`` too: one is reused as
#: the other)
DEMO_FOLDER = "imagebinner-demo"
PREDICTION_DIR = "prediction"  # as ``imagebinner demo`` names it
#: small and fast (well under a second to write): 60 frames of 64 × 64 px per measurement, ×4 upsampled prediction
SETTINGS = {"n_frames": 60}
SEED = 0
UPSAMPLING = 4

_lock = threading.Lock()  # sessions of one server; other processes are kept apart by the atomic rename


@dataclasses.dataclass(frozen=True)
class DemoData:
    """The demo folder's paths (resolved strings inside the data root)."""

    folder: Path
    measurements: list[tuple[str, str]]  # (movie, localizations) per measurement
    prediction_folder: str  # a DeepSTORM (ZeroCostDL4Mic layout) prediction folder for the first measurement
    movie: str  # the first measurement's movie (the review's movie)
    ground_truth: str  # the first measurement's localizations (the review's ground truth)


def _layout(folder: Path) -> DemoData:
    from imagebinner.simulate.demo import _DEMO_MEASUREMENTS, MOVIE_NAME

    pairs = [(str(folder / name / MOVIE_NAME), str(folder / name / locs)) for name, locs, _fmt in _DEMO_MEASUREMENTS]
    return DemoData(folder, pairs, str(folder / PREDICTION_DIR), pairs[0][0], pairs[0][1])


def _complete(data: DemoData) -> bool:
    from imagebinner.io.predictions import find_prediction_files

    try:
        found = find_prediction_files(data.prediction_folder)
    except ImageBinnerError:  # no prediction there: not a usable demo
        return False
    return found["localizations"] is not None and all(Path(p).is_file() for pair in data.measurements for p in pair)


def _make(folder: Path) -> None:
    """Write the demo into a temporary folder beside ``folder`` and rename it into place (atomic: a concurrent
    maker's folder wins, ours is dropped)."""
    from imagebinner.io import read_locs
    from imagebinner.io.atomic import plain_permissions
    from imagebinner.simulate import make_demo
    from imagebinner.simulate.prediction import make_prediction_folder

    tmp = Path(tempfile.mkdtemp(prefix=f".{DEMO_FOLDER}-", dir=folder.parent))
    plain_permissions(tmp)  # readable by every user of the server, like a folder made by mkdir
    try:
        paths = make_demo(tmp, seed=SEED, settings=SETTINGS, overwrite=True)
        first = paths.measurements[0]
        make_prediction_folder(tmp / PREDICTION_DIR, read_locs(first.locs), first.movie, upsampling=UPSAMPLING,
                               seed=SEED)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not folder.is_dir():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def demo_data() -> DemoData:
    """The demo folder ``<data root>/imagebinner-demo`` (two measurements, a prediction folder for the first), made
    on first use with the code of ``imagebinner demo`` (:mod:`imagebinner.simulate`), reused when present.
    Raises :class:`ImageBinnerError` (one line) if it cannot be made (read-only root, a foreign folder of that name)."""
    folder = check_path(DEMO_FOLDER, "demo folder", kind="any", must_exist=False)
    with _lock:
        data = _layout(folder)
        if _complete(data):
            return data
        if folder.exists():
            raise ImageBinnerError("exists but is not a complete demo folder (remove it to get the demo data)",
                                   folder)
        try:
            _make(folder)
        except OSError as exc:
            raise ImageBinnerError(f"cannot write the demo data: {exc.strerror or exc}", folder) from None
        data = _layout(folder)
        if not _complete(data):  # a concurrent maker's folder that is not (yet) what we expect
            raise ImageBinnerError("demo folder incomplete after making it", folder)
        return data
