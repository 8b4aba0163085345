"""ONI Nanoimager localization CSV exports: column names, units and frame base (see docs/conventions.md).

ONI publishes no specification of its CSV exports. Two header families are recognised:

* NimOS "export localizations" CSV: ``Channel, Frame, X (nm), Y (nm), Z (nm), Photons, Background, ...``
  (names as shown in NimOS and in users' scripts; nm, origin at the image corner as in ThunderSTORM).
* CODI (ONI's cloud platform) CSV: ``x-nm, y-nm, frame, channel, ..., z-nm, bg-mean-photons, sigma-x-mean-nm,
  sigma-y-mean-nm, intensity-mean-photons, ...`` (column list as used by AlistairCurd/smlm-explore).

Both are read with x, y unchanged (nm, corner origin) and frames taken as 0-based page indices; these are the
assumptions recorded in every conversion note (override the format or shift frames if an export differs).
"""

from __future__ import annotations

FRAME_BASE = 0
HEADER_HINT = "Frame, X (nm), Y (nm) or frame, x-nm, y-nm"
CONVERSION = (
    "oni: x, y unchanged (nm; origin at the image corner assumed: ONI documents no convention); frame used as "
    "0-based page index (assumed; ONI documents no frame base)"
)

# lower-case column name -> canonical column
STANDARD = {
    "x (nm)": "x",
    "y (nm)": "y",
    "z (nm)": "z",
    "photons": "photons",
    "background": "background",
    "x-nm": "x",
    "y-nm": "y",
    "z-nm": "z",
    "intensity-mean-photons": "photons",
    "bg-mean-photons": "background",
}
#: the two PSF-width columns whose mean is the canonical sigma (nm)
SIGMA_PAIR = ("sigma x (nm)", "sigma y (nm)", "sigma-x-mean-nm", "sigma-y-mean-nm")

_FAMILIES = (("frame", "x (nm)", "y (nm)"), ("frame", "x-nm", "y-nm"))


def is_oni_header(lower_names: list[str]) -> bool:
    """True when the (lower-case) header has the frame and x, y columns of one ONI family."""
    return any(all(c in lower_names for c in family) for family in _FAMILIES)


def required_columns(by_lower: dict[str, str]) -> tuple[str, ...]:
    """The frame, x and y column names (lower case) of the family present; NimOS names when none is complete."""
    for family in _FAMILIES:
        if all(c in by_lower for c in family):
            return family
    return _FAMILIES[0]
