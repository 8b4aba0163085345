"""Lazy movie reading (TIF variants, Picasso .raw) and the ImageJ/DeepSTORM-compatible TIF writer."""

from __future__ import annotations

import os
import sys
import tracemalloc
import warnings

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None

from imagebinner.errors import FormatError, OutputExistsError, ParameterError
from imagebinner.io import TifWriter, open_movie, to_output_dtype, write_tif


def _stack(n=5, h=12, w=17, seed=0, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4000, (n, h, w)).astype(dtype)


def _io_counters() -> tuple[int, int]:
    """(bytes read through read() calls, minor page faults) of this process so far."""
    rchar = 0
    if os.path.exists("/proc/self/io"):
        with open("/proc/self/io") as fh:
            rchar = int(dict(line.split(": ") for line in fh.read().splitlines())["rchar"])
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else 0
    return rchar, faults


# -- real files -------------------------------------------------------------------------------------------------
def test_picasso_raw_and_tif_are_pixel_identical(shared_data):
    raw = open_movie(shared_data / "picasso" / "testdata.raw")
    tif = open_movie(shared_data / "picasso" / "testdata.tif")
    with raw, tif:
        assert raw.n_frames == tif.n_frames == 1000
        assert raw.shape == tif.shape == (32, 32)
        assert raw.dtype == tif.dtype == np.uint16
        assert raw.access == tif.access == "memmap"
        for k in (0, 1, 499, 999):
            np.testing.assert_array_equal(raw.frame(k), tif.frame(k))
        assert raw.frame(999).any()
        # the YAML has only Camera.Pixelsize (Picasso Simulate), no Pixelsize: not taken as the pixel size
        assert raw.pixel_size is None and raw.suggested_pixel_size == 160.0
        with pytest.raises(IndexError):
            raw.frame(1000)


def test_raw_pixel_size_argument_and_yaml(tmp_path):
    data = _stack(4, 6, 8)
    (tmp_path / "m.raw").write_bytes(data.astype(">u2").tobytes())
    (tmp_path / "m.yaml").write_text(
        "Byte Order: '>'\nData Type: uint16\nFrames: 4\nHeight: 6\nWidth: 8\n---\nPixelsize: 117\n"
    )
    m = open_movie(tmp_path / "m.raw")
    assert (m.n_frames, m.shape, m.pixel_size) == (4, (6, 8), 117.0)
    np.testing.assert_array_equal(m.frame(3), data[3])
    assert m.frame(3).dtype.isnative
    assert open_movie(tmp_path / "m.raw", pixel_size=100).pixel_size == 100.0


def test_raw_shorter_than_yaml_or_without_yaml(tmp_path):
    (tmp_path / "m.raw").write_bytes(b"\0" * 100)
    with pytest.raises(FormatError, match="m.yaml"):
        open_movie(tmp_path / "m.raw")
    (tmp_path / "m.yaml").write_text("Data Type: uint16\nFrames: 4\nHeight: 6\nWidth: 8\n")
    with pytest.raises(FormatError, match="promises 4 frames"):
        open_movie(tmp_path / "m.raw")


# -- TIF layouts ------------------------------------------------------------------------------------------------
def test_big_endian_tif_returns_native_frames(tmp_path):
    data = _stack()
    tifffile.imwrite(tmp_path / "be.tif", data, byteorder=">", photometric="minisblack")
    with open_movie(tmp_path / "be.tif") as m:
        assert m.stored_dtype == np.dtype(">u2")
        assert m.dtype == np.dtype("uint16") and m.dtype.isnative
        assert m.access == "memmap"
        frame = m.frame(2)
        assert frame.dtype.isnative
        np.testing.assert_array_equal(frame, data[2])
        np.testing.assert_array_equal(m.read(), data)


def test_big_endian_compressed_tif_page_wise(tmp_path):
    data = _stack(6)
    tifffile.imwrite(tmp_path / "bec.tif", data, byteorder=">", photometric="minisblack", compression="zlib")
    with open_movie(tmp_path / "bec.tif") as m:
        assert m.access == "pages"
        assert m.frame(5).dtype.isnative
        np.testing.assert_array_equal(m.frame(5), data[5])


def test_bigtiff(tmp_path):
    data = _stack(7)
    tifffile.imwrite(tmp_path / "b.tif", data, bigtiff=True, photometric="minisblack")
    with open_movie(tmp_path / "b.tif") as m:
        assert m._tif.is_bigtiff
        assert (m.n_frames, m.shape, m.access) == (7, (12, 17), "memmap")
        np.testing.assert_array_equal(m.frame(6), data[6])


