"""Review views rendered to Bokeh models without a browser: marks (true/false positives, misses) coloured by
confidence, toggles, the no-stacked state, density boxplots, the all-frames render, work per step and threshold."""

from __future__ import annotations

import numpy as np
import pytest

hv = pytest.importorskip("holoviews")
pn = pytest.importorskip("panel")

from bokeh.document import Document  # noqa: E402
from bokeh.models import ColorBar, ColumnDataSource, GlyphRenderer, LayoutDOM, Legend, Scatter  # noqa: E402
from bokeh.models import Image as BokehImage  # noqa: E402
from pyviz_comms import Comm  # noqa: E402

from imagebinner.io import read_locs  # noqa: E402
from imagebinner.simulate.prediction import make_prediction_folder  # noqa: E402
from imagebinner.tools.matching import Matcher  # noqa: E402
from imagebinner.tools.review import PredictionReview  # noqa: E402
from imagebinner.views.review import ReviewView  # noqa: E402
from bokeh_models import render as _render  # noqa: E402
from bokeh_models import sources as _sources  # noqa: E402

hv.extension("bokeh")
MARKERS = {"true positive": "x", "false positive": "triangle", "missed": "square", "matched truth": "circle"}


@pytest.fixture(scope="module")
def demo(small_demo):
    return small_demo, small_demo.out_dir / "prediction"


@pytest.fixture()
def review(demo):
    paths, folder = demo
    m1 = paths.measurements[0]
    return PredictionReview(folder=str(folder), movie=str(m1.movie), ground_truth=str(m1.locs)).load()




def _xy(cds) -> set[tuple[float, float]]:
    return {(round(float(x), 6), round(float(y), 6)) for x, y in zip(cds.data["x"], cds.data["y"])}


def _mark_sources(root) -> list[ColumnDataSource]:
    """The sources of the mark layers (a ``status`` column per mark; legend swatches have none)."""
    return [s for s in _sources(root, Scatter) if "status" in s.data]


def _marks(root) -> dict[str, set]:
    """The marks of each class shown by a rendered frame plot (by their ``status``), each drawn with its marker."""
    out = {name: set() for name in MARKERS}
    for cds in _mark_sources(root):
        markers = cds.data.get("marker", cds.data.get("marker_str", None))
        for k, (name, x, y) in enumerate(zip(cds.data["status"], cds.data["x"], cds.data["y"])):
            out.setdefault(name, set()).add((round(float(x), 6), round(float(y), 6)))
            assert markers is None or markers[k] == MARKERS[name], (name, markers[k])
    return out


def _rows_of_frame(table, frame, keep=None) -> set[tuple[float, float]]:
    sel = table.frame == frame
    if keep is not None:
        sel &= keep
    return {(round(float(x), 6), round(float(y), 6)) for x, y in zip(table.x[sel], table.y[sel])}


def _expected(review, frame) -> dict[str, set]:
    """The classes from a from-scratch matching at the review's threshold and tolerance."""
    pred, truth = review.predictions, review.truth
    result = Matcher(truth, pred, review.tolerance).match(review.threshold)
    tp = np.zeros(len(pred), bool)
    tp[result.pred_index] = True
    matched = np.zeros(len(truth), bool)
    matched[result.gt_index] = True
    kept = pred["confidence"] >= review.threshold
    return {"true positive": _rows_of_frame(pred, frame, tp), "false positive": _rows_of_frame(pred, frame, kept & ~tp),
            "missed": _rows_of_frame(truth, frame, ~matched), "matched truth": _rows_of_frame(truth, frame, matched)}


