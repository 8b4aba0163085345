"""Binner page work per step (counted, never timed), densities per µm², µm axes for large fields, opening on data."""

from __future__ import annotations

import collections
import functools

import numpy as np
import pytest

hv = pytest.importorskip("holoviews")
pn = pytest.importorskip("panel")

from bokeh.document import Document  # noqa: E402
from bokeh.document.events import ColumnDataChangedEvent, ModelChangedEvent  # noqa: E402
from bokeh.models import ColumnDataSource, CustomJSTickFormatter, Span  # noqa: E402

from imagebinner.apps.binner import BinnerApp  # noqa: E402
from imagebinner.apps.common import ROOT_ENV  # noqa: E402
from imagebinner.views.binner import BinnerView  # noqa: E402
from imagebinner.views.frames import MICRONS_ABOVE_NM, frame_image, hr_image  # noqa: E402

hv.extension("bokeh")

#: the view methods behind the page's DynamicMaps (each call is one recomputed layer)
CALLBACKS = ("input_marks", "input_layers", "input_series", "binned_overlay",
             "binned_series", "binned_marker", "density_boxes")


@pytest.fixture(autouse=True)
def _demo_root(small_demo, monkeypatch):
    monkeypatch.setenv(ROOT_ENV, str(small_demo.out_dir))
    monkeypatch.delenv("IMAGEBINNER_DATA", raising=False)


@pytest.fixture()
def calls(monkeypatch) -> collections.Counter:
    """Calls of the views' DynamicMap callbacks (counted on the class, before the page is built)."""
    counter: collections.Counter = collections.Counter()
    for name in CALLBACKS:
        method = getattr(BinnerView, name)

        def counted(self, *args, _name=name, _method=method, **kwargs):
            counter[_name] += 1
            return _method(self, *args, **kwargs)

        monkeypatch.setattr(BinnerView, name, functools.wraps(method)(counted))
    return counter


def _pairs(demo) -> list[tuple[str, str]]:
    return [(str(m.movie), str(m.locs)) for m in demo.measurements]


def _page(app: BinnerApp) -> tuple[Document, list]:
    """The app rendered into a document (as a served page), its model events recorded."""
    doc = Document()
    doc.add_root(pn.panel(app).get_root(doc))
    events: list = []
    doc.on_change(events.append)
    return doc, events


def _data_changes(events) -> collections.Counter:
    return collections.Counter(type(e).__name__ for e in events if isinstance(e, ColumnDataChangedEvent))


def _show_tab(app: BinnerApp, title: str) -> None:
    app.tabs.active = [name for name, _ in zip(app.tabs._names, app.tabs)].index(title)


def test_a_frame_step_updates_one_frame_plot_and_the_marker_only(small_demo, calls):
    """One player step = the frame's crosses and windows computed once and written, with the frame's image column,
    straight into the input plot's sources (three data changes, no HoloViews update), the density marker moved;
    the density curve and box plots are not recomputed or re-sent."""
    app = BinnerApp(measurements=_pairs(small_demo))
    app.binner.param.update(n_patches=30, n_binned=5, bin_size=3, seed=1)
    app.binner.compose()
    doc, events = _page(app)
    sources = {id(cds) for cds in doc.select({"type": ColumnDataSource})}
    calls.clear()
    for frame in (5, 6, 7):
        events.clear()
        app.view.frame = frame  # (as the player does; its events are then batched by one_update, see below)
        assert dict(calls) == {"input_layers": 1}, frame
        changed = [e for e in events if isinstance(e, ColumnDataChangedEvent)]
        # image, crosses and part windows of the one input plot; no curve, box or binned-frame data
        assert len(changed) == 3 and {id(e.model) for e in changed} <= sources
        assert all(set(e.model.data) & {"image", "x", "left"} for e in changed)
        assert [e.cols for e in changed if "image" in e.model.data] == [["image"]]  # the image column only
        markers = [e for e in events if isinstance(e, ModelChangedEvent) and isinstance(e.model, Span)]
        assert [e.new for e in markers] == [frame]
        others = {type(e.model).__name__ for e in events if not isinstance(e.model, (ColumnDataSource, Span))}
        assert len(events) - len(others and [e for e in events if type(e.model).__name__ in others]) == 4
        assert others <= {"Player"}  # (set from Python here, the player follows; from the page it is the source)
        m = app.view.measurements[0]
        crosses = [e.model for e in changed if "x" in e.model.data and "image" not in e.model.data]
        np.testing.assert_array_equal(crosses[0].data["x"], m.table.x[m.offsets[frame]:m.offsets[frame + 1]])
        calls.clear()
    app.view.show_crosses = False  # a change of the shown layers: one write into the input plot, one binned update
    assert dict(calls) == {"input_layers": 1, "binned_overlay": 1}
    assert [len(s.data["x"]) for s in doc.select({"type": ColumnDataSource}) if set(s.data) == {"x", "y"}] == [0, 0]  # input, binned


