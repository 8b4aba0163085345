"""Panel apps in-process (no browser): buttons, threads, server-side path checks; `panel serve` smoke test."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

pn = pytest.importorskip("panel")
hv = pytest.importorskip("holoviews")
requests = pytest.importorskip("requests")

import param  # noqa: E402
from bokeh.document import Document  # noqa: E402
from imagebinner.apps.downloads import written_headline  # noqa: E402
from servers import free_port, stop, wait_until_answering  # noqa: E402
from panel.models.markup import HTML  # noqa: E402
from pyviz_comms import Comm  # noqa: E402

from imagebinner.apps.addons import AddonsApp  # noqa: E402
from imagebinner.apps.binner import BinnerApp  # noqa: E402
from imagebinner.apps.common import ROOT_ENV, check_path, find_measurement_pairs  # noqa: E402
from imagebinner.apps.review import ReviewApp  # noqa: E402
from imagebinner.errors import ImageBinnerError  # noqa: E402
from imagebinner.io import read_locs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
hv.extension("bokeh")


@pytest.fixture(scope="module")
def demo(small_demo):
    return small_demo


def _pairs(paths) -> list[tuple[str, str]]:
    return [(str(m.movie), str(m.locs)) for m in paths.measurements]


def _small(app: BinnerApp, out: Path) -> None:
    app.binner.param.update(n_patches=40, n_binned=8, bin_size=4, seed=3, output_folder=str(out))


def _render(app) -> None:
    pn.panel(app).get_root(Document(), comm=Comm())


def _click(button) -> None:
    """As a click in the browser: the button's event (which ``pn.Param`` buttons of param.Events follow), then the
    click count (which ``on_click`` callbacks follow)."""
    button._process_event(None)


# -- Binner app ---------------------------------------------------------------------------------------------------
@pytest.fixture()
def binner_root(tmp_path, monkeypatch) -> Path:
    """The data root holds the demo and the test's folder (``tmp_path.parent``); no data folder."""
    monkeypatch.setenv(ROOT_ENV, str(tmp_path.parent))
    monkeypatch.delenv("IMAGEBINNER_DATA", raising=False)
    return tmp_path.parent


@pytest.mark.usefixtures("binner_root")
def test_binner_app_run_writes_outputs_and_shows_binned_frames(demo, tmp_path):
    app = BinnerApp(measurements=_pairs(demo))
    _render(app)
    assert app.frame_player.end == 59 and app.frame_player.interval >= 150
    assert [m.movie_path for m in app.view.measurements] == [m.movie for m in demo.measurements]
    _small(app, tmp_path / "out")
    assert not app.view.has_binned
    _click(app.run_button)
    app.job.wait(60)
    assert not app.job.busy and not app.binner.running
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["binned.csv", "binned.json", "binned.tif"]
    assert app.view.has_binned and app.binned_player.end == 7
    assert app.part_slider.end == 3
    stats = app.stats.object  # the statistics pane follows the binner's stats
    assert "acceptance rate" in stats and "binned: 8 frames" in stats
    # the saved labels of binned frame 5 are what the binned view shows for it
    app.view.binned_frame = 5
    saved = read_locs(tmp_path / "out" / "binned.csv")
    shown = app.view.binned_points()
    assert sorted(np.round(shown.dimension_values("x"), 2)) == sorted(np.round(saved.x[saved.frame == 5], 2))


@pytest.mark.usefixtures("binner_root")
def test_binner_app_refuses_existing_outputs_without_running(demo, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "binned.tif").write_bytes(b"keep me")
    app = BinnerApp(measurements=_pairs(demo))
    _small(app, out)
    _click(app.run_button)
    assert app.job.thread is None and not app.job.busy
    assert (out / "binned.tif").read_bytes() == b"keep me"
    assert "exists" in capsys.readouterr().out


@pytest.mark.usefixtures("binner_root")
def test_binner_app_refuses_a_test_movie_outside_the_root(demo, tmp_path, capsys):
    with tempfile.TemporaryDirectory() as elsewhere:  # not under the data root (the tests' base folder)
        outside = Path(elsewhere)
        for name in ("test.tif", "test_locs.csv"):
            (outside / name).write_bytes(b"x")
        app = BinnerApp(measurements=_pairs(demo))
        _small(app, tmp_path / "out")
        app.binner.param.update(target_density_from=str(outside / "test_locs.csv"),
                                test_movie=str(outside / "test.tif"))
        _click(app.preview_button)
        assert app.job.thread is None and not app.view.has_binned
        assert "outside the data folder" in capsys.readouterr().out


