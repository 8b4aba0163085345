"""Binning to a target density: targets met on simulated data of known density, exact rebuild from the provenance,
fixed bin_size byte-identical to before, impossible targets refused fast, notebook settings, 1-frame refusal."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from imagebinner.cli import main as cli_main
from imagebinner.errors import ImageBinnerError, ParameterError
from imagebinner.io import read_locs, write_tif
from imagebinner.simulate import simulate_measurement, write_measurement
from imagebinner.tools.binner import Binner
from imagebinner.tools.binner.notebook import notebook_pixel_size, upsampling_for
from imagebinner.tools.binner.target import parse_target

PS = 100.0


def save(b: Binner) -> list[Path]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return b.save()


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """Two simulated measurements (0.6 and 1.5 emitters per µm² per frame) and a test movie (1.0 per µm²)."""
    base = tmp_path_factory.mktemp("known")
    pairs = []
    for i, density in enumerate((0.6, 1.5, 1.0)):
        m = simulate_measurement(n_frames=30, height=40, width=48, pixel_size=PS, density=density, seed=10 + i)
        movie, locs = write_measurement(m, base / f"m{i}.tif", base / f"m{i}_locs.hdf5")[:2]
        pairs.append((str(movie), str(locs)))
    return pairs


# -- fixed bin_size: the same files as before target densities existed ------------------------------------------
# digests of outputs written by the code before this change (commit b4eb8fb), same inputs and seeds
BEFORE = {
    "sim_uint16": ("5bb41d39b275119e2723349c2bbc8664ae46521fc6795c39dee14f027cd33ac4",
                   "e897b125335facc9376ce98369a08c89483b3b2d2aba14126f5bd90106a599f2",
                   "385fc63c820509f0f5223be3c74f75e72392e2bc31343b1505551f5bde4119e1"),
    "sim_noreuse_float": ("ddb6cf0f6d428579f3269561471ae1ef2f9803813bfc5c18ac59c7a07a499063",
                          "32f9ba00c3fc6cb88abadb96a91d2df3d7cfcb9164ef6e346afe03a86462a07d",
                          "ed88de86472afdd366aedd9b4f6198f051aedc25e01128d853b22099a47f75de"),
    "picasso": ("f59b861c790c9b6f58b63ad2df912d299cf226f57c2fca6318cdfeb8d9c66d5c",
                "5fb31462266dfb9c7131d2cdaafab27c81900bb3c2249f461df59c2cbf4842b3",
                "791e94793f0203d528e533f004498bfd39c6ca956dfc727e0a411e2f10819cf9"),
}


def test_fixed_bin_size_outputs_are_byte_identical_to_before(known, shared_data, tmp_path):
    pairs = known[:2]
    picasso = shared_data / "picasso"
    cases = {
        "sim_uint16": dict(measurements=pairs, patch_size=12, n_patches=60, n_binned=25, bin_size=5, seed=3),
        "sim_noreuse_float": dict(measurements=pairs, patch_size=10, n_patches=80, n_binned=8, bin_size=6, seed=4,
                                  reuse_patches=False, output_dtype="float32", camera_offset=90),
        "picasso": dict(measurements=[(str(picasso / "testdata.tif"), str(picasso / "testdata_locs.hdf5"))],
                        patch_size=16, n_patches=100, n_binned=20, bin_size=8, min_emitters=1, seed=11),
    }
    for name, kw in cases.items():
        b = Binner(output_folder=str(tmp_path / name), **kw)
        tif, csv, js = save(b)
        b.close()
        frames = json.loads(js.read_text())["binned_frames"]
        got = (hashlib.sha256(tif.read_bytes()).hexdigest(), hashlib.sha256(csv.read_bytes()).hexdigest(),
               hashlib.sha256(json.dumps(frames).encode()).hexdigest())
        assert got == BEFORE[name], name
        assert b.frame_targets is None and "target" not in json.loads(js.read_text())


# -- targets met ---------------------------------------------------------------------------------------------------
def binner(pairs, **kw) -> Binner:
    kw = {"patch_size": 16, "n_patches": 150, "n_binned": 300, "min_emitters": 1, "seed": 7, **kw}
    return Binner(measurements=pairs, **kw)


def achieved(b: Binner) -> np.ndarray:
    return b.stats["binned"]["density_per_frame_per_um2"]


def test_a_single_target_is_met_on_average_and_every_frame_within_half_a_patch(known):
    b = binner(known[:2], target_density="12")
    b.compose()
    area = (16 * PS / 1000) ** 2
    got = achieved(b)
    assert abs(got.mean() - 12) <= 0.05 * 12
    # each frame stops at the patch count nearest to its goal: off by at most half of one patch's emitters
    assert np.all(np.abs(got - 12) * area <= b.pool.n_locs.max() / 2 + 1e-9)
    counts = b.stats["binned"]["parts_per_frame"]
    assert counts.min() < counts.max()  # the number of patches is chosen per frame
    np.testing.assert_array_equal(b.frame_targets, np.full(300, 12.0))


def test_a_range_is_spread_evenly_and_covered(known):
    b = binner(known[:2], target_density="5:20")
    b.compose()
    targets, got = b.frame_targets, achieved(b)
    np.testing.assert_allclose(np.sort(targets), np.linspace(5, 20, 300))
    assert not np.array_equal(targets, np.sort(targets))  # in a seeded random order
    assert abs(got.mean() - 12.5) <= 0.05 * 12.5
    half_patch = b.pool.n_locs.max() / 2 / (16 * PS / 1000) ** 2
    assert np.all(np.abs(got - targets) <= half_patch + 1e-9)
    assert got.min() <= 5 + half_patch and got.max() >= 20 - half_patch
    lows, highs = got[targets < 8], got[targets > 17]
    assert lows.max() < highs.min()  # the frames follow their targets


def test_the_density_of_a_test_movie_becomes_the_target(known):
    test_movie, test_locs = known[2]
    truth = read_locs(test_locs)
    measured = len(truth) / (30 * 40 * 48 * (PS / 1000) ** 2)  # all localizations over every frame's area
    b = binner(known[:2], target_density_from=test_locs, test_movie=test_movie, patch_size=24, n_patches=200)
    b.compose()
    assert b.stats["test"]["density_per_um2"] == pytest.approx(measured, rel=1e-12)
    np.testing.assert_allclose(b.frame_targets, measured)
    assert abs(achieved(b).mean() - measured) <= 0.05 * measured
    b.target_spread = "test"  # follow the test movie's per-frame distribution
    b.compose()
    per_frame = b.stats["test"]["density_per_frame_per_um2"]
    np.testing.assert_allclose(np.sort(b.frame_targets), np.quantile(per_frame, (np.arange(300) + 0.5) / 300))


def test_target_frames_rebuild_exactly_from_the_provenance(known, tmp_path):
    b = binner(known[:2], target_density="4:10", n_binned=40, camera_offset=100, output_folder=str(tmp_path / "o"))
    tif, csv, js = save(b)
    prov = json.loads(js.read_text())
    movies = [tifffile.imread(inp["movie"]["path"]) for inp in prov["inputs"]]
    size, offset = prov["parameters"]["patch_size"], prov["parameters"]["camera_offset"]
    sums = []
    for entry in prov["binned_frames"]:
        total = np.zeros((size, size), dtype=np.int64)
        for part in entry["parts"]:
            r, c = part["row"], part["column"]
            total += movies[part["measurement"]][part["frame"], r : r + size, c : c + size]
        sums.append(total - int(offset) * (len(entry["parts"]) - 1))
    np.testing.assert_array_equal(tifffile.imread(tif), np.clip(sums, 0, 65535))
    assert len({len(e["parts"]) for e in prov["binned_frames"]}) > 1
    np.testing.assert_allclose([e["target_density"] for e in prov["binned_frames"]], b.frame_targets)
    assert prov["target"]["target_density"] == "4:10" and prov["parameters"]["target_density"] == "4:10"
    labels = read_locs(csv)
    n_parts = [sum(p["n_locs"] for p in e["parts"]) for e in prov["binned_frames"]]
    np.testing.assert_array_equal(np.bincount(labels.frame, minlength=40), n_parts)
    again = binner(known[:2], target_density="4:10", n_binned=40, camera_offset=100,
                   output_folder=str(tmp_path / "again"))
    for a, c in zip(save(again)[:2], (tif, csv)):
        assert a.read_bytes() == c.read_bytes()  # same seed, same files


def test_without_reuse_every_patch_serves_one_frame(known):
    b = binner(known[:2], target_density="3", n_binned=20, n_patches=200, reuse_patches=False)
    plan = b.compose()
    used = plan[plan >= 0]
    assert len(used) == len(set(used.tolist()))


def test_impossible_targets_fail_fast_with_the_reachable_range(known, tmp_path):
    b = binner(known[:2], target_density="5000", output_folder=str(tmp_path / "o"))
    with pytest.raises(ParameterError, match=r"out of reach: .* reach [\d.]+–[\d.]+ per µm²") as err:
        save(b)
    assert "\n" not in str(err.value) and not (tmp_path / "o").exists()
    b = binner(known[:2], target_density="0.01:3")  # sparser than half the sparsest patch
    with pytest.raises(ParameterError, match="out of reach"):
        b.compose()
    for text in ("x", "5:", "20:5", "-3", "1:2:3"):
        with pytest.raises(ParameterError, match="target_density"):
            parse_target(text)
    assert parse_target("") is None and parse_target(" 5:20 ") == (5.0, 20.0)
    b = binner(known[:2], target_density="5", target_density_from=known[2][1])
    with pytest.raises(ParameterError, match="not both"):
        b.compose()
    b = binner(known[:2], target_density="5", target_spread="test")
    with pytest.raises(ParameterError, match="give target_density_from"):
        b.compose()


def test_the_test_movie_is_an_input_never_written_over(known, tmp_path):
    test_movie, test_locs = known[2]
    b = binner(known[:2], target_density_from=test_locs, test_movie=test_movie, output_name="m2",
               output_folder=str(Path(test_movie).parent), overwrite=True)
    before = Path(test_movie).read_bytes()
    with pytest.raises(ImageBinnerError, match="is an input of this job"):
        save(b)
    assert Path(test_movie).read_bytes() == before and b.plan is None


def test_cli_target_density_and_notebook_settings(known, tmp_path, capsys):
    (m0, l0), (m1, l1), (tm, tl) = known
    args = ["bin", "--movie", m0, "--locs", l0, "--movie", m1, "--locs", l1, "--patch-size", "16", "--n-patches",
            "150", "--n-binned", "50", "--min-emitters", "1", "--seed", "2"]
    assert cli_main([*args, "--target-density", "5:20", "-o", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "target density: mean 12.5 (5–20) per µm²" in out
    assert "notebook settings: patch_size = 15, num_patches_per_frame = 1, upsampling_factor = " in out
    assert "pixel_size = 100 nm (read from the TIF)" in out
    assert cli_main([*args, "--target-density-from", tl, "--test-movie", tm, "-o", str(tmp_path / "b")]) == 0
    assert "test movie: m2_locs.hdf5: 30 frames" in capsys.readouterr().out
    assert cli_main([*args, "--target-density", "9000", "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "--target-density" in err and "out of reach" in err and not (tmp_path / "c").exists()


# -- notebook settings and the notebook's reader -----------------------------------------------------------------
def test_suggested_notebook_settings(known, tmp_path):
    b = binner(known[:2], bin_size=4, n_binned=10, patch_size=27, output_folder=str(tmp_path / "o"))
    b.load()
    s = b.notebook_settings
    assert s["patch_size"] == 26 and s["num_patches_per_frame"] == 1
    assert s["upsampling_factor"] == upsampling_for(PS, s["localization_precision"])
    tif = save(b)[0]
    assert b.notebook_settings["pixel_size"] == pytest.approx(100.0) == notebook_pixel_size(tif)
    assert b.notebook_settings["pixel_size_from"] == "the TIF's resolution tags"
    recorded = json.loads((tmp_path / "o" / "binned.json").read_text())["outputs"]["notebook_settings"]
    assert recorded == b.notebook_settings
    # the hr pixel nearest to the precision (log scale); the notebook's default 8 without a precision
    assert [upsampling_for(107, p) for p in (30, 20, 13, 10, 9, 5, None)] == [4, 4, 8, 8, 16, 16, 8]
    write_tif(tmp_path / "ps107.tif", np.zeros((2, 4, 4)), pixel_size=107.0)
    assert notebook_pixel_size(tmp_path / "ps107.tif") == pytest.approx(107.0, rel=1e-6)


def test_a_one_frame_binned_movie_is_refused_before_any_work(known, tmp_path):
    # the notebook's io.imread returns a 1-page TIF as a 2-D image: (nFrames, M, N) = Images.shape fails
    write_tif(tmp_path / "one.tif", np.zeros((1, 8, 8)), pixel_size=PS)
    assert tifffile.imread(tmp_path / "one.tif").shape == (8, 8)
    b = binner(known[:2], bin_size=3, n_binned=1, output_folder=str(tmp_path / "o"))
    with pytest.raises(ParameterError, match=r"n_binned=1 would write a 1-frame TIF.*set n_binned to 2") as err:
        save(b)
    assert "\n" not in str(err.value) and not (tmp_path / "o").exists() and not b.loaded
    b.n_binned = 2
    assert tifffile.imread(save(b)[0]).shape == (2, 16, 16)


# -- the view of the target next to the result (model test, no browser) -------------------------------------------
def test_target_density_view_shows_test_target_and_binned_boxes(known):
    hv = pytest.importorskip("holoviews")
    from imagebinner.views.binner_density import target_density_element, target_density_plot

    hv.extension("bokeh")
    test_movie, test_locs = known[2]
    b = binner(known[:2], target_density_from=test_locs, test_movie=test_movie, target_spread="test", n_binned=60)
    empty = target_density_element(b)
    assert set(empty.BoxWhisker.I.dimension_values("group")) == {"(no target or plan yet)"}
    dmap = target_density_plot(b)
    b.compose()
    element = dmap[()]
    boxes = element.BoxWhisker.I
    groups, values = boxes.dimension_values("group"), boxes.dimension_values("density")
    stats = b.stats
    for name, expected in (("test movie", stats["test"]["density_per_frame_per_um2"]),
                           ("target", b.frame_targets), ("binned frames", achieved(b))):
        np.testing.assert_allclose(np.sort(values[groups == name]), np.sort(expected))
    assert element.get(1).y == pytest.approx(stats["target"]["mean_target"])
    figure = hv.render(element, backend="bokeh")
    assert "target mean" in figure.title.text and "reached" in figure.title.text
    b.target_density_from = ""  # a stale plan: the binned and target boxes go
    b.target_density = "3"
    assert set(dmap[()].BoxWhisker.I.dimension_values("group")) <= {"test movie", "(no target or plan yet)"}
