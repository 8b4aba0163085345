"""Binning to a target density: the target per binned frame, the pool's reachable range, and a plan whose frames
hold as many patches as their target needs.

A binned frame's density is its emitters (the sum of its parts' localizations) per µm² of the binned frame
(``(patch_size * pixel_size)²``). Plans of frames with different numbers of parts are ``(n_binned, most parts)``
arrays padded with ``-1`` at the end of each row (:data:`NO_PART`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from imagebinner.errors import ParameterError
from imagebinner.tools.binner.compose import conflicts_of
from imagebinner.tools.binner.pool import Pool

NO_PART = -1  # padding of a plan row beyond the frame's parts
SPREADS = ("even", "test")


def parse_target(text: str | None) -> tuple[float, float] | None:
    """``"12"`` -> (12, 12), ``"5:20"`` -> (5, 20), empty -> None; emitters per µm², positive, low <= high."""
    text = (text or "").strip()
    if not text:
        return None
    parts = text.split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(parts) not in (1, 2) or len(values) != len(parts) or not all(np.isfinite(v) and v > 0 for v in values):
        raise ParameterError(f"target_density must be a positive number or a range low:high (emitters per µm²), "
                             f"got {text!r}", params=["target_density"])
    low, high = values[0], values[-1]
    if low > high:
        raise ParameterError(f"target_density range {text!r} is reversed; write low:high", params=["target_density"])
    return low, high


@dataclasses.dataclass(frozen=True)
class TestDensity:
    """Per-frame emitter densities measured on a test movie's localizations (every frame, empty ones included)."""

    locs_path: str
    movie_path: str | None
    pixel_size: float
    shape: tuple[int, int]
    per_frame: np.ndarray  # localizations per µm² of each frame of the test movie

    @property
    def area_um2(self) -> float:
        return self.shape[0] * self.shape[1] * (self.pixel_size / 1000.0) ** 2

    @property
    def mean(self) -> float:
        return float(self.per_frame.mean()) if len(self.per_frame) else 0.0

    def record(self) -> dict:
        """JSON-ready summary (provenance)."""
        from imagebinner.io import file_signature

        return {
            "locs": file_signature(Path(self.locs_path)),
            "movie": file_signature(Path(self.movie_path)) if self.movie_path else None,
            "pixel_size": self.pixel_size, "shape": list(self.shape), "n_frames": int(len(self.per_frame)),
            "area_um2": self.area_um2, "mean_density_per_um2": self.mean,
        }


def measure_test_density(locs_path: str, movie_path: str | None, pixel_size: float | None, half_pixel: bool,
                         fallback_pixel_size: float | None) -> TestDensity:
    """Localizations per µm² in every frame of a test movie: the area and frame count come from ``movie_path``
    (opened lazily), else from the localization file's metadata; the pixel size from ``pixel_size``, the movie, the
    file, or ``fallback_pixel_size`` (the measurements')."""
    from imagebinner.io import open_movie, read_locs

    table = read_locs(locs_path, pixel_size=pixel_size, half_pixel=half_pixel)
    shape, n_frames, ps = table.meta.image_shape, table.meta.n_frames, table.pixel_size
    if movie_path:
        with open_movie(movie_path, pixel_size=pixel_size) as movie:
            shape, n_frames, ps = movie.shape, movie.n_frames, movie.pixel_size or ps
    elif shape is None or n_frames is None:
        raise ParameterError("the localizations name no image size and frame count; give test_movie (the movie "
                             "they were measured on)", locs_path, params=["test_movie"])
    ps = ps or fallback_pixel_size
    if not ps:
        raise ParameterError("no pixel size for the test movie; give pixel_size", locs_path, params=["pixel_size"])
    if len(table) and int(table.frame[-1]) >= n_frames:
        raise ParameterError(f"localizations in frames up to {int(table.frame[-1])} (0-based) but the test movie "
                             f"has {n_frames} frames (wrong pair or frame base?)", locs_path)
    counts = np.bincount(np.asarray(table.frame, dtype=np.int64), minlength=int(n_frames))
    area = shape[0] * shape[1] * (float(ps) / 1000.0) ** 2
    return TestDensity(str(locs_path), str(movie_path) if movie_path else None, float(ps),
                       (int(shape[0]), int(shape[1])), counts / area)