@pytest.mark.usefixtures("binner_root")
def test_binner_app_preview_reports_bad_settings_and_recovers(demo, tmp_path, capsys):
    app = BinnerApp(measurements=_pairs(demo))
    _small(app, tmp_path / "out")
    app.binner.bin_size = 50  # > n_patches = 40
    _click(app.preview_button)
    app.job.wait(30)
    assert "preview failed" in app.job.message and "bin_size 50" in app.job.message
    assert not app.job.busy and not app.view.has_binned and not (tmp_path / "out").exists()
    app.binner.bin_size = 4
    _click(app.preview_button)
    app.job.wait(30)
    assert app.view.has_binned and app.binned_player.end == 7 and app.view.binned_image().data is not None
    assert not (tmp_path / "out").exists()  # a preview writes nothing
    assert len(app.view.binned_points()) == len(app.binner.binned_frame(app.view.binned_frame).locs)


@pytest.mark.usefixtures("binner_root")
def test_binner_app_preview_reports_progress_and_running(demo, tmp_path):
    app = BinnerApp(measurements=_pairs(demo))
    _small(app, tmp_path / "out")
    events: list[tuple[str, object]] = []
    app.binner.param.watch(lambda *es: events.extend((e.name, e.new) for e in es), ["running", "progress"])
    _click(app.preview_button)
    app.job.wait(30)
    assert app.view.has_binned and not app.job.busy
    b = app.binner
    assert b.progress == b.n_steps == 3 and not b.running
    assert events[0] == ("running", True) and events[-1] == ("running", False)
    steps = [value for name, value in events if name == "progress"]
    # load, draw, compose (the job first resets the progress of the last job, the constructor's load, to 0)
    assert [step for step in steps if step] == [1, 2, 3] and set(steps[:-3]) == {0}
    assert b.status.startswith("composed 8 binned frames")
    # a cached preview (a repeated Preview) is no job: it leaves the status of the last one alone
    events.clear()
    b.compose()
    b.draw_pool()
    assert events == [] and b.status.startswith("composed 8")
    # inside save's own job the preview steps add nothing and reset nothing: save counts load, draw, compose and
    # the n_binned frames
    b.param.update(seed=4)
    progress: list[int] = []
    b.param.watch(lambda e: progress.append(e.new), "progress")
    b.save()
    assert progress == sorted(progress) and b.progress == b.n_steps == 8 + 3 and not b.running
    assert "wrote 8 binned frames" in b.status


@pytest.mark.usefixtures("binner_root")
def test_binner_app_checks_typed_paths_on_the_server(demo, tmp_path, capsys):
    app = BinnerApp(measurements=[])
    m1 = demo.measurements[0]
    app.measurement_list._process_events({"value": f"{m1.movie} | {tmp_path / 'missing_locs.hdf5'}"})
    assert app.binner.measurements == [] and "not found" in capsys.readouterr().out
    app.measurement_list._process_events({"value": f"{m1.movie} | {m1.locs}"})
    assert app.binner.measurements == [(str(m1.movie), str(m1.locs))]
    assert app.load() and app.frame_player.end == 59
    # paths given otherwise (the page's query parameters) are checked before a job starts
    app.binner.measurements = [(str(m1.movie), str(tmp_path / "gone.csv"))]
    _click(app.load_button)
    assert app.job.thread is None and "not found" in capsys.readouterr().out


