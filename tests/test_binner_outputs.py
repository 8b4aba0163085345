"""The Binner's outputs: the streamed no-cache write path, clipped pixels counted once, refused output folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from test_binner import make, quiet, reconstruct, simulate, work  # noqa: F401 (work is a fixture)

from imagebinner.errors import OutputExistsError, ParameterError
from imagebinner.io import LocTable, write_locs, write_tif
from imagebinner.tools.binner import assembly


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    folder = tmp_path_factory.mktemp("outputs")
    return [simulate(folder, f"o{i}", seed=20 + i, n_frames=10) for i in range(2)]


def files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("camera_offset", [100, 100.5])
def test_streamed_write_paths_give_the_same_files_as_the_cached_one(sim, tmp_path, monkeypatch, work,
                                                                     camera_offset):
    settings = dict(seed=3, camera_offset=camera_offset, n_binned=15)
    cached = make(sim, tmp_path / "cached", **settings)
    quiet(cached.save)
    unique = len(np.unique(cached.plan))
    assert work["reads"] == unique  # each used patch read once, into the stack
    # patches cached, binned movie too large for one write: summed in chunks and streamed
    monkeypatch.setattr(assembly, "STACK_WRITE_BYTES", 0)
    quiet(make(sim, tmp_path / "chunks", **settings).save)
    assert work["reads"] == 2 * unique
    # no patch cache: every part read on demand, frame by frame
    monkeypatch.setattr(assembly, "PATCH_CACHE_BYTES", 0)
    streamed = make(sim, tmp_path / "streamed", **settings)
    quiet(streamed.save)
    assert work["reads"] == 2 * unique + streamed.plan.size
    reference = files(tmp_path / "cached")
    assert files(tmp_path / "chunks") == reference
    assert files(tmp_path / "streamed") == reference
    assert streamed.clipped_pixels == cached.clipped_pixels


def near_offset_measurement(folder):
    """A flat movie of 75/76 ADU: sums of 4 patches minus 4 * 100.5 * 3/4 hover around 0 (-1.5 .. 2.5)."""
    rng = np.random.default_rng(0)
    write_tif(folder / "flat.tif", rng.integers(75, 77, (6, 24, 24)).astype(np.uint16), pixel_size=100)
    n = 30
    table = LocTable({"frame": np.repeat(np.arange(6), n // 6), "x": rng.uniform(0, 2400, n),
                      "y": rng.uniform(0, 2400, n)})
    write_locs(table, folder / "flat.csv", format="deepstorm")
    return [(folder / "flat.tif", folder / "flat.csv")]


@pytest.mark.parametrize("patch_cache", [True, False])
def test_a_fractional_offset_counts_clipped_pixels_as_written(tmp_path, monkeypatch, patch_cache):
    """camera_offset 100.5: sums end in .5; the count of clipped pixels is the one of the written frames."""
    if not patch_cache:
        monkeypatch.setattr(assembly, "PATCH_CACHE_BYTES", 0)
    meas = near_offset_measurement(tmp_path)
    b = make(meas, tmp_path / "out", patch_size=8, n_patches=20, bin_size=4, n_binned=10, camera_offset=100.5)
    quiet(b.save)
    sums = np.array([b.binned_frame(j).sum for j in range(10)])
    assert (sums == -0.5).any() and (sums == -1.5).any()  # both sides of the rounding are present
    rounded = np.rint(sums)
    written = tifffile.imread(tmp_path / "out" / "binned.tif")
    np.testing.assert_array_equal(written, np.clip(rounded, 0, 65535))
    expected = int(np.count_nonzero((rounded < 0) | (rounded > 65535)))
    assert int(np.count_nonzero((sums < 0) | (sums > 65535))) > expected  # counting before rounding differs
    recorded = json.loads((tmp_path / "out" / "binned.json").read_text())["outputs"]["clipped_pixels"]
    assert b.clipped_pixels == recorded == expected == sum(b.binned_frame(j).clipped for j in range(10))


def test_an_output_folder_that_is_a_file_is_refused_before_any_work(sim, tmp_path, work):
    target = tmp_path / "out"
    target.write_text("not a folder")
    b = make(sim, target)
    with pytest.raises(ParameterError, match="output folder is a file") as info:
        quiet(b.save)
    assert info.value.params == ("output_folder",)
    assert target.read_text() == "not a folder" and [p.name for p in tmp_path.iterdir()] == ["out"]
    assert work["reads"] == 0 and b.loaded == [] and b.status.startswith("error: ")


def test_an_output_that_is_an_input_is_refused_even_with_overwrite(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    meas = [simulate(folder, "binned", n_frames=4, shape=(32, 32))]  # writes in/binned.tif
    before = (folder / "binned.tif").read_bytes()
    b = make(meas, folder, patch_size=8, n_patches=8, bin_size=2, n_binned=2, overwrite=True)
    with pytest.raises(OutputExistsError, match="is an input of this job"):
        quiet(b.save)
    assert (folder / "binned.tif").read_bytes() == before


def test_a_failed_save_keeps_nothing_and_reports_the_error(sim, tmp_path):
    b = make(sim, tmp_path / "out", bin_size=50)  # > n_patches
    with pytest.raises(ParameterError, match="bin_size 50 exceeds"):
        quiet(b.save)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert b.status.startswith("error: bin_size 50") and not b.running and b.written_paths == []


def test_reconstruction_holds_on_the_streamed_path(sim, tmp_path, monkeypatch):
    monkeypatch.setattr(assembly, "PATCH_CACHE_BYTES", 0)
    b = make(sim, tmp_path / "out", camera_offset=90)
    quiet(b.save)
    sums, prov = reconstruct(tmp_path / "out" / "binned.json")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "binned.tif"), np.clip(sums, 0, 65535))
    assert prov["outputs"]["n_labels"] == len(b.binned_locs()) == sum(p["n_locs"] for f in prov["binned_frames"]
                                                                        for p in f["parts"])


def test_a_new_plan_on_the_same_pool_reads_the_patches_it_adds(sim, tmp_path):
    """After a save the used patches are cached; a larger plan of the same pool reads the missing ones."""
    b = make(sim, tmp_path / "small", n_binned=3, bin_size=2)
    quiet(b.save)
    pool = b.pool
    b.param.update(n_binned=30, bin_size=6, output_folder=str(tmp_path / "large"))
    for j in (0, 29):
        frame = b.binned_frame(j)
        expected = sum(b.loaded[p["measurement"]].movie.window(p["frame"], p["row"], p["column"], 16).astype(int)
                       for p in frame.parts) - 100 * 5
        np.testing.assert_array_equal(frame.sum, expected)
    quiet(b.save)
    assert b.pool is pool
    quiet(make(sim, tmp_path / "fresh", n_binned=30, bin_size=6).save)
    assert files(tmp_path / "large") == files(tmp_path / "fresh")
