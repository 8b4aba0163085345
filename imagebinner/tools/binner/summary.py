"""The Binner's statistics (per measurement, pool draw, emitters per binned frame) and their summary text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from imagebinner.tools.binner.inputs import Measurement
from imagebinner.tools.binner.notebook import settings_line
from imagebinner.tools.binner.pool import Pool
from imagebinner.tools.binner.target import TestDensity, emitters_per_frame, frame_area_um2, parts_per_frame


def statistics(
    ms: Sequence[Measurement], ps: float | None, pool: Pool | None, plan: np.ndarray | None, patch_size: int,
    targets: np.ndarray | None = None, test: TestDensity | None = None,
) -> dict[str, Any]:
    """Statistics so far: per measurement localizations per frame and density; pool draw; emitters per frame;
    with a target density, the per-frame targets next to the achieved densities (and the test movie's).

    ``measurements[i]["locs_per_frame"]`` counts every frame (empty frames included); density is localizations per
    µm² of the whole image (area = height*width*ps²) averaged over all frames.
    """
    out: dict[str, Any] = {"pixel_size": ps, "measurements": []}
    for m in ms:
        per_frame = m.locs_per_frame()
        height, width = m.shape
        area_um2 = height * width * (ps / 1000.0) ** 2
        out["measurements"].append(
            {
                "index": m.index,
                "movie": str(m.movie_path),
                "locs": str(m.locs_path) if m.locs_path else None,
                "n_frames": int(m.n_frames),
                "shape": [int(height), int(width)],
                "n_locs": int(len(m.table)),
                "dropped_outside": int(m.n_dropped_outside),
                "empty_frames": int(np.count_nonzero(per_frame == 0)),
                "locs_per_frame": per_frame,
                "mean_locs_per_frame": float(per_frame.mean()) if len(per_frame) else 0.0,
                "density_per_um2": float(per_frame.mean() / area_um2) if len(per_frame) else 0.0,
                "density_per_frame_per_um2": per_frame / area_um2,
            }
        )
    if test is not None:
        out["test"] = {"locs": test.locs_path, "movie": test.movie_path, "n_frames": int(len(test.per_frame)),
                       "density_per_um2": test.mean, "density_per_frame_per_um2": test.per_frame}
    if pool is not None:
        area = frame_area_um2(patch_size, ps)
        out["pool"] = dict(pool.draw_stats, n_patches=len(pool), mean_locs_per_patch=float(pool.n_locs.mean()),
                           density_per_patch_per_um2=pool.n_locs / area)
        if plan is not None:
            emitters = emitters_per_frame(pool, plan)
            parts = parts_per_frame(plan)
            out["binned"] = {
                "n_binned": int(len(plan)),
                "emitters_per_frame": emitters,
                "parts_per_frame": parts,
                "mean_emitters": float(emitters.mean()),
                "min_emitters": int(emitters.min()),
                "max_emitters": int(emitters.max()),
                "density_per_um2": float(emitters.mean() / area),
                "density_per_frame_per_um2": emitters / area,
            }
            if targets is not None:
                achieved = emitters / area
                out["target"] = {
                    "density_per_frame_per_um2": np.asarray(targets, dtype=np.float64),
                    "mean_target": float(np.mean(targets)),
                    "mean_achieved": float(achieved.mean()),
                    "min_target": float(np.min(targets)),
                    "max_target": float(np.max(targets)),
                    "min_achieved": float(achieved.min()),
                    "max_achieved": float(achieved.max()),
                    "min_parts": int(parts.min()),
                    "max_parts": int(parts.max()),
                }
    return out


def summary_lines(stats: dict[str, Any], clipped_pixels: int, written_paths: Sequence[str],
                  notebook: dict[str, Any] | None = None) -> list[str]:
    """Human-readable statistics (for the CLI), and the suggested notebook settings when given."""
    lines = [f"pixel size: {stats['pixel_size']:g} nm"]
    for m in stats["measurements"]:
        lpf = m["locs_per_frame"]
        lines.append(
            f"measurement {m['index'] + 1}: {Path(m['movie']).name}: {m['n_frames']} frames of "
            f"{m['shape'][0]}x{m['shape'][1]} px, {m['n_locs']} locs, "
            f"{m['mean_locs_per_frame']:.3g} locs/frame (min {int(lpf.min(initial=0))}, "
            f"max {int(lpf.max(initial=0))}, {m['empty_frames']} empty frames), "
            f"density {m['density_per_um2']:.4g} locs/µm²"
            + (f", {m['dropped_outside']} outside the image dropped" if m["dropped_outside"] else "")
        )
    if "pool" in stats:
        p = stats["pool"]
        lines.append(
            f"pool: {p['n_patches']} patches, {p['mean_locs_per_patch']:.3g} locs/patch; {p['draws']} windows drawn "
            f"in {p['candidate_frames']} candidate frames, {p['accepted']} accepted "
            f"(acceptance rate {p['acceptance_rate']:.3g})"
        )
    if "binned" in stats:
        b = stats["binned"]
        lines.append(
            f"binned: {b['n_binned']} frames, emitters per frame mean {b['mean_emitters']:.3g} "
            f"(min {b['min_emitters']}, max {b['max_emitters']}), {b['density_per_um2']:.4g} locs/µm²"
        )
    if "test" in stats:
        t = stats["test"]
        lines.append(f"test movie: {Path(t['locs']).name}: {t['n_frames']} frames, density "
                     f"{t['density_per_um2']:.4g} locs/µm²")
    if "target" in stats:
        t = stats["target"]
        lines.append(
            f"target density: mean {t['mean_target']:.4g} ({t['min_target']:.4g}–{t['max_target']:.4g}) per µm²; "
            f"achieved mean {t['mean_achieved']:.4g} ({t['min_achieved']:.4g}–{t['max_achieved']:.4g}) with "
            f"{t['min_parts']}–{t['max_parts']} patches per binned frame"
        )
    if notebook is not None:
        lines.append(settings_line(notebook))
    if written_paths:
        lines.append(f"clipped pixels: {clipped_pixels}")
        lines.extend(f"wrote {p}" for p in written_paths)
    return lines