@pytest.mark.usefixtures("binner_root")
def test_binner_app_widgets_come_from_the_binners_declarations(demo):
    """The app shows the Binner's declared settings, outputs and events: editing a param's declaration (label, doc,
    bounds, default) changes its widget; the buttons run the declared actions."""
    from imagebinner.apps.common import param_widget
    from imagebinner.tools.binner import Binner

    class Edited(Binner):
        patch_size = param.Integer(default=9, bounds=(3, 41), label="Patch edge (px)")
        n_patches = param.Integer(default=300, bounds=(10, None), doc="An edited doc.")

    app = BinnerApp(binner=Edited(), measurements=[])
    labels = [w.label for w in app.settings.layout]  # one widget per declared setting, in the declared order
    assert labels == [app.binner.param[name].label for name in Binner.settings] and "Patch edge (px)" in labels
    widget = param_widget(app.settings, "patch_size")  # bounded both ways: a slider
    assert (widget.label, widget.start, widget.end, widget.value) == ("Patch edge (px)", 3, 41, 9)
    widget.value = 11
    assert app.binner.patch_size == 11
    widget = param_widget(app.settings, "n_patches")  # open upper bound: an input box with the doc as tooltip
    assert (widget.description, widget.start, widget.value) == ("An edited doc.", 10, 300)
    assert widget.description != Binner.param.n_patches.doc  # (inherited by the subclass unless edited)
    assert param_widget(app.settings, "n_binned").description == Binner.param.n_binned.doc
    assert [b.label for b in (app.load_button, app.preview_button, app.run_button)] == [
        Binner.param[name].label for name in Binner.actions]
    assert app.run_button.color == "primary" and app.load_button.description == Binner.param.request_load.doc
    outputs = [param_widget(app.outputs, name).label for name in Binner.outputs]
    assert outputs == [Binner.param[name].label for name in Binner.outputs]


@pytest.mark.usefixtures("binner_root")
def test_binner_app_opens_on_the_data_folder(demo, monkeypatch):
    monkeypatch.setenv("IMAGEBINNER_DATA", str(demo.out_dir))
    app = BinnerApp()
    assert [Path(m) for m, _ in app.binner.measurements] == [m.movie for m in demo.measurements]
    assert len(app.view.measurements) == 2
    app.measurement_select.value = 1
    assert app.view.measurement == 1


def test_binner_app_opens_on_the_demo_data_and_writes_into_the_root(tmp_path, monkeypatch):
    """No arguments: the demo data (made once inside the data root) are loaded, the players span them, and the
    default output folder ``binned`` is shown and resolved inside the root when Run writes."""
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    monkeypatch.delenv("IMAGEBINNER_DATA", raising=False)
    monkeypatch.chdir(tmp_path.parent)  # (relative paths are relative to the root, not to the working folder)
    app = BinnerApp()
    movies = [Path(m) for m, _ in app.binner.measurements]
    assert len(movies) == 2 and all(m.is_relative_to(tmp_path) and m.is_file() for m in movies)
    assert len(app.view.measurements) == 2 and app.frame_player.end == app.view.measurements[0].n_frames - 1
    assert app.binner.output_folder == "binned" and str(tmp_path) in app.root_note.object
    app.binner.param.update(n_patches=30, n_binned=4, bin_size=3, seed=1)
    _click(app.run_button)
    app.job.wait(60)
    assert sorted(p.name for p in (tmp_path / "binned").iterdir()) == ["binned.csv", "binned.json", "binned.tif"]
    assert app.binner.output_folder == str(tmp_path / "binned") and app.binned_player.end == 3
    assert not (tmp_path.parent / "binned").exists()
    assert BinnerApp().binner.measurements == app.binner.measurements  # the demo is made once, then reused


@pytest.mark.usefixtures("binner_root")
def test_binner_app_frame_step_api_shows_the_frame(demo):
    """``app.step(k)`` (scripts, benchmarks) moves the input player as a step from the page does."""
    app = BinnerApp(measurements=_pairs(demo))
    _render(app)
    app.step(12)
    assert app.view.frame == 12 and app.frame_player.value == 12
    rows = app.view.measurements[0].locs_per_frame()[12]
    assert len(app.view.input_points()) == rows


def test_measurement_pairs_and_root_restriction(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv(ROOT_ENV, str(shared_data))
    pairs = find_measurement_pairs(shared_data / "picasso")
    picasso = (shared_data / "picasso").resolve()
    assert pairs == [(str(picasso / "testdata.tif"), str(picasso / "testdata_locs.hdf5"))]
    inside = tmp_path / "root" / "a.tif"
    inside.parent.mkdir()
    inside.write_bytes(b"x")
    outside = tmp_path / "elsewhere.tif"
    outside.write_bytes(b"x")
    (tmp_path / "root" / "link.tif").symlink_to(outside)
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "root"))
    assert check_path(str(inside), "movie") == inside.resolve()
    assert check_path("a.tif", "movie") == inside.resolve()  # relative to the root
    for bad in (outside, tmp_path / "root" / "link.tif", tmp_path / "root2" / "a.tif", "../elsewhere.tif"):
        with pytest.raises(ImageBinnerError, match="outside the data folder"):
            check_path(str(bad), "movie")


