"""The Binner: exact reconstruction from provenance, labels aligned with the image, seeds, fail-fast, CLI."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from imagebinner.cli import main as cli_main
from imagebinner.errors import OutputExistsError, ParameterError
from imagebinner.io import LocMeta, LocTable, TifWriter, open_movie, read_locs, write_locs, write_tif
from imagebinner.io.movie import Movie
from imagebinner.tools.binner import Binner, pool as pool_module
from imagebinner.tools.binner.provenance import provenance_record, provenance_text
from imagebinner.tools.binner.windows import (
    cell_areas,
    count_qualifying_per_frame,
    count_qualifying_windows,
    frames_may_qualify,
    pixel_indices,
    qualifying_cells,
    qualifying_windows_at,
    window_at,
    window_counts,
)

PS = 100.0


# -- simulated measurements -----------------------------------------------------------------------------------
def render(xs_nm, ys_nm, shape, ps, photons=3000.0, sigma_px=1.0) -> np.ndarray:
    """Gaussian spots sampled at pixel centres (corner convention: pixel j is centred at (j+0.5)*ps)."""
    h, w = shape
    yy = (np.arange(h) + 0.5)[:, None]
    xx = (np.arange(w) + 0.5)[None, :]
    img = np.zeros(shape)
    norm = photons / (2 * np.pi * sigma_px**2)
    for x, y in zip(xs_nm, ys_nm):
        img += norm * np.exp(-((xx - x / ps) ** 2 + (yy - y / ps) ** 2) / (2 * sigma_px**2))
    return img


def simulate(folder: Path, name: str, n_frames=20, shape=(48, 64), per_frame=(0, 6), seed=0, fmt="deepstorm",
             ps=PS, offset=100, empty_frames=(), bright=1.0, dtype="uint16"):
    """A movie with Gaussian spots at known positions and its localization file (format ``fmt``)."""
    rng = np.random.default_rng(seed)
    frames, xs, ys = [], [], []
    movie = np.empty((n_frames, *shape))
    for f in range(n_frames):
        k = 0 if f in empty_frames else int(rng.integers(per_frame[0], per_frame[1] + 1))
        x = rng.uniform(2 * ps, (shape[1] - 2) * ps, k)
        y = rng.uniform(2 * ps, (shape[0] - 2) * ps, k)
        frames += [f] * k
        xs.append(x)
        ys.append(y)
        movie[f] = offset + bright * render(x, y, shape, ps) + rng.normal(0, 2, shape)
    movie_path = folder / f"{name}.tif"
    write_tif(movie_path, np.clip(movie, 0, None), pixel_size=ps, dtype=dtype)
    table = LocTable(
        {
            "frame": np.array(frames, dtype=np.int64),
            "x": np.concatenate(xs),
            "y": np.concatenate(ys),
            "photons": np.full(len(frames), 3000.0),
            "sigma": np.full(len(frames), ps),
        },
        LocMeta(pixel_size=ps, image_shape=shape, n_frames=n_frames),
    )
    suffix = {"deepstorm": ".csv", "thunderstorm": ".csv", "picasso": ".hdf5"}[fmt]
    locs_path = folder / f"{name}_locs{suffix}"
    write_locs(table, locs_path, format=fmt, pixel_size=ps)
    return movie_path, locs_path, table


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    return [simulate(folder, f"m{i}", seed=i, empty_frames=(0, 5, 19)) for i in range(2)]


@pytest.fixture(scope="module")
def picasso(shared_data):
    d = shared_data / "picasso"
    return d / "testdata.tif", d / "testdata_locs.hdf5"


def make(measurements, out=None, **kw) -> Binner:
    kw.setdefault("patch_size", 16)
    kw.setdefault("n_patches", 40)
    kw.setdefault("n_binned", 12)
    kw.setdefault("bin_size", 4)
    kw.setdefault("min_emitters", 1)
    kw.setdefault("seed", 5)
    if out is not None:
        kw["output_folder"] = str(out)
    return Binner(measurements=[(str(m), str(l)) for m, l, *_ in measurements], **kw)


def quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


# -- outputs reconstruct exactly ------------------------------------------------------------------------------
def reconstruct(json_path: Path) -> tuple[np.ndarray, dict]:
    """Every binned frame recomputed from the provenance and the source movies with integer arithmetic."""
    prov = json.loads(json_path.read_text())
    p = prov["parameters"]
    size, offset, bin_size = p["patch_size"], p["camera_offset"], p["bin_size"]
    movies = [tifffile.imread(inp["movie"]["path"]) for inp in prov["inputs"]]
    sums = []
    for entry in prov["binned_frames"]:
        total = np.zeros((size, size), dtype=np.int64)
        assert len(entry["parts"]) == bin_size
        for part in entry["parts"]:
            r, c = part["row"], part["column"]
            total += movies[part["measurement"]][part["frame"], r : r + size, c : c + size].astype(np.int64)
        sums.append(total - int(offset) * (bin_size - 1))
    return np.array(sums), prov


def test_binned_frames_reconstruct_exactly_from_provenance(sim, tmp_path):
    b = make(sim, tmp_path / "out", camera_offset=100)
    paths = quiet(b.save)
    assert sorted(p.suffix for p in paths) == [".csv", ".json", ".tif"]
    sums, prov = reconstruct(tmp_path / "out" / "binned.json")
    written = tifffile.imread(tmp_path / "out" / "binned.tif")
    assert written.dtype == np.uint16 and written.shape == (12, 16, 16)
    np.testing.assert_array_equal(written, np.clip(sums, 0, 65535).astype(np.uint16))
    assert b.clipped_pixels == int(np.count_nonzero((sums < 0) | (sums > 65535)))
    # pixel size in the TIF's resolution tags, as the notebook reads it (unit cm)
    assert open_movie(tmp_path / "out" / "binned.tif").pixel_size == pytest.approx(PS)
    # provenance records the inputs and every part
    assert [inp["movie"]["size"] for inp in prov["inputs"]] == [m.stat().st_size for m, *_ in sim]
    assert len(prov["binned_frames"]) == 12 and prov["parameters"]["seed"] == 5


def test_clipping_is_counted_and_float32_keeps_the_exact_sum(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    bright = [simulate(folder, "bright", n_frames=30, shape=(24, 24), per_frame=(2, 4), bright=60.0, seed=3)]
    b = make(bright, tmp_path / "u16", patch_size=12, n_patches=30, bin_size=8, n_binned=5, camera_offset=0)
    quiet(b.save)
    sums, _ = reconstruct(tmp_path / "u16" / "binned.json")
    assert sums.max() > 65535  # the test case really overflows uint16
    assert b.clipped_pixels == int(np.count_nonzero(sums > 65535)) > 0
    written = tifffile.imread(tmp_path / "u16" / "binned.tif")
    np.testing.assert_array_equal(written, np.clip(sums, 0, 65535))
    b32 = make(bright, tmp_path / "f32", patch_size=12, n_patches=30, bin_size=8, n_binned=5, camera_offset=0,
               output_dtype="float32")
    quiet(b32.save)
    written32 = tifffile.imread(tmp_path / "f32" / "binned.tif")
    assert written32.dtype == np.float32 and b32.clipped_pixels == 0
    np.testing.assert_array_equal(written32, sums.astype(np.float32))


def test_offset_can_make_sums_negative_and_they_clip_at_zero(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    meas = [simulate(folder, "dim", n_frames=6, shape=(24, 24), per_frame=(1, 3), offset=5, seed=4)]
    b = make(meas, tmp_path / "out", patch_size=12, n_patches=20, bin_size=5, n_binned=4, camera_offset=100)
    quiet(b.save)
    sums, _ = reconstruct(tmp_path / "out" / "binned.json")
    assert sums.min() < 0
    written = tifffile.imread(tmp_path / "out" / "binned.tif")
    assert written.min() == 0  # clipped, not wrapped around
    assert b.clipped_pixels == int(np.count_nonzero(sums < 0))


# -- labels ---------------------------------------------------------------------------------------------------
def expected_labels(b: Binner, prov: dict, tables: list[LocTable]) -> list[np.ndarray]:
    """Labels per binned frame recomputed independently from the source tables and the provenance."""
    ps, size = prov["parameters"]["pixel_size"], prov["parameters"]["patch_size"]
    out = []
    for entry in prov["binned_frames"]:
        rows = []
        for part in entry["parts"]:
            t = tables[part["measurement"]]
            sel = t.frame == part["frame"]
            x, y = t.x[sel], t.y[sel]
            inside = (np.floor(x / ps) >= part["column"]) & (np.floor(x / ps) < part["column"] + size)
            inside &= (np.floor(y / ps) >= part["row"]) & (np.floor(y / ps) < part["row"] + size)
            rows.append(np.c_[x[inside] - part["column"] * ps, y[inside] - part["row"] * ps])
        out.append(np.concatenate(rows))
    return out


def test_csv_is_a_deepstorm_training_csv_with_the_union_of_the_parts_labels(sim, tmp_path):
    b = make(sim, tmp_path / "out")
    quiet(b.save)
    raw = pd.read_csv(tmp_path / "out" / "binned.csv", index_col=0)
    assert list(raw.columns) == ["frame", "x [nm]", "y [nm]", "Photon #", "Sigma [nm]"]
    assert list(raw.index) == list(range(1, len(raw) + 1))
    assert raw["frame"].is_monotonic_increasing and raw["frame"].min() >= 1 and raw["frame"].max() <= 12
    prov = json.loads((tmp_path / "out" / "binned.json").read_text())
    tables = [quiet(read_locs, l) for _, l, *_ in sim]
    expected = expected_labels(b, prov, tables)
    for j, exp in enumerate(expected):
        got = raw[raw["frame"] == j + 1][["x [nm]", "y [nm]"]].to_numpy()
        np.testing.assert_allclose(got, exp, atol=1e-6)
        assert len(got) == sum(p["n_locs"] for p in prov["binned_frames"][j]["parts"])
    # every label lies inside its frame [0, P*ps)
    assert (raw[["x [nm]", "y [nm]"]].to_numpy() >= 0).all()
    assert (raw[["x [nm]", "y [nm]"]].to_numpy() < 16 * PS).all()


def correlation(b: Binner, shift_px: float, sigma_px: float) -> float:
    """Mean Pearson correlation of each binned frame with Gaussian spots rendered at its (shifted) labels."""
    ps, size = b.stats["pixel_size"], b.patch_size
    values = []
    for j in range(b.n_binned):
        frame = b.binned_frame(j)
        if len(frame.locs) == 0:
            continue
        model = render(frame.locs.x + shift_px * ps, frame.locs.y + shift_px * ps, (size, size), ps,
                       sigma_px=sigma_px)
        values.append(np.corrcoef(model.ravel(), frame.sum.ravel().astype(float))[0, 1])
    return float(np.mean(values))


def test_labels_line_up_with_the_binned_image_on_picasso_data(picasso):
    movie, locs = picasso
    b = Binner(measurements=[(str(movie), str(locs))], patch_size=16, min_emitters=1, n_patches=60, n_binned=20,
               bin_size=3, seed=2)
    quiet(b.compose)
    aligned = correlation(b, 0.0, 1.0)
    shifted = correlation(b, 0.5, 1.0)
    assert aligned > 0.8
    assert aligned > shifted + 0.08


def test_labels_line_up_with_the_binned_image_on_simulated_data(sim):
    b = make(sim, min_emitters=2, n_patches=30, n_binned=10, bin_size=3)
    quiet(b.compose)
    aligned = correlation(b, 0.0, 1.0)
    shifted = correlation(b, 0.5, 1.0)
    assert aligned > 0.98
    assert aligned > shifted + 0.08


def test_every_local_localization_is_inside_its_patch_even_at_pixel_edges():
    ps = 107.0
    x = np.array([0.0, 107.0, 106.99999999999999, 5 * 107.0, 3 * 107.0 - 1e-12, 0.1 * 3 * 107.0])
    px = pixel_indices(x, ps)
    assert ((px * ps <= x) & (x < (px + 1) * ps)).all()


# -- windows: vectorised counts and exact qualifying counts ---------------------------------------------------
def test_window_counts_and_exact_qualifying_counts_match_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(30):
        h, w, size = int(rng.integers(5, 20)), int(rng.integers(5, 20)), int(rng.integers(1, 6))
        k = int(rng.integers(0, 40 if trial % 3 else 400))
        py, px = rng.integers(0, h, k), rng.integers(0, w, k)
        emin = int(rng.integers(0, 4))
        sums = np.array([[np.count_nonzero((py >= n) & (py < n + size) & (px >= m) & (px < m + size))
                          for m in range(w - size + 1)] for n in range(h - size + 1)])
        assert count_qualifying_windows(py, px, h, w, size, emin) == np.count_nonzero(sums >= emin)
        rows = rng.integers(0, h - size + 1, 25)
        cols = rng.integers(0, w - size + 1, 25)
        got = window_counts(np.zeros(25, int), np.full(25, k), rows, cols, py, px, size)
        np.testing.assert_array_equal(got, sums[rows, cols])


def test_pair_filter_never_drops_a_frame_that_qualifies():
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, 12, 300)
    lengths[:3] = [80, 0, 2]  # a large frame (always kept), an empty one, a pair
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    n = int(lengths.sum())
    py, px = rng.integers(0, 60, n), rng.integers(0, 60, n)
    for emin in (0, 1, 2, 3, 4):
        keep = frames_may_qualify(starts, starts + lengths, py, px, 12, emin, max_pairs=500)
        exact = np.array([count_qualifying_windows(py[a:a + k], px[a:a + k], 60, 60, 12, emin)
                          for a, k in zip(starts, lengths)])
        assert keep[exact > 0].all()
        if emin == 2:  # for pairs the filter is exact
            np.testing.assert_array_equal(keep[3:], exact[3:] > 0)


# -- draws ------------------------------------------------------------------------------------------------------
def test_pool_is_distinct_and_binned_frames_have_distinct_non_overlapping_parts(sim):
    b = make(sim, n_patches=60, n_binned=30, bin_size=6)
    pool = quiet(b.draw_pool)
    keys = set(zip(pool.measurement, pool.frame, pool.row, pool.column))
    assert len(keys) == 60
    assert (pool.n_locs >= 1).all()
    plan = b.compose()
    for parts in plan:
        assert len(set(parts)) == 6
        for a in parts:
            for c in parts:
                if a != c and pool.measurement[a] == pool.measurement[c] and pool.frame[a] == pool.frame[c]:
                    assert (abs(pool.row[a] - pool.row[c]) >= 16 or abs(pool.column[a] - pool.column[c])
                            >= 16)


def test_without_reuse_each_pool_patch_is_used_once(sim):
    b = make(sim, n_patches=40, n_binned=8, bin_size=5, reuse_patches=False)
    plan = quiet(b.compose)
    assert len(np.unique(plan)) == plan.size == 40


def test_same_seed_gives_identical_files_and_another_seed_other_draws(sim, tmp_path):
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        quiet(make(sim, tmp_path / name, seed=seed).save)
    for suffix in ("tif", "csv", "json"):
        assert (tmp_path / "a" / f"binned.{suffix}").read_bytes() == (tmp_path / "b" / f"binned.{suffix}").read_bytes()
    pa = json.loads((tmp_path / "a" / "binned.json").read_text())["binned_frames"]
    pc = json.loads((tmp_path / "c" / "binned.json").read_text())["binned_frames"]
    assert pa != pc
    assert (tmp_path / "a" / "binned.tif").read_bytes() != (tmp_path / "c" / "binned.tif").read_bytes()


def test_no_seed_draws_a_seed_and_records_it(sim, tmp_path):
    b = make(sim, tmp_path / "a", seed=None)
    quiet(b.save)
    seed = json.loads((tmp_path / "a" / "binned.json").read_text())["parameters"]["seed"]
    assert seed == b.seed_used
    quiet(make(sim, tmp_path / "b", seed=seed).save)
    assert (tmp_path / "a" / "binned.tif").read_bytes() == (tmp_path / "b" / "binned.tif").read_bytes()


def test_draw_is_uniform_over_windows_and_includes_the_last_frame(tmp_path):
    """min_emitters=0: patches per measurement in proportion to its windows; every frame, the last included."""
    folder = tmp_path / "in"
    folder.mkdir()
    small = simulate(folder, "small", n_frames=5, shape=(20, 20), per_frame=(0, 0))
    big = simulate(folder, "big", n_frames=5, shape=(40, 40), per_frame=(0, 0))
    b = make([small, big], min_emitters=0, patch_size=10, n_patches=3000, bin_size=2, n_binned=1)
    pool = quiet(b.draw_pool)
    share_small = np.mean(pool.measurement == 0)
    expected = 5 * 11 * 11 / (5 * 11 * 11 + 5 * 31 * 31)
    assert abs(share_small - expected) < 4 * np.sqrt(expected * (1 - expected) / 3000)
    for i in (0, 1):
        assert set(pool.frame[pool.measurement == i]) == {0, 1, 2, 3, 4}
    big_rows = pool.row[pool.measurement == 1]
    assert big_rows.max() == 30 and big_rows.min() == 0  # the last valid row offset is drawn too


def test_frames_without_localizations(sim, tmp_path):
    """Empty frames count in the statistics and never enter a pool that needs emitters."""
    b = make(sim, min_emitters=1)
    pool = quiet(b.draw_pool)
    assert not set(pool.frame) & {0, 5, 19}
    st = b.statistics()["measurements"][0]
    assert len(st["locs_per_frame"]) == 20 and st["locs_per_frame"][[0, 5, 19]].tolist() == [0, 0, 0]
    assert st["empty_frames"] >= 3
    assert st["density_per_um2"] == pytest.approx(st["locs_per_frame"].mean() / (48 * 64 * 0.01))
    # with min_emitters = 0 they can, and their binned frames may have no labels at all
    folder = tmp_path / "in"
    folder.mkdir()
    empty = simulate(folder, "empty", n_frames=4, shape=(20, 20), per_frame=(0, 0))
    e = make([empty], tmp_path / "out", min_emitters=0, patch_size=10, n_patches=20, bin_size=2, n_binned=3)
    quiet(e.save)
    assert len(pd.read_csv(tmp_path / "out" / "binned.csv", index_col=0)) == 0
    assert tifffile.imread(tmp_path / "out" / "binned.tif").shape == (3, 10, 10)


def test_statistics_report_acceptance_and_emitters_per_binned_frame(sim):
    b = make(sim)
    quiet(b.compose)
    s = b.statistics()
    assert 0 < s["pool"]["acceptance_rate"] <= 1
    assert s["pool"]["accepted"] >= 40 and s["pool"]["draws"] >= s["pool"]["accepted"]
    emitters = s["binned"]["emitters_per_frame"]
    assert len(emitters) == 12
    assert [len(b.binned_frame(j).locs) for j in range(12)] == emitters.tolist()


# -- mixed formats ----------------------------------------------------------------------------------------------
def test_mixed_input_formats_in_one_run(picasso, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    movie, locs = picasso
    ts = simulate(folder, "ts", n_frames=10, shape=(32, 32), per_frame=(1, 4), ps=130.0, fmt="thunderstorm")
    ds = simulate(folder, "ds", n_frames=10, shape=(32, 32), per_frame=(1, 4), ps=130.0, fmt="deepstorm", seed=9)
    meas = [(movie, locs), ts[:2], ds[:2]]
    b = make(meas, tmp_path / "out", n_patches=80, n_binned=20, bin_size=6)
    quiet(b.save)
    sums, prov = reconstruct(tmp_path / "out" / "binned.json")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "binned.tif"), np.clip(sums, 0, 65535))
    assert [inp["locs_format"] for inp in prov["inputs"]] == ["picasso", "thunderstorm", "deepstorm"]
    used = {p["measurement"] for f in prov["binned_frames"] for p in f["parts"]}
    assert used == {0, 1, 2}
    tables = [quiet(read_locs, p) for p in (locs, ts[1], ds[1])]
    raw = pd.read_csv(tmp_path / "out" / "binned.csv", index_col=0)
    expected = expected_labels(b, prov, tables)
    for j, exp in enumerate(expected):
        np.testing.assert_allclose(raw[raw["frame"] == j + 1][["x [nm]", "y [nm]"]].to_numpy(), exp, atol=1e-6)


# -- validation and fail-fast -----------------------------------------------------------------------------------
@pytest.fixture
def work(monkeypatch) -> dict:
    """Counts of the expensive work: movie window reads and windows tested by the pool draw."""
    counts = {"reads": 0, "windows_tested": 0}
    window, windows, window_counts = Movie.window, Movie.windows, pool_module.window_counts

    def counted_window(self, *args, **kw):
        counts["reads"] += 1
        return window(self, *args, **kw)

    def counted_windows(self, frames, *args, **kw):
        counts["reads"] += len(frames)
        return windows(self, frames, *args, **kw)

    def counted_counts(starts, *args, **kw):
        counts["windows_tested"] += len(starts)
        return window_counts(starts, *args, **kw)

    monkeypatch.setattr(Movie, "window", counted_window)
    monkeypatch.setattr(Movie, "windows", counted_windows)
    monkeypatch.setattr(pool_module, "window_counts", counted_counts)
    return counts


FAIL_FAST_WINDOWS = 100_000  # windows a failing draw may test (max_attempts is 2,000,000 by default)


def fails_fast(binner: Binner, match: str, work: dict, step="compose") -> str:
    """The step fails with a one-line message, before reading any pixel and after testing few windows."""
    before = dict(work)
    with pytest.raises(ParameterError, match=match) as info:
        quiet(getattr(binner, step))
    assert work["reads"] == before["reads"]
    assert work["windows_tested"] - before["windows_tested"] < FAIL_FAST_WINDOWS
    assert "\n" not in str(info.value)
    return str(info.value)


def test_impossible_settings_fail_fast_with_a_clear_message(sim, picasso, tmp_path, work):
    fails_fast(make(sim, patch_size=49), r"patch_size 49 px is larger than movie m0\.tif \(48x64 px\)", work)
    fails_fast(make(sim, n_patches=5, bin_size=6), "bin_size 6 exceeds the pool of n_patches 5", work)
    fails_fast(make(sim, reuse_patches=False, n_patches=40, n_binned=12, bin_size=4),
               "without reuse_patches, n_binned\\*bin_size = 48", work)
    fails_fast(make(sim, min_emitters=50), "no frame holds min_emitters=50 localizations.*lower min_emitters", work)
    # more patches asked than windows qualify: exact count in the message
    b = make(sim, min_emitters=6, patch_size=10, n_patches=5000)
    msg = fails_fast(b, "cannot fill a pool of n_patches=5000", work)
    q = b.count_qualifying_windows()
    assert f"only {q} of " in msg and "lower min_emitters" in msg and "larger patch_size" in msg
    # pixel sizes that disagree
    folder = tmp_path / "in"
    folder.mkdir()
    other = simulate(folder, "other", n_frames=4, shape=(48, 64), ps=107.0)
    fails_fast(make([sim[0], other]), "disagree on the pixel size", work, step="load")
    # localization frames beyond the movie: the error names the localization file
    table = sim[0][2]
    late = folder / "late.csv"
    write_locs(table.with_columns(frame=table.frame + 5), late, format="deepstorm")
    msg = fails_fast(make([(sim[0][0], late)]), "has 20 frames", work, step="load")
    assert str(late) in msg


def test_no_pixel_size_anywhere_asks_for_one(tmp_path):
    write_tif(tmp_path / "m.tif", np.zeros((3, 20, 20), np.uint16))
    t = LocTable({"frame": [0, 1], "x": [500.0, 700.0], "y": [500.0, 900.0]})
    write_locs(t, tmp_path / "m.csv", format="deepstorm")
    with pytest.raises(ParameterError, match="no pixel size"):
        quiet(make([(tmp_path / "m.tif", tmp_path / "m.csv")], patch_size=10).load)
    b = make([(tmp_path / "m.tif", tmp_path / "m.csv")], patch_size=10, pixel_size=100, n_patches=2, bin_size=2,
             n_binned=1)
    assert quiet(b.load)[0].table.pixel_size == 100


def test_localizations_outside_the_image_are_dropped_with_a_warning(tmp_path):
    write_tif(tmp_path / "m.tif", np.zeros((3, 20, 20), np.uint16), pixel_size=100)
    t = LocTable({"frame": [0, 0, 1, 2], "x": [500.0, 2000.0, 700.0, 100.0], "y": [500.0, 900.0, -1.0, 1999.0]})
    write_locs(t, tmp_path / "m.csv", format="deepstorm")
    b = make([(tmp_path / "m.tif", tmp_path / "m.csv")], patch_size=10)
    with pytest.warns(UserWarning, match="dropped 2 of 4 localization"):
        ms = b.load()
    assert len(ms[0].table) == 2 and b.statistics()["measurements"][0]["dropped_outside"] == 2


def test_outputs_are_never_replaced_unless_asked(sim, tmp_path):
    out = tmp_path / "out"
    quiet(make(sim, out).save)
    before = (out / "binned.tif").read_bytes()
    with pytest.raises(OutputExistsError):
        quiet(make(sim, out, seed=9).save)
    assert (out / "binned.tif").read_bytes() == before
    quiet(make(sim, out, seed=9, overwrite=True).save)
    assert (out / "binned.tif").read_bytes() != before
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "other.tif").write_bytes(b"x")
    with pytest.raises(ParameterError, match="already holds other data files"):
        quiet(make(sim, tmp_path / "busy").save)
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["other.tif"]


def test_a_failed_draw_writes_nothing(sim, tmp_path):
    with pytest.raises(ParameterError):
        quiet(make(sim, tmp_path / "out", min_emitters=50).save)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_progress_reaches_the_end(sim, tmp_path):
    b = make(sim, tmp_path / "out")
    seen = []
    b.param.watch(lambda e: seen.append(e.new), "progress")
    quiet(b.save)
    assert b.progress == b.n_steps and seen[-1] == b.n_steps and not b.running
    assert "wrote 12 binned frames" in b.status


# -- CLI --------------------------------------------------------------------------------------------------------
def test_cli_end_to_end(sim, picasso, tmp_path, capsys):
    movie, locs = picasso
    out = tmp_path / "cli"
    args = ["bin", "--movie", str(movie), "--locs", str(locs), "--movie", str(sim[0][0]), "--locs",
            str(sim[0][1]), "-o", str(out), "--patch-size", "16", "--n-patches", "50", "--n-binned", "15",
            "--bin-size", "5", "--min-emitters", "1", "--seed", "3", "--pixel-size", "130"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert "locs/µm²" in printed and "acceptance rate" in printed and "emitters per frame" in printed
    files = sorted(p.suffix for p in out.iterdir())
    assert files == [".csv", ".json", ".tif"]
    labels = pd.read_csv(out / "binned.csv", index_col=0)[["x [nm]", "y [nm]"]].to_numpy()
    assert len(labels) and (labels >= 0).all() and (labels < 16 * 130).all()
    sums, _ = reconstruct(out / "binned.json")
    np.testing.assert_array_equal(tifffile.imread(out / "binned.tif"), np.clip(sums, 0, 65535))
    # a second run refuses to overwrite: one-line error, exit 2
    assert cli_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("imagebinner: error:") and "exists already" in err[-1]
    # impossible setting: one line, exit 2, nothing written
    bad = ["bin", "--movie", str(movie), "--locs", str(locs), "-o", str(tmp_path / "bad"), "--patch-size", "40"]
    assert cli_main(bad) == 2
    assert "--patch-size 40 px is larger" in capsys.readouterr().err  # the CLI names flags
    assert not (tmp_path / "bad").exists()
    assert cli_main(["bin", "--movie", str(movie), "-o", str(tmp_path / "x"), "--locs", str(locs), "--movie",
                     str(movie)]) == 2


def test_picasso_raw_and_tif_movies_give_identical_outputs(picasso, shared_data, tmp_path):
    """Same pixels through the memory-mapped .raw reader and the TIF reader: byte-identical binned TIFs."""
    movie, locs = picasso
    raw = shared_data / "picasso" / "testdata.raw"
    for name, m in (("tif", movie), ("raw", raw)):
        quiet(Binner(measurements=[(str(m), str(locs))], patch_size=16, min_emitters=1, n_patches=40, n_binned=10,
                     bin_size=4, seed=8, output_folder=str(tmp_path / name)).save)
    assert (tmp_path / "tif" / "binned.tif").read_bytes() == (tmp_path / "raw" / "binned.tif").read_bytes()
    assert (tmp_path / "tif" / "binned.csv").read_bytes() == (tmp_path / "raw" / "binned.csv").read_bytes()


def test_windows_that_never_qualify_in_busy_frames_fail_fast(tmp_path, work):
    """Frames with enough localizations but spread too far apart: no window qualifies, no endless drawing."""
    n_frames, per_frame = 200, 4
    write_tif(tmp_path / "m.tif", np.zeros((n_frames, 64, 64), np.uint16), pixel_size=100)
    corners = np.array([[50.0, 50.0], [6350.0, 50.0], [50.0, 6350.0], [6350.0, 6350.0]])
    t = LocTable({"frame": np.repeat(np.arange(n_frames), per_frame), "x": np.tile(corners[:, 0], n_frames),
                  "y": np.tile(corners[:, 1], n_frames)})
    write_locs(t, tmp_path / "m.csv", format="deepstorm")
    b = make([(tmp_path / "m.tif", tmp_path / "m.csv")], patch_size=20, min_emitters=2, n_patches=10)
    msg = fails_fast(b, "only 0 of ", work)
    assert "windows hold >= 2 localizations" in msg


def test_rare_qualifying_windows_are_found_exactly_and_uniformly(tmp_path, work):
    """Sparse data: rejection sampling gives up early, exact sampling among qualifying windows fills the pool."""
    n_frames = 300
    write_tif(tmp_path / "m.tif", np.zeros((n_frames, 64, 64), np.uint16), pixel_size=100)
    corners = [[50.0, 50.0], [6350.0, 50.0], [50.0, 6350.0], [6350.0, 6350.0]]
    frames, xs, ys = [], [], []
    for f in range(n_frames):
        pts = corners
        if f == 7:
            pts = [[1000.0, 1000.0], [1150.0, 1250.0]]  # pixels (10, 10) and (11, 12): a close pair
        if f == 123:
            pts = [[3000.0, 3000.0], [4450.0, 3050.0]]  # pixels (30, 30) and (30, 44): a wider pair
        for x, y in pts:
            frames.append(f)
            xs.append(x)
            ys.append(y)
    t = LocTable({"frame": frames, "x": xs, "y": ys})
    write_locs(t, tmp_path / "m.csv", format="deepstorm")
    b = make([(tmp_path / "m.tif", tmp_path / "m.csv")], patch_size=20, min_emitters=2, n_patches=30,
             max_attempts=5000, bin_size=2, n_binned=3)
    pool = quiet(b.draw_pool)
    q7 = count_qualifying_windows(np.array([10, 12]), np.array([10, 11]), 64, 64, 20, 2)
    q123 = count_qualifying_windows(np.array([30, 30]), np.array([30, 44]), 64, 64, 20, 2)
    # rejection sampling gave up early (at most max_attempts draws), then each qualifying window was tested once
    assert b.statistics()["pool"]["draws"] <= 5000
    assert work["windows_tested"] <= 5000 + q7 + q123 and work["reads"] == 0
    assert b.count_qualifying_windows() == q7 + q123 == b.statistics()["pool"]["qualifying_windows"]
    assert set(pool.frame) <= {7, 123} and (pool.n_locs == 2).all()
    assert len(set(zip(pool.frame, pool.row, pool.column))) == 30
    # uniform over the qualifying windows: frame shares follow their numbers of qualifying windows
    big = make([(tmp_path / "m.tif", tmp_path / "m.csv")], patch_size=20, min_emitters=2, n_patches=200,
               max_attempts=1, bin_size=2, n_binned=1)
    shares = []
    for seed in range(5):
        big.seed = seed
        shares.append(np.mean(quiet(big.draw_pool).frame == 7))
    expected = q7 / (q7 + q123)
    assert abs(np.mean(shares) - expected) < 0.06


def test_in_memory_tables_and_binned_frame_for_a_gui(sim, tmp_path):
    """A LocTable can stand in for a file; binned_frame(j) matches the written frame j and its CSV rows."""
    movie, locs_path, _ = sim[0]
    table = quiet(read_locs, locs_path)
    b = Binner(measurements=[(str(movie), table)], patch_size=16, n_patches=30, n_binned=6, bin_size=3,
               min_emitters=1, seed=4, output_folder=str(tmp_path / "out"))
    quiet(b.save)
    written = tifffile.imread(tmp_path / "out" / "binned.tif")
    raw = pd.read_csv(tmp_path / "out" / "binned.csv", index_col=0)
    for j in range(6):
        frame = b.binned_frame(j)
        np.testing.assert_array_equal(frame.image, written[j])
        np.testing.assert_allclose(np.c_[frame.locs.x, frame.locs.y],
                                   raw[raw["frame"] == j + 1][["x [nm]", "y [nm]"]].to_numpy())
        assert [p["n_locs"] for p in frame.parts] == [
            len(b.patch_locs(int(k))["x"]) for k in b.compose()[j]
        ]
    assert json.loads((tmp_path / "out" / "binned.json").read_text())["inputs"][0]["locs"]["path"] == str(
        locs_path.resolve())


# -- the vectorised fast paths give exactly what the simple per-frame / per-patch versions give ------------------
def test_vectorised_qualifying_counts_and_window_numbering_match_the_per_frame_versions():
    rng = np.random.default_rng(7)
    for trial in range(40):
        n_frames, size = int(rng.integers(1, 30)), int(rng.integers(1, 10))
        heights = rng.integers(size, size + 25, n_frames)
        widths = rng.integers(size, size + 25, n_frames)
        lengths = rng.integers(0, 40 if trial % 4 == 0 else 7, n_frames)  # dense frames: summed-area path
        starts = np.r_[0, np.cumsum(lengths)[:-1]]
        py = np.concatenate([rng.integers(0, h, k) for h, k in zip(heights, lengths)]).astype(np.int64)
        px = np.concatenate([rng.integers(0, w, k) for w, k in zip(widths, lengths)]).astype(np.int64)
        emin = int(rng.integers(0, 4))
        stops = starts + lengths
        counts = count_qualifying_per_frame(starts, stops, heights, widths, py, px, size, emin)
        cells = [qualifying_cells(py[a:b], px[a:b], h, w, size, emin)
                 for a, b, h, w in zip(starts, stops, heights, widths)]
        np.testing.assert_array_equal(counts, [cell_areas(c).sum() for c in cells])
        frames = np.flatnonzero(counts).repeat(5)
        within = rng.integers(0, counts[frames]) if len(frames) else frames
        rows, cols = qualifying_windows_at(frames, within, starts, stops, heights, widths, py, px, size, emin)
        for f, w, r, c in zip(frames, within, rows, cols):
            assert (r, c) == tuple(int(v[0]) for v in window_at(cells[f], np.array([w])))


def test_vectorised_compose_matches_a_frame_by_frame_draw(sim):
    """One fresh permutation per binned frame, greedy choice skipping overlapping windows: the plan the
    vectorised compose builds is exactly this simple procedure's (same seed, same plan)."""
    b = make(sim, patch_size=30, n_patches=50, n_binned=40, bin_size=5)  # large patches: many overlaps
    plan = quiet(b.compose)
    pool = b.draw_pool()
    rng = np.random.default_rng([int(b.seed_used), 1])
    same_frame = (pool.measurement[:, None] == pool.measurement) & (pool.frame[:, None] == pool.frame)
    overlap = same_frame & (np.abs(pool.row[:, None] - pool.row) < 30) & (
        np.abs(pool.column[:, None] - pool.column) < 30)
    np.fill_diagonal(overlap, False)
    assert overlap.any()
    for j in range(len(plan)):
        chosen: list[int] = []
        for k in rng.permutation(len(pool.frame)).tolist():
            if len(chosen) < 5 and not overlap[k, chosen].any():
                chosen.append(k)
        assert plan[j].tolist() == chosen


