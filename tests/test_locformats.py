"""Localization readers and writers on real files from other projects and on synthesized variants."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from imagebinner.errors import FormatError, ImageBinnerError, OutputExistsError
from imagebinner.io import (
    LOC_FORMATS,
    WRITE_FORMATS,
    LocMeta,
    LocTable,
    detect_format,
    format_for_output,
    output_paths,
    read_locs,
    write_locs,
)
from imagebinner.io import locformats, open_movie, picasso_yaml
from imagebinner.io.picasso_yaml import PicassoLoader

PS = 130.0


def h5_locs(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as h5:
        return h5["locs"][...]


def read_quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_locs(*args, **kwargs)


def write_text(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def small_table(n: int = 6, pixel_size: float | None = 100.0, seed: int = 0, **extra) -> LocTable:
    rng = np.random.default_rng(seed)
    cols = {
        "frame": np.sort(rng.integers(0, 5, n)),
        "x": rng.uniform(60, 3000, n),
        "y": rng.uniform(60, 3000, n),
        "photons": rng.uniform(100, 5000, n),
        "sigma": rng.uniform(80, 150, n),
        **extra,
    }
    return LocTable(cols, LocMeta(pixel_size=pixel_size, image_shape=(32, 32), n_frames=8, source_format="memory"))


# ============================================================================================ real files
def test_picasso_testdata_locs(shared_data):
    path = shared_data / "picasso" / "testdata_locs.hdf5"
    raw = h5_locs(path)
    with pytest.warns(UserWarning, match=r"160.*130|disagree"):
        table = read_locs(path)
    assert detect_format(path) == "picasso"
    assert len(table) == 564
    assert table.meta.pixel_size == 130.0
    assert table.meta.image_shape == (32, 32)
    assert table.meta.n_frames == 1000
    assert table.meta.source_format == "picasso"
    assert "+ 0.5" in table.meta.conversion
    order = np.argsort(raw["frame"], kind="stable")
    raw = raw[order]
    np.testing.assert_array_equal(table.frame, raw["frame"].astype(np.int64))  # stays 0-based
    assert (table.frame.min(), table.frame.max()) == (11, 990)
    np.testing.assert_allclose(table.x, (raw["x"].astype(float) + 0.5) * 130, rtol=0, atol=1e-9)
    np.testing.assert_allclose(table.y, (raw["y"].astype(float) + 0.5) * 130, rtol=0, atol=1e-9)
    np.testing.assert_allclose(table["sigma"], (raw["sx"] + raw["sy"].astype(float)) / 2 * 130, rtol=1e-6)
    np.testing.assert_allclose(table["uncertainty"], (raw["lpx"] + raw["lpy"].astype(float)) / 2 * 130, rtol=1e-6)
    np.testing.assert_array_equal(table["photons"], raw["photons"])
    np.testing.assert_array_equal(table["background"], raw["bg"])
    for extra in ("sx", "sy", "lpx", "lpy", "net_gradient", "likelihood", "iterations"):
        np.testing.assert_array_equal(table[extra], raw[extra])
    assert len(table.meta.picasso_yaml) == 2


def test_picasso_half_pixel_off_and_pixel_size_override(shared_data):
    path = shared_data / "picasso" / "testdata_locs.hdf5"
    raw = h5_locs(path)
    raw = raw[np.argsort(raw["frame"], kind="stable")]
    plain = read_quiet(path, half_pixel=False)
    np.testing.assert_allclose(plain.x, raw["x"].astype(float) * 130, atol=1e-9)
    assert "half_pixel=False" in plain.meta.conversion
    with pytest.warns(UserWarning, match="107"):
        other = read_locs(path, pixel_size=107)
    assert other.meta.pixel_size == 107
    np.testing.assert_allclose(other.y, (raw["y"].astype(float) + 0.5) * 107, atol=1e-9)


def test_picasso_mols_float_frames(shared_data):
    path = shared_data / "picasso" / "testdata_mols.hdf5"
    raw = h5_locs(path)
    with pytest.warns(UserWarning, match="not integral"):
        table = read_locs(path)
    assert len(table) == 4230
    assert table.meta.pixel_size == 130  # only in the second of five YAML documents
    assert table.meta.image_shape == (512, 512)
    assert len(table.meta.picasso_yaml) == 5
    assert table.frame.dtype == np.int64
    np.testing.assert_array_equal(np.sort(table.frame), np.sort(np.floor(raw["frame"]).astype(np.int64)))
    np.testing.assert_array_equal(np.sort(table["picasso_frame"]), np.sort(raw["frame"]))
    assert {"group", "n", "area", "convexhull", "std_frame"} <= set(table.columns)


@pytest.mark.parametrize(
    "name, rows", [("raw_movie_locs", 2399), ("raw_movie_locs_picked", 2378), ("raw_movie_locs_picked_single", 1823)]
)
def test_picasso_picked(shared_data, name, rows):
    path = shared_data / "picasso-picked" / f"{name}.hdf5"
    table = read_quiet(path)
    raw = h5_locs(path)
    assert len(table) == rows
    assert table.meta.pixel_size == 130
    assert table.meta.image_shape == (32, 32) and table.meta.n_frames == 5000
    assert table.frame.min() == raw["frame"].min() and table.frame.max() == raw["frame"].max()
    np.testing.assert_allclose(np.sort(table.x), np.sort((raw["x"] + 0.5) * 130.0), rtol=1e-6)
    assert ("group" in table) == ("picked" in name)
    assert "ellipticity" in table


def test_thunderstorm_real(shared_data):
    path = shared_data / "thunderstorm" / "ecoli_lacy_03_storm.csv"
    table = read_locs(path)
    assert detect_format(path) == "thunderstorm"
    ref = pd.read_csv(path)
    assert len(table) == 17361 == len(ref)
    assert (table.frame.min(), table.frame.max()) == (0, 1849)  # file frames 1..1850
    order = np.argsort(ref["frame"].to_numpy(), kind="stable")
    np.testing.assert_array_equal(table.frame, ref["frame"].to_numpy()[order] - 1)
    np.testing.assert_array_equal(table.x, ref["x [nm]"].to_numpy()[order])  # corner convention already
    np.testing.assert_array_equal(table.y, ref["y [nm]"].to_numpy()[order])
    np.testing.assert_array_equal(table["photons"], ref["intensity [photon]"].to_numpy()[order])
    np.testing.assert_array_equal(table["uncertainty"], ref["uncertainty_xy [nm]"].to_numpy()[order])
    np.testing.assert_array_equal(table["chi2"], ref["chi2"].to_numpy()[order])
    assert table.meta.pixel_size is None
    assert "id" not in table


def test_deepstorm_real(shared_data):
    path = shared_data / "deepstorm" / "DNAPAINT_localizations.csv"
    table = read_locs(path, pixel_size=107)
    assert detect_format(path) == "deepstorm"
    assert len(table) == 5744
    assert (table.frame.min(), table.frame.max()) == (0, 49)  # file frames 1.0..50.0
    assert table.meta.pixel_size == 107
    assert (table.x[0], table.y[0], table["photons"][0], table["sigma"][0]) == (836.75, 52173.73, 240, 126.08)
    assert set(table.columns) == {"frame", "x", "y", "photons", "sigma"}


# ======================================================================================= Picasso CSV export
def _picasso_export(shared_data, tmp_path: Path, style: str, first: int = 0) -> tuple[Path, np.ndarray]:
    raw = h5_locs(shared_data / "picasso" / "testdata_locs.hdf5")[first:]
    ps = 130.0
    if style == "old":  # Picasso <= 0.8 Render export_ts: quoted header, CRLF, %.2f
        header = '"id","frame","x [nm]","y [nm]","sigma [nm]","intensity [photon]","offset [photon]",' \
                 '"bkgstd [photon]","uncertainty_xy [nm]"'
        lines = [header]
        for i, r in enumerate(raw):
            lines.append(
                f"{i},{r['frame']},{r['x'] * ps:.2f},{r['y'] * ps:.2f},{(r['sx'] + r['sy']) / 2 * ps:.2f},"
                f"{int(r['photons'])},{int(r['bg'])},0,{(r['lpx'] + r['lpy']) / 2 * ps:.2f}"
            )
        text = "\r\n".join(lines) + "\r\n"
    else:  # Picasso >= 0.9 io.export_thunderstorm: pandas to_csv, full precision
        df = pd.DataFrame(
            {
                "id": np.arange(len(raw), dtype=np.int32),
                "frame": raw["frame"],
                "x [nm]": raw["x"].astype(float) * ps,
                "y [nm]": raw["y"].astype(float) * ps,
                "sigma [nm]": raw["sx"].astype(float) * ps,
                "intensity [photon]": raw["photons"].astype(np.int32),
                "offset [photon]": raw["bg"].astype(np.int32),
                "bkgstd [photon]": 0,
                "uncertainty_xy [nm]": (raw["lpx"] + raw["lpy"].astype(float)) / 2 * ps,
            }
        )
        text = df.to_csv(index=False)
    return write_text(tmp_path / f"export_{style}.csv", text), raw


@pytest.mark.parametrize("style, atol", [("old", 0.0051), ("new", 1e-6)])
def test_picasso_csv_export_both_styles(shared_data, tmp_path, style, atol):
    path, raw = _picasso_export(shared_data, tmp_path, style)
    assert detect_format(path) == "picasso-csv"
    table = read_locs(path, pixel_size=130)
    assert table.meta.source_format == "picasso-csv"
    assert len(table) == 564
    np.testing.assert_array_equal(table.frame, raw["frame"])  # 0-based, unchanged
    np.testing.assert_allclose(table.x, (raw["x"].astype(float) + 0.5) * 130, atol=atol)
    np.testing.assert_allclose(table.y, (raw["y"].astype(float) + 0.5) * 130, atol=atol)
    np.testing.assert_allclose(table["photons"], np.trunc(raw["photons"]), atol=0)
    # Picasso-export-compatible reading: no shift, no pixel size needed
    plain = read_locs(path, half_pixel=False)
    np.testing.assert_allclose(plain.x, raw["x"].astype(float) * 130, atol=atol)
    with pytest.raises(FormatError, match=r"give pixel_size") as err:
        read_locs(path)
    assert str(path) in str(err.value)


def test_picasso_csv_detected_by_id_when_first_frame_is_not_zero(shared_data, tmp_path):
    path, raw = _picasso_export(shared_data, tmp_path, "new", first=3)
    assert raw["frame"].min() > 0
    assert detect_format(path) == "picasso-csv"
    # the explicit override wins over detection and then the 1-based rule applies
    table = read_locs(path, format="thunderstorm")
    np.testing.assert_array_equal(table.frame, raw["frame"].astype(int) - 1)


# =================================================================================== ThunderSTORM variants
TS_ROWS = ["1,5,100.5,200.25,120,1500,10,3,7.5", "2,3,300,400,130,2500,11,4,8.5", "3,5,50,60,110,900,9,2,6"]
TS_NAMES = ["id", "frame", "x [nm]", "y [nm]", "sigma [nm]", "intensity [photon]", "offset [photon]",
            "bkgstd [photon]", "uncertainty_xy [nm]"]


@pytest.mark.parametrize(
    "header",
    [
        ",".join(f'"{n}"' for n in TS_NAMES),
        ",".join(TS_NAMES),
        ",".join(f'"""{n}"""' for n in TS_NAMES),
        '"' + ",".join(f'""{n}""' for n in TS_NAMES) + '"',
        " , ".join(f' "{n}"  ' for n in TS_NAMES),
    ],
    ids=["quoted", "plain", "doubled", "wrapped", "spaces"],
)
def test_thunderstorm_header_variants(tmp_path, header):
    path = write_text(tmp_path / "ts.csv", header + "\n" + "\n".join(TS_ROWS) + "\n")
    assert detect_format(path) == "thunderstorm"
    table = read_locs(path)
    np.testing.assert_array_equal(table.frame, [2, 4, 4])  # 1-based -> 0-based, sorted stably
    np.testing.assert_array_equal(table.x, [300, 100.5, 50])
    np.testing.assert_array_equal(table["sigma"], [130, 120, 110])
    np.testing.assert_array_equal(table["photons"], [2500, 1500, 900])
    np.testing.assert_array_equal(table["background"], [11, 10, 9])
    np.testing.assert_array_equal(table["uncertainty"], [8.5, 7.5, 6])
    np.testing.assert_array_equal(table["bkgstd [photon]"], [4, 3, 2])


def test_thunderstorm_3d_no_id_old_names_extra_columns(tmp_path):
    text = textwrap.dedent(
        """\
        "frame","x [nm]","y [nm]","z [nm]","sigma1 [nm]","sigma2 [nm]","intensity [photon]","chi2","uncertainty [nm]"
        2,10,20,-150.5,100,140,1000,3.25,9
        1,30,40,220,110,130,2000,1.5,11
        """
    )
    path = write_text(tmp_path / "ts3d.csv", text)
    assert detect_format(path) == "thunderstorm"
    table = read_locs(path)
    np.testing.assert_array_equal(table.frame, [0, 1])
    np.testing.assert_array_equal(table["z"], [220, -150.5])
    np.testing.assert_array_equal(table["sigma"], [120, 120])  # mean of sigma1, sigma2
    np.testing.assert_array_equal(table["uncertainty"], [11, 9])
    np.testing.assert_array_equal(table["chi2"], [1.5, 3.25])
    np.testing.assert_array_equal(table["sigma1 [nm]"], [110, 100])
    out = write_locs(table, tmp_path / "back.csv", format="thunderstorm")[0]
    header = out.read_text().splitlines()[0]
    assert header.startswith('"id","frame","x [nm]","y [nm]","z [nm]","sigma [nm]"')
    assert '"chi2"' in header and '"sigma1 [nm]"' in header
    back = read_locs(out)
    for name in ("frame", "x", "y", "z", "sigma", "uncertainty", "chi2"):
        np.testing.assert_array_equal(back[name], table[name])


# ===================================================================================== DeepSTORM variants
@pytest.mark.parametrize("index", ["", "Unnamed: 0", "id", None])
def test_deepstorm_index_detected_by_name(tmp_path, index):
    header = "frame,x [nm],y [nm],Photon #,Sigma [nm]"
    rows = ["2.0,11.5,12.5,300,120", "1.0,21.5,22.5,400,130"]
    if index is not None:
        header = f"{index}," + header
        rows = [f"{i + 1},{r}" for i, r in enumerate(rows)]
    path = write_text(tmp_path / "ds.csv", header + "\n" + "\n".join(rows) + "\n")
    assert detect_format(path) == "deepstorm"
    table = read_locs(path)
    np.testing.assert_array_equal(table.frame, [0, 1])
    np.testing.assert_array_equal(table.x, [21.5, 11.5])
    np.testing.assert_array_equal(table["photons"], [400, 300])
    assert set(table.columns) == {"frame", "x", "y", "photons", "sigma"}


def test_deepstorm_prediction(tmp_path):
    text = "frame,x [nm],y [nm],confidence [a.u]\n1,1234.5000457763672,99.0,1.7000000476837158\n3,5.25,6.5,0.25\n"
    path = write_text(tmp_path / "Localizations_movie_avg.csv", text)
    assert detect_format(path) == "deepstorm-prediction"
    table = read_locs(path)
    np.testing.assert_array_equal(table.frame, [0, 2])
    np.testing.assert_array_equal(table.x, [1234.5000457763672, 5.25])
    np.testing.assert_array_equal(table["confidence"], [1.7000000476837158, 0.25])


@pytest.mark.parametrize("fmt", ["deepstorm", "deepstorm-prediction", "thunderstorm", "picasso"])
def test_empty_tables_round_trip(tmp_path, fmt):
    empty = small_table(0)
    suffix = ".hdf5" if fmt == "picasso" else ".csv"
    path = write_locs(empty, tmp_path / f"empty{suffix}", format=fmt)[0]
    if fmt != "picasso":
        assert len(path.read_text().splitlines()) == 1  # header only
    back = read_locs(path, format=fmt)
    assert len(back) == 0 and back.frame.dtype == np.int64


def test_header_only_files_read_as_empty(tmp_path):
    for name, header in [("a.csv", locformats.DEEPSTORM_HEADER), ("b.csv", '"id","frame","x [nm]","y [nm]"'),
                         ("c.csv", locformats.DEEPSTORM_PREDICTION_HEADER)]:
        assert len(read_locs(write_text(tmp_path / name, header + "\n"))) == 0


# ================================================================================================ writers
def test_deepstorm_writer_layout(tmp_path):
    table = LocTable(
        {"frame": [3, 0, 0, 7], "x": [1.5, 2.25, 3.0, 4.0], "y": [5.0, 6.0, 7.0, 8.125],
         "photons": [10.0, 20.0, np.nan, 40.0]},
        LocMeta(pixel_size=100.0),
    )
    path = write_locs(table, tmp_path / "train.csv")[0]  # .csv -> deepstorm
    text = path.read_text()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0] == ",frame,x [nm],y [nm],Photon #,Sigma [nm]"
    assert lines[1:] == ["1,1,2.25,6,20,", "2,1,3,7,,", "3,4,1.5,5,10,", "4,8,4,8.125,40,"]
    # the notebook's reader: pd.read_csv(index_col=0), label lookup 1..N in frame order, frames 1-based
    df = pd.read_csv(path, index_col=0)
    assert list(df.index) == [1, 2, 3, 4]
    assert list(df.columns) == ["frame", "x [nm]", "y [nm]", "Photon #", "Sigma [nm]"]
    assert df["frame"].is_monotonic_increasing and df["frame"].min() == 1
    assert df["frame"].dtype.kind == "i"


def test_deepstorm_prediction_writer(tmp_path):
    table = LocTable({"frame": [1, 0], "x": [1.0, 2.0], "y": [3.0, 4.0], "confidence": [0.5, 2.5]})
    path = write_locs(table, tmp_path / "Localizations_m_avg.csv", format="deepstorm-prediction")[0]
    assert path.read_text().splitlines() == ["frame,x [nm],y [nm],confidence [a.u]", "1,2,4,2.5", "2,1,3,0.5"]


def test_thunderstorm_writer_layout(tmp_path):
    table = small_table(4, uncertainty=np.arange(4.0), chi2=np.ones(4), lpx=np.ones(4))
    path = write_locs(table, tmp_path / "ts.csv", format="thunderstorm")[0]
    lines = path.read_text().splitlines()
    assert lines[0] == ('"id","frame","x [nm]","y [nm]","sigma [nm]","intensity [photon]",'
                        '"uncertainty_xy [nm]","chi2"')  # lpx (camera pixels) is not carried into nm CSVs
    ref = pd.read_csv(path)
    assert list(ref["id"]) == [1, 2, 3, 4]
    np.testing.assert_array_equal(ref["frame"], table.frame + 1)


def test_picasso_writer_fields_dtypes_and_yaml(shared_data, tmp_path):
    source = shared_data / "deepstorm" / "DNAPAINT_localizations.csv"
    table = read_locs(source, pixel_size=107)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        paths = write_locs(table, tmp_path / "out.hdf5")
    assert [p.name for p in paths] == ["out.hdf5", "out.yaml"]
    locs = h5_locs(paths[0])
    dtype = locs.dtype
    for name in ("frame", "x", "y", "lpx", "lpy"):  # Picasso's minimum
        assert name in dtype.names
    assert dtype["frame"] == np.dtype("<u4")
    for name in ("x", "y", "photons", "sx", "sy", "lpx", "lpy"):
        assert dtype[name] == np.dtype("<f4"), name
    assert not any(dtype[n].byteorder == ">" for n in dtype.names)
    np.testing.assert_array_equal(locs["frame"], table.frame)
    np.testing.assert_allclose(locs["x"], table.x / 107 - 0.5, rtol=1e-6)
    np.testing.assert_allclose(locs["sx"], table["sigma"] / 107, rtol=1e-6)
    for name in dtype.names:
        if dtype[name].kind == "f":
            assert np.all(np.isfinite(locs[name])), name  # Picasso drops rows with any NaN
    docs = list(yaml.load_all(paths[1].read_text(), Loader=PicassoLoader))
    last = docs[-1]
    assert last["Generated by"].startswith("imagebinner ")
    assert last["Pixelsize"] == 107
    assert last["Frames"] == 50
    assert last["Width"] * 107 > table.x.max() and last["Height"] * 107 > table.y.max()
    assert "x_px = x_nm / 107 - 0.5" in last["Conversion"]
    # the dataset is a plain compound dataset (as h5py writes it), readable by pandas' fallback too
    with h5py.File(paths[0], "r") as h5:
        assert list(h5.keys()) == ["locs"] and isinstance(h5["locs"], h5py.Dataset)


def test_picasso_yaml_reemitted_unchanged(shared_data, tmp_path):
    path = shared_data / "picasso" / "testdata_mols.hdf5"
    table = read_quiet(path)
    out = write_locs(table, tmp_path / "mols.hdf5")
    src_docs = [d for d in yaml.load_all((path.with_suffix(".yaml")).read_text(), Loader=PicassoLoader)]
    new_docs = list(yaml.load_all(out[1].read_text(), Loader=PicassoLoader))
    assert new_docs[:-1] == src_docs
    assert new_docs[-1]["Width"] == 512 and new_docs[-1]["Frames"] == 40000
    src, back = h5_locs(path), h5_locs(out[0])
    assert len(back) == 4230
    assert set(src.dtype.names) - {"frame"} <= set(back.dtype.names)


def test_picasso_drop_warning(tmp_path):
    table = LocTable(
        {"frame": [0, 0, 1, 2], "x": [10.0, 500.0, 3150.0, 700.0], "y": [500.0, 20.0, 500.0, 700.0]},
        LocMeta(pixel_size=100.0, image_shape=(30, 30)),
    )
    with pytest.warns(UserWarning, match=r"drop 3 of 4.*2 with negative pixel coordinates.*1 outside") as rec:
        write_locs(table, tmp_path / "w.hdf5")
    assert "ensure_sanity" in str(rec[0].message)
    locs = h5_locs(tmp_path / "w.hdf5")
    assert len(locs) == 4  # kept: the conversion is exact
    assert locs["x"][0] == pytest.approx(10 / 100 - 0.5)


def test_picasso_writer_needs_pixel_size(tmp_path):
    table = LocTable({"frame": [0], "x": [1.0], "y": [2.0]})
    with pytest.raises(FormatError, match="pixel size") as err:
        write_locs(table, tmp_path / "p.hdf5")
    assert "p.hdf5" in str(err.value)
    assert not list(tmp_path.iterdir())
    write_locs(table, tmp_path / "p.hdf5", pixel_size=100)
    assert yaml.safe_load((tmp_path / "p.yaml").read_text())["Pixelsize"] == 100


def test_picasso_lp_placeholder_recorded(tmp_path):
    table = LocTable({"frame": [0, 1], "x": [100.0, 200.0], "y": [150.0, 250.0]}, LocMeta(pixel_size=100.0))
    write_locs(table, tmp_path / "p.hdf5")
    locs = h5_locs(tmp_path / "p.hdf5")
    np.testing.assert_array_equal(locs["lpx"], np.float32(locformats.PICASSO_LP_PLACEHOLDER_PX))
    assert "placeholder" in yaml.safe_load((tmp_path / "p.yaml").read_text())["Notes"]


def _picasso_python() -> str | None:
    try:
        import picasso.io  # noqa: F401

        return sys.executable
    except Exception:
        pass
    candidate = os.environ.get("PICASSO_PYTHON")
    return candidate if candidate and Path(candidate).exists() else None


@pytest.mark.skipif(_picasso_python() is None, reason="picasso (picassosr) not importable; set PICASSO_PYTHON")
def test_picasso_own_loader_opens_our_files(shared_data, tmp_path):
    """Picasso's ``io.load_locs`` (incl. ``lib.ensure_sanity``) reads what we write, dropping only what we predicted."""
    import json

    sources = {
        "ts": (shared_data / "thunderstorm" / "ecoli_lacy_03_storm.csv", 160),
        "ds": (shared_data / "deepstorm" / "DNAPAINT_localizations.csv", 107),
        "pic": (shared_data / "picasso" / "testdata_locs.hdf5", None),
        "edge": (None, 100),
    }
    expected = {}
    for key, (src, ps) in sources.items():
        if src is None:  # one loc in the outer half of pixel column 0: Picasso drops it
            table = LocTable({"frame": [0, 1], "x": [20.0, 500.0], "y": [300.0, 400.0]},
                             LocMeta(pixel_size=100.0, image_shape=(8, 8)))
        else:
            table = read_quiet(src, pixel_size=ps)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = write_locs(table, tmp_path / f"{key}.hdf5")[0]
        records = h5_locs(out)
        docs = list(yaml.load_all(out.with_suffix(".yaml").read_text(), Loader=PicassoLoader))
        dropped, _ = locformats.picasso_sanity_report(records, docs[-1]["Width"], docs[-1]["Height"])
        expected[key] = (str(out), len(table) - dropped, float(records["x"][-1]), table.meta.pixel_size)
    assert expected["edge"][1] == 1
    script = (
        "import sys, json, picasso.io as io\n"
        "res = {}\n"
        "for key, path in json.loads(sys.argv[1]).items():\n"
        "    locs, info = io.load_locs(path)\n"
        "    res[key] = [len(locs), float(locs['x'].iloc[-1]), info[-1]['Pixelsize'], str(locs['frame'].dtype)]\n"
        "print(json.dumps(res))\n"
    )
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "MPLBACKEND": "Agg"}
    arg = json.dumps({k: v[0] for k, v in expected.items()})
    res = subprocess.run([_picasso_python(), "-c", script, arg], capture_output=True, text=True, env=env, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    for key, (_, n, x_last, ps) in expected.items():
        assert got[key][0] == n, key
        assert got[key][1] == pytest.approx(x_last), key
        assert got[key][2] == ps and got[key][3] == "uint32", key


# ================================================================================================= errors
def _check_error(exc_info, path: Path, *words: str) -> None:
    message = str(exc_info.value)
    assert "\n" not in message
    assert str(path) in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(
    "content, words",
    [
        ("a,b,c\n1,2,3\n", ["unknown localization format", "x [nm]"]),
        ("", ["empty file"]),
        ("frame,x [nm],y [nm]\n1,abc,3\n", ["'x [nm]'", "not numeric", "abc"]),
        ("frame,x [nm],y [nm]\n1,,3\n2,1,1\n", ["'x [nm]'", "NaN"]),
        ("frame,x [nm],y [nm]\n1,nan,3\n", ["'x [nm]'", "NaN"]),
        ("frame,x [nm],y [nm]\n1.5,1,3\n", ["non-integral"]),
        ("frame,x [nm],y [nm]\nfoo,1,3\n", ["'frame'", "not numeric"]),
        (",frame,x [nm],y [nm],Photon #,Sigma [nm]\n1,0,1,2,3,4\n", ["frame 0", "1-based", "DeepSTORM"]),
        (",frame,x [nm],y [nm],Photon #,Sigma [nm]\n1,-3,1,2,3,4\n", ["frame -3"]),
    ],
    ids=["unknown", "empty", "non-numeric", "empty-x", "nan-x", "float-frame", "text-frame", "frame0", "negative"],
)
def test_read_errors_name_file_and_cause(tmp_path, content, words):
    path = write_text(tmp_path / "bad.csv", content)
    with pytest.raises(FormatError) as err:
        read_locs(path)
    _check_error(err, path, *words)


def test_override_errors(tmp_path):
    path = write_text(tmp_path / "p.csv", "id,frame,x [nm],y [nm]\n0,0,1,2\n")
    assert detect_format(path) == "picasso-csv"
    with pytest.raises(FormatError) as err:
        read_locs(path, format="thunderstorm")
    _check_error(err, path, "frame 0", "1-based")
    with pytest.raises(FormatError) as err:
        read_locs(path, format="picasso")
    _check_error(err, path, "HDF5")
    with pytest.raises(FormatError) as err:
        read_locs(path, format="nonsense")
    _check_error(err, path, "unknown format")
    missing = write_text(tmp_path / "m.csv", "frame,x [nm],z [nm]\n1,2,3\n")
    with pytest.raises(FormatError) as err:
        read_locs(missing, format="thunderstorm")
    _check_error(err, missing, "y [nm]")


def test_picasso_errors(shared_data, tmp_path):
    # no Pixelsize in any YAML document: the error suggests Camera.Pixelsize
    h5 = tmp_path / "a.hdf5"
    h5.write_bytes((shared_data / "picasso" / "testdata_locs.hdf5").read_bytes())
    docs = list(yaml.load_all((shared_data / "picasso" / "testdata_locs.yaml").read_text(), Loader=PicassoLoader))
    for d in docs:
        d.pop("Pixelsize", None)
    (tmp_path / "a.yaml").write_text(yaml.dump_all(docs))
    with pytest.raises(FormatError) as err:
        read_locs(h5)
    _check_error(err, h5, "Pixelsize", "pixel_size", "160")
    assert "--" not in str(err.value)  # the param name, not a flag (the CLI shows flags)
    assert len(read_locs(h5, pixel_size=160)) == 564
    # no YAML at all
    (tmp_path / "a.yaml").unlink()
    with pytest.raises(FormatError) as err:
        read_locs(h5)
    _check_error(err, h5, "a.yaml")
    # HDF5 without /locs
    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(FormatError) as err:
        read_locs(other)
    _check_error(err, other, "/locs")
    # negative frames
    neg = tmp_path / "neg.hdf5"
    with h5py.File(neg, "w") as f:
        f["locs"] = np.array([(-1, 1.0, 2.0)], dtype=[("frame", "<i4"), ("x", "<f4"), ("y", "<f4")])
    (tmp_path / "neg.yaml").write_text("Pixelsize: 100\n")
    with pytest.raises(FormatError) as err:
        read_locs(neg)
    _check_error(err, neg, "negative frame")
    # NaN coordinates
    nan = tmp_path / "nan.hdf5"
    with h5py.File(nan, "w") as f:
        f["locs"] = np.array([(1, np.nan, 2.0)], dtype=[("frame", "<u4"), ("x", "<f4"), ("y", "<f4")])
    (tmp_path / "nan.yaml").write_text("Pixelsize: 100\n")
    with pytest.raises(FormatError) as err:
        read_locs(nan)
    _check_error(err, nan, "'x'", "NaN")


def test_missing_file_and_output_format(tmp_path):
    with pytest.raises(FormatError) as err:
        read_locs(tmp_path / "nope.csv")
    _check_error(err, tmp_path / "nope.csv", "not found")
    with pytest.raises(FormatError) as err:
        format_for_output(tmp_path / "out.txt")
    _check_error(err, tmp_path / "out.txt", "choose it with to")
    assert err.value.params == ("to",)  # the CLI shows it as --to
    assert format_for_output("a.hdf5") == "picasso" and format_for_output("a.CSV") == "deepstorm"
    assert format_for_output("a.csv", "thunderstorm") == "thunderstorm"
    assert output_paths("d/a.hdf5", "picasso") == [Path("d/a.hdf5"), Path("d/a.yaml")]
    assert set(WRITE_FORMATS) < set(LOC_FORMATS) | {"deepstorm-prediction"}
    assert "picasso-csv" not in WRITE_FORMATS


# =========================================================================== no overwrite, atomic writes
def test_no_overwrite_unless_asked(tmp_path):
    table = small_table()
    path = write_locs(table, tmp_path / "o.csv")[0]
    before = path.read_bytes()
    with pytest.raises(OutputExistsError) as err:
        write_locs(small_table(seed=1), path)
    _check_error(err, path, "exists")
    assert path.read_bytes() == before
    write_locs(small_table(seed=1), path, overwrite=True)
    assert path.read_bytes() != before


def test_picasso_pair_checked_before_writing(tmp_path):
    (tmp_path / "p.yaml").write_text("keep me\n")
    with pytest.raises(OutputExistsError) as err:
        write_locs(small_table(), tmp_path / "p.hdf5")
    _check_error(err, tmp_path / "p.yaml")
    assert not (tmp_path / "p.hdf5").exists()
    assert (tmp_path / "p.yaml").read_text() == "keep me\n"


def test_chunked_csv_writer_matches_single_pass(tmp_path, monkeypatch):
    table = small_table(50, uncertainty=np.linspace(0, 1, 50))
    whole = write_locs(table, tmp_path / "whole.csv")[0].read_bytes()
    from imagebinner.io import csv_writers

    monkeypatch.setattr(csv_writers, "_CSV_CHUNK_ROWS", 7)
    chunked = write_locs(table, tmp_path / "chunked.csv")[0].read_bytes()
    assert chunked == whole
    assert len(whole.splitlines()) == 51


def test_failing_writes_leave_nothing(tmp_path, monkeypatch):
    from pyarrow import csv as pacsv

    def broken_write_csv(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pacsv, "write_csv", broken_write_csv)
    with pytest.raises(RuntimeError):
        write_locs(small_table(), tmp_path / "o.csv")
    assert list(tmp_path.iterdir()) == []

    from imagebinner.io import picasso_yaml

    def broken_dump(docs, path):
        Path(path).write_text("half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(picasso_yaml, "dump_docs", broken_dump)
    with pytest.raises(RuntimeError):
        write_locs(small_table(), tmp_path / "o.hdf5")
    assert list(tmp_path.iterdir()) == []


def test_inputs_not_modified(shared_data, tmp_path):
    src = shared_data / "picasso" / "testdata_locs.hdf5"
    stat = (src.stat().st_mtime_ns, src.with_suffix(".yaml").stat().st_mtime_ns)
    table = read_quiet(src)
    write_locs(table, tmp_path / "copy.hdf5")
    assert (src.stat().st_mtime_ns, src.with_suffix(".yaml").stat().st_mtime_ns) == stat


def test_io_errors_name_params_and_the_cli_shows_flags(shared_data, tmp_path, capsys):
    """io messages are read in the GUI too: they name params (pixel_size, to, overwrite), never flags; the CLI
    prints the same errors with the flags (and catches them all as ImageBinnerError: one line, exit 2)."""
    from imagebinner.cli import main

    path, _ = _picasso_export(shared_data, tmp_path, "new")
    table = LocTable({"frame": [0], "x": [1.0], "y": [2.0]})
    (tmp_path / "taken.csv").write_text("x")
    for call, param_names in [
        (lambda: read_locs(path), ["pixel_size", "half_pixel"]),
        (lambda: write_locs(table, tmp_path / "p.hdf5"), ["pixel_size"]),
        (lambda: write_locs(table, tmp_path / "p.txt"), ["to"]),
        (lambda: write_locs(table, tmp_path / "taken.csv"), ["overwrite"]),
    ]:
        with pytest.raises(ImageBinnerError) as err:
            call()
        assert "--" not in str(err.value) and set(param_names) <= set(err.value.params)
        for name in param_names:
            assert name in str(err.value)
    assert main(["convert", str(path), "-o", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert "give --pixel-size" in err and "--half-pixel" in err and "pixel_size" not in err
    assert main(["convert", str(path), "-o", str(tmp_path / "o.txt"), "--pixel-size", "130"]) == 2
    assert "choose it with --to" in capsys.readouterr().err


# =========================================================================== Picasso YAML is read safely
def test_picasso_yaml_with_python_objects_is_refused_and_runs_nothing(shared_data, tmp_path):
    """A YAML a dashboard can be pointed at must never run code: only plain values and tuples are read."""
    h5 = tmp_path / "evil.hdf5"
    h5.write_bytes((shared_data / "picasso" / "testdata_locs.hdf5").read_bytes())
    marker = tmp_path / "ran"
    (tmp_path / "evil.yaml").write_text(f'Pixelsize: 130\n---\nHook: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(FormatError) as err:
        read_locs(h5)
    _check_error(err, tmp_path / "evil.yaml", "!!python/object/apply:os.system", "refused")
    assert not marker.exists()
    (tmp_path / "evil.yaml").write_text('Pixelsize: 130\nCall: !!python/name:os.system ""\n')
    with pytest.raises(FormatError, match=r"evil\.yaml.*!!python/name:os\.system"):
        read_locs(h5)
    # a raw movie's YAML goes through the same loader
    raw = tmp_path / "evil.raw"
    raw.write_bytes(np.zeros(4, np.uint16).tobytes())
    with pytest.raises(FormatError, match=r"evil\.yaml.*refused"):
        open_movie(raw)
    assert not marker.exists()


def test_picasso_yaml_tuples_and_real_files_still_read(shared_data, tmp_path):
    for path in sorted((shared_data / "picasso").glob("*.yaml")):  # what Picasso writes reads as before
        assert picasso_yaml.load_docs(path) == [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    h5 = tmp_path / "t.hdf5"
    h5.write_bytes((shared_data / "picasso" / "testdata_locs.hdf5").read_bytes())
    (tmp_path / "t.yaml").write_text("Pixelsize: 130\nWidth: 32\nHeight: 32\nFrames: 1000\n"
                                     "Box Size: !!python/tuple [7, 7]\n")
    table = read_locs(h5)
    assert table.pixel_size == 130 and table.meta.picasso_yaml[-1]["Box Size"] == (7, 7)
    out = write_locs(table, tmp_path / "back.hdf5")
    assert "!!python/tuple" in out[1].read_text()  # written back as Picasso writes it, and read again
    assert picasso_yaml.load_docs(out[1])[0]["Box Size"] == (7, 7)