def test_path_picker_hands_over_paths_inside_its_root_only(demo, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IMAGEBINNER_DATA", str(demo.out_dir))
    monkeypatch.setenv(ROOT_ENV, str(demo.out_dir))
    app = BinnerApp(measurements=[])
    assert app.picker.root == demo.out_dir.resolve()
    _render(app)
    movie = demo.measurements[1].movie.resolve()
    app.picker.selector.value = [str(movie)]
    _click(app.picker.buttons[0])  # "Use as movie"
    assert app.pending_movie == str(movie)
    outside = tmp_path / "outside.tif"
    outside.write_bytes(b"x")
    app.picker.selector.value = [str(outside)]
    _click(app.picker.buttons[1])  # "Use as localizations"
    assert app.binner.measurements == [] and "outside" in capsys.readouterr().out
    app.picker.selector.value = [str(demo.measurements[1].locs)]
    _click(app.picker.buttons[1])  # the pair is appended to the measurement list
    assert app.binner.measurements == [(str(movie), str(demo.measurements[1].locs.resolve()))]
    assert app.measurement_list.text() == f"{movie} | {demo.measurements[1].locs.resolve()}"
    assert not app.pending_movie


# -- review app ---------------------------------------------------------------------------------------------------
def _review_app(demo) -> ReviewApp:
    m1 = demo.measurements[0]
    return ReviewApp(folder=str(demo.out_dir / "prediction"), movie=str(m1.movie), ground_truth=str(m1.locs))


def _set_throttled(slider, value: float) -> None:
    with param.edit_constant(slider):
        slider.param.update(value=value, value_throttled=value)


def _html_metrics(html: str) -> dict[str, str]:
    import html as html_lib
    import re

    cells = re.findall(r"<td>([^<]*)</td>", html_lib.unescape(html))
    return dict(zip(cells[::2], cells[1::2]))


@pytest.fixture()
def review_root(tmp_path, monkeypatch):
    """A data root holding the shared demo and the test's folder; no $IMAGEBINNER_DATA."""
    monkeypatch.setenv(ROOT_ENV, str(tmp_path.parent))
    monkeypatch.delenv("IMAGEBINNER_DATA", raising=False)
    return tmp_path.parent


@pytest.mark.usefixtures("review_root")
def test_review_app_threshold_slider_updates_metrics(demo):
    app = _review_app(demo)
    assert app.review.loaded
    conf = app.review.predictions["confidence"]
    # the slider spans the loaded confidences: it starts at the smallest, not below
    assert (app.threshold.start, app.threshold.end) == (conf.min(), conf.max()) and conf.max() > 1
    assert app.threshold.value == conf.min()
    root = pn.panel(app).get_root(Document(), comm=Comm())
    app.tabs.active = 3  # the metrics tab (built when shown)
    (table,) = [p for p in root.select({"type": HTML}) if "table" in str(p.text) and "n_pred" in str(p.text)]
    before = _html_metrics(table.text)
    _set_throttled(app.threshold, 1.2)
    assert app.review.threshold == pytest.approx(1.2)
    after = _html_metrics(table.text)
    n_kept = int(np.count_nonzero(conf >= 1.2))
    assert int(after["n_pred"]) == n_kept < int(before["n_pred"])
    assert "threshold 1.2" in app._summary()


@pytest.mark.usefixtures("review_root")
def test_review_app_saves_the_kept_predictions_once(demo, tmp_path, capsys):
    app = _review_app(demo)
    app.review.threshold = 1.5
    target = tmp_path / "kept.csv"
    widgets = {w.name: w for w in app.save_controls.layout}
    widgets["Save kept predictions to"].value = str(target)
    widgets["Output format"].value = "deepstorm"
    assert (app.review.output_path, app.review.output_format) == (str(target), "deepstorm")
    app.save_button.param.trigger("value")  # a click on the generated button
    app.job.wait()
    saved = read_locs(target)
    assert len(saved) == len(app.review.filtered) > 0
    assert np.all(np.isin(np.round(saved.x, 1), np.round(app.review.filtered.x, 1)))
    before = target.read_bytes()
    app.review.threshold = 0.0
    app.save_button.param.trigger("value")  # a click on the generated button
    app.job.wait()
    assert target.read_bytes() == before and "exists" in capsys.readouterr().out
    # outside the data root: refused before anything runs, with a notification
    widgets["Save kept predictions to"].value = "../../outside.csv"
    app.save_button.param.trigger("value")
    app.job.wait()
    assert "outside the data folder" in capsys.readouterr().out and not (tmp_path.parent.parent / "outside.csv").exists()


def test_review_app_widgets_follow_the_review_declarations(monkeypatch, tmp_path):
    """The sidebar is generated from the review's declared groups, in their order; a default or doc edited in the
    one declaration (here the shared re-localization settings) shows in the widgets."""
    from imagebinner.tools.relocalize import RelocalizeSettings
    from imagebinner.tools.review import PredictionReview

    monkeypatch.setattr(RelocalizeSettings.param.relocalize_threshold, "default", 0.9)
    monkeypatch.setattr(RelocalizeSettings.param.l2_weighting_factor, "doc", "Edited in one place: the L2 factor.")
    monkeypatch.delenv("IMAGEBINNER_DATA", raising=False)
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    app = ReviewApp(review=PredictionReview())
    r = app.review

    def names(controls) -> list[str]:
        return [w.name for w in controls.layout]

    assert names(app.relocalize) == [r.param[n].label for n in PredictionReview.setting_groups["relocalization"]]
    assert names(app.inputs) == [r.param[n].label for n in (*r.inputs, *r.setting_groups["prediction"])] + ["Load"]
    assert names(app.save_controls) == ["Save kept predictions to", "Output format", "Overwrite", "Save"]
    widgets = dict(zip(names(app.relocalize), app.relocalize.layout))
    assert widgets["Relocalize threshold"].value == 0.9
    assert widgets["L2 weighting factor"].description == "Edited in one place: the L2 factor."
    # the default output is inside the data root and shown
    assert widgets != {} and app.review.output_path == str(tmp_path / "kept_predictions.csv")
    # an event of the review runs through the app's executor (the server-side checks first)
    r.folder = str(tmp_path / "missing")
    app.review.param.trigger("request_load")
    assert app.job.thread is None and not app.job.busy and not r.loaded


def test_review_app_opens_on_the_demo_without_arguments(monkeypatch, tmp_path):
    """No query string, no $IMAGEBINNER_DATA, no arguments: the demo data (made inside the data root) is loaded,
    with the ground truth, so the first page shows true/false positives and misses."""
    monkeypatch.delenv("IMAGEBINNER_DATA", raising=False)
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    app = ReviewApp()
    assert app.review.loaded and app.review.truth is not None
    assert app.review.folder.startswith(str(tmp_path)) and app.view.classes[0] == "true positive"
    assert app.player.end == app.review.n_frames - 1
    pn.panel(app).get_root(Document(), comm=Comm())
    app.step(3)
    assert app.view.frame == 3 and app.player.value == 3
    app.close()


@pytest.mark.usefixtures("review_root")
def test_review_app_reports_a_missing_folder(tmp_path, capsys):
    app = ReviewApp(folder=str(tmp_path / "nope"))
    assert not app.review.loaded and "not found" in capsys.readouterr().out


@pytest.mark.usefixtures("review_root")
def test_review_app_says_when_the_folder_has_no_stacked_prediction(demo, tmp_path):
    """Without Predicted_stacked_<stem>.tif the frames tab shows a message in place of the hr plot (not an empty plot
    with a -1..1 colour bar)."""
    import shutil

    from imagebinner.views.review import NO_STACKED_MESSAGE

    folder = tmp_path / "nostack"
    shutil.copytree(demo.out_dir / "prediction", folder)
    next(folder.glob("Predicted_stacked_*.tif")).unlink()
    m1 = demo.measurements[0]
    app = ReviewApp(folder=str(folder), movie=str(m1.movie), ground_truth=str(m1.locs))
    root = pn.panel(app).get_root(Document(), comm=Comm())
    texts = [str(getattr(m, "text", "")) for m in root.references()]
    assert any("No stacked prediction in this folder" in t for t in texts)
    assert "Predicted_stacked_" in NO_STACKED_MESSAGE and app.review.loaded


@pytest.mark.usefixtures("review_root")
def test_review_page_builds_only_the_visible_tab(demo):
    """Lazy tabs: the page renders the frame plots only; the other views are built when their tab is first shown."""
    app = _review_app(demo)
    pn.panel(app).get_root(Document())  # (as served)
    assert app.view.calls["marks"] == 1 and app.view.summary.calls == {}  # (computed once for both frame plots)
    app.tabs.active = 2  # density
    assert app.view.summary.calls["density_curves"] == 1 and app.view.summary.calls["density_boxplot"] == 1
    # a hidden tab's plots are dropped: a threshold move updates the frames only
    app.tabs.active = 0
    before = dict(app.view.calls) | {f"summary.{k}": v for k, v in app.view.summary.calls.items()}
    app.set_threshold(float(np.median(app.review.predictions["confidence"])))
    after = dict(app.view.calls) | {f"summary.{k}": v for k, v in app.view.summary.calls.items()}
    assert {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)} == {"marks": 1}
    app.tabs.active = 2  # shown again: built again, once
    assert app.view.summary.calls["density_curves"] == 2 and app.view.summary.calls["density_boxplot"] == 2