def test_imagej_stack_labelled_as_channels_is_time(tmp_path):
    data = _stack(9)
    tifffile.imwrite(tmp_path / "ch.tif", data, imagej=True, metadata={"axes": "CYX"})
    with tifffile.TiffFile(tmp_path / "ch.tif") as t:
        assert t.imagej_metadata["channels"] == 9 and "frames" not in t.imagej_metadata
    with open_movie(tmp_path / "ch.tif") as m:
        assert m.n_frames == 9
        np.testing.assert_array_equal(m.frame(8), data[8])


def test_imagej_channels_compressed_page_wise(tmp_path):
    data = _stack(5)
    tifffile.imwrite(tmp_path / "chc.tif", data, imagej=True, metadata={"axes": "CYX"}, compression="zlib")
    with open_movie(tmp_path / "chc.tif") as m:
        assert (m.n_frames, m.access) == (5, "pages")
        np.testing.assert_array_equal(m.frame(4), data[4])


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_several_long_non_spatial_axes_are_refused(tmp_path, compression):
    data = _stack(6).reshape(2, 3, 12, 17)
    tifffile.imwrite(tmp_path / "h.tif", data, imagej=True, metadata={"axes": "TCYX"}, compression=compression)
    with pytest.raises(FormatError, match=r"several non-spatial axes.*T=2, C=3") as exc:
        open_movie(tmp_path / "h.tif")
    assert "h.tif" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_shaped_tif_with_two_long_axes_is_refused_one_long_axis_is_time(tmp_path, compression):
    data = _stack(6)
    tifffile.imwrite(tmp_path / "q.tif", data.reshape(2, 3, 12, 17), photometric="minisblack", compression=compression)
    with pytest.raises(FormatError, match="several non-spatial axes"):
        open_movie(tmp_path / "q.tif")
    tifffile.imwrite(tmp_path / "z.tif", data.reshape(6, 1, 12, 17), photometric="minisblack", compression=compression)
    with open_movie(tmp_path / "z.tif") as m:
        assert m.n_frames == 6
        np.testing.assert_array_equal(m.frame(4), data[4])


def test_single_2d_tif_is_one_frame(tmp_path):
    image = _stack(1, 40, 30)[0]
    tifffile.imwrite(tmp_path / "one.tif", image)
    with open_movie(tmp_path / "one.tif") as m:
        assert m.n_frames == 1 and len(m) == 1
        assert m.shape == (40, 30)
        np.testing.assert_array_equal(m.frame(0), image)
        with pytest.raises(IndexError):
            m.frame(1)


def test_rgb_tif_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(FormatError, match="RGB"):
        open_movie(tmp_path / "rgb.tif")


def test_not_a_tif(tmp_path):
    (tmp_path / "x.tif").write_text("hello")
    with pytest.raises(FormatError, match="x.tif: not a readable TIF"):
        open_movie(tmp_path / "x.tif")
    with pytest.raises(FormatError, match="not found"):
        open_movie(tmp_path / "missing.tif")
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(FormatError, match="unknown movie format"):
        open_movie(tmp_path / "x.png")


def test_window_reads_rows_and_rejects_outside(tmp_path):
    data = _stack(3, 20, 20)
    tifffile.imwrite(tmp_path / "w.tif", data, photometric="minisblack")
    with open_movie(tmp_path / "w.tif") as m:
        np.testing.assert_array_equal(m.window(1, 5, 7, 9), data[1, 5:14, 7:16])
        with pytest.raises(IndexError):
            m.window(1, -1, 0, 4)
    tifffile.imwrite(tmp_path / "wc.tif", data, photometric="minisblack", compression="zlib")
    with open_movie(tmp_path / "wc.tif") as m:
        np.testing.assert_array_equal(m.window(2, 11, 3, 9), data[2, 11:20, 3:12])


