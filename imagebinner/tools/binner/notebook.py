"""The ZeroCostDL4Mic Deep-STORM notebook settings that fit a binned output, and the 1-frame rule of its reader.

The notebook crops ``patch_size`` camera pixels out of frames that must be at least one pixel larger (so: the
exported size − 1), takes one patch per binned frame (``num_patches_per_frame = 1``), upsamples by 4, 8 or 16 (best
when the hr pixel is about the localization precision) and reads the pixel size from the TIF's resolution tags
(``getPixelSizeTIFFmetadata``: unit centimetre → ``0.01·1e9 / XResolution``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imagebinner.errors import ParameterError

UPSAMPLING_CHOICES = (4, 8, 16)  # the notebook's choices
DEFAULT_UPSAMPLING = 8  # the notebook's default (used when no precision is known)


def localization_precision(columns: dict[str, np.ndarray], pixel_size: float) -> float | None:
    """Median lateral localization precision (nm) of localizations: their ``uncertainty`` when known, else
    Mortensen's estimate from ``photons``, ``sigma`` (and ``background`` when known); None without either."""
    unc = columns.get("uncertainty")
    if unc is not None and np.isfinite(unc).any():
        return float(np.nanmedian(unc))
    photons, sigma = columns.get("photons"), columns.get("sigma")
    if photons is None or sigma is None:
        return None
    ok = np.isfinite(photons) & np.isfinite(sigma) & (photons > 0)
    if not ok.any():
        return None
    n, s = photons[ok], sigma[ok]
    sa2 = s**2 + pixel_size**2 / 12.0
    b = columns.get("background")
    bg = np.nan_to_num(b[ok], nan=0.0).clip(0) if b is not None else 0.0
    var = sa2 / n * (16.0 / 9.0 + 8.0 * np.pi * sa2 * bg / (n * pixel_size**2))
    return float(np.median(np.sqrt(var)))


def upsampling_for(pixel_size: float, precision: float | None) -> int:
    """The notebook's upsampling factor whose hr pixel (``pixel_size / u``) is nearest to ``precision`` (in log
    scale); the notebook's default without a precision."""
    if not precision or precision <= 0:
        return DEFAULT_UPSAMPLING
    return min(UPSAMPLING_CHOICES, key=lambda u: abs(np.log(pixel_size / u / precision)))


def notebook_pixel_size(tif_path: str | Path) -> float | None:
    """The pixel size (nm) the notebook's ``getPixelSizeTIFFmetadata`` reads from a TIF (None: no resolution)."""
    import tifffile

    with tifffile.TiffFile(tif_path) as tif:
        tags = tif.pages[0].tags
        if "XResolution" not in tags:
            return None
        num, den = tags["XResolution"].value
        unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    xres = num / den
    if not xres:
        return None
    return 0.025 * 1e9 / xres if unit == 2 else 0.01 * 1e9 / xres if unit == 3 else 1e3 / xres


def suggested_settings(patch_size: int, pixel_size: float | None, precision: float | None,
                       tif_path: str | Path | None = None) -> dict[str, Any]:
    """The notebook settings for a binned output of ``patch_size`` px: ``patch_size`` (exported − 1),
    ``num_patches_per_frame`` (1), ``upsampling_factor`` (hr pixel ≈ ``precision``), ``pixel_size`` (what the
    notebook reads from ``tif_path`` when written, else the pixel size written to the tags), and the hr pixel and
    precision they come from. Empty without a pixel size."""
    if not pixel_size:
        return {}
    read = notebook_pixel_size(tif_path) if tif_path and Path(tif_path).exists() else None
    u = upsampling_for(pixel_size, precision)
    return {
        "patch_size": int(patch_size) - 1,
        "num_patches_per_frame": 1,
        "upsampling_factor": u,
        "pixel_size": round(read, 4) if read else float(pixel_size),
        "pixel_size_from": "the TIF's resolution tags" if read else "the pixel size written to the TIF",
        "hr_pixel_size": float(pixel_size) / u,
        "localization_precision": precision,
    }


def settings_line(settings: dict[str, Any]) -> str:
    """The suggested settings on one line (CLI summary)."""
    if not settings:
        return "notebook settings: unknown (no pixel size)"
    precision = settings["localization_precision"]
    why = (f"hr pixel {settings['hr_pixel_size']:.3g} nm, the choice nearest to the localization precision "
           f"{precision:.3g} nm" if precision else f"hr pixel {settings['hr_pixel_size']:.3g} nm; no localization precision known: the notebook's "
           "default")
    return (f"notebook settings: patch_size = {settings['patch_size']}, num_patches_per_frame = 1, "
            f"upsampling_factor = {settings['upsampling_factor']} ({why}), pixel_size = {settings['pixel_size']:g} nm "
            f"(read from the TIF)")


def check_frame_count(n_binned: int, where: str | Path | None = None) -> None:
    """Refuse a 1-frame binned movie: ``io.imread`` reads a 1-page TIF as a 2-D image, which the notebook cannot
    use (``(nFrames, M, N) = Images.shape`` fails; training iterates its rows as frames)."""
    if n_binned < 2:
        raise ParameterError(
            "n_binned=1 would write a 1-frame TIF, which the Deep-STORM notebook reads as one 2-D image (io.imread "
            "drops the frame axis) and cannot train or predict on; set n_binned to 2 or more",
            where, params=["n_binned"])