# -- add-ons app --------------------------------------------------------------------------------------------------
def test_addons_app_convert_and_explode(demo, tmp_path, monkeypatch):
    monkeypatch.setenv(ROOT_ENV, str(tmp_path.parent))  # the data root holds the demo and the outputs
    app = AddonsApp(measurements=_pairs(demo))
    _render(app)
    convert = app.panels["Convert"]
    convert.tool.param.update(input_path=str(demo.measurements[1].locs), output_path=str(tmp_path / "c.hdf5"),
                              pixel_size=107.0)
    _click(convert.run_button)
    convert.job.wait(30)
    assert (tmp_path / "c.hdf5").exists() and (tmp_path / "c.yaml").exists()
    assert len(read_locs(tmp_path / "c.hdf5")) == len(read_locs(demo.measurements[1].locs))
    assert "2 file(s) written" in written_headline(convert.tool.written)
    explode = app.panels["Explode"]
    explode.tool.param.update(movie=str(demo.measurements[0].movie), locs=str(demo.measurements[0].locs),
                              output_folder=str(tmp_path / "frames"), to="deepstorm")
    _click(explode.run_button)
    explode.job.wait(60)
    assert len(list((tmp_path / "frames").glob("*.tif"))) == 60
    assert explode.tool.progress == explode.tool.n_steps


