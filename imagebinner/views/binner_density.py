"""The target density next to the result: box plots of the test movie's, the targeted and the binned frames' densities.

Built from the Binner's published statistics (``stats``: ``test``, ``target`` and ``binned`` entries, densities per
µm² of a frame), so the plot follows every preview or run and never reads a movie.
"""

from __future__ import annotations

import holoviews as hv
import numpy as np

from imagebinner.tools.binner import Binner
from imagebinner.views.frames import DENSITY_LABEL, density_boxes

TEST_GROUP = "test movie"
TARGET_GROUP = "target"
BINNED_GROUP = "binned frames"
NO_DATA_GROUP = "(no target or plan yet)"
MEAN_OPTS = dict(color="#d62728", line_dash="dashed", line_width=1.5)


def target_density_groups(stats: dict) -> dict[str, np.ndarray]:
    """Densities per frame (per µm²) by group, in the order test movie, target, binned frames (those present)."""
    groups: dict[str, np.ndarray] = {}
    if "test" in stats:
        groups[TEST_GROUP] = np.asarray(stats["test"]["density_per_frame_per_um2"], dtype=np.float64)
    if "target" in stats:
        groups[TARGET_GROUP] = np.asarray(stats["target"]["density_per_frame_per_um2"], dtype=np.float64)
    if "binned" in stats:
        groups[BINNED_GROUP] = np.asarray(stats["binned"]["density_per_frame_per_um2"], dtype=np.float64)
    return groups


def target_density_element(binner: Binner) -> hv.Overlay:
    """Box plots of the test movie's per-frame densities, the binned frames' targets and the densities they reached
    (the current plan's), with the mean target as a dashed line (at 0 without a target)."""
    stats = binner.stats
    groups = target_density_groups(stats) or {NO_DATA_GROUP: np.zeros(1)}
    boxes = density_boxes(groups, ylabel=f"emitters {DENSITY_LABEL} of a frame")
    mean = float(stats["target"]["mean_target"]) if "target" in stats else 0.0
    line = hv.HLine(mean, label="mean target").opts(**MEAN_OPTS)
    title = (f"target mean {mean:.3g}, reached {stats['target']['mean_achieved']:.3g} per µm²" if "target" in stats
             else "binned frames (no target density)")
    return (boxes * line).opts(title=title, show_legend=False)


def target_density_plot(binner: Binner) -> hv.DynamicMap:
    """:func:`target_density_element` following the Binner's ``stats`` (updated by every load, draw and plan)."""
    return hv.DynamicMap(lambda stats: target_density_element(binner), streams=[hv.streams.Params(binner, ["stats"])])