def test_frame_marks_are_true_positives_false_positives_and_misses_at_the_threshold(review):
    pred = review.predictions  # every fifth prediction moved 1.5 µm away: false positives and misses
    shifted = pred.with_columns(x=pred.x + np.where(np.arange(len(pred)) % 5 == 0, 1500.0, 0.0))
    review = PredictionReview().load_tables(shifted, review.truth, review.n_frames)
    view = ReviewView(review)
    root = _render(view.camera_plot())
    review.threshold = float(np.quantile(review.predictions["confidence"], 0.3))  # some true positives dropped
    status, n = review.match_status, review.n_frames
    fp = np.bincount(review.predictions.frame[status.prediction == 2], minlength=n)
    missed = np.bincount(review.truth.frame[~status.truth_matched], minlength=n)
    frame = int(np.argmax(np.minimum(fp, missed)))  # a frame with all four classes
    view.frame = frame
    shown = _marks(root)
    assert shown == _expected(review, frame)
    assert shown["true positive"] and shown["false positive"] and shown["missed"] and shown["matched truth"]
    # predictions are coloured by confidence on one scale with a colour bar; a legend names the classes
    (pred_source,) = [cds for cds in _mark_sources(root) if "confidence" in cds.data]
    assert set(pred_source.data["status"]) == {"true positive", "false positive"}
    (bar,) = root.select({"type": ColorBar})
    assert bar.title == "confidence"
    lo, hi = bar.color_mapper.low, bar.color_mapper.high
    assert (lo, hi) == pytest.approx((review.predictions["confidence"].min(), review.predictions["confidence"].max()))
    (legend,) = root.select({"type": Legend})
    labels = [item.label["value"] for item in legend.items]
    assert labels == list(MARKERS) and legend.click_policy == "hide"
    # the tolerance changes the classes too (a re-match, once)
    review.tolerance = 20.0
    assert _marks(root) == _expected(review, frame)


def test_mark_classes_can_be_hidden(review):
    view = ReviewView(review)
    root = _render(view.camera_plot())
    view.frame = 3
    before = _marks(root)
    view.shown = ["true positive", "missed"]
    after = _marks(root)
    assert after["true positive"] == before["true positive"] and after["missed"] == before["missed"]
    assert after["false positive"] == set() == after["matched truth"]


def test_legend_clicks_and_toggles_hide_the_same_classes(review):
    """The legend's items hide a class on the server (as the toggles do), and follow the toggles."""
    view = ReviewView(review)
    root = _render(view.camera_plot())
    view.frame = 3
    (legend,) = root.select({"type": Legend})
    item = {i.label["value"]: i for i in legend.items}
    (missed,) = item["missed"].renderers
    assert isinstance(missed.glyph, Scatter) and missed.glyph.marker == "square"
    missed.visible = False  # a click on "missed" in the browser
    assert "missed" not in view.shown and _marks(root)["missed"] == set() and _marks(root)["true positive"]
    view.shown = ["true positive"]  # the toggles
    assert [i.renderers[0].visible for i in legend.items] == [True, False, False, False]
    assert _marks(root)["false positive"] == set() == _marks(root)["matched truth"]


def test_without_truth_the_kept_predictions_are_coloured_crosses(demo):
    paths, folder = demo
    r = PredictionReview(folder=str(folder), movie=str(paths.measurements[0].movie)).load()
    view = ReviewView(r)
    assert view.classes == ("predictions",)
    raw = read_locs(next(folder.glob("Localizations_*_avg.csv")))
    root = _render(view.camera_plot())
    frame = int(np.argmax(raw.counts_per_frame()))
    view.frame = frame
    (crosses,) = _mark_sources(root)
    assert set(crosses.data["status"]) == {"predictions"} and "confidence" in crosses.data
    assert _xy(crosses) == _rows_of_frame(raw, frame)
    r.threshold = float(np.median(raw["confidence"][raw.frame == frame]))
    kept = raw["confidence"] >= r.threshold
    assert _xy(crosses) == _rows_of_frame(raw, frame, kept) and 0 < len(_xy(crosses)) < (raw.frame == frame).sum()
    assert root.select_one({"type": ColorBar}).title == "confidence"


def _changes(events) -> list[tuple[str, str, tuple | None]]:
    """(model type, attribute, changed columns) of each document change event."""
    return [(type(e.model).__name__, e.attr, tuple(e.cols) if getattr(e, "cols", None) else None) for e in events]


