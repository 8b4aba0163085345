"""Round trips between every writable format (hypothesis): positions, frames and counts survive."""

from __future__ import annotations

import itertools
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagebinner.io import LocMeta, LocTable, read_locs, write_locs

FORMATS = ("deepstorm", "deepstorm-prediction", "thunderstorm", "picasso")
SUFFIX = {"picasso": ".hdf5"}
CARRY_PHOTONS = {"deepstorm", "thunderstorm", "picasso"}  # photons and sigma columns
CARRY_CONFIDENCE = {"deepstorm-prediction", "thunderstorm", "picasso"}
# float32 pixel coordinates in Picasso files: relative resolution 2**-24 of the coordinate in pixels
F32_REL = 2.0**-23


@st.composite
def tables(draw) -> LocTable:
    n = draw(st.integers(0, 40))
    ps = draw(st.sampled_from([100.0, 107.0, 130.0, 160.5]))
    width = draw(st.integers(4, 600))
    height = draw(st.integers(4, 600))
    frames = draw(st.lists(st.integers(0, 3000), min_size=n, max_size=n))
    xs = draw(st.lists(st.floats(0, width * ps, exclude_max=True), min_size=n, max_size=n))
    ys = draw(st.lists(st.floats(0, height * ps, exclude_max=True), min_size=n, max_size=n))
    cols = {"frame": np.array(frames, dtype=np.int64), "x": np.array(xs, dtype=float), "y": np.array(ys, dtype=float)}
    if draw(st.booleans()):
        cols["photons"] = np.array(draw(st.lists(st.floats(1, 1e5), min_size=n, max_size=n)))
        cols["sigma"] = np.array(draw(st.lists(st.floats(50, 300), min_size=n, max_size=n)))
    if draw(st.booleans()):
        cols["confidence"] = np.array(draw(st.lists(st.floats(0, 5), min_size=n, max_size=n)))
    meta = LocMeta(pixel_size=ps, image_shape=(height, width), n_frames=3001)
    return LocTable(cols, meta)


def _through(table: LocTable, fmt: str, folder: Path, name: str) -> LocTable:
    path = folder / f"{name}{SUFFIX.get(fmt, '.csv')}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Picasso drop warnings for locs in the outer half of the first pixel
        write_locs(table, path, format=fmt)
        back = read_locs(path, format=fmt, pixel_size=table.meta.pixel_size)
    return back


def _tolerance(table: LocTable, fmts: tuple[str, ...]) -> float:
    if "picasso" not in fmts or not len(table):
        return 0.0
    ps = table.meta.pixel_size
    biggest_px = max(float(np.max(table.x)), float(np.max(table.y))) / ps + 1
    return 2 * biggest_px * F32_REL * ps + 1e-9


def _assert_same(a: LocTable, b: LocTable, atol: float) -> None:
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.frame, b.frame)
    np.testing.assert_allclose(b.x, a.x, rtol=0, atol=atol)
    np.testing.assert_allclose(b.y, a.y, rtol=0, atol=atol)


@pytest.mark.parametrize("first, second", list(itertools.product(FORMATS, FORMATS)))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables())
def test_round_trip_between_formats(first, second, table):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        once = _through(table, first, folder, "a")
        twice = _through(once, second, folder, "b")
        back = _through(twice, first, folder, "c")
    tol = _tolerance(table, (first, second))
    for result in (once, twice, back):
        _assert_same(table, result, tol)
    used = {first, second}
    if "photons" in table and used <= CARRY_PHOTONS:
        np.testing.assert_allclose(back["photons"], table["photons"], rtol=1e-6, atol=1e-37)
        np.testing.assert_allclose(back["sigma"], table["sigma"], rtol=1e-6)
    if "confidence" in table and used <= CARRY_CONFIDENCE:
        np.testing.assert_allclose(back["confidence"], table["confidence"], rtol=1e-6, atol=1e-37)  # float32 in Picasso


@settings(max_examples=30, deadline=None)
@given(table=tables())
def test_deepstorm_picasso_deepstorm_is_exact(table):
    """DeepSTORM -> Picasso -> DeepSTORM: equal up to Picasso's float32 pixel coordinates.

    (About 2e-5 nm per pixel of distance from the origin; the CSV legs are exact.)
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ds = _through(table, "deepstorm", folder, "a")
        pic = _through(ds, "picasso", folder, "b")
        back = _through(pic, "deepstorm", folder, "c")
        text = (folder / "c.csv").read_text().splitlines()
    _assert_same(table, ds, 0.0)  # CSV round trip is exact (shortest float repr)
    tol = _tolerance(table, ("picasso",))
    assert tol < 0.025  # float32 resolution of fields up to 600 px of 160.5 nm
    _assert_same(table, back, tol)
    assert [int(line.split(",")[0]) for line in text[1:]] == list(range(1, len(table) + 1))


@settings(max_examples=20, deadline=None)
@given(table=tables(), half_pixel=st.booleans())
def test_half_pixel_option_is_symmetric(table, half_pixel):
    """Writing and reading Picasso with the same half_pixel setting is the identity; mixing them shifts 0.5 px."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.hdf5"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write_locs(table, path, half_pixel=half_pixel)
            same = read_locs(path, half_pixel=half_pixel)
            mixed = read_locs(path, half_pixel=not half_pixel)
    tol = _tolerance(table, ("picasso",))
    _assert_same(table, same, tol)
    if len(table):
        shift = -0.5 if half_pixel else 0.5
        np.testing.assert_allclose(mixed.x, table.x + shift * table.meta.pixel_size, atol=tol)