def frame_targets(n_binned: int, target: tuple[float, float] | None, test: TestDensity | None, spread: str,
                  rng: np.random.Generator) -> np.ndarray:
    """Target density (per µm²) of every binned frame, in a random order drawn from ``rng``.

    ``even``: evenly spaced over ``target`` (both ends included; a single value: all equal; from a test movie: its
    mean density). ``test``: the quantiles ``(k + 0.5) / n_binned`` of the test movie's per-frame densities, so the
    binned frames follow its distribution.
    """
    if spread not in SPREADS:
        raise ParameterError(f"target_spread must be one of {', '.join(SPREADS)}", params=["target_spread"])
    if target is not None and test is not None:
        raise ParameterError("give target_density or target_density_from, not both",
                             params=["target_density", "target_density_from"])
    if spread == "test":
        if test is None:
            raise ParameterError("target_spread 'test' follows a test movie: give target_density_from",
                                 params=["target_spread", "target_density_from"])
        values = np.quantile(test.per_frame, (np.arange(n_binned) + 0.5) / n_binned)
    else:
        low, high = target if target is not None else (test.mean, test.mean)
        values = np.linspace(low, high, n_binned) if n_binned > 1 else np.array([(low + high) / 2])
    if not (values > 0).all():
        raise ParameterError("the test movie's density is 0 in some of the targeted frames (empty frames); use "
                             "target_spread 'even' (its mean) or a target_density range",
                             params=["target_spread", "target_density_from"])
    return rng.permutation(values)


def frame_area_um2(patch_size: int, pixel_size: float) -> float:
    """Area of one binned frame in µm²."""
    return (patch_size * pixel_size / 1000.0) ** 2


def reachable_range(pool: Pool, patch_size: int, pixel_size: float, conflicts: dict | None = None
                    ) -> tuple[float, float]:
    """Densities (per µm²) a binned frame of this pool can reach: one sparsest patch, up to the densest set of
    non-overlapping patches (greedy by emitters, largest first). Targets down to half the sparsest patch are
    served by it (nearest)."""
    conflicts = conflicts_of(pool, patch_size) if conflicts is None else conflicts
    order = np.argsort(-pool.n_locs, kind="stable").tolist()
    total = _fill(order, np.inf, pool.n_locs, conflicts)[1]
    area = frame_area_um2(patch_size, pixel_size)
    return float(pool.n_locs.min()) / area, float(total) / area


def _fill(order: list[int], goal: float, n_locs: np.ndarray, conflicts: dict[int, set[int]]
          ) -> tuple[list[int], int, bool]:
    """Patches taken along ``order`` (skipping those overlapping one taken) until their emitters are nearest to
    ``goal``: a patch that overshoots is taken when that is nearer than stopping (a first patch is always looked
    for among those at most ``2 * goal``). Returns the parts, their emitters and whether the goal was reached
    (False: ``order`` ran out below it)."""
    chosen: list[int] = []
    blocked: set[int] = set()
    total = 0
    for idx in order:
        if idx in blocked:
            continue
        n = int(n_locs[idx])
        if total + n > goal:
            if total + n - goal >= goal - total:
                if chosen:
                    return chosen, total, True
                continue  # a first patch far above the goal: look for a smaller one
            chosen.append(idx)
            return chosen, total + n, True
        chosen.append(idx)
        total += n
        hit = conflicts.get(idx)
        if hit:
            blocked |= hit
    return chosen, total, total >= goal