def test_a_frame_step_writes_into_the_frame_plots_sources_and_resends_no_series(review):
    """Work counted per frame step: the marks computed once and each frame image read once for both frame plots,
    written straight into their data sources (the image column of each plot and its two mark layers: six data
    changes, no other change to the frame plots), the density series not rebuilt (only its frame marker moves); a
    threshold move re-sends the marks only (no image), and the series once."""
    from bokeh.document import Document

    view = ReviewView(review)
    doc = Document()
    root = pn.Column(pn.panel(view.camera_plot()), pn.panel(view.stacked_plot()),
                     pn.pane.HoloViews(view.density_plot())).get_root(doc)
    doc.add_root(root)
    events: list = []
    doc.on_change(events.append)
    before = (dict(view.calls), dict(view.summary.calls))
    view.frame = 7
    calls = {k: view.calls[k] - before[0].get(k, 0) for k in view.calls}
    assert calls == {"marks": 1, "camera_image": 1, "stacked_image": 1, "frame_marker": 1}
    assert dict(view.summary.calls) == before[1]  # the density series was not rebuilt
    data = [c for c in _changes(events) if c[0] == "ColumnDataSource"]
    assert sorted(data, key=str) == sorted([("ColumnDataSource", "data", ("image",))] * 2
                                           + [("ColumnDataSource", "data", None)] * 4, key=str)
    assert {c[0] for c in _changes(events)} <= {"ColumnDataSource", "Span", "figure"}  # (+ the density's marker)
    spans = [m for m in root.references() if type(m).__name__ == "Span"]
    assert any(s.location == 7 for s in spans)
    images = {id(cds): cds.data["image"][0] for cds in _sources(root, BokehImage)}
    assert len(images) == 2
    (camera,) = [a for a in images.values() if a.shape == review.image_shape]
    np.testing.assert_array_equal(camera, review.movie_frame(7))
    before, before_summary = dict(view.calls), dict(view.summary.calls)
    events.clear()
    review.threshold = float(np.median(review.predictions["confidence"]))
    # the frames' images are not sent again (same frame: the plots keep their data)
    assert all(cds.data["image"][0] is images[id(cds)] for cds in _sources(root, BokehImage))
    assert not [c for c in _changes(events) if c[2] == ("image",)]
    assert {k: view.calls[k] - before.get(k, 0) for k in view.calls if view.calls[k] != before.get(k, 0)} == {
        "marks": 1}
    assert dict(view.summary.calls) == {**before_summary, "density_curves": before_summary["density_curves"] + 1}


def _boxes(overlay) -> dict[str, dict[str, float]]:
    """The drawn boxes by set: q1 and q3 (the rectangle), the median and the number of frames."""
    boxes = overlay.get(0)
    return {str(row["set"]): {"q1": row["localizations per frame"], "q3": row["q3"], "median": row["median"],
                              "frames": row["frames"]} for _, row in boxes.dframe().iterrows()}


def _stats(counts) -> dict[str, float]:
    q1, median, q3 = np.percentile(counts, [25, 50, 75])
    return {"q1": q1, "q3": q3, "median": median, "frames": len(counts)}


def test_density_boxplots_are_the_counts_per_frame(review):
    view = ReviewView(review)
    boxes = _boxes(view.summary.density_boxplot())
    n = review.n_frames
    assert boxes["ground truth"] == pytest.approx(_stats(review.truth.counts_per_frame(n)))
    kept = review.predictions.take(review.predictions["confidence"] >= review.threshold)
    assert boxes["predictions (kept)"] == pytest.approx(_stats(kept.counts_per_frame(n)))
    review.threshold = float(np.median(review.predictions["confidence"]))
    boxes = _boxes(view.summary.density_boxplot())
    filtered = review.predictions.take(review.predictions["confidence"] >= review.threshold)
    assert boxes["predictions (kept)"] == pytest.approx(_stats(filtered.counts_per_frame(n)))
    assert len(filtered) == len(review.filtered)
    root = _render(view.summary.density_boxplot())
    assert len(list(root.select({"type": GlyphRenderer}))) >= 2  # boxes, whiskers and medians of both sets drawn


