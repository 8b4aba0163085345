"""The demo folder: two simulated measurements (Picasso HDF5 + YAML, ThunderSTORM CSV locs) and a small Deep-STORM
model folder (``model/``: a spot detector built from known kernels, ×8) so ``imagebinner predict`` runs on it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from imagebinner.errors import ParameterError
from imagebinner.io import check_writable
from imagebinner.simulate.measurement import simulate_measurement, write_measurement

# small enough to write in about a second, dense enough for binning (patch 27 px: ~3 emitters per patch and frame)
DEMO_SETTINGS: dict = {
    "n_frames": 200,
    "height": 64,
    "width": 64,
    "pixel_size": 107.0,
    "emitters_per_frame": 15.0,
    "n_filaments": 4,
    "n_sites": 400,
}

# (folder, locs file name, format); measurement k uses seed + k - 1
_DEMO_MEASUREMENTS = (
    ("measurement1", "movie_locs.hdf5", "picasso"),
    ("measurement2", "movie_locs.csv", "thunderstorm"),
)
MOVIE_NAME = "movie.tif"
MODEL_DIR = "model"
#: the demo model: upsampling and L2 factor stored in its model_metadata.mat
DEMO_MODEL = {"upsampling": 8, "l2": 100.0}


def model_files(out_dir: Path) -> list[Path]:
    """The files of the demo's model folder (the notebook's names: model_metadata.mat, best.weights.keras)."""
    from imagebinner.io.deepstorm_model import METADATA_NAME, WEIGHT_NAMES

    return [out_dir / MODEL_DIR / METADATA_NAME, out_dir / MODEL_DIR / WEIGHT_NAMES[0]]


@dataclasses.dataclass(frozen=True)
class DemoMeasurement:
    """One measurement of the demo folder: its movie, its localization file (format name) and every file written."""

    name: str
    movie: Path
    locs: Path
    loc_format: str
    files: tuple[Path, ...]


@dataclasses.dataclass(frozen=True)
class DemoPaths:
    """What :func:`make_demo` wrote."""

    out_dir: Path
    measurements: tuple[DemoMeasurement, ...]
    readme: Path
    model: Path | None = None

    @property
    def files(self) -> list[Path]:
        model = model_files(self.out_dir) if self.model is not None else []
        return [f for m in self.measurements for f in m.files] + model + [self.readme]


def _planned(out_dir: Path) -> list[tuple[str, Path, Path, str, list[Path]]]:
    from imagebinner.io import output_paths

    plan = []
    for name, locs_name, fmt in _DEMO_MEASUREMENTS:
        folder = out_dir / name
        movie, locs = folder / MOVIE_NAME, folder / locs_name
        plan.append((name, movie, locs, fmt, [movie, *[Path(p) for p in output_paths(locs, fmt)]]))
    return plan


def demo_files(out_dir: str | Path) -> list[Path]:
    """Every file :func:`make_demo` would write into ``out_dir``."""
    out_dir = Path(out_dir)
    return [f for *_, files in _planned(out_dir) for f in files] + model_files(out_dir) + [out_dir / "README.txt"]


def make_demo(out_dir: str | Path, seed: int = 0, overwrite: bool = False, settings: dict | None = None) -> DemoPaths:
    """Write the demo folder ``out_dir`` with ``measurement1/`` (movie TIF + Picasso HDF5/YAML ground truth) and
    ``measurement2/`` (movie TIF + ThunderSTORM CSV ground truth); returns the paths.

    Deterministic by ``seed``. Every output is checked before anything is written (OutputExistsError unless
    ``overwrite``); if a later write fails, the files written so far are removed again. ``settings`` override
    :data:`DEMO_SETTINGS` (keyword arguments of :func:`~imagebinner.simulate.simulate_measurement`).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ParameterError("demo output must be a folder, but a file of that name exists", out_dir)
    if not isinstance(seed, int) or seed < 0:
        raise ParameterError(f"seed must be a non-negative integer, got {seed!r}")
    plan = _planned(out_dir)
    readme = out_dir / "README.txt"
    check_writable([*[f for *_, files in plan for f in files], *model_files(out_dir), readme], overwrite)
    values = {**DEMO_SETTINGS, **(settings or {})}
    written: list[Path] = []
    fresh = [f for f in demo_files(out_dir) if not f.exists()]
    measurements = []
    try:
        for index, (name, movie, locs, fmt, _files) in enumerate(plan):
            measurement = simulate_measurement(**values, seed=seed + index)
            files = write_measurement(measurement, movie, locs, loc_format=fmt, overwrite=overwrite)
            written += files
            measurements.append(DemoMeasurement(name, movie, locs, fmt, tuple(files)))
        model = _write_model(out_dir, written)
        readme_text = _readme(values, seed, measurements)
        from imagebinner.io import atomic_path

        with atomic_path(readme, overwrite=overwrite) as tmp:
            tmp.write_text(readme_text, encoding="utf-8")
        written.append(readme)
    except BaseException:
        for f in written:
            if f in fresh:
                f.unlink(missing_ok=True)
        raise
    return DemoPaths(out_dir, tuple(measurements), readme, model)


def _write_model(out_dir: Path, written: list[Path]) -> Path:
    """The demo's model folder (:func:`imagebinner.simulate.model.detector_blocks`); its files join ``written``."""
    from imagebinner.simulate.model import detector_blocks, write_model_folder

    folder = out_dir / MODEL_DIR
    written += model_files(out_dir)  # listed first: removed again if the writing fails half-way
    blocks, prediction = detector_blocks(offset=0.05, scale=100.0)
    return write_model_folder(folder, blocks, prediction, upsampling=DEMO_MODEL["upsampling"], l2=DEMO_MODEL["l2"])


def _readme(values: dict, seed: int, measurements: list[DemoMeasurement]) -> str:
    lines = [
        "ImageBinner demo data (simulated with imagebinner.simulate; deterministic by seed)",
        "",
        f"seed: {seed} (measurement k uses seed + k - 1)",
        "settings: " + ", ".join(f"{k}={v}" for k, v in values.items()),
        "",
        "Each folder holds a camera movie (ImageJ TIF, uint16, camera offset 100 ADU, pixel size in the resolution",
        "tags) and its ground-truth localizations:",
    ]
    for m in measurements:
        names = ", ".join(f.name for f in m.files)
        lines.append(f"  {m.name}/: {names}  (localizations: {m.loc_format})")
    lines += [
        "",
        f"{MODEL_DIR}/: a small ZeroCostDL4Mic Deep-STORM model folder (model_metadata.mat + best.weights.keras,",
        f"upsampling {DEMO_MODEL['upsampling']}, L2 {DEMO_MODEL['l2']:g}): the notebook's architecture with hand-set "
        "weights that detect isolated",
        "spots (not a trained model). Run it like a trained one:",
        f"  imagebinner predict {MODEL_DIR} measurement1/{MOVIE_NAME} -o predicted",
        "  imagebinner review predicted --movie measurement1/movie.tif --ground-truth measurement1/movie_locs.hdf5",
        "",
        "Picasso files use Picasso's conventions (0-based frames, pixel units, pixel centres at integers);",
        "ThunderSTORM files use 1-based frames and nm with the origin at the image corner.",
        "",
    ]
    return "\n".join(lines)
