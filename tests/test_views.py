"""Views (HoloViews elements and DynamicMaps) on simulated and real data, rendered to Bokeh models without a browser."""

from __future__ import annotations

import numpy as np
import pytest

hv = pytest.importorskip("holoviews")
pn = pytest.importorskip("panel")

from bokeh.document import Document  # noqa: E402
from bokeh.models import ColumnDataSource, GlyphRenderer, Quad, Scatter  # noqa: E402
from bokeh.models import Image as BokehImage  # noqa: E402
from pyviz_comms import Comm  # noqa: E402

from imagebinner.io import open_movie, read_locs  # noqa: E402
from imagebinner.simulate.prediction import make_prediction_folder  # noqa: E402
from imagebinner.tools.binner import Binner  # noqa: E402
from imagebinner.tools.review import PredictionReview  # noqa: E402
from imagebinner.views.binner import BinnerView  # noqa: E402
from imagebinner.views.frames import frame_image, hr_image  # noqa: E402
from imagebinner.views.review import ReviewView  # noqa: E402

hv.extension("bokeh")


@pytest.fixture(autouse=True)
def _reset_panel_state():
    yield
    pn.state.reset()


@pytest.fixture(scope="module")
def demo(small_demo):
    """The shared small demo (conftest) and its prediction folder."""
    return small_demo, small_demo.out_dir / "prediction"


def _binner(demo, **settings) -> Binner:
    paths, _ = demo
    values = dict(n_patches=40, n_binned=6, bin_size=4, seed=11, min_emitters=1)
    values.update(settings)
    return Binner(measurements=[(str(m.movie), str(m.locs)) for m in paths.measurements], **values)


def _render(obj):
    return pn.panel(obj).get_root(Document(), comm=Comm())


def _sources(root, glyph_type, **props) -> list[ColumnDataSource]:
    out = []
    for renderer in root.select({"type": GlyphRenderer}):
        glyph = renderer.glyph
        if isinstance(glyph, glyph_type) and all(getattr(glyph, k, None) == v for k, v in props.items()):
            if all(renderer.data_source is not o for o in out):
                out.append(renderer.data_source)
    return out


def _cross_xy(root) -> set[tuple[float, float]]:
    (cds,) = _sources(root, Scatter, marker="x")
    return {(round(float(x), 6), round(float(y), 6)) for x, y in zip(cds.data["x"], cds.data["y"])}


def _rows_of_frame(table, frame) -> set[tuple[float, float]]:
    keep = table.frame == frame
    return {(round(float(x), 6), round(float(y), 6)) for x, y in zip(table.x[keep], table.y[keep])}


# -- geometry -----------------------------------------------------------------------------------------------------
def test_camera_pixel_j_is_centred_at_j_plus_half_pixel_size():
    arr = np.arange(8 * 12, dtype=np.uint16).reshape(8, 12)
    img = frame_image(arr, pixel_size=130.0)
    assert img.bounds.lbrt() == pytest.approx((0.0, 0.0, 12 * 130.0, 8 * 130.0), abs=1e-6)
    xs, ys = img.dimension_values("x", expanded=False), img.dimension_values("y", expanded=False)
    assert xs == pytest.approx((np.arange(12) + 0.5) * 130.0)
    assert ys == pytest.approx((np.arange(8) + 0.5) * 130.0)
    # row r, column j of the array is the pixel at ((j + 0.5) ps, (r + 0.5) ps)
    assert img[(5 + 0.5) * 130.0, (2 + 0.5) * 130.0] == arr[2, 5]
    assert img[(5 + 0.9) * 130.0, (2 + 0.1) * 130.0] == arr[2, 5]


def test_hr_pixel_k_is_centred_at_k_times_hr_pixel_size():
    arr = np.random.default_rng(0).random((16, 20))
    img = hr_image(arr, pixel_size_hr=26.75)
    assert img.bounds.lbrt() == pytest.approx((-13.375, -13.375, 19.5 * 26.75, 15.5 * 26.75), abs=1e-6)
    assert img[7 * 26.75, 3 * 26.75] == arr[3, 7]