def test_box_statistics_put_the_whiskers_at_the_furthest_values_within_1_5_iqr():
    from imagebinner.views.box_figure import box_stats

    values = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 100.0])
    st = box_stats(values)
    assert (st["q1"], st["median"], st["q3"]) == pytest.approx(np.percentile(values, [25, 50, 75]))
    assert st["low"] == 0 and st["high"] == 8 and st["n"] == 10  # 100 is an outlier


def test_hr_frame_uses_histogram_equalisation_and_a_missing_stack_is_a_state(review, demo, tmp_path):
    import shutil

    view = ReviewView(review)
    img = view.stacked_image()
    assert hv.Store.lookup_options("bokeh", img, "plot").kwargs["cnorm"] == "eq_hist"
    assert view.has_stacked
    folder = tmp_path / "nostack"
    shutil.copytree(demo[1], folder)
    next(folder.glob("Predicted_stacked_*.tif")).unlink()
    r = PredictionReview(folder=str(folder), movie=review.movie, ground_truth=review.ground_truth).load()
    bare = ReviewView(r)
    assert not bare.has_stacked and bare.stacked_image().label == "no stacked prediction in this folder"


def test_the_all_frames_render_counts_the_kept_predictions_without_copying(review):
    view = ReviewView(review)
    image = view.render_sr(200, 200)
    assert int(np.nansum(image.dimension_values(2))) == len(review.predictions)
    review.threshold = float(np.median(review.predictions["confidence"]))
    image = view.render_sr(200, 200)
    n_kept = int(np.count_nonzero(review.predictions["confidence"] >= review.threshold))
    assert int(np.nansum(image.dimension_values(2))) == n_kept
    assert not review.filtered.materialised  # the render did not need the kept table
    assert len(review.filtered) == n_kept


def test_review_views_follow_a_reload_without_being_told(demo, tmp_path):
    """The views depend on the review's result params: loading another prediction (other frames, other images)
    changes the frame range, the summed images and the marks with no call on the view."""
    paths, folder = demo
    m1 = paths.measurements[0]
    r = PredictionReview(folder=str(folder), movie=str(m1.movie))
    view = ReviewView(r)
    assert view.param.frame.bounds == (0, 0)
    r.load()
    n_frames = r.n_frames
    assert view.param.frame.bounds == (0, n_frames - 1)
    whole_sum = view.sum_image("predicted").dimension_values(2).sum()
    view.frame = n_frames - 1
    root = _render(view.camera_plot())
    view.frame = 4
    (crosses,) = _mark_sources(root)
    before = _xy(crosses)
    assert before == _rows_of_frame(r.filtered, 4)
    view.frame = n_frames - 1
    truth = read_locs(m1.locs)
    short = truth.take(truth.frame < 5).with_meta(n_frames=5)
    from imagebinner.io import open_movie, write_tif

    with open_movie(m1.movie) as movie:
        write_tif(tmp_path / "short.tif", np.stack([movie.frame(k) for k in range(5)]), pixel_size=movie.pixel_size)
    make_prediction_folder(tmp_path / "pred", short, tmp_path / "short.tif", upsampling=4, seed=1)
    r.param.update(folder=str(tmp_path / "pred"), movie=str(tmp_path / "short.tif"))
    r.load()
    assert view.param.frame.bounds == (0, 4) and view.frame == 4
    assert view.sum_image("predicted").dimension_values(2).sum() < whole_sum
    after = _xy(crosses)  # the same plot, redrawn
    assert after == _rows_of_frame(r.filtered, 4) and after != before


def test_stacked_prediction_peaks_lie_on_the_predictions(review):
    """hr geometry: the brightest hr pixel of a frame is centred (k·ps_hr) within one hr pixel of a prediction."""
    view = ReviewView(review)
    pred = review.predictions
    for frame in (5, 30):
        view.frame = frame
        img = view.stacked_image()
        data = img.dimension_values(2, flat=False)
        xs, ys = img.dimension_values("x", expanded=False), img.dimension_values("y", expanded=False)
        r, c = np.unravel_index(np.argmax(data), data.shape)
        rows = pred.frame_rows(frame)
        d = np.hypot(pred.x[rows] - xs[c], pred.y[rows] - ys[r])
        assert d.min() < review.pixel_size_hr