def test_gathered_windows_whole_stack_tif_and_compact_provenance_equal_the_simple_ways(sim, tmp_path):
    movie_path = sim[0][0]
    rng = np.random.default_rng(3)
    with open_movie(movie_path) as movie:
        frames, rows, cols = rng.integers(0, 20, 30), rng.integers(0, 48 - 16, 30), rng.integers(0, 64 - 16, 30)
        np.testing.assert_array_equal(movie.windows(frames, rows, cols, 16),
                                      [movie.window(f, r, c, 16) for f, r, c in zip(frames, rows, cols)])
        with pytest.raises(IndexError):
            movie.windows([0], [40], [0], 16)
    stack = rng.integers(-50, 70000, (7, 9, 11))
    for dtype in ("uint16", "float32"):
        streamed = TifWriter(tmp_path / f"s_{dtype}.tif", pixel_size=PS, dtype=dtype)
        streamed.write_stream(iter(stack), len(stack))
        whole = TifWriter(tmp_path / f"w_{dtype}.tif", pixel_size=PS, dtype=dtype)
        whole.write_array(stack)
        assert (tmp_path / f"s_{dtype}.tif").read_bytes() == (tmp_path / f"w_{dtype}.tif").read_bytes()
        assert whole.clipped == streamed.clipped == (np.count_nonzero((stack < 0) | (stack > 65535))
                                                     if dtype == "uint16" else 0)
    # the provenance text is the record dumped with json: it reads back equal, parts and all
    patches = rng.integers(0, 3000, (6, 5))
    index = rng.integers(0, 6, (4, 3))
    record = provenance_record({"seed": np.int64(3), "pixel_size": 100.0}, [], patches, index, {"draws": np.int64(7)})
    text = provenance_text(record)
    assert json.loads(text) == record
    assert json.loads(text)["binned_frames"][3]["parts"][2] == dict(
        zip(("measurement", "frame", "row", "column", "n_locs"), patches[index[3, 2]].tolist()))
    assert sum(line.startswith('  {"binned_frame": ') for line in text.splitlines()) == 4  # one line each
    assert json.loads(provenance_text({**record, "binned_frames": []}))["binned_frames"] == []