def test_addons_app_widgets_follow_the_tools_declarations_and_merge_runs(demo, tmp_path, capsys, monkeypatch):
    """Each tab shows exactly its tool's declared params then its Run event; Merge's lists are edited as text
    (one path per line); paths outside $IMAGEBINNER_ROOT are refused before anything runs."""
    from imagebinner.apps.common import param_widget
    from imagebinner.io import open_movie

    monkeypatch.setenv(ROOT_ENV, str(tmp_path.parent))  # the data root holds the demo and the outputs
    app = AddonsApp(measurements=[])
    _render(app)
    for name, panel in app.panels.items():
        tool = type(panel.tool)
        assert list(panel.settings.parameters) == [*tool.user_params(), "request_run"], name
        assert panel.run_button.name == f"Run {name}"
    merge = app.panels["Merge"]
    (m1, l1), (m2, l2) = [(str(m.movie), str(m.locs)) for m in demo.measurements]
    movies = param_widget(merge.settings, "movies")
    movies._process_events({"value": f"{m1}\n{m2}\n"})  # as the browser sends the text
    param_widget(merge.settings, "locs")._process_events({"value": f"{l1}\n{l2}"})
    assert merge.tool.movies == [m1, m2] and merge.tool.locs == [l1, l2]
    merge.tool.output_folder = str(tmp_path / "merged")
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))  # the inputs lie outside: refused, nothing runs
    _click(merge.run_button)
    assert "outside the data folder" in capsys.readouterr().out and not merge.job.busy
    assert not (tmp_path / "merged").exists()
    monkeypatch.setenv(ROOT_ENV, str(tmp_path.parent))
    _click(merge.run_button)
    merge.job.wait(60)
    with open_movie(tmp_path / "merged" / "merged.tif") as merged, open_movie(m1) as a, open_movie(m2) as b:
        assert merged.n_frames == a.n_frames + b.n_frames
    assert merge.job.message.startswith("Merge: merged 2 movies")


