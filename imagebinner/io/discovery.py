"""Measurement discovery: movie + localization pairs in a folder, by the naming convention Picasso uses."""

from __future__ import annotations

from pathlib import Path

from imagebinner.io.movie import MOVIE_SUFFIXES

LOCS_SUFFIXES = (".hdf5", ".h5", ".csv")


def find_measurement_pairs(folder: str | Path, max_depth: int = 2) -> list[tuple[str, str]]:
    """Movie + localization pairs under ``folder``: ``<stem>.tif`` (or ``.raw``) with ``<stem>_locs.hdf5|.csv``.

    One pair per localization file (a TIF preferred over a ``.raw`` of the same stem); sorted by movie path.
    """
    folder = Path(folder)
    pairs: dict[Path, Path] = {}
    for depth in range(max_depth + 1):
        for movie in sorted(folder.glob("/".join(["*"] * depth + ["*"]))):
            if movie.suffix.lower() not in MOVIE_SUFFIXES or not movie.is_file():
                continue
            for suffix in LOCS_SUFFIXES:
                locs = movie.with_name(f"{movie.stem}_locs{suffix}")
                if locs.is_file():
                    known = pairs.get(locs)
                    if known is None or (known.suffix.lower() == ".raw" and movie.suffix.lower() != ".raw"):
                        pairs[locs] = movie
                    break
    return sorted(((str(m), str(l)) for l, m in pairs.items()), key=lambda p: p[0])