# -- pixel size from metadata -------------------------------------------------------------------------------------
def test_pixel_size_from_resolution_tags(tmp_path):
    data = _stack(2)
    tifffile.imwrite(tmp_path / "cm.tif", data, resolution=(1e7 / 107, 1e7 / 107), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "in.tif", data, resolution=(2.54e7 / 160, 2.54e7 / 160), resolutionunit="INCH")
    tifffile.imwrite(tmp_path / "ij.tif", data, imagej=True, resolution=(1 / 0.13, 1 / 0.13), metadata={"unit": "um"})
    tifffile.imwrite(tmp_path / "none.tif", data)
    tifffile.imwrite(tmp_path / "dpi.tif", data, resolution=(72, 72), resolutionunit="INCH")
    assert open_movie(tmp_path / "cm.tif").pixel_size == pytest.approx(107)
    assert open_movie(tmp_path / "in.tif").pixel_size == pytest.approx(160)
    assert open_movie(tmp_path / "ij.tif").pixel_size == pytest.approx(130)
    assert open_movie(tmp_path / "none.tif").pixel_size is None
    assert open_movie(tmp_path / "dpi.tif").pixel_size is None  # a 72 dpi default is not a calibration
    m = open_movie(tmp_path / "cm.tif", pixel_size=100)
    assert (m.pixel_size, m.metadata_pixel_size) == (100.0, pytest.approx(107))
    with pytest.raises(ParameterError):
        open_movie(tmp_path / "cm.tif", pixel_size=-3)


# -- laziness -------------------------------------------------------------------------------------------------
SPARSE_FILES = pytest.mark.skipif(sys.platform != "linux", reason="needs sparse files (10 GB without using disk)")


@SPARSE_FILES
def test_frame_of_sparse_10gb_imagej_movie_is_fast_and_reads_no_more(tmp_path):
    """ImageJ '>4 GB' layout (one header, raw data behind it, stack axis labelled channels), 10.5 GB sparse."""
    path = tmp_path / "huge.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile: "truncating ImageJ file" (the >4 GB layout is what we want)
        mm = tifffile.memmap(path, shape=(20000, 512, 512), dtype="uint16", imagej=True)
    mm[15000, 100, 200] = 4321
    mm.flush()
    del mm
    st = path.stat()
    assert st.st_size > 10e9 and st.st_blocks * 512 < 50e6  # sparse: no real disk used
    with tifffile.TiffFile(path) as t:
        assert len(t.pages) == 1 and t.imagej_metadata["channels"] == 20000
    rchar0, faults0 = _io_counters()
    with open_movie(path) as m:
        frame = m.frame(15000)
        window = m.window(19999, 500, 500, 12)
        assert (m.n_frames, m.shape, m.access) == (20000, (512, 512), "memmap")
    rchar1, faults1 = _io_counters()
    assert frame[100, 200] == 4321 and frame.sum() == 4321
    assert window.shape == (12, 12)
    assert rchar1 - rchar0 < 20e6  # 10 GB would be read by a full read
    assert faults1 - faults0 < 20_000  # one 512 KiB frame is ~130 pages; the whole movie ~2.6 million


@SPARSE_FILES
def test_frame_of_sparse_bigtiff_is_fast(tmp_path):
    """Work counted, not timed: opening and reading one frame of a 10 GB BigTIFF reads a few bytes of it."""
    path = tmp_path / "huge_bt.tif"
    mm = tifffile.memmap(path, shape=(20000, 512, 512), dtype="uint16", bigtiff=True)
    mm[7, 1, 2] = 9
    mm.flush()
    del mm
    rchar0, faults0 = _io_counters()
    with open_movie(path) as m:
        assert m.frame(7)[1, 2] == 9
        assert m.access == "memmap" and m.n_frames == 20000
    rchar1, faults1 = _io_counters()
    assert rchar1 - rchar0 < 20e6 and faults1 - faults0 < 20_000


def test_page_wise_frame_parses_only_that_page(tmp_path, monkeypatch):
    data = _stack(400, 16, 16)
    path = tmp_path / "comp.tif"
    with tifffile.TiffWriter(path) as tw:  # plain pages, no series metadata, compressed
        for fr in data:
            tw.write(fr, photometric="minisblack", metadata=None, compression="zlib")
    parsed: list[int] = []
    tiff_module = tifffile.tifffile
    for cls in (tiff_module.TiffPage, tiff_module.TiffFrame):
        original = cls.__init__

        def counting(self, *args, __original=original, **kwargs):
            parsed.append(1)
            __original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counting)
    with open_movie(path) as m:
        assert (m.n_frames, m.access) == (400, "pages")
        opened = len(parsed)
        assert opened <= 8  # a few (first, last, tifffile's uniformity check), not 400
        np.testing.assert_array_equal(m.frame(321), data[321])
        assert len(parsed) - opened == 1
        np.testing.assert_array_equal(m.frame(5), data[5])


