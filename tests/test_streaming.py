"""Streaming conversion: the same bytes as the in-memory path, in bounded chunks, and a fallback when unsorted."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import yaml

from imagebinner.io import csv_writers, locformats, read_locs, streaming, write_locs
from imagebinner.tools.convert import Convert

REAL_INPUTS = [
    ("picasso", "testdata_locs.hdf5"),
    ("picasso-picked", "raw_movie_locs.hdf5"),
    ("picasso-picked", "raw_movie_locs_picked.hdf5"),
    ("thunderstorm", "ecoli_lacy_03_storm.csv"),
    ("deepstorm", "DNAPAINT_localizations.csv"),
]
CSV_OUTPUTS = ("deepstorm", "thunderstorm", "deepstorm-prediction")


def in_memory(source, target, out_format, pixel_size=None, drop_outside=True):
    """What Convert wrote before streaming: read whole, drop outside the field (DeepSTORM), write whole."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = read_locs(source, pixel_size=pixel_size)
        meta = table.meta
        if out_format == "deepstorm" and drop_outside and meta.image_shape is not None:
            ps = pixel_size or meta.pixel_size
            table = table.take(~streaming.outside_field(table, ps, meta.image_shape))
        write_locs(table, target, out_format)
    return target.read_bytes()


def streamed(source, target, out_format, pixel_size=None, chunk_rows=streaming.CHUNK_ROWS,
             block=streaming.CSV_BLOCK_BYTES) -> tuple[streaming.StreamResult, bytes | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fmt = locformats.detect_format(source)
        result = streaming.stream_convert(source, target, fmt, out_format, pixel_size, True, False, True,
                                          chunk_rows=chunk_rows, csv_block_bytes=block)
    return result, (target.read_bytes() if result.done else None)


@pytest.mark.parametrize("folder,name", REAL_INPUTS)
@pytest.mark.parametrize("out_format", CSV_OUTPUTS)
def test_real_files_stream_to_the_same_bytes(shared_data, tmp_path, folder, name, out_format):
    source = shared_data / folder / name
    expected = in_memory(source, tmp_path / "memory.csv", out_format)
    for chunk_rows, block in ((streaming.CHUNK_ROWS, streaming.CSV_BLOCK_BYTES), (97, 4096)):
        target = tmp_path / f"stream_{chunk_rows}.csv"
        result, data = streamed(source, target, out_format, chunk_rows=chunk_rows, block=block)
        if not result.done:  # only inputs out of frame order across chunks may fall back
            assert result.reason == "input not sorted by frame" and not target.exists()
            continue
        assert data == expected
        assert result.rows_written == len(expected.splitlines()) - 1


def test_large_chunks_stream_every_real_file(shared_data, tmp_path):
    """With the default chunk size every real file fits one chunk, so every one streams (no fallback)."""
    for folder, name in REAL_INPUTS:
        result, _ = streamed(shared_data / folder / name, tmp_path / f"{name}.csv", "deepstorm")
        assert result.done, (name, result.reason)


def _picasso_file(path, frames, seed=0, pixel_size=100.0):
    rng = np.random.default_rng(seed)
    n = len(frames)
    dtype = [("frame", "<u4"), ("x", "<f4"), ("y", "<f4"), ("photons", "<f4"), ("sx", "<f4"), ("sy", "<f4"),
             ("bg", "<f4"), ("lpx", "<f4"), ("lpy", "<f4")]
    rec = np.zeros(n, dtype=dtype)
    rec["frame"] = frames
    rec["x"], rec["y"] = rng.uniform(0, 31, n), rng.uniform(0, 31, n)
    rec["photons"], rec["bg"] = rng.uniform(100, 5000, n), rng.uniform(0, 10, n)
    rec["sx"], rec["sy"] = rng.uniform(0.8, 1.5, n), rng.uniform(0.8, 1.5, n)
    rec["lpx"], rec["lpy"] = rng.uniform(0.01, 0.2, n), rng.uniform(0.01, 0.2, n)
    rec["x"][:3] = [-0.7, 31.9, 40.0]  # outside the 32 x 32 px field ((x + 0.5) * ps >= 3200 nm): dropped
    with h5py.File(path, "w") as h5:
        h5.create_dataset("locs", data=rec)
    doc = {"Width": 32, "Height": 32, "Frames": int(frames.max()) + 1, "Pixelsize": pixel_size}
    path.with_suffix(".yaml").write_text(yaml.safe_dump(doc))
    return path


def test_simulated_table_with_chunk_boundaries_inside_frames(tmp_path, monkeypatch):
    """Several chunks whose boundaries fall inside frames (13 rows per frame, 10 rows per chunk), in HDF5 and CSV."""
    frames = np.repeat(np.arange(40, dtype=np.uint32), 13)
    source = _picasso_file(tmp_path / "sim.hdf5", frames)
    sizes = []
    original = streaming.csv_layout
    monkeypatch.setattr(streaming, "csv_layout", lambda t, f, first_index=1: sizes.append(len(t)) or original(t, f, first_index))
    for out_format in CSV_OUTPUTS:
        expected = in_memory(source, tmp_path / f"m_{out_format}.csv", out_format)
        sizes.clear()
        result, data = streamed(source, tmp_path / f"s_{out_format}.csv", out_format, chunk_rows=10)
        assert result.done and data == expected
        assert len(sizes) == 52 and max(sizes) <= 10  # bounded chunks: never more than chunk_rows rows at a time
        assert result.rows_read == 520
        if out_format == "deepstorm":
            assert result.rows_outside == 3 and result.rows_written == 517
    # the same table as ThunderSTORM CSV, streamed back in blocks of a few hundred bytes
    csv_source = tmp_path / "sim_ts.csv"
    csv_source.write_bytes(in_memory(source, csv_source, "thunderstorm"))
    for out_format in CSV_OUTPUTS:
        expected = in_memory(csv_source, tmp_path / f"mc_{out_format}.csv", out_format)
        result, data = streamed(csv_source, tmp_path / f"sc_{out_format}.csv", out_format, chunk_rows=10, block=700)
        assert result.done and data == expected and result.rows_read == 520


def test_unsorted_input_falls_back_to_memory_with_a_warning(tmp_path):
    frames = np.concatenate([np.arange(30), np.arange(30)]).astype(np.uint32)  # two runs: out of order across chunks
    source = _picasso_file(tmp_path / "unsorted.hdf5", frames)
    result, _ = streamed(source, tmp_path / "s.csv", "thunderstorm", chunk_rows=16)
    assert not result.done and result.reason == "input not sorted by frame" and result.loud
    assert not (tmp_path / "s.csv").exists()  # nothing left behind
    expected = in_memory(source, tmp_path / "m.csv", "thunderstorm")
    lines = expected.splitlines()[1:]
    assert [int(line.split(b",")[1]) for line in lines] == sorted(np.repeat(np.arange(1, 31), 2).tolist())
    # within one chunk, rows are sorted exactly as in memory (stable): streams without a fallback
    result, data = streamed(source, tmp_path / "one.csv", "thunderstorm", chunk_rows=1000)
    assert result.done and data == expected


def test_convert_streams_and_reports_it(shared_data, tmp_path, monkeypatch):
    source = shared_data / "thunderstorm" / "ecoli_lacy_03_storm.csv"
    tool = Convert(input_path=str(source), output_path=str(tmp_path / "t.csv"))
    tool.run()
    assert tool.summary["streamed"] and tool.summary["rows_written"] == 17361
    assert tool.summary["input_format"] == "thunderstorm" and tool.summary["frames_in_output"][0] == 1
    assert (tmp_path / "t.csv").read_bytes() == in_memory(source, tmp_path / "m.csv", "deepstorm")
    # Picasso output needs the whole table: in memory, as before
    tool = Convert(input_path=str(source), output_path=str(tmp_path / "t.hdf5"), pixel_size=100.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tool.run()
    assert not tool.summary["streamed"]
    # a large unsorted input: the tool warns and writes the sorted table
    monkeypatch.setattr(streaming, "CHUNK_ROWS", 16)
    monkeypatch.setattr(streaming.stream_convert, "__defaults__", (16, streaming.CSV_BLOCK_BYTES))
    source = _picasso_file(tmp_path / "u.hdf5", np.concatenate([np.arange(30), np.arange(30)]).astype(np.uint32))
    tool = Convert(input_path=str(source), output_path=str(tmp_path / "u.csv"), to="thunderstorm")
    with pytest.warns(UserWarning, match="not sorted by frame; converting in memory"):
        tool.run()
    assert not tool.summary["streamed"] and tool.summary["note"] == "input not sorted by frame"
    assert (tmp_path / "u.csv").read_bytes() == in_memory(source, tmp_path / "mu.csv", "thunderstorm")


def test_bad_values_fall_back_to_the_exact_in_memory_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('"id","frame","x [nm]","y [nm]"\n1,1,10,20\n2,2,,30\n')
    tool = Convert(input_path=str(path), output_path=str(tmp_path / "o.csv"))
    with pytest.raises(Exception, match="column 'x \\[nm\\]' has 1 empty, NaN or infinite value"):
        tool.run()
    assert not (tmp_path / "o.csv").exists()


def test_csv_layout_numbers_rows_from_first_index(tmp_path):
    from imagebinner.io import LocTable

    table = LocTable({"frame": [0, 1], "x": [1.0, 2.0], "y": [3.0, 4.0]})
    header, cols = csv_writers.csv_layout(table, "deepstorm", first_index=11)
    assert header == csv_writers.DEEPSTORM_HEADER and cols[""].tolist() == [11, 12]


def test_type_change_between_blocks_falls_back_quietly(tmp_path, monkeypatch):
    """A column empty in the first block and numeric later cannot be streamed (pyarrow fixes types per first
    block): the stream is abandoned and Convert writes the in-memory result without a warning."""
    rows = [f"{i + 1},{i // 3 + 1},{i * 10.5},{i * 2.25}," + ("" if i < 200 else f"{i * 0.5}") for i in range(400)]
    source = tmp_path / "late.csv"
    source.write_text('"id","frame","x [nm]","y [nm]","offset [photon]"\n' + "\n".join(rows) + "\n")
    result, _ = streamed(source, tmp_path / "s.csv", "thunderstorm", chunk_rows=50, block=1024)
    assert not result.done and not result.loud and not (tmp_path / "s.csv").exists()
    monkeypatch.setattr(streaming.stream_convert, "__defaults__", (50, 1024))
    tool = Convert(input_path=str(source), output_path=str(tmp_path / "c.csv"), to="thunderstorm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tool.run()
    assert not tool.summary["streamed"]
    assert (tmp_path / "c.csv").read_bytes() == in_memory(source, tmp_path / "m.csv", "thunderstorm")
