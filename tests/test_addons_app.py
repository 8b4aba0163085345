"""The add-ons app in-process (no browser): opens on the demo data, every path confined to the data root, written files
offered for download, refusals and warnings as notifications."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

pn = pytest.importorskip("panel")
hv = pytest.importorskip("holoviews")

from bokeh.document import Document  # noqa: E402
from pyviz_comms import Comm  # noqa: E402

from imagebinner.apps import addons, downloads  # noqa: E402
from imagebinner.apps.addons import OUTPUT_DIR, AddonsApp  # noqa: E402
from imagebinner.apps.common import DATA_ENV, ROOT_ENV  # noqa: E402
from imagebinner.io import open_movie, read_locs  # noqa: E402

hv.extension("bokeh")


@pytest.fixture
def root(small_demo, monkeypatch) -> Path:
    """The data root: the folder holding the small demo (``<root>/demo/...``); no data folder set."""
    root = small_demo.out_dir.parent.resolve()
    monkeypatch.setenv(ROOT_ENV, str(root))
    monkeypatch.delenv(DATA_ENV, raising=False)
    return root


def _pairs(demo) -> list[tuple[str, str]]:
    return [(str(m.movie), str(m.locs)) for m in demo.measurements]


def _render(app) -> None:
    pn.panel(app).get_root(Document(), comm=Comm())


def _run(panel, timeout: float = 60) -> None:
    panel.run_button._process_event(None)  # as a click in the browser
    panel.job.wait(timeout)


def _output(panel) -> str:
    return panel.tool.output_location()


def _downloads(panel) -> list:
    return panel.downloads(panel.tool.written)


def _text(layout) -> str:
    """The text of every pane in a layout (recursively)."""
    if hasattr(layout, "objects"):
        return "\n".join(_text(o) for o in layout.objects)
    return str(getattr(layout, "object", "") or "")


def _fresh_name(base: Path, name: str) -> Path:
    path = base / name
    k = 0
    while path.exists():
        k += 1
        path = base / f"{name}{k}"
    return path


# -- opens on something real ----------------------------------------------------------------------------------------
def test_opens_on_the_demo_data_with_outputs_inside_the_root(tmp_path, monkeypatch):
    """No arguments, no data folder: every tab is filled from the demo data (made inside the root), its outputs go to
    a folder inside the root shown in the widget, and every add-on runs on it and lists its files for download."""
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path.parent)  # the server's working folder is elsewhere: nothing may land there
    before = set(tmp_path.parent.iterdir())
    app = AddonsApp()
    _render(app)
    root = tmp_path.resolve()
    split, merge = app.panels["Split"].tool, app.panels["Merge"].tool
    assert Path(split.movie).is_relative_to(root) and Path(split.locs).is_file()
    assert len(merge.movies) == len(merge.locs) >= 2
    with open_movie(split.movie) as movie:
        assert split.at == movie.n_frames // 2
    for name, panel in app.panels.items():
        assert Path(getattr(panel.tool, _output(panel))).is_relative_to(root / OUTPUT_DIR), name
        _run(panel, 120)
        assert panel.job.message.startswith(name) and "failed" not in panel.job.message, panel.job.message
        written = [Path(p) for p in panel.tool.written]
        assert written and all(p.is_file() and p.is_relative_to(root / OUTPUT_DIR) for p in written), name
        buttons = _downloads(panel)
        assert buttons[0].filename == written[0].name
        assert buttons[0].callback().getvalue() == written[0].read_bytes()  # built on demand, the file's bytes
    assert set(tmp_path.parent.iterdir()) == before  # nothing in the working folder
    explode = app.panels["Explode"]
    n = len(explode.tool.written)
    buttons = _downloads(explode)
    assert len(buttons) == downloads.MAX_LISTED + 1 and buttons[-1].filename.endswith(".zip")  # first N, then all
    with zipfile.ZipFile(io.BytesIO(buttons[-1].callback().getvalue())) as archive:
        assert sorted(archive.namelist()) == sorted(Path(p).name for p in explode.tool.written)
    text = _text(explode._files(explode.tool.written))
    assert f"{n - downloads.MAX_LISTED} more" in text


def test_opens_on_the_data_folder_and_query_paths_are_confined(root, small_demo, monkeypatch, capsys):
    monkeypatch.setenv(DATA_ENV, str(small_demo.out_dir))
    app = AddonsApp()
    assert app.panels["Merge"].tool.movies == [m for m, _ in _pairs(small_demo)]
    monkeypatch.setenv(DATA_ENV, str(root.parent))  # outside the root: refused, nothing filled in
    app = AddonsApp()
    assert "outside" in capsys.readouterr().out and app.panels["Split"].tool.movie is None
    assert Path(app.panels["Split"].tool.output_folder).is_relative_to(root)


# -- confinement ----------------------------------------------------------------------------------------------------
OUTSIDE = ["dotdot", "absolute", "symlink", "sibling"]


@pytest.mark.parametrize("tool", list(addons.TOOLS))
def test_outputs_outside_the_root_are_refused_and_nothing_is_written(tool, root, small_demo, capsys):
    """``..``, an absolute path, a symlink inside the root pointing out, a sibling whose name starts like the root's:
    a visible error naming the cause, no job started, nothing written anywhere."""
    app = AddonsApp(measurements=_pairs(small_demo))
    panel = app.panels[tool]
    outside = _fresh_name(root.parent, "outside")
    outside.mkdir()
    link = _fresh_name(root, "link-out")
    link.symlink_to(outside, target_is_directory=True)
    sibling = _fresh_name(root.parent, root.name + "2")
    cases = {"dotdot": f"../{outside.name}/x", "absolute": str(outside / "x"), "symlink": f"{link.name}/x",
             "sibling": str(sibling / "x")}
    for case, target in cases.items():
        if tool == "Convert":
            target += ".csv"
        setattr(panel.tool, _output(panel), target)
        _run(panel)
        out = capsys.readouterr().out
        assert f"imagebinner error: {tool}:" in out and "outside the data folder" in out, (case, out)
        assert not panel.job.busy and panel.tool.written == [] and panel.tool.status == ""
    assert list(outside.iterdir()) == [] and not sibling.exists()
    if tool == "Merge":  # the output name must not lead out either
        panel.tool.param.update(output_folder="out-merge", output_name=f"../../{outside.name}/m")
        _run(panel)
        assert "outside the data folder" in capsys.readouterr().out and list(outside.iterdir()) == []


@pytest.mark.parametrize("tool", list(addons.TOOLS))
def test_inputs_outside_the_root_are_refused(tool, root, tmp_path_factory, small_demo, capsys):
    app = AddonsApp(measurements=_pairs(small_demo))
    panel = app.panels[tool]
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "locs.csv"
    elsewhere.write_text("x\n")
    name = panel.tool.inputs[-1]
    setattr(panel.tool, name, [str(elsewhere)] * 2 if tool == "Merge" else str(elsewhere))
    _run(panel)
    out = capsys.readouterr().out
    assert "imagebinner error:" in out and "outside the data folder" in out and panel.tool.written == []


def test_relative_paths_are_relative_to_the_root(root, small_demo, monkeypatch, tmp_path):
    """Relative inputs and outputs mean the data root, not the server's working folder; the resolved paths are
    shown in the widgets."""
    monkeypatch.chdir(tmp_path)
    app = AddonsApp(measurements=[])
    split = app.panels["Split"]
    movie, locs = _pairs(small_demo)[0]
    split.tool.param.update(movie=os.path.relpath(movie, root), locs=os.path.relpath(locs, root),
                            output_folder="relative/split", at=5)
    _run(split)
    assert split.job.message.startswith("Split: split"), split.job.message
    assert split.tool.output_folder == str(root / "relative" / "split")
    assert len(list((root / "relative" / "split").glob("*_part*.tif"))) == 2 and list(tmp_path.iterdir()) == []


# -- honest controls ------------------------------------------------------------------------------------------------
def test_tool_warnings_are_notifications_and_status_wraps(root, small_demo, capsys):
    """A warning raised by the tool (pixel size given differs from the Picasso YAML's) reaches the page as a warning
    notification; the status line wraps instead of being cut off."""
    app = AddonsApp(measurements=_pairs(small_demo))
    convert = app.panels["Convert"]
    convert.tool.param.update(output_path=str(_fresh_name(root, "conv") / "c.csv"), pixel_size=150.0)
    _run(convert)
    out = capsys.readouterr().out
    assert "imagebinner warning: Convert" in out and convert.job.warned
    assert "pre-wrap" in convert.status.object and "wrote" in convert.status.object


def test_an_existing_output_is_refused_with_a_notification(root, small_demo, capsys):
    app = AddonsApp(measurements=_pairs(small_demo))
    explode = app.panels["Explode"]
    explode.tool.output_folder = str(_fresh_name(root, "exploded"))
    _run(explode)
    first = {p: Path(p).stat().st_mtime_ns for p in explode.tool.written}
    _run(explode)
    assert "imagebinner error: Explode failed" in capsys.readouterr().out and "overwrite" in explode.job.message
    assert {p: Path(p).stat().st_mtime_ns for p in first} == first  # untouched


def test_large_files_are_not_sent_through_the_page(root, small_demo, monkeypatch):
    app = AddonsApp(measurements=_pairs(small_demo))
    split = app.panels["Split"]
    split.tool.output_folder = str(_fresh_name(root, "split-large"))
    _run(split)
    monkeypatch.setattr(downloads, "DOWNLOAD_LIMIT", 4096)  # the TIFs are larger, the tables smaller
    names = [b.filename for b in _downloads(split)]
    assert names and not any(name.endswith(".tif") or name.endswith(".zip") for name in names)
    assert "stay on the server" in _text(split._files(split.tool.written))


def test_a_download_of_a_file_replaced_by_a_symlink_out_is_refused(root, small_demo, tmp_path_factory, capsys):
    app = AddonsApp(measurements=_pairs(small_demo))
    convert = app.panels["Convert"]
    convert.tool.output_path = str(_fresh_name(root, "conv") / "d.csv")
    _run(convert)
    button = _downloads(convert)[0]
    secret = tmp_path_factory.mktemp("secret") / "s.csv"
    secret.write_text("secret\n")
    written = Path(convert.tool.written[0])
    written.unlink()
    written.symlink_to(secret)
    with pytest.raises(Exception, match="outside the data folder"):
        button.callback()
    assert "imagebinner error: download refused" in capsys.readouterr().out
    assert len(read_locs(small_demo.measurements[0].locs)) > 0


def test_out_of_bounds_numbers_are_refused_with_a_notification(root, capsys):
    """Split at frame 0 (bound: at least 1) typed in the page: refused at the widget, said so, the value kept."""
    from imagebinner.apps.common import param_widget

    app = AddonsApp(measurements=[])
    split = app.panels["Split"]
    _render(split)
    split.tool.at = 5
    box = param_widget(split.settings, "at")
    assert box.start == 1  # the bound is shown
    box._process_events({"value": 0, "value_throttled": 0})  # as the browser sends a typed value
    assert split.tool.at == 5 and box.value == 5
    assert "imagebinner error:" in capsys.readouterr().out