def test_metrics_table_and_histogram_follow_the_threshold(review):
    view = ReviewView(review)
    pane = pn.pane.DataFrame(view.summary.metrics_table)
    pane.get_root(Document(), comm=Comm())
    before = dict(zip(pane.object["metric"], pane.object["value"]))
    review.threshold = review.suggested_thresholds["jaccard"]
    after = dict(zip(pane.object["metric"], pane.object["value"]))
    assert float(after["threshold"]) == pytest.approx(review.threshold, rel=1e-3)
    assert int(after["n_pred"]) < int(before["n_pred"]) == len(review.predictions)
    assert float(after["jaccard"]) == pytest.approx(review.metrics["jaccard"], rel=1e-3)
    hist = view.summary.confidence_histogram()
    counts = hist.dimension_values("predictions")
    assert counts.sum() == len(review.predictions)
    assert view.summary.threshold_marker().data == pytest.approx(review.threshold)
    sweep = view.summary.sweep_plot()
    marked = [el.data for el in sweep if isinstance(el, hv.VLine)]
    assert review.suggested_thresholds["f1"] == pytest.approx(marked[1])


def test_large_data_is_rasterized(review, monkeypatch):
    """Above the size limits frames and merged predictions are aggregated (datashader) instead of sent as is."""
    import imagebinner.views.frames as frames_mod
    import imagebinner.views.review as review_mod

    view = ReviewView(review)
    assert isinstance(view.merged_localizations(), hv.DynamicMap)
    small = _render(pn.pane.HoloViews(view.merged_localizations()))
    assert len(_sources(small, Scatter)[0].data["x"]) == len(review.filtered)
    monkeypatch.setattr(review_mod, "RASTERIZE_ABOVE_POINTS", 10)
    monkeypatch.setattr(frames_mod, "RASTERIZE_ABOVE_PIXELS", 100)
    merged = _render(pn.pane.HoloViews(view.merged_localizations()))
    (counts,) = _sources(merged, BokehImage)
    assert not _sources(merged, Scatter)
    assert np.nansum(counts.data["image"][0]) == len(review.filtered)  # every kept prediction counted once
    stacked = _render(pn.pane.HoloViews(view.stacked_plot()))
    (image,) = _sources(stacked, BokehImage)  # regridded to the plot's size, same extent in nm
    ps_hr = review.pixel_size_hr
    assert image.data["x"][0] == pytest.approx(-ps_hr / 2, abs=ps_hr)
    assert image.data["dw"][0] == pytest.approx(review.hr_shape[1] * ps_hr, rel=0.02)
    dmap = hv.DynamicMap(view.stacked_image)
    assert frames_mod.maybe_rasterize(dmap, review.hr_shape) is not dmap  # 256×256 > 100 px: an operation
    monkeypatch.setattr(frames_mod, "RASTERIZE_ABOVE_PIXELS", 1024 * 1024)
    assert frames_mod.maybe_rasterize(dmap, review.hr_shape) is dmap  # small frames are sent as they are


def test_merged_images_keep_the_data_aspect(review):
    """The merged images have a fixed frame height and the width of their field in nm (not stretched to a pane)."""
    view = ReviewView(review)
    height, width = review.hr_shape
    renderer = hv.renderer("bokeh")
    for plot in (view.sum_plot("widefield"), view.sum_plot("predicted"), view.merged_localizations(),
                 view.camera_plot(), view.stacked_plot()):
        fig = plot if isinstance(plot, LayoutDOM) else renderer.get_plot(plot).state  # (frames: Bokeh figures)
        assert fig.sizing_mode in (None, "fixed") and 200 <= fig.frame_height <= 340
        assert fig.frame_width / fig.frame_height == pytest.approx(width / height, rel=0.02)


