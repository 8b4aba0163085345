"""The example notebook runs top to bottom in a Jupyter kernel (nbclient, as JupyterLab runs it), every tool renders
as a Panel output, and nothing in the outputs is loaded from a CDN (resources inline, notifications included)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "imagebinner.ipynb"
EXEC_MIME = "application/vnd.holoviews_exec.v0+json"
LOAD_MIME = "application/vnd.holoviews_load.v0+json"
#: what the notebook shows as live Panel outputs (each its own cell)
TOOLS = ("BinnerApp(", "ReviewApp(", "AddonsApp(")
#: a URL of a public CDN where a document or a stylesheet would be fetched from
CDN = re.compile(r"https?://(cdn\.holoviz\.org|cdn\.jsdelivr\.net|unpkg\.com|cdn\.bokeh\.org|fonts\.googleapis\.com)")
#: the lists of scripts and stylesheets the BokehJS/Panel loader fetches (empty when everything is inline)
LOADER_LISTS = re.compile(r"const (js_urls|js_modules|css_urls) = (\[[^\]]*\]);")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook executed in a kernel, with the data root (demo data, outputs) in a temporary folder."""
    root = tmp_path_factory.mktemp("notebook_root")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    mp = pytest.MonkeyPatch()
    mp.setenv("IMAGEBINNER_ROOT", str(root))  # the kernel inherits it; the notebook keeps a root that is set
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(root)}}).execute()
    finally:
        mp.undo()
    return nb, root


def _outputs(cell) -> list[dict]:
    return list(cell.get("outputs", []))


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in _outputs(cell) if o["output_type"] == "stream")


def _code_cell(nb, marker: str):
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    return cell


def test_every_tool_renders_as_a_live_panel_output(executed):
    nb, root = executed
    errors = [o for c in nb.cells for o in _outputs(c) if o["output_type"] == "error"]
    assert not errors, errors[0]
    for marker in TOOLS:
        outputs = _outputs(_code_cell(nb, marker))
        assert any(EXEC_MIME in o.get("data", {}) for o in outputs), f"{marker} shows no Panel output"
    # the scripted parts ran on the demo data inside the data root
    assert "pool: 100 patches" in _text(_code_cell(nb, "binner.save()"))
    assert (root / "binned_script").is_dir() and any((root / "binned_script").iterdir())
    assert re.search(r"Jaccard \d\.\d+", _text(_code_cell(nb, "review.load()")))
    assert (root / "imagebinner-demo" / "prediction").is_dir()
    assert "imagebinner success: ImageBinner: all tools loaded (2 demo measurements)" in _text(
        _code_cell(nb, "notify("))


def test_outputs_load_nothing_from_a_cdn(executed):
    """The loader scripts fetch no file (BokehJS, Panel and their CSS are inline); the notifications' library is
    defined globally before Panel's notification area renders; no rendered document links a CDN stylesheet."""
    nb, _ = executed
    setup = nb.cells[[c.cell_type for c in nb.cells].index("code")]
    scripts = [o["data"]["application/javascript"] for o in _outputs(setup)
               if "application/javascript" in o.get("data", {})]
    assert "window.Notyf = Notyf" in scripts[0]  # before the first loader
    loaders = [s for o in _outputs(setup) if LOAD_MIME in o.get("data", {}) for s in [o["data"][LOAD_MIME]]
               if "css_urls" in s]
    assert loaders and "Bokeh.set_log_level" in "".join(loaders)  # BokehJS itself is among them
    for script in loaders:
        lists = dict(LOADER_LISTS.findall(script))
        assert lists == {"js_urls": "[]", "js_modules": "[]", "css_urls": "[]"}, lists
    documents = [o["data"]["text/html"] for c in nb.cells for o in _outputs(c)
                 if EXEC_MIME in o.get("data", {}) and "text/html" in o["data"]]
    assert len(documents) >= len(TOOLS) + 2  # + the notification area, the Binner views
    for html in documents:
        assert not CDN.search(html), CDN.search(html).group(0)
