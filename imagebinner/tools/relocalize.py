"""Re-localization from a stacked DeepSTORM density (``Predicted_stacked_<stem>.tif``) without the network.

Reproduces the ZeroCostDL4Mic post-processing (``class Maximafinder``, spec section 6) frame by frame:

* a detection is an hr pixel equal to the maximum of its ``neighborhood_size × neighborhood_size`` neighbourhood
  (max-pooling with stride 1 and 'same' padding: outside the image counts as −∞; an even size reaches one pixel
  further right/down than left/up, as TensorFlow pads) **and** greater than ``threshold · l2_weighting_factor``;
* without local averaging: position = pixel index, ``confidence = value / L2``;
* with local averaging: the 3×3 centre of gravity (zero outside the image) is added to the indices and
  ``confidence = (3×3 sum) / L2``;
* ``x = (column [+ offset]) · ps_hr``, ``y = (row [+ offset]) · ps_hr`` (hr pixel ``k`` centred at ``k·ps_hr``, no
  +0.5), frame = page index (0-based canonical; the prediction CSV stores page + 1).

``l2_weighting_factor`` must be the value used in training (the notebook's ``L2_weighting_factor``, stored as
"Normalization factor" in ``model_metadata.mat``): the density is scaled by it. When it is not known, the default
is the notebook's automatic normalization for the upsampling ``u`` (:func:`notebook_default_l2`):
``L2 = 100 / sqrt(7 · 8² / (u² · 20.28)) ≈ 21.28 · u`` (≈ 85 at ×4, ≈ 170 at ×8, ≈ 340 at ×16).
"""

from __future__ import annotations

from pathlib import Path

import math

import numpy as np
import param

from imagebinner.errors import ParameterError
from imagebinner.io import LocMeta, LocTable, open_movie
from imagebinner.tools.base import Task

_OFFSETS = np.array([-1.0, 0.0, 1.0])
#: the notebook's defaults: ``neighborhood_size`` (section 6.1), upsampling and ``min_number_of_emitters_per_patch``
DEFAULT_NEIGHBORHOOD = 3
DEFAULT_UPSAMPLING = 8
NOTEBOOK_MIN_EMITTERS = 7


def notebook_default_l2(upsampling: int) -> float:
    """The notebook's automatic normalization (``Automatic_normalization = True``, section 3.2) for ``upsampling``:
    ``100 / sqrt(min(n_locs_per_patch, 7) · 8² / (u² · 20.28))`` with the expected locs per patch above the default
    ``min_number_of_emitters_per_patch`` = 7 (always, at usual densities): ``100·u·sqrt(20.28 / 448)`` ≈ 21.28·u."""
    return 100.0 / math.sqrt(NOTEBOOK_MIN_EMITTERS * 8**2 / (int(upsampling) ** 2 * 20.28))


def local_maxima(density: np.ndarray, threshold: float, neighborhood_size: int = DEFAULT_NEIGHBORHOOD) -> np.ndarray:
    """Mask of the notebook's detections: pixels equal to their ``neighborhood_size`` max-pool ('same', stride 1,
    TensorFlow's padding) and greater than ``threshold`` (the threshold already multiplied by L2)."""
    from scipy.ndimage import maximum_filter

    n = int(neighborhood_size)
    if n < 1:
        raise ParameterError(f"neighborhood_size must be at least 1, got {n}", params=["neighborhood_size"])
    pooled = maximum_filter(density, size=n, mode="constant", cval=-np.inf, origin=-1 if n % 2 == 0 else 0)
    return (density == pooled) & (pooled > threshold)