def test_exploded_predictions_show_the_same_sum_images(demo, tmp_path):
    """Per-frame (exploded) prediction files are summed into the same merged images as the whole-movie files."""
    paths, folder = demo
    m1 = paths.measurements[0]
    truth = read_locs(m1.locs)
    make_prediction_folder(tmp_path / "exploded", truth, m1.movie, upsampling=4, seed=1, exploded=True)
    whole = PredictionReview(folder=str(folder), movie=str(m1.movie)).load()
    split = PredictionReview(folder=str(tmp_path / "exploded"), movie=str(m1.movie)).load()
    for role in ("predicted", "widefield"):
        views = [ReviewView(r) for r in (whole, split)]
        a, b = (v.sum_image(role) for v in views)
        assert a.data[a.vdims[0].name].size > 1
        np.testing.assert_allclose(np.asarray(b.dimension_values(2)), np.asarray(a.dimension_values(2)),
                                   rtol=1e-5, atol=1e-3)


def test_widefield_sum_is_drawn_on_the_camera_pixel_grid(review):
    """The summed ``Widefield_`` image is a kron copy of camera pixels: its field is exactly the camera frame's
    (0 .. columns·ps) and each u × u block sits on its camera pixel, so sampling it at a camera pixel's centre gives
    that pixel's sum over the movie (the predicted image keeps Deep-STORM's hr pixel k at k·ps_hr)."""
    from imagebinner.io import open_movie

    view = ReviewView(review)
    rows, cols = review.image_shape
    ps, ps_hr = review.camera_pixel_size, review.pixel_size_hr
    widefield = view.sum_image("widefield")
    np.testing.assert_allclose(widefield.bounds.lbrt(), (0, 0, cols * ps, rows * ps), atol=1e-6)
    half = ps_hr / 2
    np.testing.assert_allclose(view.sum_image("predicted").bounds.lbrt(),
                               (-half, -half, cols * ps - half, rows * ps - half), atol=1e-6)
    movie = open_movie(review.movie)
    try:
        total = sum(movie.frame(k).astype(np.float64) for k in range(movie.n_frames))
    finally:
        movie.close()
    for r, j in ((0, 0), (3, 17), (rows - 1, cols - 1)):
        centre = ((j + 0.5) * ps, (r + 0.5) * ps)
        assert widefield[centre] == pytest.approx(total[r, j], rel=1e-5)
        # the block's corners (just inside the camera pixel) hold the same value: no half-pixel shift
        assert widefield[(j * ps + 0.1 * half, r * ps + 0.1 * half)] == pytest.approx(total[r, j], rel=1e-5)
        assert widefield[((j + 1) * ps - 0.1 * half, (r + 1) * ps - 0.1 * half)] == pytest.approx(total[r, j], rel=1e-5)


def test_marks_written_by_a_step_equal_the_marks_of_a_plot_drawn_at_that_frame(review):
    """The columns a step writes into the mark sources (marker, size, line width, colour of each class) are the ones
    a frame plot drawn at that frame starts with: the glyphs show the same marks either way."""
    review.threshold = float(np.quantile(review.predictions["confidence"], 0.4))  # some misses and positives
    stepped, fresh = ReviewView(review), ReviewView(review)
    stepped_root = pn.panel(stepped.camera_plot()).get_root(Document())  # (as served: no notebook comm)
    stepped.frame = fresh.frame = 5  # (fresh: not rendered yet)
    fresh_root = pn.panel(fresh.camera_plot()).get_root(Document())
    a, b = (sorted(_mark_sources(r), key=lambda s: "confidence" in s.data) for r in (stepped_root, fresh_root))
    assert len(a) == len(b) == 2 and any(len(s.data["x"]) for s in a)
    for pushed, drawn in zip(a, b):
        assert set(pushed.data) >= set(drawn.data) and list(pushed.data["status"]) == list(drawn.data["status"])
        for prop in ("marker", "size", "line_width", "line_color"):
            assert _per_mark(pushed, stepped_root, prop) == _per_mark(drawn, fresh_root, prop), prop


def _per_mark(source, root, prop: str) -> list:
    """The value of a glyph property for each mark of ``source`` (a column, or a constant the glyph holds)."""
    (renderer,) = [r for r in root.select({"type": GlyphRenderer}) if r.data_source is source]
    value = getattr(renderer.glyph, prop)
    n = len(source.data["x"])
    if isinstance(value, dict) or hasattr(value, "field"):
        field = value["field"] if isinstance(value, dict) else value.field
        return [_plain(v) for v in source.data[field]]
    return [_plain(value)] * n


