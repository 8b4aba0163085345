"""Views (HoloViews elements and DynamicMaps) on simulated and real data, rendered to Bokeh models without a browser."""

from __future__ import annotations

import numpy as np
import pytest

hv = pytest.importorskip("holoviews")
pn = pytest.importorskip("panel")

from bokeh.models import ColumnDataSource, GlyphRenderer, Quad, Scatter  # noqa: E402
from bokeh.models import Image as BokehImage  # noqa: E402

from imagebinner.io import open_movie, read_locs  # noqa: E402
from imagebinner.tools.binner import Binner  # noqa: E402
from imagebinner.views.binner import BinnerView  # noqa: E402
from imagebinner.views.frames import frame_image, hr_image, movie_clim  # noqa: E402
from bokeh_models import render as _render  # noqa: E402
from bokeh_models import sources as _sources  # noqa: E402

hv.extension("bokeh")


@pytest.fixture(scope="module")
def demo(small_demo):
    """The shared small demo (conftest) and its prediction folder."""
    return small_demo, small_demo.out_dir / "prediction"


def _binner(demo, **settings) -> Binner:
    paths, _ = demo
    values = dict(n_patches=40, n_binned=6, bin_size=4, seed=11, min_emitters=1)
    values.update(settings)
    return Binner(measurements=[(str(m.movie), str(m.locs)) for m in paths.measurements], **values)




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
    root = _render(view.input_plot())
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
    root = _render(view.input_plot())
    truth2 = read_locs(paths.measurements[1].locs)
    view.measurement = 1
    (image,) = [r.glyph for r in root.select({"type": GlyphRenderer}) if isinstance(r.glyph, BokehImage)]
    with open_movie(paths.measurements[1].movie) as movie2:  # the colour scale follows the shown movie
        assert (image.color_mapper.low, image.color_mapper.high) == pytest.approx(movie_clim(movie2))
        for frame in (0, 7, 59):
            view.frame = frame
            assert _cross_xy(root) == _rows_of_frame(truth2, frame)
            (image_cds,) = _sources(root, BokehImage)
            np.testing.assert_array_equal(image_cds.data["image"][0], movie2.frame(frame))
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
    root = _render(view.input_plot())
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


def test_frame_size_fits_the_box_with_the_image_aspect():
    from imagebinner.views.frames import frame_size

    assert frame_size((64, 64), (420, 340)) == {"frame_width": 340, "frame_height": 340}
    assert frame_size((256, 1024), (420, 340)) == {"frame_width": 420, "frame_height": 105}
    assert frame_size((512, 128), (420, 340)) == {"frame_width": 85, "frame_height": 340}
    fig = hv.renderer("bokeh").get_plot(frame_image(np.zeros((30, 60)), 100.0)).state
    assert (fig.frame_width, fig.frame_height) == (420, 210)