def compose_to_targets(pool: Pool, patch_size: int, pixel_size: float, targets: np.ndarray, reuse_patches: bool,
                       rng: np.random.Generator) -> np.ndarray:
    """A plan whose binned frame ``j`` sums the patches, taken along a fresh random permutation of the pool (of the
    unused patches without ``reuse_patches``), whose emitters come nearest to ``targets[j]`` × the frame area; no
    two parts of a frame overlap. Padded with :data:`NO_PART`; fails fast when a target is out of reach."""
    conflicts = conflicts_of(pool, patch_size)
    low, high = reachable_range(pool, patch_size, pixel_size, conflicts)
    area = frame_area_um2(patch_size, pixel_size)
    # below the sparsest patch, one patch is still nearest down to half of it
    if targets.max() > high * (1 + 1e-9) or targets.min() <= low / 2:
        raise ParameterError(
            f"target_density {targets.min():.4g}–{targets.max():.4g} per µm² is out of reach: binned frames of this "
            f"pool ({len(pool)} patches of {patch_size}x{patch_size} px) reach {low:.4g}–{high:.4g} per µm²; "
            "change the target, raise n_patches or patch_size, or lower min_emitters",
            params=["target_density", "n_patches", "patch_size", "min_emitters"])
    goals = targets * area
    if not reuse_patches and goals.sum() > pool.n_locs.sum():
        raise ParameterError(
            f"without reuse_patches the pool's {int(pool.n_locs.sum())} emitters cannot fill {len(goals)} binned "
            f"frames of mean density {targets.mean():.4g} per µm² ({goals.sum():.0f} emitters); allow reuse_patches, "
            "raise n_patches or lower n_binned", params=["reuse_patches", "n_patches", "n_binned"])
    rows: list[list[int]] = []
    remaining = rng.permutation(len(pool)).tolist() if not reuse_patches else None
    mean_locs = max(float(pool.n_locs.mean()), 1e-9)
    for j, goal in enumerate(goals.tolist()):
        if reuse_patches:
            permutation = rng.permutation(len(pool))
            head = int(4 * goal / mean_locs) + 64  # usually enough; the whole permutation when not
            chosen, total, reached = _fill(permutation[:head].tolist(), goal, pool.n_locs, conflicts)
            if not reached and head < len(pool):
                chosen, total, reached = _fill(permutation.tolist(), goal, pool.n_locs, conflicts)
        else:
            chosen, total, reached = _fill(remaining, goal, pool.n_locs, conflicts)
        if reuse_patches and not reached:  # ran out along this order (overlaps): densest patches first
            chosen, total, reached = _fill(np.argsort(-pool.n_locs, kind="stable").tolist(), goal, pool.n_locs,
                                           conflicts)
        if not reached:
            raise ParameterError(
                f"binned frame {j + 1}: the {'unused ' if not reuse_patches else ''}pool patches cannot reach "
                f"{goal / area:.4g} per µm² (reachable {low:.4g}–{high:.4g}); allow reuse_patches or raise n_patches",
                params=["reuse_patches", "n_patches", "target_density"])
        if not reuse_patches:
            taken = set(chosen)
            remaining = [k for k in remaining if k not in taken]
        rows.append(chosen)
    plan = np.full((len(rows), max(len(r) for r in rows)), NO_PART, dtype=np.int64)
    for j, r in enumerate(rows):
        plan[j, : len(r)] = r
    plan.setflags(write=False)
    return plan


def parts_per_frame(plan: np.ndarray) -> np.ndarray:
    """Number of parts of each binned frame of a (possibly padded) plan."""
    return (np.asarray(plan) != NO_PART).sum(axis=1)


def emitters_per_frame(pool: Pool, plan: np.ndarray) -> np.ndarray:
    """Emitters (labels) of each binned frame of a (possibly padded) plan."""
    plan = np.asarray(plan)
    return np.where(plan != NO_PART, pool.n_locs[np.maximum(plan, 0)], 0).sum(axis=1)