def test_frames_iterate_with_bounded_memory(tmp_path):
    data = _stack(50, 64, 64)
    tifffile.imwrite(tmp_path / "s.tif", data, photometric="minisblack", compression="zlib")
    with open_movie(tmp_path / "s.tif") as m:
        tracemalloc.start()
        total = sum(int(fr.sum()) for fr in m.frames(10, 40))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert total == int(data[10:40].sum())
    assert peak < 10 * data[0].nbytes  # a few frames, never the stack (50 frames)


# -- writer ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 3, 4, 5])
def test_writer_keeps_3_and_4_frame_stacks_as_pages(tmp_path, n):
    data = _stack(n)
    write_tif(tmp_path / "s.tif", data, pixel_size=107)
    with tifffile.TiffFile(tmp_path / "s.tif") as t:
        assert len(t.pages) == n
        assert t.is_imagej
        page = t.pages.first
        assert page.photometric == tifffile.PHOTOMETRIC.MINISBLACK and page.samplesperpixel == 1
        assert page.dtype == np.uint16
    with open_movie(tmp_path / "s.tif") as m:
        assert m.n_frames == n
        np.testing.assert_array_equal(m.read(), data)


def test_writer_resolution_read_as_the_deepstorm_notebook_does(tmp_path):
    write_tif(tmp_path / "p.tif", _stack(3), pixel_size=107)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        with tifffile.TiffFile(tmp_path / "p.tif") as t:
            tags = t.pages.first.tags
            unit, xres = int(tags["ResolutionUnit"].value), tags["XResolution"].value
            xres = xres[0] / xres[1]
    else:
        with Image.open(tmp_path / "p.tif") as im:
            assert im.n_frames == 3  # PIL opens it as 3 pages, not as one RGB image
            unit, xres = im.tag_v2[296], float(im.tag_v2[282])
    assert unit == 3
    ps = 0.01 * 1e9 / xres  # ZC notebook, unit CENTIMETER
    assert ps == pytest.approx(107, rel=1e-6)
    assert open_movie(tmp_path / "p.tif").pixel_size == pytest.approx(107, rel=1e-6)


def test_writer_clips_never_wraps_and_never_int64(tmp_path):
    data = np.array([[[-5, 0, 40000, 70000, 2**40]]], dtype=np.int64)
    clipped = write_tif(tmp_path / "c.tif", data)
    assert clipped == 3
    with open_movie(tmp_path / "c.tif") as m:
        assert m.dtype == np.uint16
        np.testing.assert_array_equal(m.frame(0), [[0, 0, 40000, 65535, 65535]])
    floats = np.array([[[1.4, 1.6, np.nan, 300.0]]])
    assert write_tif(tmp_path / "u8.tif", floats, dtype="uint8") == 2
    with open_movie(tmp_path / "u8.tif") as m:
        assert m.dtype == np.uint8
        np.testing.assert_array_equal(m.frame(0), [[1, 2, 0, 255]])
    write_tif(tmp_path / "f.tif", floats[..., :2] * 1.5, dtype="float32")
    with open_movie(tmp_path / "f.tif") as m:
        assert m.dtype == np.float32
        np.testing.assert_allclose(m.frame(0), [[2.1, 2.4]], rtol=1e-6)
    with pytest.raises(ParameterError):
        write_tif(tmp_path / "bad.tif", data, dtype="int64")
    out, n = to_output_dtype(np.array([32768, 70000], np.int32), "uint16")
    assert out.tolist() == [32768, 65535] and n == 1 and out.dtype == np.uint16


def test_writer_streams_with_bounded_memory(tmp_path):
    n, shape = 60, (128, 128)

    def frames():
        for k in range(n):
            yield np.full(shape, k, np.uint16)

    tracemalloc.start()
    with TifWriter(tmp_path / "stream.tif", pixel_size=100) as w:
        w.write_stream(frames(), n)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10 * np.zeros(shape, np.uint16).nbytes  # a stack would be 60 frames
    with open_movie(tmp_path / "stream.tif") as m:
        assert m.n_frames == n and m.frame(59)[0, 0] == 59


