"""The io, tools, simulate and cli layers must not import the GUI stack."""

import subprocess
import sys

import pytest

CORE_MODULES = [
    "imagebinner",
    "imagebinner.io",
    "imagebinner.tools",
    "imagebinner.tools.convert",
    "imagebinner.tools.binner",
    "imagebinner.tools.addons",
    "imagebinner.tools.review",
    "imagebinner.simulate",
    "imagebinner.cli",
]


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_does_not_import_gui(module):
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        "import imagebinner.cli; imagebinner.cli.build_parser()\n"
        "bad = [m for m in ('panel', 'holoviews', 'bokeh') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imported {out.stdout.strip()}"


def test_checker_detects_gui_import():
    """The check itself can fail: importing panel is seen."""
    code = "import sys, panel\nprint('panel' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
