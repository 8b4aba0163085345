"""Split, merge and explode: lossless round trips, empty frames, names, refusals, real files, CLI."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagebinner.cli import main
from imagebinner.errors import FormatError, OutputExistsError, ParameterError
from imagebinner.io import LocMeta, LocTable, Movie, open_movie, read_locs, write_locs, write_tif
from imagebinner.io.picasso_yaml import PicassoLoader
from imagebinner.io.predictions import exploded_frame_digits as frame_digits
from imagebinner.tools.addons import Explode, Merge, Split, output_dtype

PS = 100.0
FORMATS = ["deepstorm", "thunderstorm", "picasso"]
EXT = {"deepstorm": ".csv", "thunderstorm": ".csv", "picasso": ".hdf5"}


# -- simulated inputs -------------------------------------------------------------------------------------------
def make_table(rng: np.random.Generator, n_frames: int, shape=(8, 10), empty=(), per_frame=(0, 4)) -> LocTable:
    """Random localizations on every frame except those in ``empty`` (photons, sigma, uncertainty included)."""
    frames = []
    for f in range(n_frames):
        if f in empty:
            continue
        frames += [f] * int(rng.integers(*per_frame, endpoint=True))
    frames = np.asarray(frames, dtype=np.int64)
    n = len(frames)
    h, w = shape
    cols = {
        "frame": frames,
        "x": rng.uniform(0.6, w - 0.6, n) * PS,  # inside the Picasso-safe area (x_px >= 0)
        "y": rng.uniform(0.6, h - 0.6, n) * PS,
        "photons": rng.uniform(100, 5000, n).round(1),
        "sigma": rng.uniform(80, 150, n).round(2),
        "uncertainty": rng.uniform(5, 20, n).round(2),
    }
    return LocTable(cols, LocMeta(pixel_size=PS, image_shape=shape, n_frames=n_frames))


def make_pair(folder: Path, name: str, fmt: str, n_frames: int, seed: int, shape=(8, 10), empty=(), dtype="uint16",
              pixel_size=PS, per_frame=(0, 4)) -> tuple[Path, Path]:
    """A TIF movie and a localization file in ``fmt`` (written by imagebinner's own writers)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    movie_path = folder / f"{name}.tif"
    if dtype in ("uint8", "uint16", "float32"):
        top = {"uint8": 255, "uint16": 65535, "float32": 1000}[dtype]
        stack = rng.integers(0, top, size=(n_frames, *shape), endpoint=True).astype(dtype)
        if dtype == "float32":
            stack += rng.random(stack.shape, dtype=np.float32)
        write_tif(movie_path, stack, pixel_size=pixel_size, dtype=dtype)
    else:
        info = np.iinfo(dtype)
        stack = rng.integers(max(info.min, -30000), min(info.max, 70000), size=(n_frames, *shape)).astype(dtype)
        tifffile.imwrite(movie_path, stack, photometric="minisblack")
    table = make_table(rng, n_frames, shape, empty, per_frame)
    locs_path = folder / f"{name}{EXT[fmt]}"
    write_locs(table, locs_path, format=fmt, pixel_size=PS)
    return movie_path, locs_path


def pixels(path: Path) -> np.ndarray:
    with open_movie(path) as m:
        return m.read()


def assert_tables_equal(a: LocTable, b: LocTable) -> None:
    assert len(a) == len(b)
    assert sorted(a.columns) == sorted(b.columns)
    for c in a.columns:
        np.testing.assert_array_equal(a[c], b[c], err_msg=c)


@pytest.fixture(autouse=True)
def _quiet_known_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*YAML documents disagree.*")
        warnings.filterwarnings("ignore", message=".*Picasso will drop.*")
        yield


# -- round trips ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_split_then_merge_gives_back_movie_and_table(tmp_path, fmt):
    movie, locs = make_pair(tmp_path / "in", "meas", fmt, 12, seed=1, empty=(0, 5, 6, 10, 11))
    split = Split(movie=str(movie), locs=str(locs), at=6, output_folder=str(tmp_path / "split"))
    written = split.run()
    ext = EXT[fmt]
    names = sorted(p.name for p in written)
    expected = ["meas_part1.tif", f"meas_part1{ext}", "meas_part2.tif", f"meas_part2{ext}"]
    if fmt == "picasso":
        expected += ["meas_part1.yaml", "meas_part2.yaml"]
    assert names == sorted(expected)
    assert all(p.exists() for p in written)
    assert split.progress == split.n_steps == 12
    parts = [tmp_path / "split" / f"meas_part{i}" for i in (1, 2)]
    merge = Merge(
        movies=[str(p.with_suffix(".tif")) for p in parts],
        locs=[str(p.with_suffix(ext)) for p in parts],
        output_folder=str(tmp_path / "merged"),
    )
    merge.run()
    np.testing.assert_array_equal(pixels(tmp_path / "merged" / "merged.tif"), pixels(movie))
    original, merged = read_locs(locs), read_locs(tmp_path / "merged" / f"merged{ext}")
    assert merged.meta.source_format == fmt
    assert_tables_equal(original, merged)
    with open_movie(tmp_path / "merged" / "merged.tif") as m:
        assert m.n_frames == 12 and m.dtype == np.uint16 and m.pixel_size == pytest.approx(PS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_explode_then_merge_gives_back_movie_and_table(tmp_path, fmt):
    movie, locs = make_pair(tmp_path / "in", "m", fmt, 5, seed=2, empty=(1, 4))
    explode = Explode(movie=str(movie), locs=str(locs), output_folder=str(tmp_path / "ex"))
    explode.run()
    assert explode.progress == explode.n_steps == 5
    bases = [tmp_path / "ex" / f"m_frame{i:05d}" for i in range(1, 6)]
    merge = Merge(
        movies=[str(b) + ".tif" for b in bases],
        locs=[str(b) + EXT[fmt] for b in bases],
        output_folder=str(tmp_path / "back"),
    )
    merge.run()
    np.testing.assert_array_equal(pixels(tmp_path / "back" / "merged.tif"), pixels(movie))
    assert_tables_equal(read_locs(locs), read_locs(tmp_path / "back" / f"merged{EXT[fmt]}"))


def test_split_parts_hold_the_right_frames_in_file_values(tmp_path):
    movie, locs = make_pair(tmp_path, "a", "deepstorm", 9, seed=3, empty=(3,))
    Split(movie=str(movie), locs=str(locs), at=3, output_folder=str(tmp_path / "o")).run()
    original = read_locs(locs)
    part1 = pd.read_csv(tmp_path / "o" / "a_part1.csv")
    part2 = pd.read_csv(tmp_path / "o" / "a_part2.csv")
    # DeepSTORM frames are 1-based: part 1 keeps 1..3, part 2 starts again at 1 (original frame 4 = page 3)
    assert part1["frame"].between(1, 3).all()
    np.testing.assert_array_equal(np.sort(part2["frame"].to_numpy()), np.sort(original.frame[original.frame >= 3]) - 2)
    assert len(part1) + len(part2) == len(original)
    np.testing.assert_array_equal(pixels(tmp_path / "o" / "a_part2.tif"), pixels(movie)[3:])
    np.testing.assert_array_equal(pixels(tmp_path / "o" / "a_part1.tif"), pixels(movie)[:3])


def test_split_at_a_frame_without_localizations(tmp_path):
    movie, locs = make_pair(tmp_path, "b", "thunderstorm", 8, seed=4, empty=(4, 5))
    Split(movie=str(movie), locs=str(locs), at=4, output_folder=str(tmp_path / "o")).run()
    p2 = read_locs(tmp_path / "o" / "b_part2.csv")
    original = read_locs(locs)
    assert p2.frame.min() == 2  # frames 4 and 5 are empty; frame 6 becomes part 2's frame 2
    np.testing.assert_array_equal(p2.x, original.x[original.frame >= 4])


def test_split_and_explode_of_a_movie_without_any_localization(tmp_path):
    movie, locs = make_pair(tmp_path, "c", "deepstorm", 4, seed=5, empty=range(4))
    Split(movie=str(movie), locs=str(locs), at=2, output_folder=str(tmp_path / "s")).run()
    Explode(movie=str(movie), locs=str(locs), output_folder=str(tmp_path / "e")).run()
    for path in [tmp_path / "s" / "c_part2.csv", tmp_path / "e" / "c_frame00004.csv"]:
        assert path.read_text().strip() == ",frame,x [nm],y [nm],Photon #,Sigma [nm]"
        assert len(read_locs(path)) == 0


def test_merge_offsets_by_movie_length_not_last_localized_frame(tmp_path):
    # movie 1: 10 frames, localizations only up to frame 4 (frames 5..9 empty); movie 2: locs on its frame 0
    m1, l1 = make_pair(tmp_path, "one", "picasso", 10, seed=6, empty=range(5, 10))
    m2, l2 = make_pair(tmp_path, "two", "picasso", 3, seed=7, empty=())
    m3, l3 = make_pair(tmp_path, "three", "picasso", 2, seed=8, empty=(0,))
    Merge(movies=[str(m1), str(m2), str(m3)], locs=[str(l1), str(l2), str(l3)], output_folder=str(tmp_path / "o")).run()
    with h5py.File(tmp_path / "o" / "merged.hdf5") as h5:
        frames = h5["locs"]["frame"]
    t1, t2, t3 = read_locs(l1), read_locs(l2), read_locs(l3)
    expected = np.concatenate([t1.frame, t2.frame + 10, t3.frame + 13])
    np.testing.assert_array_equal(frames, expected)
    assert t2.frame.min() == 0 and 10 in frames  # file 2's frame 0 lands on merged page 10, not 5
    info = list(yaml.safe_load_all((tmp_path / "o" / "merged.yaml").read_text()))[-1]
    assert (info["Frames"], info["Width"], info["Height"], info["Pixelsize"]) == (15, 10, 8, PS)
    assert pixels(tmp_path / "o" / "merged.tif").shape == (15, 8, 10)


def test_explode_names_frames_and_empty_tables(tmp_path):
    movie, locs = make_pair(tmp_path, "mov", "picasso", 4, seed=9, empty=(2,))
    ex = Explode(movie=str(movie), locs=str(locs), output_folder=str(tmp_path / "o"))
    written = ex.run()
    assert len(written) == 4 * 3 and ex.written == written
    original = read_locs(locs)
    for f in range(4):
        base = tmp_path / "o" / f"mov_frame{f + 1:05d}"
        with h5py.File(base.with_suffix(".hdf5")) as h5:
            rec = h5["locs"][...]
        assert len(rec) == np.count_nonzero(original.frame == f)
        assert np.all(rec["frame"] == 0)  # Picasso's first frame
        info = list(yaml.safe_load_all(base.with_suffix(".yaml").read_text()))[-1]
        assert info["Frames"] == 1 and (info["Width"], info["Height"]) == (10, 8)
        np.testing.assert_array_equal(pixels(base.with_suffix(".tif")), pixels(movie)[f : f + 1])
    assert len(read_locs(tmp_path / "o" / "mov_frame00003.hdf5")) == 0


def test_explode_deepstorm_frames_are_one(tmp_path):
    movie, locs = make_pair(tmp_path, "d", "deepstorm", 3, seed=10, per_frame=(1, 4))
    Explode(movie=str(movie), locs=str(locs), output_folder=str(tmp_path / "o")).run()
    for i in (1, 2, 3):
        df = pd.read_csv(tmp_path / "o" / f"d_frame{i:05d}.csv")
        assert len(df) and (df["frame"] == 1).all()


def test_frame_digits():
    assert frame_digits(1) == 5 and frame_digits(99999) == 5 and frame_digits(100000) == 6
    assert frame_digits(1234567) == 7


# -- dtypes, shapes, pixel sizes ------------------------------------------------------------------------------
def test_output_dtype_promotion():
    assert output_dtype([np.uint8, np.uint8]) == ("uint8", True)
    assert output_dtype([np.uint8, np.uint16]) == ("uint16", True)
    assert output_dtype([np.uint16, np.int16]) == ("float32", True)
    assert output_dtype([np.uint16, np.float32]) == ("float32", True)
    assert output_dtype([np.uint32]) == ("float32", False)
    assert output_dtype([np.float64]) == ("float32", False)


def test_merge_promotes_dtypes_losslessly(tmp_path):
    m8, l8 = make_pair(tmp_path, "u8", "deepstorm", 2, seed=11, dtype="uint8")
    m16, l16 = make_pair(tmp_path, "u16", "deepstorm", 3, seed=12, dtype="uint16")
    mi, li = make_pair(tmp_path, "i16", "deepstorm", 2, seed=13, dtype="int16")
    Merge(movies=[str(m8), str(m16)], locs=[str(l8), str(l16)], output_folder=str(tmp_path / "a")).run()
    out = pixels(tmp_path / "a" / "merged.tif")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, np.concatenate([pixels(m8), pixels(m16)]))
    merge = Merge(movies=[str(m16), str(mi)], locs=[str(l16), str(li)], output_folder=str(tmp_path / "b"))
    merge.run()
    out = pixels(tmp_path / "b" / "merged.tif")
    assert out.dtype == np.float32 and pixels(mi).min() < 0
    np.testing.assert_array_equal(out, np.concatenate([pixels(m16), pixels(mi)]).astype(np.float32))
    assert "note" not in merge.status


def test_uint32_movie_warns_only_about_pixels_that_change(tmp_path):
    rng = np.random.default_rng(14)
    stack = rng.integers(0, 1000, size=(3, 4, 5)).astype(np.uint32)
    stack[1, 2, 3] = 2**24 + 1  # not representable in float32
    tifffile.imwrite(tmp_path / "big.tif", stack, photometric="minisblack")
    write_locs(make_table(rng, 3, (4, 5)), tmp_path / "big.csv", format="deepstorm")
    split = Split(
        movie=str(tmp_path / "big.tif"), locs=str(tmp_path / "big.csv"), at=1, output_folder=str(tmp_path / "o")
    )
    with pytest.warns(UserWarning, match="1 pixel value"):
        split.run()
    assert "could not be held exactly in float32" in split.status
    assert pixels(tmp_path / "o" / "big_part2.tif").dtype == np.float32


def test_merge_refuses_mismatched_shapes_with_a_clear_message(tmp_path):
    m1, l1 = make_pair(tmp_path, "small", "deepstorm", 2, seed=15, shape=(8, 10))
    m2, l2 = make_pair(tmp_path, "wide", "deepstorm", 2, seed=16, shape=(8, 12))
    merge = Merge(movies=[str(m1), str(m2)], locs=[str(l1), str(l2)], output_folder=str(tmp_path / "o"))
    with pytest.raises(ParameterError) as err:
        merge.run()
    message = str(err.value)
    assert "wide.tif" in message and "small.tif" in message and "8x12" in message and "8x10" in message
    assert "\n" not in message
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_merge_refuses_different_pixel_sizes(tmp_path):
    m1, l1 = make_pair(tmp_path, "p100", "deepstorm", 2, seed=17, pixel_size=100)
    m2, l2 = make_pair(tmp_path, "p107", "deepstorm", 2, seed=18, pixel_size=107)
    with pytest.raises(ParameterError, match=r"p107\.tif.*pixel size 107"):
        Merge(movies=[str(m1), str(m2)], locs=[str(l1), str(l2)], output_folder=str(tmp_path / "o")).run()
    # one pixel size for all inputs makes them mergeable
    Merge(movies=[str(m1), str(m2)], locs=[str(l1), str(l2)], output_folder=str(tmp_path / "o"), pixel_size=100).run()
    with open_movie(tmp_path / "o" / "merged.tif") as m:
        assert m.pixel_size == pytest.approx(100)


def test_merge_of_different_formats_uses_the_first_inputs_format_unless_to(tmp_path):
    m1, l1 = make_pair(tmp_path, "ds", "deepstorm", 2, seed=19)
    m2, l2 = make_pair(tmp_path, "ts", "thunderstorm", 3, seed=20)
    Merge(movies=[str(m1), str(m2)], locs=[str(l1), str(l2)], output_folder=str(tmp_path / "a")).run()
    merged = read_locs(tmp_path / "a" / "merged.csv")
    assert merged.meta.source_format == "deepstorm"
    t1, t2 = read_locs(l1), read_locs(l2)
    np.testing.assert_array_equal(merged.frame, np.concatenate([t1.frame, t2.frame + 2]))
    np.testing.assert_array_equal(merged.x, np.concatenate([t1.x, t2.x]))
    Merge(movies=[str(m1), str(m2)], locs=[str(l1), str(l2)], output_folder=str(tmp_path / "b"), to="picasso").run()
    back = read_locs(tmp_path / "b" / "merged.hdf5")  # pixel size taken from the movies (CSV has none)
    assert back.pixel_size == pytest.approx(PS)
    np.testing.assert_allclose(back.x, merged.x, rtol=1e-6)


def test_picasso_csv_input_falls_back_to_thunderstorm_with_a_warning(tmp_path):
    """Picasso's CSV export cannot be written back: without ``to`` the parts are ThunderSTORM CSV (docs/addons.md),
    with a warning, and hold the same localizations (half-pixel shift applied once, frames 1-based)."""
    movie, locs = make_pair(tmp_path / "in", "px", "deepstorm", 6, seed=40, empty=(3,), per_frame=(1, 4))
    canonical = read_locs(locs)
    export = tmp_path / "in" / "px_export.csv"
    pd.DataFrame({  # Picasso's export: ids and frames from 0, nm with pixel centres at j * pixel size
        "id": np.arange(len(canonical)), "frame": canonical.frame,
        "x [nm]": canonical.x - 0.5 * PS, "y [nm]": canonical.y - 0.5 * PS,
        "sigma [nm]": canonical["sigma"], "intensity [photon]": canonical["photons"],
    }).to_csv(export, index=False)
    source = read_locs(export, pixel_size=PS)
    assert source.meta.source_format == "picasso-csv"
    split = Split(movie=str(movie), locs=str(export), at=4, output_folder=str(tmp_path / "s"), pixel_size=PS)
    with pytest.warns(UserWarning, match="'picasso-csv' files cannot be written; writing 'thunderstorm'"):
        written = split.run()
    assert sorted(p.name for p in written) == ["px_part1.csv", "px_part1.tif", "px_part2.csv", "px_part2.tif"]
    assert "(thunderstorm)" in split.status
    part1, part2 = (read_locs(tmp_path / "s" / f"px_part{i}.csv") for i in (1, 2))
    assert part1.meta.source_format == part2.meta.source_format == "thunderstorm"
    first = pd.read_csv(tmp_path / "s" / "px_part1.csv")
    np.testing.assert_array_equal(first["frame"], canonical.frame[canonical.frame < 4] + 1)  # 1-based
    np.testing.assert_allclose(part1.x, canonical.x[canonical.frame < 4], atol=1e-9)  # the corner convention
    np.testing.assert_allclose(part2.y, canonical.y[canonical.frame >= 4], atol=1e-9)
    np.testing.assert_array_equal(part2.frame, canonical.frame[canonical.frame >= 4] - 4)
    np.testing.assert_array_equal(pixels(tmp_path / "s" / "px_part2.tif"), pixels(movie)[4:])


# -- refusals ---------------------------------------------------------------------------------------------------
def test_no_overwrite_refusal_writes_nothing(tmp_path):
    movie, locs = make_pair(tmp_path / "in", "e", "picasso", 6, seed=21)
    out = tmp_path / "out"
    out.mkdir()
    (out / "e_part2.yaml").write_text("keep me\n")  # only the last output exists
    split = Split(movie=str(movie), locs=str(locs), at=3, output_folder=str(out))
    with pytest.raises(OutputExistsError, match="e_part2.yaml"):
        split.run()
    assert sorted(p.name for p in out.iterdir()) == ["e_part2.yaml"]  # nothing written, no staging left
    assert (out / "e_part2.yaml").read_text() == "keep me\n"
    with pytest.raises(OutputExistsError):
        Merge(movies=[str(movie)], locs=[str(locs)], output_folder=str(out), output_name="e_part2").run()
    assert sorted(p.name for p in out.iterdir()) == ["e_part2.yaml"]
    Split(movie=str(movie), locs=str(locs), at=3, output_folder=str(out), overwrite=True).run()
    assert "Frames" in (out / "e_part2.yaml").read_text()
    assert len(list(out.iterdir())) == 6


def test_outputs_never_replace_inputs(tmp_path):
    movie, locs = make_pair(tmp_path, "merged", "deepstorm", 3, seed=22)
    before = locs.read_bytes()
    with pytest.raises(OutputExistsError, match="is an input"):  # io.check_outputs: the one pre-write check
        Merge(movies=[str(movie)], locs=[str(locs)], output_folder=str(tmp_path), overwrite=True).run()
    assert locs.read_bytes() == before


def test_split_frame_is_validated_against_the_movie(tmp_path, capsys):
    movie, locs = make_pair(tmp_path, "f", "deepstorm", 5, seed=23)
    assert main(["split", str(movie), str(locs), "--at", "0", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "error: --at must be" in err and "1, not 0" in err  # the param's bound, named as its flag
    with pytest.raises(ParameterError, match=r"f\.tif.*1 <= at < 5"):
        Split(movie=str(movie), locs=str(locs), at=5, output_folder=str(tmp_path / "o")).run()
    assert not (tmp_path / "o").exists()


def test_localizations_beyond_the_movie_are_refused(tmp_path):
    movie, _ = make_pair(tmp_path, "g", "deepstorm", 3, seed=24)
    rng = np.random.default_rng(0)
    write_locs(make_table(rng, 6, per_frame=(1, 3)), tmp_path / "long.csv", format="deepstorm")
    with pytest.raises(FormatError, match=r"long\.csv.*frame 5.*only 3 frames"):
        Explode(movie=str(movie), locs=str(tmp_path / "long.csv"), output_folder=str(tmp_path / "o")).run()


def test_movies_are_streamed_never_read_whole(tmp_path, monkeypatch):
    movie, locs = make_pair(tmp_path, "h", "deepstorm", 6, seed=25)
    expected = pixels(movie)

    def forbidden(self):
        raise AssertionError("Movie.read() loads the whole movie")

    monkeypatch.setattr(Movie, "read", forbidden)
    Split(movie=str(movie), locs=str(locs), at=2, output_folder=str(tmp_path / "s")).run()
    Explode(movie=str(movie), locs=str(locs), output_folder=str(tmp_path / "e")).run()
    Merge(movies=[str(movie), str(movie)], locs=[str(locs), str(locs)], output_folder=str(tmp_path / "m")).run()
    monkeypatch.undo()
    np.testing.assert_array_equal(pixels(tmp_path / "m" / "merged.tif"), np.concatenate([expected, expected]))


# -- properties -------------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_frames=st.integers(2, 7),
    data=st.data(),
    fmt=st.sampled_from(FORMATS),
    seed=st.integers(0, 2**16),
)
def test_property_split_merge_round_trip(n_frames, data, fmt, seed):
    at = data.draw(st.integers(1, n_frames - 1), label="at")
    empty = data.draw(st.sets(st.integers(0, n_frames - 1)), label="empty")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        movie, locs = make_pair(tmp / "in", "p", fmt, n_frames, seed, shape=(3, 4), empty=empty)
        Split(movie=str(movie), locs=str(locs), at=at, output_folder=str(tmp / "s")).run()
        parts = [tmp / "s" / f"p_part{i}" for i in (1, 2)]
        part_tables = [read_locs(p.with_suffix(EXT[fmt])) for p in parts]
        original = read_locs(locs)
        assert len(part_tables[0]) == np.count_nonzero(original.frame < at)
        assert np.all(part_tables[1].frame < n_frames - at)
        Merge(
            movies=[str(p.with_suffix(".tif")) for p in parts],
            locs=[str(p.with_suffix(EXT[fmt])) for p in parts],
            output_folder=str(tmp / "m"),
        ).run()
        np.testing.assert_array_equal(pixels(tmp / "m" / "merged.tif"), pixels(movie))
        assert_tables_equal(original, read_locs(tmp / "m" / f"merged{EXT[fmt]}"))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_frames=st.integers(1, 5), data=st.data(), seed=st.integers(0, 2**16))
def test_property_explode_merge_round_trip(n_frames, data, seed):
    empty = data.draw(st.sets(st.integers(0, n_frames - 1)), label="empty")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        movie, locs = make_pair(tmp / "in", "q", "deepstorm", n_frames, seed, shape=(3, 3), empty=empty)
        Explode(movie=str(movie), locs=str(locs), output_folder=str(tmp / "e")).run()
        bases = [tmp / "e" / f"q_frame{i:05d}" for i in range(1, n_frames + 1)]
        counts = [len(read_locs(str(b) + ".csv")) for b in bases]
        original = read_locs(locs)
        assert counts == list(original.counts_per_frame(n_frames))
        Merge(movies=[str(b) + ".tif" for b in bases], locs=[str(b) + ".csv" for b in bases],
              output_folder=str(tmp / "m")).run()
        np.testing.assert_array_equal(pixels(tmp / "m" / "merged.tif"), pixels(movie))
        assert_tables_equal(original, read_locs(tmp / "m" / "merged.csv"))


# -- real files -------------------------------------------------------------------------------------------------
def test_real_picasso_split_merge_and_yaml(shared_data, tmp_path):
    movie = shared_data / "picasso" / "testdata.tif"
    locs = shared_data / "picasso" / "testdata_locs.hdf5"
    input_docs = list(yaml.load_all((shared_data / "picasso" / "testdata_locs.yaml").read_text(),
                                    Loader=PicassoLoader))
    Split(movie=str(movie), locs=str(locs), at=500, output_folder=str(tmp_path / "s")).run()
    for i, frames in ((1, 500), (2, 500)):
        docs = list(yaml.load_all((tmp_path / "s" / f"testdata_part{i}.yaml").read_text(), Loader=PicassoLoader))
        assert docs[: len(input_docs)] == input_docs and len(docs) == len(input_docs) + 1
        last = docs[-1]
        assert (last["Frames"], last["Width"], last["Height"], last["Pixelsize"]) == (frames, 32, 32, 130)
    parts = [tmp_path / "s" / f"testdata_part{i}" for i in (1, 2)]
    Merge(movies=[str(p) + ".tif" for p in parts], locs=[str(p) + ".hdf5" for p in parts],
          output_folder=str(tmp_path / "m")).run()
    np.testing.assert_array_equal(pixels(tmp_path / "m" / "merged.tif"), pixels(movie))
    original, merged = read_locs(locs), read_locs(tmp_path / "m" / "merged.hdf5")
    assert_tables_equal(original, merged)
    with h5py.File(locs) as a, h5py.File(tmp_path / "m" / "merged.hdf5") as b:
        ra, rb = a["locs"][...], b["locs"][...]
        for name in ra.dtype.names:  # the stored Picasso values come back bit for bit
            np.testing.assert_array_equal(ra[name], rb[name], err_msg=name)
    last = list(yaml.safe_load_all((tmp_path / "m" / "merged.yaml").read_text()))[-1]
    assert (last["Frames"], last["Width"], last["Height"], last["Pixelsize"]) == (1000, 32, 32, 130)


def test_real_picasso_explode_of_a_split_part(shared_data, tmp_path):
    movie = shared_data / "picasso" / "testdata.tif"
    locs = shared_data / "picasso" / "testdata_locs.hdf5"
    Split(movie=str(movie), locs=str(locs), at=975, output_folder=str(tmp_path / "s")).run()
    part_movie, part_locs = tmp_path / "s" / "testdata_part2.tif", tmp_path / "s" / "testdata_part2.hdf5"
    part = read_locs(part_locs)
    assert part.meta.n_frames == 25 and len(part) == np.count_nonzero(read_locs(locs).frame >= 975)
    ex = Explode(movie=str(part_movie), locs=str(part_locs), output_folder=str(tmp_path / "e"))
    ex.run()
    bases = [tmp_path / "e" / f"testdata_part2_frame{i:05d}" for i in range(1, 26)]
    counts = [len(read_locs(str(b) + ".hdf5")) for b in bases]
    assert counts == list(part.counts_per_frame(25)) and 0 in counts  # empty frames written too
    Merge(movies=[str(b) + ".tif" for b in bases], locs=[str(b) + ".hdf5" for b in bases],
          output_folder=str(tmp_path / "m")).run()
    np.testing.assert_array_equal(pixels(tmp_path / "m" / "merged.tif"), pixels(movie)[975:])
    assert_tables_equal(part, read_locs(tmp_path / "m" / "merged.hdf5"))


@pytest.mark.parametrize(
    ("relpath", "n_frames", "at"),
    [("thunderstorm/ecoli_lacy_03_storm.csv", 1850, 925), ("deepstorm/DNAPAINT_localizations.csv", 50, 17)],
)
def test_real_csv_files_split_merge(shared_data, tmp_path, relpath, n_frames, at):
    """Real ThunderSTORM / DeepSTORM tables (quoted headers, float frames, unnamed index) with a tiny movie."""
    locs = shared_data / relpath
    movie = tmp_path / "real.tif"
    stack = np.random.default_rng(26).integers(0, 4000, size=(n_frames, 2, 3)).astype(np.uint16)
    write_tif(movie, stack, pixel_size=107)
    Split(movie=str(movie), locs=str(locs), at=at, output_folder=str(tmp_path / "s")).run()
    parts = [tmp_path / "s" / f"real_part{i}" for i in (1, 2)]
    Merge(movies=[str(p) + ".tif" for p in parts], locs=[str(p) + ".csv" for p in parts],
          output_folder=str(tmp_path / "m")).run()
    original, merged = read_locs(locs), read_locs(tmp_path / "m" / "merged.csv")
    assert merged.meta.source_format == original.meta.source_format
    assert_tables_equal(original, merged)
    np.testing.assert_array_equal(pixels(tmp_path / "m" / "merged.tif"), stack)


# -- CLI --------------------------------------------------------------------------------------------------------
def test_cli_split_merge_explode_end_to_end(tmp_path, capsys):
    movie, locs = make_pair(tmp_path / "in", "cli", "thunderstorm", 6, seed=27, empty=(2, 5))
    assert main(["split", str(movie), str(locs), "--at", "2", "-o", str(tmp_path / "s"), "--to", "deepstorm"]) == 0
    assert "split cli.tif at frame 2" in capsys.readouterr().out
    p1, p2 = tmp_path / "s" / "cli_part1", tmp_path / "s" / "cli_part2"
    assert pd.read_csv(str(p2) + ".csv").columns[1] == "frame"  # DeepSTORM layout
    code = main(["merge", "--movie", str(p1) + ".tif", "--locs", str(p1) + ".csv", "--movie", str(p2) + ".tif",
                 "--locs", str(p2) + ".csv", "-o", str(tmp_path / "m"), "--to", "thunderstorm"])
    assert code == 0
    np.testing.assert_array_equal(pixels(tmp_path / "m" / "merged.tif"), pixels(movie))
    original, merged = read_locs(locs), read_locs(tmp_path / "m" / "merged.csv")
    for column in ("frame", "x", "y", "photons", "sigma"):  # the DeepSTORM detour keeps only these
        np.testing.assert_array_equal(original[column], merged[column])
    assert main(["explode", str(movie), str(locs), "-o", str(tmp_path / "e")]) == 0
    assert len(list((tmp_path / "e").glob("cli_frame0000?.csv"))) == 6
    capsys.readouterr()
    # refusals: one line on stderr, exit 2
    assert main(["explode", str(movie), str(locs), "-o", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("imagebinner: error: ") and "exists already" in err[-1]
    assert main(["split", str(movie), str(locs), "--at", "6", "-o", str(tmp_path / "x")]) == 2
    assert "1 <= at < 6" in capsys.readouterr().err
    assert main(["merge", "--movie", str(movie), "--movie", str(movie), "--locs", str(locs),
                 "-o", str(tmp_path / "y")]) == 2
    assert "one --locs per --movie" in capsys.readouterr().err
    assert main(["explode", str(movie), str(locs), "-o", str(tmp_path / "e"), "--overwrite"]) == 0


def test_cli_help_comes_from_the_params(capsys):
    with pytest.raises(SystemExit):
        main(["merge", "--help"])
    out = capsys.readouterr().out
    assert "--to {deepstorm,thunderstorm,picasso}" in out and "--pixel-size" in out and "-o OUT" in out
    assert Merge.param.to.doc.split(";")[0] in " ".join(out.split())


def test_real_picasso_raw_movie_split(shared_data, tmp_path):
    """A Picasso .raw movie (with its YAML) is split like a TIF; the TIF parts hold the same pixels."""
    raw = shared_data / "picasso" / "testdata.raw"
    locs = shared_data / "picasso" / "testdata_locs.hdf5"
    split = Split(movie=str(raw), locs=str(locs), at=990, output_folder=str(tmp_path), to="thunderstorm")
    split.run()
    tif = shared_data / "picasso" / "testdata.tif"
    np.testing.assert_array_equal(pixels(tmp_path / "testdata_part2.tif"), pixels(tif)[990:])
    part2, original = read_locs(tmp_path / "testdata_part2.csv"), read_locs(locs)
    np.testing.assert_array_equal(part2.frame, original.frame[original.frame >= 990] - 990)
    np.testing.assert_allclose(part2.x, original.x[original.frame >= 990], rtol=1e-12)
    with open_movie(tmp_path / "testdata_part2.tif") as m:
        assert m.pixel_size == pytest.approx(130)  # from the localizations' YAML: the raw movie records none


def test_frame_count_disagreement_warns(tmp_path):
    movie, locs = make_pair(tmp_path, "w", "picasso", 4, seed=28)
    docs = list(yaml.safe_load_all(locs.with_suffix(".yaml").read_text()))
    docs[-1]["Frames"] = 7
    locs.with_suffix(".yaml").write_text(yaml.dump_all(docs))
    with pytest.warns(UserWarning, match="metadata say 7 frames.*has 4"):
        Split(movie=str(movie), locs=str(locs), at=2, output_folder=str(tmp_path / "o")).run()
    assert list(yaml.safe_load_all((tmp_path / "o" / "w_part2.yaml").read_text()))[-1]["Frames"] == 2


def test_writer_warnings_name_the_final_file_not_the_staging_folder(tmp_path):
    movie, locs = make_pair(tmp_path, "n", "picasso", 3, seed=29, per_frame=(1, 3))
    table = read_locs(locs)
    x = table.x.copy()
    x[0] = 0.1 * PS  # x_px = 0.1 - 0.5 < 0: Picasso would drop it on load (kept, with a warning)
    write_locs(table.with_columns(x=x), tmp_path / "edge.hdf5", overwrite=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Split(movie=str(movie), locs=str(tmp_path / "edge.hdf5"), at=1, output_folder=str(tmp_path / "o")).run()
    drops = [str(w.message) for w in caught if "Picasso will drop" in str(w.message)]
    assert drops and drops[0].startswith(str(tmp_path / "o" / "n_part1.hdf5"))
    assert not any("staging" in str(w.message) for w in caught)


def test_exploded_frames_read_as_one_frame_stacks_like_the_notebook_reader(tmp_path):
    """The notebook reads test movies with skimage's io.imread (tifffile) and unpacks (nFrames, M, N) = shape: a
    one-frame ImageJ TIF reads back 2-D and fails there; the exploded frames (and one-frame split parts) read back as
    (1, M, N) stacks, with the pixel size in the resolution tags in pixels per cm (what the notebook reads)."""
    movie, locs = make_pair(tmp_path, "mov", "deepstorm", 3, seed=4)
    Explode(movie=str(movie), locs=str(locs), output_folder=str(tmp_path / "o")).run()
    Split(movie=str(movie), locs=str(locs), at=2, output_folder=str(tmp_path / "s")).run()
    original = pixels(movie)
    for path, page in ((tmp_path / "o" / "mov_frame00002.tif", original[1]), (tmp_path / "s" / "mov_part2.tif",
                                                                             original[2])):
        stack = tifffile.imread(path)  # what skimage.io.imread returns for a .tif
        n_frames, m, n = stack.shape
        assert n_frames == 1 and (m, n) == original.shape[1:] and stack.dtype == original.dtype
        np.testing.assert_array_equal(stack[0], page)
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            x = tags["XResolution"].value
            assert tags["ResolutionUnit"].value == 3 and 0.01 * 1e9 / (x[0] / x[1]) == pytest.approx(PS)
        with open_movie(path) as m1:
            assert m1.n_frames == 1 and m1.pixel_size == pytest.approx(PS)
    # the other (2-frame) part stays an ImageJ stack
    assert tifffile.imread(tmp_path / "s" / "mov_part1.tif").shape == (2, *original.shape[1:])
    # for contrast: a one-frame ImageJ TIF (what explode wrote before) reads back 2-D
    write_tif(tmp_path / "imagej.tif", original[:1], pixel_size=PS)
    assert tifffile.imread(tmp_path / "imagej.tif").ndim == 2