def _plain(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def test_a_review_large_enough_to_aggregate_compiles_datashader_at_load(review, monkeypatch):
    """Predictions the all-frames view aggregates with datashader: the aggregation runs once, tiny, while the review
    loads (datashader's JIT then, not on the first super-resolution render); smaller reviews (drawn as dots) do not
    pay for it."""
    import imagebinner.views.review as review_mod

    monkeypatch.setattr(review_mod, "RASTERIZE_ABOVE_POINTS", len(review.predictions))
    assert ReviewView(review).calls["warm_aggregation"] == 0
    monkeypatch.setattr(review_mod, "RASTERIZE_ABOVE_POINTS", len(review.predictions) - 1)
    view = ReviewView(review)
    assert view.calls["warm_aggregation"] == 1
    image = view.render_sr(width=16, height=16)  # the render itself is unchanged
    assert np.nansum(image.dimension_values(2)) == len(review.filtered)


def test_frame_figures_put_each_pixel_where_the_localizations_are(review):
    """The directly drawn frame plots keep the frames' geometry: camera pixel j spans [j·ps, (j + 1)·ps], hr pixel k
    is centred at k·ps_hr, the y axis points down (row 0 at the top); the brightest pixel of a frame is within a
    pixel of a true localization of that frame."""
    from bokeh.models import Range1d

    view = ReviewView(review)
    view.frame = 5
    rows, cols = review.image_shape
    ps, ps_hr = review.camera_pixel_size, review.pixel_size_hr
    truth = review.truth
    t_rows = truth.frame_rows(5)
    for fig, pixel, first_centre in ((view.camera_plot(), ps, ps / 2), (view.stacked_plot(), ps_hr, 0.0)):
        (cds,) = _sources(fig, BokehImage)
        image = cds.data["image"][0]
        n_rows, n_cols = image.shape
        assert (cds.data["x"][0], cds.data["y"][0]) == pytest.approx((first_centre - pixel / 2,) * 2)
        assert (cds.data["dw"][0], cds.data["dh"][0]) == pytest.approx((n_cols * pixel, n_rows * pixel))
        assert n_cols * pixel == pytest.approx(cols * ps) and n_rows * pixel == pytest.approx(rows * ps)
        assert isinstance(fig.y_range, Range1d) and fig.y_range.start > fig.y_range.end  # row 0 at the top
        r, c = np.unravel_index(np.argmax(image), image.shape)
        centre = (first_centre + c * pixel, first_centre + r * pixel)
        assert np.hypot(truth.x[t_rows] - centre[0], truth.y[t_rows] - centre[1]).min() < max(pixel, ps_hr)


class _RecordingComm(Comm):
    """A notebook output's comm that records what the kernel sends (an open comm)."""

    def __init__(self):
        super().__init__()
        self._comm = True
        self.sent: list = []

    def send(self, data=None, metadata=None, buffers=None):
        self.sent.append(data)


def test_in_a_notebook_a_frame_step_is_sent_over_the_outputs_comm(review):
    """A frame plot shown as a notebook output gets a step's writes as one document patch over its comm (no
    HoloViews redraw, which is what served plots do too)."""
    import json

    view = ReviewView(review)
    comm = _RecordingComm()
    doc = Document()
    root = pn.panel(view.camera_plot()).get_root(doc, comm=comm)
    doc.add_root(root)  # as Panel shows an output in a notebook
    comm.sent.clear()
    view.frame = 6
    headers = [json.loads(m) for m in comm.sent if isinstance(m, str) and '"msgtype"' in m]
    assert [h["msgtype"] for h in headers] == ["PATCH-DOC"]
    (camera,) = _sources(root, BokehImage)
    np.testing.assert_array_equal(camera.data["image"][0], review.movie_frame(6))
    assert _marks(root) == {k: v for k, v in _expected(review, 6).items()}
