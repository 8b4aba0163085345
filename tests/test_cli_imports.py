"""The CLI starts instantly: ``--help`` of the top command and of each subcommand imports no heavy library (counted
in a fresh interpreter's ``sys.modules``, not timed), and the lazy listing says what the modules register."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from imagebinner.cli import ALL, COMMANDS, build_parser, chosen_command, main

HEAVY = ("pandas", "pyarrow", "scipy", "h5py", "tifffile", "numba", "datashader", "panel", "holoviews", "bokeh",
         "onnxruntime", "onnx")

_PROBE = """
import contextlib, io, json, sys
import imagebinner.cli as cli
argv = json.loads(sys.argv[1])
parser = cli.build_parser(cli.chosen_command(argv))
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        code = exc.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"code": code, "heavy": heavy, "n_modules": len(sys.modules), "help": out.getvalue()}))
"""


def _probe(argv: list[str]) -> dict:
    res = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv), json.dumps(HEAVY)], capture_output=True,
                         text=True, check=True)
    return json.loads(res.stdout)


def test_top_level_help_lists_every_command_and_imports_no_command_module():
    got = _probe(["--help"])
    assert got["code"] == 0 and got["heavy"] == []
    for name in COMMANDS:
        assert f"    {name} " in got["help"], name
    code = "import sys, imagebinner.cli as c; c.build_parser(''); print(sorted(m for m in sys.modules if m.startswith('imagebinner.')))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout.replace("'", '"'))
    assert loaded == ["imagebinner.cli", "imagebinner.cli.common", "imagebinner.errors"]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_help_imports_no_heavy_library(command):
    got = _probe([command, "--help"])
    assert got["code"] == 0 and f"usage: imagebinner {command}" in got["help"]
    assert got["heavy"] == [], f"imagebinner {command} --help imported {got['heavy']}"


def test_the_probe_sees_a_heavy_import():
    """The check can fail: a command whose module imports scipy is seen."""
    code = _PROBE.replace("import imagebinner.cli as cli", "import imagebinner.cli as cli, scipy.optimize")
    res = subprocess.run([sys.executable, "-c", code, json.dumps(["--help"]), json.dumps(HEAVY)],
                         capture_output=True, text=True, check=True)
    assert json.loads(res.stdout)["heavy"] == ["scipy"]


def test_listing_equals_what_each_module_registers():
    """The one-line help of the lazy listing is the help each module registers (one wording, checked here)."""
    parser = build_parser(ALL)
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    registered = {c.dest: c.help for c in action._choices_actions}
    listed = {name: help_line for name, (_, help_line) in COMMANDS.items()}
    assert registered == listed
    assert list(action.choices) == list(listed)  # same order as the table


def test_only_the_chosen_command_is_registered_for_real():
    parser = build_parser("split")
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    real = {name for name, p in action.choices.items() if p.add_help}
    assert real == {"split", "explode", "merge"}  # the three commands of imagebinner.cli.addons
    assert parser.parse_args(["split", "IN.tif", "IN.csv", "--at", "3", "-o", "out"]).at == 3


def test_chosen_command_is_the_first_non_option():
    assert chosen_command(["--version"]) == ""
    assert chosen_command(["bin", "--movie", "m.tif"]) == "bin"
    assert chosen_command(["-h"]) == ""


def test_unknown_command_and_version_exit_like_argparse(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["nope"])
    assert exc.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("imagebinner ")


def test_reading_a_csv_table_does_not_import_pandas(tmp_path):
    """CSV columns are taken from pyarrow's buffers (its ``to_numpy`` imports pandas: 0.2-0.7 s of every CLI run)."""
    path = tmp_path / "locs.csv"
    path.write_text("frame,x [nm],y [nm],Intensity\n1,10.5,20.25,3\n2,30,40,5\n")
    code = ("import sys, json; from imagebinner.io import read_locs; t = read_locs(sys.argv[1]); "
            "print(json.dumps({'pandas': 'pandas' in sys.modules, 'x': t.x.tolist(), 'frame': t.frame.tolist()}))")
    got = json.loads(subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                                    check=True).stdout)
    assert got == {"pandas": False, "x": [10.5, 30.0], "frame": [0, 1]}
