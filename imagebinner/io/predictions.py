"""The DeepSTORM (ZeroCostDL4Mic) prediction-folder layout: file names for reading and writing, exploded frames.

Written by the notebook per test movie ``<stem>``: ``Localizations_<stem>_avg.csv`` (or ``_max.csv``),
``Predicted_<stem>.tif``, ``Widefield_<stem>.tif``; by ImageBinner (and a modified notebook) also
``Predicted_stacked_<stem>.tif``. Files are found by these exact names only (spec section 2.5): a name
``Predicted_stacked_X.tif`` is always the stacked density of ``X``, never the summed prediction of ``stacked_X``.

``Explode`` writes single frames ``<stem>_frame00001.tif`` (1-based, at least five digits), whose predictions then
carry the stem ``<stem>_frame00001``. Exploded predictions (every stem ``<base>_frame<digits>``, one base, one digit
width) are found as one prediction of the whole movie: frame index = number − 1.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from imagebinner.errors import FormatError
from imagebinner.io.movie import open_movie

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
#: the roles of the files of one prediction (the CSV's variant aside)
ROLES = ("localizations", "predicted", "widefield", "stacked")


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


def exploded_frame_file(stem: str) -> re.Pattern:
    """The pattern of the exploded single-frame TIFs of ``stem``: ``<stem>_frame<digits>.tif`` (group ``n``)."""
    return re.compile(rf"^{re.escape(stem)}_frame(?P<n>\d+)\.tiff?$")


def is_prediction_name(name: str) -> bool:
    """True when a file of this name would be taken for a prediction file of its folder."""
    return any(p.match(name) for p in PREDICTION_PATTERNS.values())


# -- finding the files of one prediction ------------------------------------------------------------------------
def _names(paths: list[Path], limit: int = 3) -> str:
    """A short listing of file names: the first ``limit`` and the count of the rest."""
    shown = ", ".join(p.name for p in paths[:limit])
    return shown if len(paths) <= limit else f"{shown}, ... ({len(paths)} files)"


def _stem_files(roles: dict[str, list[Path]]) -> list[Path]:
    return [p for ps in roles.values() for p in ps]


def find_prediction_files(folder: str | Path, stem: str | None = None) -> dict:
    """The prediction files of one stem in ``folder``: ``{"stem", "localizations", "variant", "predicted",
    "widefield", "stacked", "exploded"}`` (paths or None; ``variant`` is "avg" or "max"; ``exploded`` is None).

    Exploded predictions (the notebook run on single frames ``<base>_frame00001.tif``, ...): when every stem of the
    folder is ``<base>_frame<digits>`` with one common ``<base>`` (or ``stem`` names that base), the result is the
    whole movie's prediction: ``stem`` = base, the role entries None, and ``exploded`` = ``{"numbers": sorted 1-based
    frame numbers (int64 array), "digits": width, "localizations" | "predicted" | "widefield" | "stacked": one path
    or None per number}``; frame index = number − 1.

    Errors (one line, naming the folder): folder missing; no prediction file; several stems without ``stem``; the
    given stem absent; both ``_avg`` and ``_max`` for the stem (or among exploded frames); two files for one role
    (``.tif`` and ``.tiff``); a whole-movie prediction beside exploded ones of the same base; exploded frame numbers
    of different widths or numbered 0.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FormatError("prediction folder not found (or not a folder)", folder)
    found: dict[str, dict[str, list[Path]]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        for role, pattern in PREDICTION_PATTERNS.items():
            m = pattern.match(path.name)
            if m:
                found.setdefault(m["stem"], {}).setdefault(role, []).append(path)
                break  # first matching role wins: "stacked" is tested before "predicted"
    if not found:
        raise FormatError(
            "no DeepSTORM prediction files (Localizations_<stem>_avg.csv or _max.csv, Predicted_<stem>.tif, "
            "Widefield_<stem>.tif, Predicted_stacked_<stem>.tif)",
            folder,
        )
    groups: dict[str, dict[str, str]] = {}  # exploded base -> {digit string: stem}
    for s in found:
        m = EXPLODED_STEM.match(s)
        if m:
            groups.setdefault(m["base"], {})[m["n"]] = s
    if stem:
        if stem in found and stem in groups:
            _raise_whole_and_exploded(found, groups, stem, folder)
        if stem in found:
            return _one_stem(found, stem, folder)
        if stem in groups:
            return _exploded(found, stem, groups[stem], folder)
        raise FormatError(
            f"no prediction files for stem {stem!r} (stems found: {_stem_listing(found, groups, names=False)})",
            folder,
        )
    if len(groups) == 1:
        base, members = next(iter(groups.items()))
        others = set(found) - set(members.values())
        if not others:
            return _exploded(found, base, members, folder)
        if others == {base}:
            _raise_whole_and_exploded(found, groups, base, folder)
    if len(found) > 1:
        raise FormatError(
            f"several predictions in one folder, choose one with stem ({_stem_listing(found, groups)})", folder
        )
    return _one_stem(found, next(iter(found)), folder)


def _stem_listing(found: dict, groups: dict, names: bool = True) -> str:
    """Stems with their files; exploded groups (two or more frames) summarised as one entry."""
    grouped = {s for members in groups.values() if len(members) > 1 for s in members.values()}
    parts = []
    for s in sorted(set(found) - grouped):
        parts.append(f"{s}: {', '.join(p.name for p in _stem_files(found[s]))}" if names else s)
    for base in sorted(groups):
        members = groups[base]
        if len(members) > 1:
            files = [p for d in sorted(members) for p in _stem_files(found[members[d]])]
            text = f"{base} (exploded, {len(members)} frames)"
            parts.append(f"{text}: {_names(files)}" if names else text)
    return "; ".join(parts) if names else ", ".join(parts)


def _raise_whole_and_exploded(found: dict, groups: dict, base: str, folder: Path) -> None:
    members = groups[base]
    exploded = [p for d in sorted(members) for p in _stem_files(found[members[d]])]
    raise FormatError(
        f"ambiguous: a whole-movie prediction for {base!r} ({', '.join(p.name for p in _stem_files(found[base]))}) "
        f"and {len(members)} exploded single-frame predictions ({_names(exploded)}): keep one kind in the folder",
        folder,
    )


def _one_stem(found: dict, stem: str, folder: Path) -> dict:
    roles = found[stem]
    for role, paths in roles.items():
        if len(paths) > 1:
            raise FormatError(f"ambiguous {role} files: {', '.join(p.name for p in paths)}", folder)
    if "localizations_avg" in roles and "localizations_max" in roles:
        raise FormatError(
            f"both {roles['localizations_avg'][0].name} and {roles['localizations_max'][0].name}: keep one of them "
            "in the folder",
            folder,
        )
    loc_role = "localizations_avg" if "localizations_avg" in roles else "localizations_max"
    one = {r: (roles[r][0] if r in roles else None) for r in PREDICTION_PATTERNS}
    return {
        "stem": stem,
        "localizations": one[loc_role],
        "variant": None if one[loc_role] is None else loc_role.rsplit("_", 1)[1],
        "predicted": one["predicted"],
        "widefield": one["widefield"],
        "stacked": one["stacked"],
        "exploded": None,
    }


def _exploded(found: dict, base: str, members: dict[str, str], folder: Path) -> dict:
    """The per-frame files of the exploded predictions of ``base`` (``members``: digit string -> stem)."""
    widths = sorted({len(d) for d in members})
    if len(widths) > 1:
        examples = ", ".join(members[min(d for d in members if len(d) == w)] for w in widths)
        raise FormatError(
            f"exploded predictions of {base!r} with frame numbers of different widths ({examples}): "
            "keep the files of one explode in the folder",
            folder,
        )
    digit_strings = sorted(members)  # one width: string order = number order
    numbers = np.array([int(d) for d in digit_strings], dtype=np.int64)
    if numbers[0] == 0:
        raise FormatError(f"exploded prediction {members[digit_strings[0]]} is numbered 0 (numbers start at 1)", folder)
    per_stem = [_one_stem(found, members[d], folder) for d in digit_strings]
    by_variant: dict[str, list[Path]] = {}
    for entry in per_stem:
        if entry["variant"] is not None:
            by_variant.setdefault(entry["variant"], []).append(entry["localizations"])
    if len(by_variant) > 1:
        raise FormatError(
            f"both _avg and _max localizations among the exploded predictions of {base!r} "
            f"({_names(by_variant['avg'])} and {_names(by_variant['max'])}): keep one kind in the folder",
            folder,
        )
    exploded = {"numbers": numbers, "digits": widths[0]}
    exploded.update({role: [entry[role] for entry in per_stem] for role in ROLES})
    return {
        "stem": base,
        "localizations": None,
        "variant": next(iter(by_variant), None),
        "predicted": None,
        "widefield": None,
        "stacked": None,
        "exploded": exploded,
    }


def role_files(files: dict, role: str) -> list[Path]:
    """Every file of ``role`` of a :func:`find_prediction_files` result (one, none, or one per exploded frame)."""
    if files["exploded"] is None:
        return [files[role]] if files.get(role) else []
    return [p for p in files["exploded"][role] if p is not None]


def first_image(files: dict, role: str) -> Path | None:
    """The role's file, or for exploded predictions the first per-frame file of the role."""
    return next(iter(role_files(files, role)), None)


def exploded_summary(files: dict) -> dict | None:
    """A JSON-ready description of exploded predictions: numbers, digits, file counts, example names."""
    exploded = files["exploded"]
    if exploded is None:
        return None
    numbers = exploded["numbers"]
    return {
        "n_files": {r: sum(p is not None for p in exploded[r]) for r in ROLES},
        "first_number": int(numbers[0]),
        "last_number": int(numbers[-1]),
        "digits": int(exploded["digits"]),
        "first_files": {r: next((str(p) for p in exploded[r] if p is not None), None) for r in ROLES},
    }


# -- the test movie beside the predictions ----------------------------------------------------------------------
def movie_beside(folder: str | Path, stem: str, exploded: bool = False) -> Path | None:
    """The test movie lying in the prediction folder: ``<stem>.tif`` (or ``.tiff``, exactly one of them), else
    (``exploded`` predictions only) the folder itself when it holds the exploded frames ``<stem>_frame00001.tif``,
    ...; else None."""
    folder = Path(folder)
    beside = [p for p in (folder / f"{stem}.tif", folder / f"{stem}.tiff") if p.is_file()]
    if len(beside) == 1:
        return beside[0]
    frame_file = exploded_frame_file(stem)
    if exploded and any(frame_file.match(p.name) for p in folder.iterdir()):
        return folder
    return None


class ExplodedFrames:
    """A folder of single-frame TIFs ``<stem>_frame00001.tif``, ... read as a movie (file number = frame + 1)."""

    def __init__(self, folder: str | Path, stem: str):
        self.path = Path(folder)
        pattern = exploded_frame_file(stem)
        numbered = {}
        for p in self.path.iterdir():
            m = pattern.match(p.name)
            if m:
                n = int(m["n"])
                if n in numbered:
                    raise FormatError(f"two files for frame {n}: {numbered[n].name}, {p.name}", self.path)
                numbered[n] = p
        if not numbered:
            raise FormatError(f"no exploded frames {stem}_frame00001.tif, ... in the folder", self.path)
        expected = list(range(1, len(numbered) + 1))
        if sorted(numbered) != expected:
            missing = sorted(set(range(1, max(numbered) + 1)) - set(numbered))[:5]
            raise FormatError(f"exploded frames are not numbered 1..N (missing e.g. {missing})", self.path)
        self.files = [numbered[n] for n in expected]
        with open_movie(self.files[0]) as first:
            self.shape, self.pixel_size = first.shape, first.pixel_size
        self.n_frames = len(self.files)

    def frame(self, k: int) -> np.ndarray:
        """Frame ``k`` (0-based): the single page of file number ``k + 1``."""
        with open_movie(self.files[k]) as m:
            return m.frame(0)

    def close(self) -> None:
        """Nothing to release (each frame's file is opened and closed on reading); for symmetry with Movie."""
