"""DECODE emitter .h5, SMAP *_sml.mat (v7.3) and ONI Nanoimager CSV: each tool's own convention, checked on real data.

The DECODE and SMAP files are built here from the real Picasso localizations of ``picasso/testdata_locs.hdf5``
following each tool's source (not our reader): DECODE ``xyz[:, 0]`` runs along the image rows with pixel ``j``
centred at ``j`` (``frame_grid``/``meshgrid`` 'ij', frame extent -0.5 .. W-0.5), 0-based ``frame_ix``; SMAP
``xnm = (xpix + roi(1)) * ps`` with MATLAB pixel ``k`` centred at ``k`` (so 0-based pixel ``j`` at ``(j + 1) * ps``),
1-based ``frame``. Read back, they must land on the movie ``picasso/testdata.tif`` exactly where the Picasso file does.
"""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

from imagebinner.cli import main
from imagebinner.errors import FormatError
from imagebinner.io import detect_format, open_movie, read_locs, write_locs
from imagebinner.io.table import LocTable

PS = 130.0


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def picasso(shared_data):
    """Raw Picasso fields (pixels, centre convention, 0-based frames) and the canonical table read from them."""
    path = shared_data / "picasso" / "testdata_locs.hdf5"
    with h5py.File(path, "r") as h5:
        raw = h5["locs"][...]
    return raw, _quiet(read_locs, path)


@pytest.fixture(scope="module")
def movie_frames(shared_data, picasso):
    table = picasso[1]
    frames = np.unique(table.frame)
    with open_movie(shared_data / "picasso" / "testdata.tif") as movie:
        images = np.stack([movie.frame(int(f)).astype(np.float64) for f in frames])
    images -= np.median(images, axis=(1, 2), keepdims=True)
    return frames, images


def correlation(table: LocTable, movie_frames, sigma_nm: np.ndarray, photons: np.ndarray) -> float:
    """Gaussian spots at the canonical positions, sampled at pixel centres ((j + 0.5) * ps), against the movie."""
    frames, images = movie_frames
    out = np.zeros_like(images)
    centres = (np.arange(images.shape[2]) + 0.5) * PS
    page = np.searchsorted(frames, table.frame)
    for k in range(len(table)):
        gx = np.exp(-((centres - table.x[k]) ** 2) / (2 * sigma_nm[k] ** 2))
        gy = np.exp(-((centres - table.y[k]) ** 2) / (2 * sigma_nm[k] ** 2))
        out[page[k]] += photons[k] * np.outer(gy, gx)
    return float(np.corrcoef(out.ravel(), images.ravel())[0, 1])


# ======================================================================================================= DECODE
def write_decode_like_decode(path, raw, unit="px"):
    """An emitter file laid out as DECODE's ``save_h5`` writes it, from Picasso fields (both centre at integers)."""
    xyz = np.stack([raw["y"], raw["x"], np.zeros(len(raw))], axis=1).astype(np.float32)  # x along the rows
    if unit == "nm":
        xyz[:, :2] *= PS
    with h5py.File(path, "w") as h5:
        h5.create_group("meta").attrs.update({"xy_unit": unit, "px_size": np.array([PS, PS], dtype=np.float32)})
        h5.create_group("decode").attrs.update({"version": "0.10.0"})
        g = h5.create_group("data")
        g.create_dataset("xyz", data=xyz)
        for name in ("xyz_sig", "xyz_cr", "phot_cr", "phot_sig", "bg_cr", "bg_sig"):
            g.create_dataset(name, data=h5py.Empty("f"))
        g.create_dataset("phot", data=raw["photons"].astype(np.float32))
        g.create_dataset("frame_ix", data=raw["frame"].astype(np.int64))
        g.create_dataset("id", data=np.full(len(raw), -1, dtype=np.int64))
        g.create_dataset("prob", data=np.ones(len(raw), dtype=np.float32))
        g.create_dataset("bg", data=raw["bg"].astype(np.float32))
    return path


@pytest.mark.parametrize("unit", ["px", "nm"])
def test_decode_file_lands_where_picasso_does_on_the_movie(tmp_path, picasso, movie_frames, unit):
    raw, reference = picasso
    path = write_decode_like_decode(tmp_path / "emitters.h5", raw, unit)
    assert detect_format(path) == "decode"
    table = read_locs(path)
    assert table.meta.source_format == "decode" and table.meta.pixel_size == PS
    assert np.array_equal(table.frame, reference.frame)
    np.testing.assert_allclose(table.x, reference.x, atol=1e-3)
    np.testing.assert_allclose(table.y, reference.y, atol=1e-3)
    np.testing.assert_allclose(table["photons"], reference["photons"])
    sigma, photons = reference["sigma"], reference["photons"]
    aligned = correlation(table, movie_frames, sigma, photons)
    swapped = correlation(table.with_columns(x=table.y, y=table.x), movie_frames, sigma, photons)
    assert aligned > 0.8 and aligned > swapped + 0.3


