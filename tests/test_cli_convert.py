"""The Convert tool and the ``imagebinner info`` / ``imagebinner convert`` subcommands."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml

from imagebinner.cli import main
from imagebinner.errors import FormatError, OutputExistsError
from imagebinner.io import read_locs
from imagebinner.tools.convert import Convert


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ===================================================================================================== Convert
def test_convert_tool_picasso_to_deepstorm(shared_data, tmp_path):
    tool = Convert(input_path=str(shared_data / "picasso" / "testdata_locs.hdf5"), output_path=str(tmp_path / "t.csv"))
    with pytest.warns(UserWarning, match="160"):
        paths = tool.run()
    assert paths == [tmp_path / "t.csv"]
    assert tool.written == [str(tmp_path / "t.csv")]
    s = tool.summary
    assert s["input_format"] == "picasso" and s["output_format"] == "deepstorm"
    assert s["rows_read"] == s["rows_written"] == 564
    assert s["frames_0_based"] == (11, 990) and s["frames_in_output"] == (12, 991)
    assert s["pixel_size"] == 130 and "+ 0.5" in s["conversion"]
    assert tool.progress == tool.n_steps and not tool.running
    df = pd.read_csv(tmp_path / "t.csv", index_col=0)
    assert df["frame"].min() == 12 and len(df) == 564


def test_convert_settings_are_one_declaration_for_cli_and_tool(shared_data, tmp_path, capsys):
    """Every declared user param is a CLI option documented by its param; a bad value is refused naming the
    param (tool) or its flag (CLI); the Run event runs the tool."""
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for name in Convert.user_params():
        option = {"input_path": "INPUT_PATH", "output_path": "-o OUT"}.get(name, "--" + name.replace("_", "-"))
        assert option in help_text, name
        assert " ".join(Convert.param[name].doc.split())[:40] in help_text, name
    code, _, err = run_cli(capsys, "convert", shared_data / "deepstorm" / "DNAPAINT_localizations.csv",
                           "-o", tmp_path / "x.hdf5")
    assert code == 2 and "give --pixel-size" in err and not (tmp_path / "x.hdf5").exists()
    tool = Convert(input_path=str(shared_data / "deepstorm" / "DNAPAINT_localizations.csv"),
                   output_path=str(tmp_path / "x.hdf5"))
    with pytest.raises(FormatError, match="give pixel_size"):
        tool.run()
    tool.pixel_size = 107.0
    tool.param.trigger("request_run")  # the GUI's Run button
    assert tool.written == [str(tmp_path / "x.hdf5"), str(tmp_path / "x.yaml")]
    assert tool.status.startswith("wrote 5744 localizations")


def test_convert_tool_refuses_to_replace_its_input(shared_data, tmp_path):
    src = tmp_path / "a.csv"
    src.write_bytes((shared_data / "deepstorm" / "DNAPAINT_localizations.csv").read_bytes())
    with pytest.raises(OutputExistsError, match="is an input"):  # io.check_outputs: the one pre-write check
        Convert(input_path=str(src), output_path=str(src), overwrite=True).run()
    picasso = tmp_path / "p.hdf5"  # a Picasso input's YAML is protected too
    picasso.write_bytes((shared_data / "picasso" / "testdata_locs.hdf5").read_bytes())
    (tmp_path / "p.yaml").write_bytes((shared_data / "picasso" / "testdata_locs.yaml").read_bytes())
    with pytest.raises(OutputExistsError, match=r"p\.yaml.*is an input"):
        Convert(input_path=str(picasso), output_path=str(tmp_path / "p.yaml"), to="thunderstorm",
                overwrite=True).run()
    assert (tmp_path / "p.yaml").read_bytes() == (shared_data / "picasso" / "testdata_locs.yaml").read_bytes()


def test_convert_drops_outside_field_for_deepstorm(tmp_path):
    # a Picasso file with one loc beyond Width: dropped (with a warning) only for DeepSTORM output
    import h5py

    locs = np.array([(0, 1.0, 1.0, 0.1, 0.1), (1, 40.0, 2.0, 0.1, 0.1)],
                    dtype=[("frame", "<u4"), ("x", "<f4"), ("y", "<f4"), ("lpx", "<f4"), ("lpy", "<f4")])
    with h5py.File(tmp_path / "p.hdf5", "w") as h5:
        h5["locs"] = locs
    (tmp_path / "p.yaml").write_text("Width: 32\nHeight: 32\nFrames: 10\nPixelsize: 100\n")
    tool = Convert(input_path=str(tmp_path / "p.hdf5"), output_path=str(tmp_path / "o.csv"))
    with pytest.warns(UserWarning, match="dropped 1 of 2"):
        tool.run()
    assert tool.summary["rows_dropped_outside_field"] == 1 and tool.summary["rows_written"] == 1
    tool = Convert(input_path=str(tmp_path / "p.hdf5"), output_path=str(tmp_path / "o2.csv"), to="thunderstorm")
    tool.run()
    assert tool.summary["rows_written"] == 2


# ========================================================================================================= CLI
def test_cli_convert_extension_rules_and_overwrite(shared_data, tmp_path, capsys):
    src = shared_data / "thunderstorm" / "ecoli_lacy_03_storm.csv"
    code, out, err = run_cli(capsys, "convert", src, "-o", tmp_path / "ds.csv")
    assert code == 0, err
    assert "thunderstorm -> deepstorm: 17361 localizations" in out
    assert "frames 0..1849 (0-based) = 1..1850 in the output" in out
    ds = read_locs(tmp_path / "ds.csv")
    ts = read_locs(src)
    np.testing.assert_array_equal(ds.x, ts.x)
    np.testing.assert_array_equal(ds.frame, ts.frame)
    # exists: refused, one line, exit 2, nothing changed
    before = (tmp_path / "ds.csv").read_bytes()
    code, out, err = run_cli(capsys, "convert", src, "-o", tmp_path / "ds.csv")
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("imagebinner: error:") and "exists" in err
    assert "Traceback" not in err
    assert (tmp_path / "ds.csv").read_bytes() == before
    assert run_cli(capsys, "convert", src, "-o", tmp_path / "ds.csv", "--overwrite")[0] == 0
    # Picasso output needs a pixel size (CSV has none): error, nothing written; then with --pixel-size
    code, out, err = run_cli(capsys, "convert", src, "-o", tmp_path / "p.hdf5")
    assert code == 2 and "--pixel-size" in err and str(tmp_path / "p.hdf5") in err
    assert not (tmp_path / "p.hdf5").exists() and not (tmp_path / "p.yaml").exists()
    code, out, err = run_cli(capsys, "convert", src, "-o", tmp_path / "p.hdf5", "--pixel-size", "160")
    assert code == 0, err
    assert yaml.safe_load_all((tmp_path / "p.yaml").read_text())
    pic = read_locs(tmp_path / "p.hdf5")
    np.testing.assert_allclose(pic.x, ts.x, atol=0.01)
    np.testing.assert_array_equal(pic.frame, ts.frame)


def test_cli_convert_to_and_half_pixel(shared_data, tmp_path, capsys):
    src = shared_data / "picasso" / "testdata_locs.hdf5"
    code, out, err = run_cli(capsys, "convert", src, "-o", tmp_path / "a.csv", "--to", "thunderstorm")
    assert code == 0 and "warning" in err and "160" in err
    assert (tmp_path / "a.csv").read_text().startswith('"id","frame","x [nm]"')
    code, _, _ = run_cli(capsys, "convert", src, "-o", tmp_path / "b.csv", "--no-half-pixel")
    assert code == 0
    exact, plain = read_locs(tmp_path / "a.csv"), read_locs(tmp_path / "b.csv")
    np.testing.assert_allclose(exact.x - plain.x, 65.0, atol=1e-6)  # half of 130 nm


@pytest.mark.parametrize(
    "argv, words",
    [
        (["convert", "{missing}", "-o", "{out}"], ["not found"]),
        (["convert", "{bad}", "-o", "{out}"], ["unknown localization format"]),
        (["convert", "{ts}", "-o", "{tmp}/x.txt"], ["--to"]),
        (["convert", "{ts}", "-o", "{out}", "--pixel-size", "-5"], ["--pixel-size", "greater than 0"]),
        (["info", "{bad}"], ["unknown localization format"]),
    ],
)
def test_cli_errors_one_line_exit_2(shared_data, tmp_path, capsys, argv, words):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    names = {"missing": tmp_path / "nope.csv", "bad": tmp_path / "bad.csv", "out": tmp_path / "out.csv",
             "tmp": tmp_path, "ts": shared_data / "thunderstorm" / "ecoli_lacy_03_storm.csv"}
    code, out, err = run_cli(capsys, *[a.format(**names) for a in argv])
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("imagebinner: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "out.csv").exists()


def test_cli_info_localizations(shared_data, capsys):
    code, out, _ = run_cli(capsys, "info", shared_data / "picasso" / "testdata_locs.hdf5")
    assert code == 0
    assert "format: picasso" in out
    assert "localizations: 564" in out
    assert "frame range: 11..990 (0-based page index) = 12..991 (1-based)" in out
    assert "pixel size: 130 nm" in out
    assert "image shape: 32 x 32 px" in out
    assert "columns: frame, x, y" in out
    code, out, _ = run_cli(capsys, "info", shared_data / "thunderstorm" / "ecoli_lacy_03_storm.csv")
    assert "format: thunderstorm" in out and "localizations: 17361" in out
    assert "frame range: 0..1849 (0-based page index) = 1..1850 (1-based)" in out
    assert "pixel size: unknown" in out
    code, out, _ = run_cli(capsys, "info", shared_data / "deepstorm" / "DNAPAINT_localizations.csv",
                           "--pixel-size", "107")
    assert "localizations: 5744" in out and "pixel size: 107 nm" in out and "= 1..50 (1-based)" in out


def test_cli_info_movie(shared_data, capsys):
    code, out, _ = run_cli(capsys, "info", shared_data / "picasso" / "testdata.tif", "--pixel-size", "130")
    assert code == 0
    assert "frames: 1000" in out and "shape: 32 x 32 px" in out and "dtype: uint16" in out
    assert "pixel size: 130 nm" in out


def test_console_entry_point_help():
    res = subprocess.run([sys.executable, "-m", "imagebinner.cli", "convert", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0
    for flag in ("--to", "--pixel-size", "--half-pixel", "--no-half-pixel", "--overwrite", "--input-format", "-o"):
        assert flag in res.stdout
    assert " ".join(Convert.param.half_pixel.doc.split())[:60] in " ".join(res.stdout.split())  # from the param docs


def test_warnings_do_not_leak(shared_data, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Convert(input_path=str(shared_data / "deepstorm" / "DNAPAINT_localizations.csv"),
                output_path=str(tmp_path / "x.csv"), to="thunderstorm").run()


def test_os_errors_are_one_line_without_traceback(shared_data, tmp_path, capsys):
    """An output folder that cannot be written: exit 2, one line naming the path, nothing written."""
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "file").write_text("")
    target = locked / "file" / "out.csv"  # a path below a regular file: NotADirectoryError from the OS
    code = main(["convert", str(shared_data / "deepstorm" / "DNAPAINT_localizations.csv"), "-o", str(target)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("imagebinner: error: ") and "locked/file" in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert sorted(p.name for p in locked.iterdir()) == ["file"]