def find_maxima(
    density: np.ndarray,
    threshold: float,
    l2_weighting_factor: float = 100.0,
    local_average: bool = True,
    neighborhood_size: int = DEFAULT_NEIGHBORHOOD,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detections of one hr frame: ``(row, col, confidence)``; row/col are float (sub-pixel with local averaging).

    Rows come out in row-major order of the peaks (as ``tf.where`` gives them). A float32 density is compared with
    the threshold in float32, as the notebook's layer does.
    """
    img = np.asarray(density)
    if img.ndim != 2:
        raise ParameterError(f"expected a 2-D density frame, got shape {img.shape}")
    if img.dtype != np.float32:
        img = img.astype(np.float64)
    peaks = local_maxima(img, img.dtype.type(threshold * l2_weighting_factor), neighborhood_size)
    rows, cols = np.nonzero(peaks)
    img = img.astype(np.float64, copy=False)
    if not local_average:
        return rows.astype(np.float64), cols.astype(np.float64), img[rows, cols] / l2_weighting_factor
    padded = np.pad(img, 1, mode="constant", constant_values=0.0)
    # 3×3 windows around each peak: windows[i, a, b] = img[row_i + a - 1, col_i + b - 1]
    win = padded[rows[:, None, None] + np.arange(3)[None, :, None], cols[:, None, None] + np.arange(3)[None, None, :]]
    total = win.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        d_col = (win.sum(axis=1) @ _OFFSETS) / total
        d_row = (win.sum(axis=2) @ _OFFSETS) / total
    d_col = np.where(np.isfinite(d_col), d_col, 0.0)
    d_row = np.where(np.isfinite(d_row), d_row, 0.0)
    return rows + d_row, cols + d_col, total / l2_weighting_factor


def resolve_l2(l2_weighting_factor: float | None, upsampling: int | None) -> tuple[float, str]:
    """The L2 factor to use and where it comes from: the given value, else :func:`notebook_default_l2` of the
    upsampling (the notebook's default ×8 when that is unknown too)."""
    if l2_weighting_factor is not None:
        return float(l2_weighting_factor), "given"
    u = DEFAULT_UPSAMPLING if upsampling is None else int(upsampling)
    where = f"x{u}" if upsampling is not None else f"x{u}, the notebook's default upsampling"
    return notebook_default_l2(u), f"notebook default automatic normalization for {where}"


def relocalize_stack(
    path: str | Path,
    threshold: float = 0.1,
    l2_weighting_factor: float | None = None,
    local_average: bool = True,
    pixel_size_hr: float | None = None,
    upsampling: int | None = None,
    progress=None,
    neighborhood_size: int = DEFAULT_NEIGHBORHOOD,
) -> LocTable:
    """Re-localize every page of a stacked hr density TIF (read lazily, page by page) into a canonical table.

    ``pixel_size_hr`` (nm) defaults to the TIF's resolution tags; without them it must be given. ``upsampling``
    fills the table's camera metadata (pixel size = ps_hr · u, image shape = hr shape / u) and, when
    ``l2_weighting_factor`` is None, chooses the notebook's default L2 (:func:`resolve_l2`).
    ``progress(k)`` is called after each page.
    """
    l2, l2_source = resolve_l2(l2_weighting_factor, upsampling)
    with open_movie(path) as stack:
        ps_hr = pixel_size_hr if pixel_size_hr is not None else stack.pixel_size
        if ps_hr is None or not ps_hr > 0:
            raise ParameterError(
                "hr pixel size unknown (the stacked TIF has no resolution tags): give pixel_size_hr", path,
                params=["pixel_size_hr"],
            )
        frames, xs, ys, cs = [], [], [], []
        for k, page in enumerate(stack.frames()):
            r, c, conf = find_maxima(page, threshold, l2, local_average, neighborhood_size)
            frames.append(np.full(len(r), k, np.int64))
            xs.append(c * ps_hr)
            ys.append(r * ps_hr)
            cs.append(conf)
            if progress is not None:
                progress(k)
        n_frames, hr_shape = stack.n_frames, stack.shape
    n = int(neighborhood_size)
    meta = LocMeta(
        pixel_size=None if upsampling is None else float(ps_hr) * upsampling,
        image_shape=None if upsampling is None else (hr_shape[0] // upsampling, hr_shape[1] // upsampling),
        n_frames=n_frames,
        source_format="deepstorm-stacked",
        source_path=str(path),
        conversion=(
            f"stacked density -> maxima ({n}x{n}, > {threshold} x L2 {l2:.6g} ({l2_source}), "
            f"{'local average' if local_average else 'max'}); x = col * {ps_hr} nm, y = row * {ps_hr} nm; "
            "frame = page (0-based)"
        ),
    )
    cat = np.concatenate
    if not frames:
        return LocTable({"frame": np.empty(0, np.int64), "x": [], "y": [], "confidence": []}, meta, presorted=True)
    return LocTable({"frame": cat(frames), "x": cat(xs), "y": cat(ys), "confidence": cat(cs)}, meta, presorted=True)


class MaximaSettings(param.Parameterized):
    """The local-maximum settings of the notebook's ``Maximafinder`` (shared by prediction and re-localization)."""

    neighborhood_size = param.Integer(
        default=DEFAULT_NEIGHBORHOOD,
        bounds=(1, 99),
        doc="Notebook 'neighborhood_size': a detection is a pixel equal to the maximum of this many × this many hr "
        "pixels around it (max-pooling, stride 1, 'same' padding).",
    )
    local_average = param.Boolean(
        default=True,
        doc="Notebook 'use_local_average': add the 3×3 centre of gravity to the peak position; confidence = 3×3 "
        "sum / L2 ('_avg'). Off: position = peak pixel, confidence = value / L2 ('_max').",
    )


class RelocalizeSettings(MaximaSettings):
    """The settings of the notebook's post-processing (``class Maximafinder``), shared by the tools that re-localize."""

    relocalize_threshold = param.Number(
        default=0.1,
        bounds=(0.0, None),
        softbounds=(0.0, 1.0),
        doc="Re-localization threshold of the notebook: a local maximum of the stacked density is a detection "
        "if its value > this × l2_weighting_factor.",
    )
    l2_weighting_factor = param.Number(
        default=None,
        allow_None=True,
        bounds=(0.0, None),
        inclusive_bounds=(False, True),
        doc="Re-localization: the L2 weighting factor used in training (notebook 'L2_weighting_factor', saved as "
        "'Normalization factor' in model_metadata.mat); it must match the training or thresholds and confidences "
        "are scaled wrongly. Empty = from model_metadata.mat when known, else the notebook's default automatic "
        "normalization 100/sqrt(7*64/(u^2*20.28)) = 21.28 x upsampling (170.2 at x8).",
    )

    @classmethod
    def relocalize_settings(cls) -> tuple[str, ...]:
        """The names of the re-localization settings, in the order the apps and help show them."""
        return ("relocalize_threshold", "l2_weighting_factor", "neighborhood_size", "local_average")

    def relocalize(
        self,
        path: str | Path,
        pixel_size_hr: float | None,
        upsampling: int | None,
        progress=None,
        l2_weighting_factor: float | None = None,
    ) -> LocTable:
        """:func:`relocalize_stack` of ``path`` with these settings; ``l2_weighting_factor`` replaces an empty
        setting (e.g. the value of a model's metadata)."""
        l2 = self.l2_weighting_factor if self.l2_weighting_factor is not None else l2_weighting_factor
        return relocalize_stack(
            path, self.relocalize_threshold, l2, self.local_average,
            pixel_size_hr=pixel_size_hr, upsampling=upsampling, progress=progress,
            neighborhood_size=self.neighborhood_size,
        )


class Upsampling(param.Parameterized):
    """The DeepSTORM upsampling factor (camera pixel size / hr pixel size)."""

    upsampling = param.Integer(
        default=None,
        allow_None=True,
        bounds=(1, 64),
        doc="DeepSTORM upsampling factor (camera pixel size / hr pixel size); empty = derived from the images when "
        "they allow it (hr image size / movie size, or camera pixel size / hr pixel size).",
    )


class Relocalize(Task, RelocalizeSettings, Upsampling):
    """Find localizations in a stacked DeepSTORM density like the ZeroCostDL4Mic notebook does."""

    inputs = ("stacked_path",)
    settings = (*RelocalizeSettings.relocalize_settings(), "pixel_size_hr", "upsampling")

    stacked_path = param.String(default="", doc="Predicted_stacked_<stem>.tif: the per-frame hr density.")
    pixel_size_hr = param.Number(
        default=None,
        allow_None=True,
        bounds=(0.0, None),
        inclusive_bounds=(False, True),
        doc="Upsampled pixel size in nm (camera pixel size / upsampling); empty = from the TIF's resolution tags.",
    )
    result = param.Parameter(default=None, constant=True, doc="Re-localized table (canonical LocTable).")

    def run(self) -> LocTable:
        """Re-localize every page; sets and returns ``result`` (the camera metadata only with ``upsampling``)."""
        if not self.stacked_path:
            raise ParameterError("no stacked density TIF given: set stacked_path", params=["stacked_path"])
        with open_movie(self.stacked_path) as stack:
            n = stack.n_frames
        with self._job(n, "re-localizing"):
            table = self.relocalize(
                self.stacked_path, self.pixel_size_hr, self.upsampling, progress=lambda k: self._advance()
            )
            self._update(result=table, status=f"{len(table)} localizations in {n} frames")
        return table