@pytest.mark.filterwarnings("ignore:.*YAML documents disagree on the pixel size")
def test_picasso_crosses_of_frame_k_are_that_frames_localizations(shared_data):
    """Real Picasso data (130 nm): the crosses drawn for a frame are exactly that frame's canonical localizations."""
    movie = open_movie(shared_data / "picasso" / "testdata.tif")
    table = read_locs(shared_data / "picasso" / "testdata_locs.hdf5")
    binner = Binner(measurements=[(str(shared_data / "picasso" / "testdata.tif"),
                                   str(shared_data / "picasso" / "testdata_locs.hdf5"))])
    binner.load()
    view = BinnerView(binner)
    root = _render(pn.pane.HoloViews(view.input_plot()))
    busy = int(np.argmax(table.counts_per_frame(movie.n_frames)))
    for frame in (busy, 11, 0):
        view.frame = frame
        assert _cross_xy(root) == _rows_of_frame(table, frame)
    view.frame = busy
    assert len(_cross_xy(root)) == table.counts_per_frame(movie.n_frames)[busy] > 1
    # Picasso pixel centre (integer px) -> canonical nm: each cross sits inside the camera pixel it was fitted in
    rows = table.frame_rows(busy)
    (image_cds,) = _sources(root, BokehImage)
    assert image_cds.data["x"][0] == pytest.approx(0.0, abs=1e-6)
    assert image_cds.data["dw"][0] == pytest.approx(32 * 130.0)
    frame = movie.frame(busy).astype(float)
    for x, y in zip(table.x[rows], table.y[rows]):
        j, r = int(x // 130.0), int(y // 130.0)
        # a fitted emitter is brighter than the frame's median at its pixel
        assert frame[r, j] > np.median(frame)


# -- Binner views -------------------------------------------------------------------------------------------------
def test_binner_input_crosses_follow_the_frame(demo):
    paths, _ = demo
    binner = _binner(demo)
    view = BinnerView(binner)
    binner.load()
    root = _render(pn.pane.HoloViews(view.input_plot()))
    truth2 = read_locs(paths.measurements[1].locs)
    view.measurement = 1
    for frame in (0, 7, 59):
        view.frame = frame
        assert _cross_xy(root) == _rows_of_frame(truth2, frame)
    view.show_crosses = False
    assert _cross_xy(root) == set()


def test_binned_frame_view_shows_sum_of_parts_and_union_of_their_labels(demo):
    binner = _binner(demo, camera_offset=100)
    view = BinnerView(binner)
    binner.compose()
    assert view.param.binned_frame.bounds == (0, 5)
    root = _render(pn.pane.HoloViews(view.binned_plot()))
    P, ps = binner.patch_size, 107.0
    for j in (0, 3):
        view.binned_frame = j
        bf = binner.binned_frame(j)
        # image: sum of the parts' windows read straight from the movies, minus the offset (bin_size - 1) times
        expected = -100 * (binner.bin_size - 1)
        labels = set()
        for part in bf.parts:
            with open_movie(view.measurements[part["measurement"]].movie_path) as movie:
                expected = expected + movie.frame(part["frame"])[part["row"]:part["row"] + P,
                                                                  part["column"]:part["column"] + P].astype(np.int64)
            x, y = view.part_locs(part)
            assert np.all((x >= 0) & (x < P * ps) & (y >= 0) & (y < P * ps))
            labels |= {(round(float(a), 6), round(float(b), 6)) for a, b in zip(x, y)}
        (image_cds,) = _sources(root, BokehImage)
        # bokeh's image row 0 is at y = 0 (the top with the inverted y axis), like the array's row 0
        np.testing.assert_array_equal(np.asarray(image_cds.data["image"][0]), np.clip(expected, 0, 65535))
        assert image_cds.data["dw"][0] == pytest.approx(P * ps)
        assert _cross_xy(root) == labels
        assert len(labels) == len(bf.locs)


def test_part_selection_draws_its_window_on_its_source_frame(demo):
    binner = _binner(demo)
    view = BinnerView(binner)
    binner.compose()
    view.binned_frame = 2
    root = _render(pn.pane.HoloViews(view.input_plot()))
    bf = binner.binned_frame(2)
    ps, P = 107.0, binner.patch_size
    for k in (0, 3):
        view.part = k
        part = bf.parts[k]
        assert (view.measurement, view.frame) == (part["measurement"], part["frame"])
        (quads,) = _sources(root, Quad)
        boxes = set(zip(quads.data["left"], quads.data["bottom"], quads.data["right"], quads.data["top"]))
        box = (part["column"] * ps, part["row"] * ps, (part["column"] + P) * ps, (part["row"] + P) * ps)
        assert any(np.allclose(b, box) for b in boxes)
        # the crosses inside that window are the part's labels shifted back to camera nm
        x, y = view.part_locs(part)
        inside = {(round(a + part["column"] * ps, 6), round(b + part["row"] * ps, 6)) for a, b in zip(x, y)}
        assert inside <= _cross_xy(root) and len(inside) == part["n_locs"]


def test_binned_views_follow_the_plan_and_go_stale_when_settings_change(demo):
    """The binned views depend on the binner's plan: a new plan redraws them, a setting change (plan reset to None)
    shows placeholders, nothing is refreshed by hand."""
    binner = _binner(demo)
    view = BinnerView(binner)
    root = _render(pn.pane.HoloViews(view.binned_plot()))
    emitters = _render(pn.pane.HoloViews(view.binned_emitters()))

    def shown() -> np.ndarray:
        (image_cds,) = _sources(root, BokehImage)
        return np.asarray(image_cds.data["image"][0])

    assert shown().shape == (2, 2) and view.current_binned() is None  # before any preview: the placeholder
    binner.compose()
    first = shown()
    assert first.shape == (binner.patch_size, binner.patch_size) and len(_cross_xy(root)) > 0
    np.testing.assert_array_equal(first, binner.binned_frame(0).image)
    # emitters per binned frame (hover) and per µm² of the patch (the curve)
    (curve,) = [cds for cds in emitters.select({"type": ColumnDataSource}) if len(cds.data.get("frame", [])) == 6]
    counts = [len(binner.binned_frame(j).locs) for j in range(6)]
    assert list(curve.data["count"]) == counts
    area = (binner.patch_size * binner.pixel_size_used / 1000) ** 2
    np.testing.assert_allclose(curve.data["density"], np.array(counts) / area)
    binner.bin_size = 3  # a setting changes: the plan is stale
    assert binner.plan is None and view.current_binned() is None
    assert shown().shape == (2, 2) and _cross_xy(root) == set()
    assert view.binned_image().dimension_values(2, flat=False).shape == (2, 2)  # the placeholder
    binner.compose()  # a new plan of 3 patches per frame, drawn without touching the view
    assert view.n_parts == 3 and len(view.current_binned().parts) == 3
    np.testing.assert_array_equal(shown(), binner.binned_frame(0).image)
    assert not np.array_equal(shown(), first)
    view.binned_frame = 4
    np.testing.assert_array_equal(shown(), binner.binned_frame(4).image)


def test_binned_plots_built_while_the_binner_works_get_the_binned_frames_ranges(demo):
    """A plot built while the binner runs (its first data are placeholders) still spans the binned frames."""
    binner = _binner(demo)
    view = BinnerView(binner)
    binner.compose()
    binner._update(running=True)  # as during a save in the job thread
    renderer = hv.renderer("bokeh")
    plots = [renderer.get_plot(view.binned_plot()), renderer.get_plot(view.parts())]
    binner._update(running=False)
    extent = binner.patch_size * binner.pixel_size_used
    binned = plots[0].state
    assert (binned.x_range.start, binned.x_range.end) == pytest.approx((0, extent))
    assert sorted((binned.y_range.start, binned.y_range.end)) == pytest.approx([0, extent])
    part = plots[1].subplots[(0, 0)].subplots["main"].state
    assert (part.x_range.start, part.x_range.end) == pytest.approx((0, extent))


def test_part_locs_are_the_binners_patch_localizations(demo):
    """The views show the binner's own membership rule: a part's crosses are ``binner.patch_locs`` of its patch."""
    binner = _binner(demo)
    view = BinnerView(binner)
    binner.compose()
    view.binned_frame = 1
    for part in binner.binned_frame(1).parts:
        x, y = view.part_locs(part)
        expected = binner.patch_locs(part["pool_index"])
        np.testing.assert_array_equal(x, expected["x"])
        np.testing.assert_array_equal(y, expected["y"])
        assert len(x) == part["n_locs"]
        element = view.part_element(binner.binned_frame(1).parts.index(part), binned_frame=1)
        (points,) = [el for el in element if isinstance(el, hv.Points)]
        assert len(points) == part["n_locs"]


def test_input_views_follow_the_loaded_measurements(demo):
    """Loading sets the selectors' bounds; changing the measurements empties the input views until the next load."""
    binner = _binner(demo)
    view = BinnerView(binner)
    assert view.measurements == [] and view.input_image().dimension_values(2, flat=False).shape == (2, 2)
    binner.load()
    assert view.param.frame.bounds == (0, 59) and view.param.measurement.bounds == (0, 1)
    assert view.input_geometry == (64, 64, 107.0)
    view.param.update(measurement=1, frame=59)
    binner.measurements = binner.measurements[:1]
    assert view.measurements == [] and len(view.input_points()) == 0 and (view.measurement, view.frame) == (0, 0)
    binner.load()
    assert view.param.measurement.bounds == (0, 0) and view.param.frame.bounds == (0, 59)
    view.frame = 7
    assert len(view.input_points()) == view.measurements[0].locs_per_frame()[7]


# -- review views -------------------------------------------------------------------------------------------------
@pytest.fixture()
def review(demo):
    paths, folder = demo
    m1 = paths.measurements[0]
    r = PredictionReview(folder=str(folder), movie=str(m1.movie), ground_truth=str(m1.locs))
    r.load()
    return r


def test_threshold_filters_the_prediction_crosses(demo, review):
    _, folder = demo
    view = ReviewView(review)
    raw = read_locs(next(folder.glob("Localizations_*_avg.csv")))
    root = _render(pn.pane.HoloViews(hv.DynamicMap(view.prediction_points)))
    frame = int(np.argmax(raw.counts_per_frame()))
    view.frame = frame
    assert _cross_xy(root) == _rows_of_frame(raw, frame)
    conf = raw["confidence"][raw.frame == frame]
    threshold = float(np.median(conf))
    review.threshold = threshold
    kept = raw.take(raw["confidence"] >= threshold)
    assert _cross_xy(root) == _rows_of_frame(kept, frame)
    assert 0 < len(_cross_xy(root)) < len(conf)


def test_review_views_follow_a_reload_without_being_told(demo, tmp_path):
    """The views depend on the review's result params: loading another prediction (other frames, other images)
    changes the frame range, the summed images and the crosses with no call on the view."""
    paths, folder = demo
    m1 = paths.measurements[0]
    r = PredictionReview(folder=str(folder), movie=str(m1.movie))
    view = ReviewView(r)
    assert view.param.frame.bounds == (0, 0) and len(view.prediction_points().data) == 0
    r.load()
    n_frames = r.n_frames
    assert view.param.frame.bounds == (0, n_frames - 1)
    whole_sum = view.sum_image("predicted").dimension_values(2).sum()
    view.frame = n_frames - 1
    view.frame = 4
    root = _render(pn.pane.HoloViews(hv.DynamicMap(view.prediction_points)))
    before = _cross_xy(root)
    assert before == _rows_of_frame(r.filtered, 4)
    view.frame = n_frames - 1
    # a shorter measurement: the first frames of the movie only
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
    after = _cross_xy(root)  # the same plot, redrawn
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
    pane = pn.pane.DataFrame(view.metrics_table)
    pane.get_root(Document(), comm=Comm())
    before = dict(zip(pane.object["metric"], pane.object["value"]))
    review.threshold = review.suggested_thresholds["jaccard"]
    after = dict(zip(pane.object["metric"], pane.object["value"]))
    assert float(after["threshold"]) == pytest.approx(review.threshold, rel=1e-3)
    assert int(after["n_pred"]) < int(before["n_pred"]) == len(review.predictions)
    assert float(after["jaccard"]) == pytest.approx(review.metrics["jaccard"], rel=1e-3)
    hist = view.confidence_histogram()
    counts = hist.Histogram.I.dimension_values("predictions")
    assert counts.sum() == len(review.predictions)
    assert hist.VLine.I.data == pytest.approx(review.threshold)
    sweep = view.sweep_plot()
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
        fig = renderer.get_plot(plot).state
        assert fig.sizing_mode in (None, "fixed") and 200 <= fig.frame_height <= 340
        assert fig.frame_width / fig.frame_height == pytest.approx(width / height, rel=0.02)


def test_frame_size_fits_the_box_with_the_image_aspect():
    from imagebinner.views.frames import frame_size

    assert frame_size((64, 64), (420, 340)) == {"frame_width": 340, "frame_height": 340}
    assert frame_size((256, 1024), (420, 340)) == {"frame_width": 420, "frame_height": 105}
    assert frame_size((512, 128), (420, 340)) == {"frame_width": 85, "frame_height": 340}
    fig = hv.renderer("bokeh").get_plot(frame_image(np.zeros((30, 60)), 100.0)).state
    assert (fig.frame_width, fig.frame_height) == (420, 210)


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