def test_decode_documented_example_and_round_trip(tmp_path):
    """DECODE's frame extent (-0.5, 39.5) for 40 px: xyz_px (0, 0) is the centre of the first pixel; (3, 7) is row 3,
    column 7."""
    path = tmp_path / "e.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("meta").attrs.update({"xy_unit": "px", "px_size": np.array([100.0, 100.0])})
        h5.create_group("decode").attrs["version"] = "x"
        g = h5.create_group("data")
        g.create_dataset("xyz", data=np.array([[0.0, 0.0, 0.0], [3.0, 7.0, -250.0]], dtype=np.float32))
        g.create_dataset("frame_ix", data=np.array([0, 5]))
        g.create_dataset("phot", data=np.array([1000.0, 2000.0], dtype=np.float32))
        g.create_dataset("xyz_sig", data=h5py.Empty("f"))
    table = read_locs(path)
    assert table.x.tolist() == [50.0, 750.0] and table.y.tolist() == [50.0, 350.0]
    assert table.frame.tolist() == [0, 5] and table["z"].tolist() == [0.0, -250.0]
    assert "uncertainty" not in table  # empty (all-NaN) datasets are absent
    out = write_locs(table, tmp_path / "back.h5", format="decode")[0]
    with h5py.File(out, "r") as h5:
        assert sorted(h5) == ["data", "decode", "meta"] and h5["meta"].attrs["xy_unit"] == "px"
        np.testing.assert_array_equal(h5["data/xyz"][...], [[0, 0, 0], [3, 7, -250]])
        assert h5["data/frame_ix"].dtype == np.int64 and h5["data/xyz_cr"].shape is None
        assert h5["data/id"][...].tolist() == [-1, -1]
    again = read_locs(out)
    assert again.x.tolist() == table.x.tolist() and again.y.tolist() == table.y.tolist()


def test_convert_cli_to_and_from_decode(tmp_path, shared_data, capsys):
    source = shared_data / "picasso" / "testdata_locs.hdf5"
    assert _quiet(main, ["convert", str(source), "-o", str(tmp_path / "d.h5"), "--to", "decode"]) == 0
    assert "picasso -> decode: 564 localizations" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "d.h5"), "-o", str(tmp_path / "d.csv")]) == 0
    assert "decode -> deepstorm" in capsys.readouterr().out
    back, reference = read_locs(tmp_path / "d.csv"), _quiet(read_locs, source)
    np.testing.assert_allclose(back.x, reference.x, atol=2e-3)
    assert np.array_equal(back.frame, reference.frame)


# ========================================================================================================= SMAP
def write_smap_like_matlab(path, raw, roi=(0, 0), struct_array=False):
    """A v7.3 *_sml.mat as MATLAB's ``save(..., '-v7.3')`` lays it out: 512-byte user block, struct = group,
    N x 1 column = dataset of shape (1, N), ``MATLAB_class`` attributes."""
    n = len(raw)
    with h5py.File(path, "w", userblock_size=512) as h5:
        saveloc = h5.create_group("saveloc")
        saveloc.attrs["MATLAB_class"] = np.bytes_("struct")
        loc = saveloc.create_group("loc")
        loc.attrs["MATLAB_class"] = np.bytes_("struct")
        columns = {
            "xnm": (raw["x"].astype(np.float64) + 1 + roi[0]) * PS,  # MATLAB pixel k (1-based) centred at k
            "ynm": (raw["y"].astype(np.float64) + 1 + roi[1]) * PS,
            "frame": raw["frame"].astype(np.float64) + 1,
            "phot": raw["photons"].astype(np.float64),
            "bg": raw["bg"].astype(np.float64),
            "PSFxnm": raw["sx"].astype(np.float64) * PS,
            "locprecnm": raw["lpx"].astype(np.float64) * PS,
            "filenumber": np.ones(n),
        }
        for name, values in columns.items():
            ds = loc.create_dataset(name, data=values.astype(np.float32 if name != "frame" else np.float64)[None, :])
            ds.attrs["MATLAB_class"] = np.bytes_("single" if name != "frame" else "double")
        info_values = {"cam_pixelsize_um": np.array([[PS / 1000], [PS / 1000]]),
                       "roi": np.array([[roi[0]], [roi[1]], [32], [32]], dtype=np.float64)}
        if struct_array:
            refs = h5.create_group("#refs#")
            info = refs.create_group("info0")
            file_group = saveloc.create_group("file")
            file_group.create_dataset("info", data=np.array([[info.ref]], dtype=h5py.ref_dtype))
        else:
            info = saveloc.create_group("file").create_group("info")
        for name, values in info_values.items():
            info.create_dataset(name, data=values)
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .")
    return path


