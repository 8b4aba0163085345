"""The Binner param class: settings declared once, results as read-only params, steps orchestrated and invalidated.

Steps a GUI can drive one by one: :meth:`Binner.load` (cheap: movies opened lazily, tables read),
:meth:`Binner.draw_pool`, :meth:`Binner.compose`, :meth:`Binner.binned_frame` and :meth:`Binner.save`; each step
loads or draws what is missing. Results (``loaded``, ``pool``, ``plan``, ``stats``, ...) are constant params reset
by declared dependencies when a setting they depend on changes. Binning to a target density (``target_density``
or ``target_density_from``) replaces ``bin_size`` by a number of patches chosen per binned frame (:mod:`.target`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import param

from imagebinner.errors import ParameterError
from imagebinner.io import atomic_group, check_outputs, write_locs
from imagebinner.tools.base import Task
from imagebinner.tools.binner.assembly import (
    BinnedFrame,
    PatchReader,
    binned_frame,
    binned_labels,
    patch_locs,
    write_binned_tif,
)
from imagebinner.tools.binner.compose import compose_plan
from imagebinner.tools.binner.inputs import GlobalIndex, Measurement, check_settings, input_files, load_measurements
from imagebinner.tools.binner.notebook import check_frame_count, localization_precision, suggested_settings
from imagebinner.tools.binner.pool import Pool, PoolSettings, count_qualifying, draw_pool
from imagebinner.tools.binner.provenance import provenance_record, provenance_text, with_outputs
from imagebinner.tools.binner.summary import statistics, summary_lines
from imagebinner.tools.binner.target import (
    SPREADS,
    TestDensity,
    compose_to_targets,
    emitters_per_frame,
    frame_targets,
    measure_test_density,
    parse_target,
)
from imagebinner.tools.settings import CameraSettings, OutputFolder

OUTPUT_SUFFIXES = (".tif", ".tiff", ".csv", ".json")  # data files the output folder must not hold besides ours


class Binner(Task, CameraSettings, OutputFolder):
    """Sum random patches of several measurements into dense binned frames with correct DeepSTORM labels.

    A pool of ``n_patches`` distinct patches with at least ``min_emitters`` localizations is drawn uniformly; each
    binned frame is the sum of ``bin_size`` distinct, non-overlapping pool patches minus ``camera_offset *
    (bin_size - 1)`` and its labels are the union of its parts' localizations (patch-local nm). With a target
    density, each binned frame takes as many patches as its target needs instead of ``bin_size``.
    """

    inputs = ("measurements", "target_density_from", "test_movie")
    settings = ("pixel_size", "camera_offset", "patch_size", "n_patches", "n_binned", "bin_size", "target_density",
                "target_spread", "min_emitters", "seed", "reuse_patches", "output_dtype", "half_pixel",
                "max_attempts")
    outputs = ("output_folder", "output_name", "overwrite")
    actions = {"request_load": "load", "request_preview": "compose", "request_save": "save"}

    # -- inputs and settings --------------------------------------------------------------------------------
    measurements = param.List(
        default=[],
        item_type=tuple,
        doc="Measurements as (movie path, localizations) pairs; the localizations are a file in any supported "
        "format (Picasso HDF5, ThunderSTORM CSV, DeepSTORM CSV, ...; formats may be mixed) or a LocTable.",
    )
    camera_offset = param.Number(
        default=100,
        bounds=(0, None),
        doc="Camera offset (baseline) in ADU; subtracted (bin_size - 1) times so a binned frame keeps it once.",
    )
    patch_size = param.Integer(
        default=27,
        bounds=(1, None),
        doc="Patch edge in camera pixels; export P_ds + 1 to train Deep-STORM with patch_size P_ds.",
    )
    n_patches = param.Integer(default=200, bounds=(1, None), doc="Number of patches in the pool the sums draw from.")
    n_binned = param.Integer(default=100, bounds=(1, None), doc="Number of binned frames to produce.")
    bin_size = param.Integer(default=10, bounds=(1, None),
                             doc="Number of patches summed into one binned frame (unless a target density is given).")
    target_density = param.String(
        default="",
        doc="Target density of the binned frames in emitters per µm² of the binned frame, instead of bin_size: one "
        "value (12) or a range low:high (5:20) over which the binned frames spread; empty = bin_size.",
    )
    target_spread = param.Selector(
        default="even",
        objects=list(SPREADS),
        doc="How the binned frames' targets fill the target: even = evenly spaced over the range (from a test "
        "movie: its mean density); test = following the test movie's per-frame densities (their quantiles).",
    )
    target_density_from = param.String(
        default="",
        doc="Localizations of a test movie whose measured density becomes the target (instead of target_density); "
        "empty = none.",
    )
    test_movie = param.String(
        default="",
        doc="The movie of target_density_from (its image area and frame count); empty = from the localization "
        "file's metadata.",
    )
    min_emitters = param.Integer(
        default=2, bounds=(0, None), doc="Minimum localizations a patch needs to enter the pool."
    )
    seed = param.Integer(
        default=None,
        allow_None=True,
        bounds=(0, None),
        doc="Random seed; the same seed gives identical outputs. Empty = a fresh seed (recorded in the JSON).",
    )
    reuse_patches = param.Boolean(
        default=True,
        doc="Allow a pool patch in several binned frames (needed when n_binned*bin_size > n_patches); within one "
        "binned frame patches are always distinct and never overlap.",
    )
    output_dtype = param.Selector(
        default="uint16",
        objects=["uint16", "float32"],
        doc="Pixel type of the binned TIF: uint16 (sums rounded and clipped to 0..65535, clipped pixels counted) "
        "or float32.",
    )
    max_attempts = param.Integer(
        default=2_000_000,
        bounds=(1, None),
        doc="Random windows tested (rejection sampling) before switching to exact sampling among the qualifying "
        "windows (sparse data); the result stays a uniform draw either way.",
    )
    output_name = param.String(default="binned", doc="Base name of the output files (<name>.tif/.csv/.json).")

    # -- actions --------------------------------------------------------------------------------------------
    request_load = param.Event(label="Load", doc="Load the measurements (movies opened lazily, tables read).")
    request_preview = param.Event(label="Preview", doc="Draw the pool and compose the binned frames (no files).")
    request_save = param.Event(label="Run", doc="Write the binned TIF, the training CSV and the JSON provenance.")

    # -- results (constant) ---------------------------------------------------------------------------------
    loaded = param.List(default=[], constant=True, doc="Loaded measurements (Measurement), [] before load.")
    pixel_size_used = param.Number(default=None, allow_None=True, constant=True,
                                   doc="Pixel size (nm) of the loaded measurements (given or from their metadata).")
    pool = param.ClassSelector(class_=Pool, default=None, allow_None=True, constant=True,
                               doc="The drawn patch pool, None until drawn (or after a setting it depends on changed).")
    plan = param.Array(default=None, allow_None=True, constant=True,
                       doc="(n_binned, bin_size) pool indices of every binned frame; None until composed (or stale).")
    stats = param.Dict(default={}, constant=True, doc="Statistics of the loaded measurements, the pool and the plan.")
    clipped_pixels = param.Integer(default=0, constant=True, doc="Pixels clipped to the uint16 range in the output.")
    written_paths = param.List(default=[], constant=True, doc="Files written by the last save.")
    seed_used = param.Integer(default=None, allow_None=True, constant=True,
                              doc="Seed of the current pool (kept for redraws while the inputs stay the same).")
    frame_targets = param.Array(default=None, allow_None=True, constant=True,
                                doc="Target density (per µm²) of every binned frame of the plan; None with bin_size.")
    notebook_settings = param.Dict(
        default={}, constant=True,
        doc="Deep-STORM notebook settings that fit the output: patch_size, num_patches_per_frame, upsampling_factor "
        "(hr pixel ≈ localization precision), pixel_size (as the notebook reads it from the TIF).")

    def __init__(self, **params: Any):
        super().__init__(**params)
        self._index: GlobalIndex | None = None  # all localizations of `loaded`, concatenated
        self._reader: PatchReader | None = None  # pixels of the pool's patches (cached while saving)
        self._test: TestDensity | None = None  # densities of the test movie (target_density_from)
        self._precision: float | None = None  # median localization precision of the measurements (nm)

    # -- invalidation by declared dependencies ----------------------------------------------------------------
    @param.depends("measurements", "pixel_size", "half_pixel", watch=True)
    def _inputs_changed(self) -> None:
        self._forget_inputs()

    @param.depends("patch_size", "n_patches", "min_emitters", "seed", "max_attempts", watch=True)
    def _pool_settings_changed(self) -> None:
        self._reader = None
        self._update(pool=None, plan=None)

    @param.depends("n_binned", "bin_size", "reuse_patches", "camera_offset", "output_dtype", "target_density",
                   "target_spread", watch=True)
    def _plan_settings_changed(self) -> None:
        self._update(plan=None)

    @param.depends("target_density_from", "test_movie", watch=True)
    def _test_changed(self) -> None:
        self._test = None
        self._update(plan=None)

    @param.depends("plan", watch=True)
    def _plan_changed(self) -> None:
        if self.plan is None:
            self._update(frame_targets=None)

    @param.depends("loaded", "pool", "plan", watch=True)
    def _publish_stats(self) -> None:
        self._update(stats=self.statistics(), notebook_settings=self.suggested_notebook_settings())

    def _forget_inputs(self) -> None:
        for m in self.loaded:
            m.movie.close()
        self._index = self._reader = self._test = self._precision = None
        self._update(loaded=[], pixel_size_used=None, pool=None, plan=None, seed_used=None)

    def close(self) -> None:
        """Close the movies (the next step loads them again)."""
        self._forget_inputs()

    # -- steps --------------------------------------------------------------------------------------------------
    def _steps(self, steps: list[tuple[str, Callable[[], Any]]], done: Callable[[Any], str]) -> Any:
        """Run ``(status, step)`` pairs as one job with a progress step each; inside a running job (``save``) the
        steps just run. Returns the last step's result."""
        result = None
        if self.running:
            for _, step in steps:
                result = step()
            return result
        with self._job(len(steps), steps[0][0]):
            for k, (status, step) in enumerate(steps):
                self._update(progress=k, status=status)
                result = step()
            self._update(progress=len(steps), status=done(result))
        return result

    def load(self) -> list[Measurement]:
        """Open the movies lazily, read the tables, agree on one pixel size and validate (kept until an input
        setting changes)."""
        if self.loaded:
            return list(self.loaded)
        return self._steps([("loading the measurements", self._load)],
                           lambda ms: f"loaded {len(ms)} measurement(s)")

    def _load(self) -> list[Measurement]:
        if not self.loaded:
            ms, ps = load_measurements(self.measurements, self.pixel_size, self.half_pixel)
            self._index = GlobalIndex.build(ms, ps)
            self._precision = localization_precision(self._index.extra, ps)
            self._update(loaded=ms, pixel_size_used=ps)
        return list(self.loaded)

    def _check_settings(self) -> None:
        bin_size = 1 if self.targets_density else self.bin_size  # (with a target, the parts are chosen per frame)
        check_settings(self._load(), self.patch_size, self.n_patches, self.n_binned, bin_size, self.reuse_patches)

    @property
    def targets_density(self) -> bool:
        """True when binning to a target density (``target_density`` or ``target_density_from`` given)."""
        return bool(self.target_density.strip() or self.target_density_from.strip())

    def test_density(self) -> TestDensity | None:
        """Per-frame densities of the test movie (``target_density_from``), measured once; None without one."""
        if not self.target_density_from.strip():
            return None
        if self._test is None:
            self._test = measure_test_density(self.target_density_from, self.test_movie.strip() or None,
                                              self.pixel_size, self.half_pixel, self.pixel_size_used)
        return self._test

    def _resolved_seed(self) -> int:
        if self.seed is not None:
            return int(self.seed)
        if self.seed_used is not None:
            return int(self.seed_used)
        return int(np.random.SeedSequence().entropy % (2**32))

    def draw_pool(self) -> Pool:
        """Draw ``n_patches`` distinct qualifying windows uniformly (see :func:`~.pool.draw_pool`)."""
        if self.pool is not None:
            return self.pool
        return self._steps([("loading the measurements", self._load), ("drawing the patch pool", self._draw)],
                           lambda p: f"drew a pool of {len(p)} patches")

    def _draw(self) -> Pool:
        if self.pool is None:
            self._check_settings()
            seed = self._resolved_seed()
            settings = PoolSettings(self.patch_size, self.n_patches, self.min_emitters, self.max_attempts, seed)
            drawn = draw_pool(self._index, settings, np.random.default_rng(seed))
            self._reader = PatchReader(self.loaded, drawn, self.patch_size)
            self._update(pool=drawn, seed_used=seed)
        return self.pool

    def count_qualifying_windows(self) -> int:
        """Exact number of valid windows holding at least ``min_emitters`` localizations (all measurements)."""
        self.load()
        return count_qualifying(self._index, self.patch_size, self.min_emitters)

    def compose(self) -> np.ndarray:
        """Assign pool patches to binned frames: an ``(n_binned, bin_size)`` array of pool indices.

        Within a binned frame the patches are distinct and no two windows of the same (measurement, frame)
        overlap (they would duplicate labels). With ``reuse_patches`` off, every pool patch is used at most once.
        """
        if self.plan is not None:
            return self.plan
        return self._steps(
            [("loading the measurements", self._load), ("drawing the patch pool", self._draw),
             ("composing the binned frames", self._compose)],
            lambda plan: f"composed {len(plan)} binned frames of {plan.shape[1]} patches",
        )

    def _compose(self) -> np.ndarray:
        if self.plan is None:
            drawn = self._draw()
            self._check_settings()
            rng = np.random.default_rng([int(drawn.seed), 1])
            if not self.targets_density:
                plan = compose_plan(drawn, self.patch_size, self.n_binned, self.bin_size, self.reuse_patches, rng)
                self._update(plan=plan)
                return self.plan
            targets = frame_targets(self.n_binned, parse_target(self.target_density), self.test_density(),
                                    self.target_spread, np.random.default_rng([int(drawn.seed), 2]))
            plan = compose_to_targets(drawn, self.patch_size, self.pixel_size_used, targets, self.reuse_patches, rng)
            self._update(frame_targets=targets, plan=plan)
        return self.plan

    # -- views of the current plan ------------------------------------------------------------------------------
    def binned_frame(self, j: int) -> BinnedFrame:
        """Binned frame ``j`` (0-based): sum of its parts minus ``camera_offset*(bin_size-1)``, labels, parts."""
        plan = self.compose()
        if not 0 <= j < len(plan):
            raise IndexError(f"binned frame {j} outside 0..{len(plan) - 1}")
        return binned_frame(j, self._index, self._reader, plan, self.camera_offset, self.output_dtype)

    def patch_locs(self, pool_index: int | Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Patch-local localizations of one pool patch (x, y in nm within ``[0, P*ps)``, plus optional columns);
        ``pool_index`` may also be a part of :meth:`binned_frame` (its ``pool_index``)."""
        k = int(pool_index["pool_index"]) if isinstance(pool_index, Mapping) else int(pool_index)
        drawn = self.draw_pool()
        if not 0 <= k < len(drawn):
            raise IndexError(f"pool patch {k} outside 0..{len(drawn) - 1}")
        cols, _ = patch_locs(self._index, drawn, np.array([k]), self.patch_size)
        return cols

    def patch_image(self, pool_index: int | Mapping[str, Any]) -> np.ndarray:
        """Pixels of one pool patch, read lazily from its movie (stored dtype, native order)."""
        k = int(pool_index["pool_index"]) if isinstance(pool_index, Mapping) else int(pool_index)
        self.draw_pool()
        return self._reader.image(k)

    def emitters_per_binned_frame(self) -> np.ndarray:
        """Emitters (labels) of every binned frame of the current plan (frames may hold different numbers of
        parts: rows of ``plan`` are padded with -1); empty without a plan."""
        if self.plan is None or self.pool is None:
            return np.zeros(0, dtype=np.int64)
        return emitters_per_frame(self.pool, self.plan)

    def binned_locs(self) -> Any:
        """Labels of all binned frames (LocTable: frame = 0-based binned frame number, patch-local nm)."""
        plan = self.compose()
        return binned_labels(self._index, self.pool, plan, self.patch_size)

    def statistics(self) -> dict:
        """Statistics so far (see :func:`~.summary.statistics`): per measurement, pool draw, binned frames."""
        return statistics(self.loaded, self.pixel_size_used, self.pool, self.plan, self.patch_size,
                          self.frame_targets if self.plan is not None else None, self._test)

    def suggested_notebook_settings(self, tif_path: str | Path | None = None) -> dict:
        """The Deep-STORM notebook settings that fit the output (see :mod:`.notebook`); {} before loading."""
        if not self.loaded:
            return {}
        return suggested_settings(self.patch_size, self.pixel_size_used, self._precision, tif_path)

    def summary_lines(self) -> list[str]:
        """Human-readable statistics and the suggested notebook settings (for the CLI)."""
        return summary_lines(self.statistics(), self.clipped_pixels, self.written_paths,
                             self.notebook_settings if self.loaded else None)

    def provenance(self) -> dict:
        """Parameters, inputs (path, size, mtime) and the parts of every binned frame (JSON-ready)."""
        plan = self.compose()  # provenance describes the current plan
        parameters = self.settings_record()
        parameters.update(pixel_size=self.pixel_size_used, seed=int(self.pool.seed), seed_given=self.seed)
        pool_stats = {k: v for k, v in self.statistics().get("pool", {}).items() if k != "density_per_patch_per_um2"}
        target = None
        if self.targets_density:
            test = self.test_density()
            target = {"target_density": self.target_density, "target_spread": self.target_spread,
                      "test": test.record() if test is not None else None,
                      "rule": "per binned frame: patches along a random permutation of the pool until their "
                      "emitters are nearest to target_density * (patch_size*pixel_size)^2"}
        return provenance_record(parameters, self.loaded, self.pool.table(), plan, pool_stats, target,
                                 self.frame_targets if target is not None else None)

    # -- saving -----------------------------------------------------------------------------------------------
    def output_paths(self) -> list[Path]:
        """The three outputs: ``<output_folder>/<output_name>.tif``, ``.csv`` and ``.json``."""
        if not self.output_folder:
            raise ParameterError("no output folder given; set output_folder", params=["output_folder"])
        name = self.output_name or "binned"
        if any(ch in name for ch in "/\\") or name in (".", ".."):
            raise ParameterError(f"output_name must be a plain file name, got {name!r}", params=["output_name"])
        folder = Path(self.output_folder)
        return [folder / f"{name}.tif", folder / f"{name}.csv", folder / f"{name}.json"]

    def check_outputs(self) -> list[Path]:
        """Raise before any work when the folder is a file or holds other data files, an output is an input (or
        its sidecar) or exists (without ``overwrite``); returns the targets."""
        targets = self.output_paths()
        check_frame_count(self.n_binned, targets[0])
        folder = targets[0].parent
        if folder.exists() and not folder.is_dir():
            raise ParameterError("output folder is a file; choose a folder", folder, params=["output_folder"])
        test_files = [Path(p) for p in (self.target_density_from, self.test_movie) if p.strip()]
        check_outputs(targets, input_files(self.measurements) + test_files, self.overwrite)
        if folder.is_dir():
            others = sorted(
                p.name for p in folder.iterdir()
                if p.suffix.lower() in OUTPUT_SUFFIXES and p not in targets and not p.name.startswith(".")
            )
            if others:
                raise ParameterError(
                    f"output folder already holds other data files ({', '.join(others[:3])}"
                    f"{', ...' if len(others) > 3 else ''}); the notebook needs exactly one TIF and one CSV there: "
                    "choose an empty folder",
                    folder,
                    params=["output_folder"],
                )
        return targets

    def save(self) -> list[Path]:
        """Check the outputs, load, draw and compose what is missing, then write the binned TIF, the DeepSTORM
        training CSV and the JSON provenance atomically; returns the written paths.

        Reports one job from its first step: the checks and loading, the draw, composing and labelling, then one
        step per binned frame. The TIF is written in one contiguous write when the binned movie is small, else
        streamed frame by frame (bounded memory)."""
        with self._job(self.n_binned + 3, status="checking the outputs"):
            targets = self.check_outputs()
            self._update(status="loading the measurements")
            self._load()
            self._update(progress=1, status="drawing the patch pool")
            self._draw()
            self._update(progress=2, status="composing the binned frames")
            plan = self._compose()
            labels = self.binned_locs()
            record = self.provenance()
            self._update(progress=3, status="writing binned frames")
            with atomic_group(targets, overwrite=self.overwrite) as (tmp_tif, tmp_csv, tmp_json):
                self._reader.prefetch(plan[plan >= 0])
                clipped = write_binned_tif(tmp_tif, self._reader, plan, self.camera_offset,
                                                    self.output_dtype, self.pixel_size_used, self._advance)
                write_locs(labels, tmp_csv, format="deepstorm", overwrite=True)
                notebook = self.suggested_notebook_settings(tmp_tif)  # as the notebook reads the written TIF
                outputs = {"tif": targets[0].name, "csv": targets[1].name, "clipped_pixels": int(clipped),
                           "n_labels": int(len(labels)), "notebook_settings": notebook}
                tmp_json.write_text(provenance_text(with_outputs(record, outputs)))
            self._update(
                clipped_pixels=int(clipped),
                written_paths=[str(t) for t in targets],
                notebook_settings=notebook,
                status=f"wrote {len(plan)} binned frames ({len(labels)} localizations) to {targets[0].parent}",
            )
        if clipped:
            warnings.warn(f"{targets[0]}: {clipped} pixel(s) clipped to the uint16 range 0..65535", stacklevel=2)
        return targets
