"""The SMLM simulator: determinism, ground-truth geometry against the rendered frames, write -> read round trips."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

from imagebinner.errors import OutputExistsError, ParameterError
from imagebinner.io import open_movie, read_locs
from imagebinner.simulate import simulate_measurement, write_measurement

SMALL = {"n_frames": 40, "height": 48, "width": 40, "seed": 7}


@pytest.fixture(scope="module")
def measurement():
    return simulate_measurement(**SMALL)


def test_same_seed_same_measurement_other_seed_differs(measurement):
    again = simulate_measurement(**SMALL)
    for name in measurement.truth.columns:
        np.testing.assert_array_equal(measurement.truth[name], again.truth[name])
    for k in (0, 17, 39):
        np.testing.assert_array_equal(measurement.frame(k), again.frame(k))
    other = simulate_measurement(**{**SMALL, "seed": 8})
    assert len(other.truth) != len(measurement.truth) or not np.array_equal(other.truth.x, measurement.truth.x)
    assert not np.array_equal(other.frame(0), measurement.frame(0))


def test_frames_are_a_generator_and_random_access_matches(measurement, monkeypatch):
    rendered: list[int] = []
    render = measurement.frame
    monkeypatch.setattr(measurement, "frame", lambda k: rendered.append(k) or render(k))
    gen = measurement.frames()
    assert rendered == []  # nothing rendered before the frames are asked for
    frames = list(itertools.islice(gen, 6))
    assert rendered == [0, 1, 2, 3, 4, 5]  # one frame per frame asked for, in order
    monkeypatch.undo()
    np.testing.assert_array_equal(frames[5], measurement.frame(5))  # frame k does not depend on frames before it
    np.testing.assert_array_equal(next(measurement.frames(5, 6)), frames[5])
    with pytest.raises(IndexError):
        measurement.frame(SMALL["n_frames"])


def test_truth_table_is_canonical(measurement):
    t = measurement.truth
    ps = 107.0
    assert t.meta.pixel_size == ps
    assert t.meta.image_shape == (48, 40)
    assert t.meta.n_frames == 40 and t.n_frames == 40
    assert t.frame.dtype == np.int64 and t.frame.min() >= 0 and t.frame.max() < 40
    assert np.all(np.diff(t.frame) >= 0)
    for col in ("photons", "sigma"):
        assert col in t
    assert np.all(t["sigma"] == 120.0) and np.all(t["photons"] > 0)
    # inside the field with a one-pixel margin (so every format, Picasso included, keeps every row)
    assert t.x.min() >= ps and t.x.max() < (40 - 1) * ps
    assert t.y.min() >= ps and t.y.max() < (48 - 1) * ps
    # blinking: sites reappear in several frames, positions repeat exactly
    _, counts = np.unique(np.round(t.x, 6), return_counts=True)
    assert counts.max() > 1


def test_camera_model_offset_and_dtype(measurement):
    frame = measurement.frame(3)
    assert frame.dtype == np.uint16 and frame.shape == (48, 40)
    # most pixels are background: offset 100 ADU + 20 photons, Poisson + read noise
    assert 112 < np.median(frame) < 128
    dark = simulate_measurement(**SMALL, emitters_per_frame=0, background=0, read_noise=0)
    assert len(dark.truth) == 0 and np.all(dark.frame(0) == 100)


def test_density_sets_emitters_per_frame():
    m = simulate_measurement(n_frames=300, height=64, width=64, density=0.5, seed=1)
    area_um2 = (64 * 0.107) ** 2
    assert m.truth.counts_per_frame().mean() == pytest.approx(0.5 * area_um2, rel=0.15)


def test_invalid_settings_are_one_line_parameter_errors():
    for bad in ({"n_frames": 0}, {"pixel_size": -1}, {"photons": float("nan")}, {"height": 2.5}):
        with pytest.raises(ParameterError) as exc:
            simulate_measurement(**bad)
        assert "\n" not in str(exc.value)


def _isolated_bright(truth, k, ps, min_photons=1500.0, min_gap_px=5):
    rows = truth.frame_rows(k)
    x, y, ph = truth.x[rows], truth.y[rows], truth["photons"][rows]
    out = []
    for i in range(len(x)):
        d = np.hypot(x - x[i], y - y[i])
        d[i] = np.inf
        if ph[i] >= min_photons and d.min() > min_gap_px * ps:
            out.append((x[i], y[i]))
    return out


def test_truth_lies_under_the_spots_corner_convention(measurement):
    """Centroids of isolated bright spots (pixel j centred at (j+0.5)*ps) match the truth to a few nm.

    A half-pixel shift (the classic centre/corner mix-up, 53.5 nm) would fail this.
    """
    ps = measurement.pixel_size
    errors = []
    for k in range(measurement.n_frames):
        frame = measurement.frame(k).astype(float) - 100.0 - 20.0  # offset and background
        for x, y in _isolated_bright(measurement.truth, k, ps):
            col, row = int(x // ps), int(y // ps)
            win = frame[row - 3 : row + 4, col - 3 : col + 4]
            if win.shape != (7, 7):
                continue
            peak = np.unravel_index(np.argmax(win), win.shape)
            assert max(abs(peak[0] - 3), abs(peak[1] - 3)) <= 1  # brightest pixel at or next to the truth pixel
            w = np.clip(win, 0, None)
            jj, ii = np.meshgrid(np.arange(col - 3, col + 4), np.arange(row - 3, row + 4))
            cx = ((jj + 0.5) * ps * w).sum() / w.sum()
            cy = ((ii + 0.5) * ps * w).sum() / w.sum()
            errors.append((cx - x, cy - y))
    errors = np.array(errors)
    assert len(errors) >= 20
    assert np.all(np.abs(np.median(errors, axis=0)) < 10.0)  # no systematic shift
    assert np.median(np.hypot(*errors.T)) < 25.0


def test_render_and_correlate_drops_when_truth_is_shifted(measurement):
    ps, sigma = measurement.pixel_size, 120.0
    rows, cols = np.mgrid[0:48, 0:40]

    def render(k, dx):
        sl = measurement.truth.frame_rows(k)
        img = np.zeros((48, 40))
        truth = measurement.truth
        for x, y, p in zip(truth.x[sl] + dx, truth.y[sl] + dx, truth["photons"][sl]):
            img += p * np.exp(-(((cols + 0.5) * ps - x) ** 2 + ((rows + 0.5) * ps - y) ** 2) / (2 * sigma**2))
        return img

    frames = range(0, 40, 4)
    data = np.concatenate([measurement.frame(k).ravel().astype(float) for k in frames])
    good = np.corrcoef(data, np.concatenate([render(k, 0.0).ravel() for k in frames]))[0, 1]
    shifted = np.corrcoef(data, np.concatenate([render(k, 0.5 * ps).ravel() for k in frames]))[0, 1]
    assert good > 0.97
    assert shifted < good - 0.05  # half a pixel in x and y (the centre/corner mix-up) is clearly worse


def test_generation_is_lazy_for_long_movies():
    tracemalloc.start()
    m = simulate_measurement(n_frames=20000, height=128, width=128, emitters_per_frame=5, seed=3)
    first = list(itertools.islice(m.frames(), 3))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    movie_bytes = 20000 * 128 * 128 * 2
    assert len(first) == 3 and m.truth.n_frames == 20000
    assert peak < movie_bytes / 20  # the truth table and a few frames, never the 655 MB movie


@pytest.mark.parametrize(
    ("fmt", "name"), [("picasso", "locs.hdf5"), ("thunderstorm", "locs.csv"), ("deepstorm", "locs_ds.csv")]
)
def test_simulate_write_read_round_trip(measurement, tmp_path, fmt, name):
    written = write_measurement(measurement, tmp_path / "movie.tif", tmp_path / name, loc_format=fmt)
    assert written[0] == tmp_path / "movie.tif" and (tmp_path / name) in written
    if fmt == "picasso":
        assert (tmp_path / "locs.yaml") in written
    back = read_locs(tmp_path / name, pixel_size=None if fmt == "picasso" else 107.0)
    truth = measurement.truth
    assert len(back) == len(truth)
    np.testing.assert_array_equal(back.frame, truth.frame)
    # Picasso stores float32 pixel coordinates (about 1e-3 nm here); CSVs keep full precision
    atol = 0.01 if fmt == "picasso" else 1e-6
    np.testing.assert_allclose(back.x, truth.x, rtol=0, atol=atol)
    np.testing.assert_allclose(back.y, truth.y, rtol=0, atol=atol)
    np.testing.assert_allclose(back["photons"], truth["photons"], rtol=1e-5)
    if fmt == "picasso":
        assert back.meta.pixel_size == 107.0 and back.meta.image_shape == (48, 40) and back.meta.n_frames == 40
    with open_movie(tmp_path / "movie.tif") as movie:
        assert (movie.n_frames, movie.shape, movie.dtype) == (40, (48, 40), np.uint16)
        assert movie.pixel_size == pytest.approx(107.0, rel=1e-6)
        for k in (0, 39):
            np.testing.assert_array_equal(movie.frame(k), measurement.frame(k))


def test_write_measurement_checks_all_outputs_first(measurement, tmp_path):
    (tmp_path / "locs.yaml").write_text("exists")
    with pytest.raises(OutputExistsError, match="locs.yaml"):
        write_measurement(measurement, tmp_path / "movie.tif", tmp_path / "locs.hdf5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["locs.yaml"]  # the movie was not written either