def _serialised(page) -> list:
    """The page's roots, after serialising the document as the server does for the websocket (this fails on
    models with unset values, which a plain HTTP GET does not reveal)."""
    doc = Document()
    page.server_doc(doc)
    doc.to_json()
    return doc.roots


def test_pages_serialise_empty_and_with_data(demo, monkeypatch):
    """Every page builds and serialises before any data is given (placeholders) and on data."""
    from imagebinner.apps import addons, binner, review

    monkeypatch.delenv("IMAGEBINNER_DATA", raising=False)
    monkeypatch.setenv(ROOT_ENV, str(demo.out_dir.parent))  # the data folder and the demo data lie inside
    for page in (binner.template(BinnerApp()), review.template(ReviewApp()), addons.template(AddonsApp())):
        assert _serialised(page)
    monkeypatch.setenv("IMAGEBINNER_DATA", str(demo.out_dir))
    with_data = (BinnerApp(), ReviewApp())
    assert len(with_data[0].view.measurements) == 2 and with_data[1].review.loaded
    for page in (binner.template(with_data[0]), review.template(with_data[1])):
        assert _serialised(page)


def test_dashboard_scripts_import_without_serving():
    """The scripts only build their page when served (`pn.state.served`), so importing them is cheap and safe."""
    import runpy

    for script in sorted((ROOT / "dashboards").glob("*.py")):
        namespace = runpy.run_path(str(script))
        assert "template" in namespace and "app" not in namespace, script.name


