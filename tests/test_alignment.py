"""Localizations line up with the raw movie, before and after format round trips, and a half-pixel error shows.

The real Picasso localizations of ``picasso/testdata_locs.hdf5`` are rendered as Gaussian spots on the camera
pixel grid (pixel ``j`` centred at ``(j + 0.5) * ps`` in canonical nm) and correlated with the matching frames of
``picasso/testdata.tif`` (32 x 32 px, 1000 frames, 130 nm pixels per the locs YAML).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from imagebinner.io import LocTable, open_movie, read_locs, write_locs


def _read(path, **kwargs) -> LocTable:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_locs(path, **kwargs)


@pytest.fixture(scope="module")
def measured(shared_data):
    table = _read(shared_data / "picasso" / "testdata_locs.hdf5")
    frames = np.unique(table.frame)
    with open_movie(shared_data / "picasso" / "testdata.tif") as movie:
        assert movie.n_frames == 1000 and movie.shape == (32, 32)
        images = np.stack([movie.frame(int(f)).astype(np.float64) for f in frames])
    images -= np.median(images, axis=(1, 2), keepdims=True)  # background
    return table, frames, images


def render(table: LocTable, frames: np.ndarray, shape: tuple[int, int], ps: float, shift_px=(0.0, 0.0)) -> np.ndarray:
    """Gaussian spots (width from ``sigma``, amplitude ``photons``) sampled at camera pixel centres."""
    height, width = shape
    out = np.zeros((len(frames), height, width))
    cols, rows = np.arange(width) + 0.5, np.arange(height) + 0.5  # pixel centres in pixel units (corner origin)
    page = np.searchsorted(frames, table.frame)
    assert np.array_equal(frames[page], table.frame)
    x = table.x / ps + shift_px[0]
    y = table.y / ps + shift_px[1]
    s = table["sigma"] / ps
    for k in range(len(table)):
        gx = np.exp(-((cols - x[k]) ** 2) / (2 * s[k] ** 2))
        gy = np.exp(-((rows - y[k]) ** 2) / (2 * s[k] ** 2))
        out[page[k]] += table["photons"][k] * np.outer(gy, gx)
    return out


def correlation(table: LocTable, measured_data, shift_px=(0.0, 0.0)) -> float:
    _, frames, images = measured_data
    rendered = render(table, frames, images.shape[1:], 130.0, shift_px)
    return float(np.corrcoef(rendered.ravel(), images.ravel())[0, 1])


def test_localizations_align_with_movie(measured):
    table = measured[0]
    assert table.meta.pixel_size == 130.0
    aligned = correlation(table, measured)
    assert aligned > 0.98
    # moved by half a pixel (the classic Picasso/corner mix-up) the correlation drops clearly
    shifted = correlation(table, measured, (0.5, 0.5))
    assert shifted < aligned - 0.1
    assert correlation(table, measured, (-0.5, -0.5)) < aligned - 0.1
    # and the best sub-pixel shift is zero in both axes
    steps = np.arange(-0.5, 0.51, 0.125)
    best_x = steps[np.argmax([correlation(table, measured, (d, 0.0)) for d in steps])]
    best_y = steps[np.argmax([correlation(table, measured, (0.0, d)) for d in steps])]
    assert (best_x, best_y) == (0.0, 0.0)


def test_reading_without_half_pixel_is_misaligned(shared_data, measured):
    plain = _read(shared_data / "picasso" / "testdata_locs.hdf5", half_pixel=False)
    assert correlation(plain, measured) < correlation(measured[0], measured) - 0.1


@pytest.mark.parametrize("fmt", ["deepstorm", "thunderstorm"])
def test_alignment_survives_csv_round_trip(tmp_path, measured, fmt):
    table = measured[0]
    path = write_locs(table, tmp_path / f"locs_{fmt}.csv", format=fmt)[0]
    back = _read(path, format=None)
    assert back.meta.source_format == fmt
    assert len(back) == len(table)
    np.testing.assert_array_equal(back.frame, table.frame)
    aligned = correlation(back, measured)
    assert aligned == pytest.approx(correlation(table, measured), abs=1e-9)
    assert aligned > 0.98
    assert correlation(back, measured, (0.5, 0.5)) < aligned - 0.1


def test_alignment_survives_deepstorm_to_picasso_and_back(tmp_path, measured):
    table = measured[0]
    ds = _read(write_locs(table, tmp_path / "a.csv")[0], pixel_size=130)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pic = _read(write_locs(ds, tmp_path / "b.hdf5")[0])
    assert correlation(pic, measured) > 0.98
    assert correlation(pic, measured) == pytest.approx(correlation(table, measured), abs=1e-6)