def test_a_player_step_is_one_batch_without_walking_the_page(small_demo, calls):
    """Through ``app.step`` (what a player step from the page does) the plots update the same data, and Bokeh does
    not walk the page's model graph (a HoloViews refresh would end with one such walk: a step makes none)."""
    app = BinnerApp(measurements=_pairs(small_demo))
    doc, _ = _page(app)
    walks = []
    recompute = doc.models.recompute
    doc.models.recompute = lambda: (walks.append(1), recompute())[1]
    (span,) = [s for s in doc.select({"type": Span}) if s.dimension == "height"]  # the frame marker (a VLine)
    images = [cds for cds in doc.select({"type": ColumnDataSource}) if "image" in cds.data]
    calls.clear()
    for frame in (3, 4):
        app.step(frame, doc=doc)
        assert dict(calls) == {"input_layers": 1}
        assert span.location == frame
        shown = app.view.measurements[0].movie.frame(frame)
        assert any(np.array_equal(np.asarray(cds.data["image"][0]), shown) for cds in images)
        calls.clear()
    assert walks == []
    app.view.frame = 5  # without the batch: still no HoloViews refresh, no walk
    assert walks == [] and span.location == 5


def test_a_binned_frame_step_updates_its_plot_its_marker_and_the_part_window(small_demo, calls):
    app = BinnerApp(measurements=_pairs(small_demo))
    app.binner.param.update(n_patches=30, n_binned=5, bin_size=3, seed=1)
    app.binner.compose()
    _page(app)
    part = app.binner.binned_frame(2).parts[app.view.part]
    app.view.param.update(measurement=part["measurement"], frame=59)  # (no part comes from the last frame)
    calls.clear()
    app.step(binned_frame=2)
    # the binned frame and its marker; the input player jumps to the part's source frame (one input update)
    assert dict(calls) == {"binned_overlay": 1, "binned_marker": 1, "input_layers": 1}
    assert (app.view.measurement, app.view.frame) == (part["measurement"], part["frame"])


def test_densities_per_um2_of_inputs_and_binned_frames_on_one_axis(small_demo):
    app = BinnerApp(measurements=_pairs(small_demo))
    view, binner = app.view, app.binner
    field = 64 * 64 * 0.107**2  # µm² of a 64 × 64 px frame at 107 nm
    groups = view.density_groups()
    assert list(groups) == ["m1: measurement1/movie.tif", "m2: measurement2/movie.tif"]
    for m, values in zip(view.measurements, groups.values()):
        np.testing.assert_allclose(values, m.locs_per_frame() / field)
    binner.param.update(n_patches=30, n_binned=5, bin_size=3, seed=1)
    binner.compose()
    groups = view.density_groups()
    patch = (binner.patch_size * 0.107) ** 2
    emitters = [len(binner.binned_frame(j).locs) for j in range(5)]
    np.testing.assert_allclose(groups["binned (3 per frame)"], np.array(emitters) / patch)
    figure = view.density_boxes()
    (boxes,) = [s for s in figure.select({"type": ColumnDataSource}) if "median" in s.data]
    assert boxes.data["group"] == list(groups) == list(figure.x_range.factors)
    for name, median in zip(boxes.data["group"], boxes.data["median"]):
        assert median == pytest.approx(np.median(groups[name]))
    assert figure.yaxis[0].axis_label == "localizations or emitters per µm²"
    binner.bin_size = 4  # stale plan: the binned box goes, the inputs stay
    assert list(view.density_groups()) == list(groups)[:2]
    series = view.input_series()
    view.measurement = 1
    np.testing.assert_allclose(view.input_series()["density"], groups["m2: measurement2/movie.tif"])
    assert not np.array_equal(series["density"], view.input_series()["density"])


def test_density_tab_shows_the_box_plots_and_parts_are_built_when_shown(small_demo, calls):
    app = BinnerApp(measurements=_pairs(small_demo))
    app.binner.param.update(n_patches=30, n_binned=5, bin_size=3, seed=1)
    doc, _ = _page(app)
    assert calls["density_boxes"] == 1  # the first tab, shown

    def groups() -> set:
        """The groups of the box plots (the Binner's directly drawn boxes and the target view's HoloViews boxes)."""
        return {x for cds in doc.select({"type": ColumnDataSource}) for key in ("group", "x0")
                for x in cds.data.get(key, []) if isinstance(x, str)}

    assert groups() == {"m1: measurement1/movie.tif", "m2: measurement2/movie.tif"}
    app.binner.compose()  # (the binned box appears when the binner is done)
    assert "binned (3 per frame)" in groups()
    app.binner.target_density = "0.5:1.5"  # the target's view appears with the target: test movie absent here
    app.binner.compose()
    assert {"binned (target density)", "target", "binned frames"} <= groups()
    app.binner.target_density = ""
    app.binner.compose()
    assert "target" not in groups()
    calls.clear()
    app.step(7)
    assert calls["density_boxes"] == 0 and calls["input_series"] == 0
    n_models = len(doc.models)
    _show_tab(app, "Parts of the binned frame")  # built on first view
    assert len(doc.models) > n_models