@pytest.mark.parametrize("roi,struct_array", [((0, 0), False), ((10, 20), True)])
def test_smap_file_lands_where_picasso_does_on_the_movie(tmp_path, picasso, movie_frames, roi, struct_array):
    raw, reference = picasso
    path = write_smap_like_matlab(tmp_path / "cell_sml.mat", raw, roi, struct_array)
    assert open(path, "rb").read(6) == b"MATLAB" and detect_format(path) == "smap"
    table = read_locs(path)
    assert table.meta.pixel_size == pytest.approx(PS) and table.meta.image_shape == (32, 32)
    assert np.array_equal(table.frame, reference.frame)
    np.testing.assert_allclose(table.x, reference.x, atol=2e-3)
    np.testing.assert_allclose(table.y, reference.y, atol=2e-3)
    np.testing.assert_allclose(table["sigma"], raw["sx"] * PS, rtol=1e-6)
    assert "uncertainty" in table and "background" in table and "filenumber" in table
    aligned = correlation(table, movie_frames, reference["sigma"], reference["photons"])
    assert aligned > 0.8
    # read without the half-pixel step it is off by half a pixel, which the movie shows
    off = read_locs(path, half_pixel=False)
    np.testing.assert_allclose(off.x - table.x, PS / 2, atol=1e-6)
    assert correlation(off, movie_frames, reference["sigma"], reference["photons"]) < aligned - 0.05


def test_smap_needs_a_pixel_size(tmp_path, picasso):
    path = tmp_path / "x_sml.mat"
    with h5py.File(path, "w", userblock_size=512) as h5:
        loc = h5.create_group("saveloc").create_group("loc")
        for name in ("xnm", "ynm", "frame"):
            loc.create_dataset(name, data=np.ones((1, 3)))
    with pytest.raises(FormatError, match="cam_pixelsize_um; give pixel_size"):
        read_locs(path)
    assert read_locs(path, pixel_size=100.0).x.tolist() == [-49.0] * 3  # (1 - 0.5) px -> corner origin


# ========================================================================================================== ONI
def test_oni_nimos_and_codi_csv_documented_examples(tmp_path):
    nimos = tmp_path / "oni.csv"
    nimos.write_text(
        "Channel,Frame,X (nm),Y (nm),Z (nm),Photons,Background,Sigma X (nm),Sigma Y (nm)\n"
        "0,0,1000.5,2000.25,0,1500,12,140,160\n"
        "1,3,50,60,-20,800,10,130,150\n"
    )
    assert detect_format(nimos) == "oni"
    t = read_locs(nimos)
    assert t.frame.tolist() == [0, 3] and t.x.tolist() == [1000.5, 50.0] and t.y.tolist() == [2000.25, 60.0]
    assert t["photons"].tolist() == [1500, 800] and t["sigma"].tolist() == [150.0, 140.0]
    assert t["Channel"].tolist() == [0, 1] and "assumed" in t.meta.conversion
    codi = tmp_path / "codi.csv"
    codi.write_text("x-nm,y-nm,frame,channel,z-nm,bg-mean-photons,sigma-x-mean-nm,sigma-y-mean-nm,intensity-mean-photons\n"
                    "10,20,2,0,0,5,100,120,900\n")
    t = read_locs(codi)
    assert (t.frame.tolist(), t.x.tolist(), t.y.tolist()) == ([2], [10.0], [20.0])
    assert t["sigma"].tolist() == [110.0] and t["photons"].tolist() == [900.0] and t["background"].tolist() == [5.0]
    write_locs(t, tmp_path / "ts.csv", format="thunderstorm")
    assert (tmp_path / "ts.csv").read_text().splitlines()[1].startswith("1,3,10,20,")  # ThunderSTORM frames 1-based


def test_unknown_files_list_the_recognised_formats(tmp_path):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(FormatError) as err:
        detect_format(bad_csv)
    for words in ("found 'a', 'b', 'c'", "DECODE", "SMAP", "ONI", "X (nm)", "x [nm]"):
        assert words in str(err.value)
    bad_h5 = tmp_path / "bad.h5"
    with h5py.File(bad_h5, "w") as h5:
        h5.create_dataset("images", data=np.zeros(3))
    with pytest.raises(FormatError, match=r"top-level keys: \['images'\].*recognised: Picasso HDF5"):
        read_locs(bad_h5)