# -- served dashboards --------------------------------------------------------------------------------------------
def test_panel_serve_all_dashboards(demo, tmp_path):
    """`panel serve dashboards/*.py --liveness`: every app answers 200 with its title, no traceback in the log."""

    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "IMAGEBINNER_DATA": str(demo.out_dir), ROOT_ENV: str(demo.out_dir.parent)}
    scripts = sorted(str(p) for p in (ROOT / "dashboards").glob("*.py"))
    assert {Path(s).stem for s in scripts} >= {"binner", "predict", "review", "addons"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "panel", "serve", *scripts, "--address", "127.0.0.1", "--port", str(port),
             "--liveness", "--allow-websocket-origin", f"127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )
        try:
            wait_until_answering(proc, f"http://127.0.0.1:{port}/liveness", log, timeout=30)
            titles = {"binner": "ImageBinner: Binner", "predict": "ImageBinner: predict",
                      "review": "ImageBinner: prediction review", "addons": "ImageBinner: add-ons"}
            for name, title in titles.items():
                response = requests.get(f"http://127.0.0.1:{port}/{name}", timeout=30)
                assert response.status_code == 200, name
                assert f"<title>{title}</title>" in response.text
        finally:
            stop(proc)
    text = log.read_text()
    assert "Traceback" not in text and "ERROR" not in text, text


def test_tool_widgets_keep_the_given_order_and_name_the_auto_choice():
    from bokeh.models import Select

    from imagebinner.apps.common import param_widget, tool_widgets
    from imagebinner.tools.addons import Split

    split = Split()
    widgets = tool_widgets(split, ["movie", "locs", "at", "to"], text=("movie", "locs"), labels={"at": "Split at"})
    assert [w.name for w in widgets.layout] == ["Movie", "Locs", "Split at", "To"]  # not the class's order
    assert "≥ 1" in param_widget(widgets, "at").stylesheets[0]  # the bounds shown after the label
    root = widgets.get_root(Document(), comm=Comm())
    (select,) = root.select({"type": Select})
    assert select.value == "None" and select.options[0] == ("None", "auto")  # not a blank box
    param_widget(widgets, "to")._process_events({"value": "picasso"})  # as the browser sends a choice
    assert split.to == "picasso"
    param_widget(widgets, "to")._process_events({"value": "None"})
    assert split.to is None and select.value == "None"


def test_list_params_are_edited_one_item_per_line_with_paths_checked(demo, tmp_path, capsys, monkeypatch):
    """A list param (pairs or paths) is a text box with one item per line, in sync with the param both ways; a line
    naming a missing file changes nothing and says why; paths are relative to the data root and stored resolved."""
    from bokeh.models import TextAreaInput

    from imagebinner.apps.common import param_widget, tool_widgets

    monkeypatch.setenv(ROOT_ENV, str(tmp_path.parent))  # the demo and tmp_path lie inside

    class Lists(param.Parameterized):
        pairs = param.List(default=[], doc="Pairs of movie and localizations.")
        paths = param.List(default=[], item_type=str, doc="Movies.")

    obj = Lists()
    pane = tool_widgets(obj, ["pairs", "paths"], widgets={"pairs": {"columns": ["movie", "localizations"]}})
    root = pane.get_root(Document(), comm=Comm())
    pairs, paths = param_widget(pane, "pairs"), param_widget(pane, "paths")
    assert pairs.description == "Pairs of movie and localizations." and pairs.label == "Pairs"
    m1, m2 = demo.measurements
    pairs._process_events({"value": f"{m1.movie} | {m1.locs}\n\n  {m2.movie} |{m2.locs}  "})  # as the browser sends
    assert obj.pairs == [(str(m1.movie), str(m1.locs)), (str(m2.movie), str(m2.locs))]
    pairs._process_events({"value": f"{m1.movie} | {tmp_path / 'missing.csv'}"})
    assert len(obj.pairs) == 2 and pairs.label == "Pairs (invalid)"
    assert "line 1" in capsys.readouterr().out
    pairs._process_events({"value": str(m1.movie)})  # a pair needs both paths
    assert len(obj.pairs) == 2 and "2 paths" in capsys.readouterr().out
    obj.paths = [str(m2.movie), str(m1.movie)]  # from Python: the box shows one path per line
    boxes = {box.value for box in root.select({"type": TextAreaInput})}
    assert f"{m2.movie}\n{m1.movie}" in boxes
    paths._process_events({"value": str(m1.movie)})
    assert obj.paths == [str(m1.movie)] and paths.label == "Paths"
    paths._process_events({"value": str(m2.movie.relative_to(tmp_path.parent))})  # relative to the root
    assert obj.paths == [str(m2.movie)]
    paths._process_events({"value": f"../{tmp_path.parent.name}2/x.tif"})  # a sibling of the root
    assert obj.paths == [str(m2.movie)] and "outside the data folder" in capsys.readouterr().out


def test_a_threaded_jobs_results_are_applied_in_the_sessions_thread(monkeypatch):
    """A tool run by a job thread of a served page hands its result changes to the page's thread (where the views
    update) and waits for each; an error there is raised in the job. Without a session they apply at once."""
    import queue
    import threading
    import types

    from bokeh.document import Document

    from imagebinner.apps import jobs
    from imagebinner.tools.base import Task

    class Counting(Task):
        pass

    tool = Counting()
    doc = Document()
    session = types.SimpleNamespace(request=types.SimpleNamespace(arguments={}, headers={}, cookies={}),
                                    id="served", server_context=None)
    monkeypatch.setattr(doc, "_session_context", lambda: session)  # (served: it has a session)
    calls: queue.Queue = queue.Queue()
    session_thread = threading.Thread(target=lambda: [f() for f in iter(calls.get, None)], daemon=True)
    session_thread.start()
    monkeypatch.setitem(pn.state._thread_id_, doc, session_thread.ident)
    monkeypatch.setattr(jobs, "in_session", lambda _doc, callback: calls.put(callback))
    monkeypatch.setattr(jobs, "notify", lambda *args, **kwargs: None)  # (no page here to show the job's result)
    seen = []
    tool.param.watch(lambda e: seen.append((e.new, threading.current_thread() is session_thread)), "progress")

    job = jobs.Job()
    monkeypatch.setattr(pn.state, "curdoc", doc)
    def work() -> None:
        tool._update(n_steps=3)
        for _ in range(3):
            tool._advance()

    job.start(work, threaded=True)
    job.wait()
    assert seen == [(1, True), (2, True), (3, True)]
    # an error while applying is the job's error; outside a session the changes are made at once
    publish = jobs.applied_in_session(doc)
    with pytest.raises(ValueError, match="at least 0"):
        publish(lambda: tool._update(progress=-1))
    calls.put(None)
    jobs.applied_in_session(None)(lambda: tool._update(progress=0))
    assert tool.progress == 0