def test_writer_is_atomic_and_does_not_overwrite(tmp_path):
    target = tmp_path / "a.tif"

    def failing():
        yield np.zeros((4, 4))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        TifWriter(target).write_stream(failing(), 3)
    assert list(tmp_path.iterdir()) == []  # neither target nor temporary file left
    with pytest.raises(ParameterError, match="got 2 frames, expected 3"):
        TifWriter(target).write_stream(iter(np.zeros((2, 4, 4))), 3)
    assert list(tmp_path.iterdir()) == []
    write_tif(target, np.ones((2, 4, 4)))
    before = target.read_bytes()
    with pytest.raises(OutputExistsError, match="a.tif"):
        write_tif(target, np.zeros((2, 4, 4)))
    assert target.read_bytes() == before
    write_tif(target, np.zeros((2, 4, 4)), overwrite=True)
    assert open_movie(target).frame(1).max() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]


def test_writer_uses_bigtiff_above_4gb(tmp_path, monkeypatch):
    import imagebinner.io.tif_writer as writer_module

    monkeypatch.setattr(writer_module, "BIGTIFF_THRESHOLD", 1000)  # pretend 4 GB is 1000 bytes
    write_tif(tmp_path / "big.tif", _stack(5, 20, 20), pixel_size=107)  # 4000 bytes of pixels
    write_tif(tmp_path / "small.tif", _stack(1, 20, 20), pixel_size=107)
    with tifffile.TiffFile(tmp_path / "big.tif") as t:
        assert t.is_bigtiff and len(t.pages) == 5
    with tifffile.TiffFile(tmp_path / "small.tif") as t:
        assert not t.is_bigtiff and t.is_imagej
    with open_movie(tmp_path / "big.tif") as m:
        assert m.n_frames == 5 and m.pixel_size == pytest.approx(107)
        np.testing.assert_array_equal(m.frame(4), _stack(5, 20, 20)[4])


def test_round_trip_big_endian_input_written_native(tmp_path):
    data = _stack(3).astype(">u2")
    write_tif(tmp_path / "n.tif", data)
    with tifffile.TiffFile(tmp_path / "n.tif") as t:
        assert t.byteorder == "<" if sys.byteorder == "little" else ">"
    np.testing.assert_array_equal(open_movie(tmp_path / "n.tif").read(), data.astype(np.uint16))



def test_imagej_raw_behind_one_header_and_truncated_copy(tmp_path):
    """ImageJ's '>4 GB' layout in small: one IFD, frames counted from the ImageJ metadata; a cut copy warns."""
    data = _stack(10, 8, 8)
    path = tmp_path / "raw_behind_header.tif"
    tifffile.imwrite(path, data, imagej=True, truncate=True, metadata={"axes": "TYX"})
    with tifffile.TiffFile(path) as t:
        assert len(t.pages) == 1 and t.imagej_metadata["images"] == 10
    with open_movie(path) as m:
        assert (m.n_frames, m.access) == (10, "memmap")
        np.testing.assert_array_equal(m.read(), data)
    os.truncate(path, path.stat().st_size - 3 * data[0].nbytes - 10)  # cut inside frame 6
    with pytest.warns(UserWarning, match="announce 10 frames but the file holds only 6"):
        m = open_movie(path)
    with m:
        assert m.n_frames == 6
        np.testing.assert_array_equal(m.read(), data[:6])


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_thumbnail_page_before_the_movie_is_skipped(tmp_path, compression):
    data = _stack(6, 32, 24)
    with tifffile.TiffWriter(tmp_path / "thumb.tif") as tw:
        tw.write(np.zeros((8, 6), np.uint8), photometric="minisblack")
        tw.write(data, photometric="minisblack", compression=compression)
    with open_movie(tmp_path / "thumb.tif") as m:
        assert (m.n_frames, m.shape, m.dtype) == (6, (32, 24), np.uint16)
        np.testing.assert_array_equal(m.frame(5), data[5])


_pixel_arrays = st.sampled_from([np.int16, np.int32, np.int64, np.uint32, np.float32, np.float64]).flatmap(
    lambda dt: hnp.arrays(
        dtype=dt,
        shape=hnp.array_shapes(min_dims=2, max_dims=2, max_side=6),
        elements=hnp.from_dtype(np.dtype(dt), allow_nan=False, allow_infinity=False),
    )
)


@settings(max_examples=60, deadline=None)
@given(_pixel_arrays, st.sampled_from(["uint8", "uint16"]))
def test_to_output_dtype_clips_and_never_wraps(data, dtype):
    out, clipped = to_output_dtype(data, dtype)
    top = np.iinfo(dtype).max
    rounded = np.rint(data.astype(np.float64))
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out.astype(np.float64), np.clip(rounded, 0, top))
    assert clipped == int(np.count_nonzero((rounded < 0) | (rounded > top)))