# -- µm axes ------------------------------------------------------------------------------------------------------
def _axes(element):
    plot = hv.renderer("bokeh").get_plot(element)
    return plot, plot.state.xaxis[0], plot.state.yaxis[0]


def test_large_fields_are_labelled_in_um_small_ones_in_nm():
    small = np.zeros((64, 64), np.uint16)  # 6.8 µm at 107 nm
    large = np.zeros((512, 512), np.uint16)  # 54.8 µm
    assert 64 * 107 <= MICRONS_ABOVE_NM < 512 * 107
    _, x, y = _axes(frame_image(small, 107.0))
    assert (x.axis_label, y.axis_label) == ("x [nm]", "y [nm]")
    assert not isinstance(x.formatter, CustomJSTickFormatter)
    _, x, y = _axes(frame_image(large, 107.0))
    assert (x.axis_label, y.axis_label) == ("x [µm]", "y [µm]")
    assert isinstance(x.formatter, CustomJSTickFormatter) and "1000" in x.formatter.code
    assert isinstance(y.formatter, CustomJSTickFormatter) and y.formatter is not x.formatter
    _, x, _ = _axes(hr_image(np.zeros((400, 400)), 26.75))  # 10.7 µm of hr pixels
    assert x.axis_label == "x [µm]"
    # the data stay in nm (crosses overlay unchanged, the hover tool shows nm)
    assert frame_image(large, 107.0).dimension_values("x", expanded=False)[-1] == pytest.approx(511.5 * 107)


def test_directly_drawn_frame_plots_follow_the_same_um_rule():
    """The Bokeh frame figures (the Binner's input frame, the review's frames) label axes as the HoloViews images do."""
    from imagebinner.views.frame_figure import frame_figure

    small, large = (frame_figure((n, n), 107.0, np.zeros((n, n), np.uint16)).figure for n in (64, 512))
    assert (small.xaxis[0].axis_label, small.yaxis[0].axis_label) == ("x [nm]", "y [nm]")
    assert not isinstance(small.xaxis[0].formatter, CustomJSTickFormatter)
    assert (large.xaxis[0].axis_label, large.yaxis[0].axis_label) == ("x [µm]", "y [µm]")
    assert all(isinstance(a.formatter, CustomJSTickFormatter) for a in (*large.xaxis, *large.yaxis))


def test_um_axes_keep_their_formatter_while_frames_change():
    """The formatter is made once per plot: a frame update is no new Bokeh model."""
    frame = hv.streams.Stream.define("Frame", k=0)()
    images = [np.full((512, 512), k, np.uint16) for k in range(3)]
    dmap = hv.DynamicMap(lambda k: frame_image(images[k], 107.0), streams=[frame])
    plot, x, _ = _axes(dmap)
    formatter = x.formatter
    for k in (1, 2):
        frame.event(k=k)
        assert plot.state.xaxis[0].formatter is formatter


# -- players and opening ------------------------------------------------------------------------------------------
def test_players_span_their_data_after_load_preview_and_run(small_demo, tmp_path):
    app = BinnerApp(measurements=_pairs(small_demo), output_folder=str(small_demo.out_dir / "run"))
    _page(app)
    assert (app.frame_player.start, app.frame_player.end) == (0, 59)
    app.binner.param.update(n_patches=30, n_binned=7, bin_size=3, seed=1)
    app.binner.compose()
    assert (app.binned_player.start, app.binned_player.end) == (0, 6)
    app.binner.n_binned = 4
    app.binner.save()
    assert app.binned_player.end == 3 and app.binner.written_paths


def test_the_file_browser_is_built_when_first_opened(small_demo):
    """The page opens without the server-file browser (slow to build); its button builds and opens it."""
    app = BinnerApp(measurements=_pairs(small_demo))
    doc, _ = _page(app)
    n_models = len(doc.models)
    assert app._picker is None
    app.browse_button.clicks += 1
    assert app._picker is not None and app.browser.objects[0].collapsed is False
    assert len(doc.models) > n_models  # (the browser's widgets join the page now)
    assert app.picker.root == small_demo.out_dir.resolve()


def test_in_a_notebook_output_a_step_reaches_every_plot(small_demo):
    """In a notebook output (rendered with a comm) a step writes the input frame plot's sources and moves the density
    plot's marker (sent over the comm): the crosses shown are the new frame's."""
    from pyviz_comms import Comm

    app = BinnerApp(measurements=_pairs(small_demo))
    root = pn.panel(app).get_root(Document(), comm=Comm())
    app.view.frame = 7
    assert 7 in [s.location for s in root.select({"type": Span}) if s.dimension == "height"]
    m = app.view.measurements[0]
    xs = {round(float(x), 6) for x in m.table.x[m.offsets[7]:m.offsets[8]]}
    shown = [{round(float(x), 6) for x in cds.data["x"]} for cds in root.select({"type": ColumnDataSource})
             if "x" in cds.data and "image" not in cds.data and len(cds.data["x"])]
    assert xs in shown
