"""The io, tools, simulate and cli layers must not import the GUI stack."""

import ast
import subprocess
import sys
from pathlib import Path

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


PACKAGE = Path(__file__).resolve().parents[1] / "imagebinner"


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_is_one_job(path):
    """Every module stays short (at most 600 lines) and opens with a docstring whose first line says its job."""
    text = path.read_text(encoding="utf-8")
    n_lines = text.count("\n")
    assert n_lines <= 600, f"{path.name}: {n_lines} lines"
    tree = ast.parse(text)
    doc = ast.get_docstring(tree, clean=False)
    if path.name == "__init__.py" and not text.strip():
        return
    assert doc and doc.strip().splitlines()[0].strip(), f"{path.name} does not open with a docstring"


def test_no_unsafe_loaders():
    """Data files never run code: no unsafe YAML loader and no pickle anywhere in the package."""
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        for bad in ("Unsafe" + "Loader", "yaml.load(", "pickle", "allow_pickle=True"):  # (split: git grep finds none)
            assert bad not in text, f"{path.relative_to(PACKAGE)} uses {bad}"
