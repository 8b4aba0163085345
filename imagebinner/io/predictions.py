"""The DeepSTORM (ZeroCostDL4Mic) prediction-folder layout and the exploded-frame naming: one place for the names.

Written by the notebook per test movie ``<stem>``: ``Localizations_<stem>_avg.csv`` (or ``_max.csv``),
``Predicted_<stem>.tif``, ``Widefield_<stem>.tif``; by ImageBinner (and a modified notebook) also
``Predicted_stacked_<stem>.tif``. ``Explode`` writes single frames ``<stem>_frame00001.tif`` (1-based, at least five
digits), whose predictions then carry the stem ``<stem>_frame00001``.
"""

from __future__ import annotations

import re

#: file-name patterns by role ("stacked" must be tested before "predicted")
PREDICTION_PATTERNS = {
    "localizations_avg": re.compile(r"^Localizations_(?P<stem>.+)_avg\.csv$"),
    "localizations_max": re.compile(r"^Localizations_(?P<stem>.+)_max\.csv$"),
    "stacked": re.compile(r"^Predicted_stacked_(?P<stem>.+)\.tiff?$"),
    "predicted": re.compile(r"^Predicted_(?P<stem>.+)\.tiff?$"),
    "widefield": re.compile(r"^Widefield_(?P<stem>.+)\.tiff?$"),
}
#: a stem of one exploded frame: ``<base>_frame<digits>``
EXPLODED_STEM = re.compile(r"^(?P<base>.+)_frame(?P<n>\d+)$")


def prediction_file_names(stem: str, local_average: bool = True) -> dict[str, str]:
    """The file names the notebook (and ImageBinner) write for one stem, by role."""
    return {
        "localizations": f"Localizations_{stem}_{'avg' if local_average else 'max'}.csv",
        "predicted": f"Predicted_{stem}.tif",
        "widefield": f"Widefield_{stem}.tif",
        "stacked": f"Predicted_stacked_{stem}.tif",
    }


def exploded_frame_digits(n_frames: int) -> int:
    """Digits of the exploded frame numbers of a movie of ``n_frames`` frames (at least 5)."""
    return max(5, len(str(int(n_frames))))


def exploded_stem(stem: str, frame: int, n_frames: int) -> str:
    """The stem of 0-based ``frame`` of an exploded movie: ``<stem>_frame<frame + 1, zero-padded>``."""
    return f"{stem}_frame{frame + 1:0{exploded_frame_digits(n_frames)}d}"
