"""Re-localization from a stacked density: planted peaks, thresholds, conventions, lazy TIF reading."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from imagebinner.errors import ParameterError
from imagebinner.io import LocMeta, LocTable, read_locs, write_tif
from imagebinner.simulate.prediction import make_prediction_folder
from imagebinner.tools.matching import match
from imagebinner.tools.relocalize import Relocalize, find_maxima, notebook_default_l2, relocalize_stack

L2 = 100.0


def gaussian_frame(shape, peaks, sigma=1.0):
    """Sum of Gaussians with given (row, col, amplitude), sampled at pixel centres (integer indices)."""
    r, c = np.mgrid[: shape[0], : shape[1]]
    img = np.zeros(shape)
    for pr, pc, a in peaks:
        img += a * np.exp(-((r - pr) ** 2 + (c - pc) ** 2) / (2 * sigma**2))
    return img


PLANTED = [(10.3, 12.0, 80.0), (30.0, 40.7, 150.0), (50.6, 20.4, 40.0), (0.0, 63.0, 60.0)]  # last one at the border


def test_max_variant_recovers_integer_peaks_and_values():
    img = gaussian_frame((64, 64), PLANTED)
    rows, cols, conf = find_maxima(img, threshold=0.1, l2_weighting_factor=L2, local_average=False)
    got = sorted(zip(rows.tolist(), cols.tolist()))
    want = sorted((round(r), round(c)) for r, c, _ in PLANTED)
    assert got == [(float(a), float(b)) for a, b in want]
    for r, c, k in zip(rows.astype(int), cols.astype(int), conf):
        assert k == pytest.approx(img[r, c] / L2)


def test_local_average_is_the_3x3_centre_of_gravity_and_sum():
    img = gaussian_frame((64, 64), PLANTED)
    rows, cols, conf = find_maxima(img, threshold=0.1, l2_weighting_factor=L2, local_average=True)
    assert len(rows) == len(PLANTED)
    padded = np.pad(img, 1)
    for r, c, k in zip(rows, cols, conf):
        pr, pc = int(round(r)), int(round(c))
        win = padded[pr : pr + 3, pc : pc + 3]  # 3x3 around (pr, pc), zeros outside
        off = np.array([-1.0, 0.0, 1.0])
        assert k == pytest.approx(win.sum() / L2)
        assert r == pytest.approx(pr + (win.sum(axis=1) @ off) / win.sum())
        assert c == pytest.approx(pc + (win.sum(axis=0) @ off) / win.sum())
    # interior peaks: the centre of gravity lies between the peak pixel and the planted sub-pixel position
    # (a 3x3 CoG under-estimates the offset); at the border the zero padding pulls it inwards, as in the notebook
    for pr, pc, _ in PLANTED[:3]:
        i = np.argmin((rows - pr) ** 2 + (cols - pc) ** 2)
        for got, planted in ((rows[i], pr), (cols[i], pc)):
            lo, hi = sorted((round(planted), planted))
            assert lo - 1e-9 <= got <= hi + 1e-9
            assert abs(got - planted) < 0.2
    i = np.argmin((rows - 0.0) ** 2 + (cols - 63.0) ** 2)
    assert rows[i] > 0 and cols[i] < 63  # border peak pulled inwards


def test_threshold_is_value_greater_than_threshold_times_l2():
    img = np.zeros((9, 9))
    img[2, 2] = 10.0  # == 0.1 * L2: not greater, dropped
    img[6, 6] = 10.0001
    rows, cols, _ = find_maxima(img, 0.1, L2, local_average=False)
    assert list(zip(rows, cols)) == [(6.0, 6.0)]
    # a plateau of equal values: every pixel equal to its neighbourhood maximum counts (as max-pooling does)
    img = np.zeros((9, 9))
    img[4, 4:6] = 50.0
    rows, cols, _ = find_maxima(img, 0.1, L2, local_average=False)
    assert len(rows) == 2


def test_relocalize_stack_reads_pages_lazily_and_converts_to_canonical(tmp_path):
    ps_hr = 12.5
    pages = np.stack(
        [gaussian_frame((40, 48), [(5.0, 7.0, 90.0)]), np.zeros((40, 48)), gaussian_frame((40, 48), [(20.0, 30.0, 70.0), (33.0, 9.0, 55.0)])]
    )
    path = tmp_path / "Predicted_stacked_m.tif"
    tifffile.imwrite(path, pages, photometric="minisblack")  # float64, no resolution tags (patched notebook)
    with pytest.raises(ParameterError, match="hr pixel size unknown"):
        relocalize_stack(path)
    table = relocalize_stack(path, threshold=0.1, local_average=False, pixel_size_hr=ps_hr, upsampling=8)
    assert table.frame.tolist() == [0, 2, 2]  # 0-based page index; the empty page gives nothing
    assert table.x.tolist() == [7 * ps_hr, 30 * ps_hr, 9 * ps_hr]  # x = column * ps_hr, no +0.5
    assert table.y.tolist() == [5 * ps_hr, 20 * ps_hr, 33 * ps_hr]
    assert table.meta.n_frames == 3 and table.meta.pixel_size == 100.0 and table.meta.image_shape == (5, 6)
    # tags, when present, give the hr pixel size
    write_tif(tmp_path / "tagged.tif", pages, pixel_size=ps_hr, dtype="float32")
    tagged = relocalize_stack(tmp_path / "tagged.tif", local_average=True)
    assert len(tagged) == 3 and tagged.x[0] == pytest.approx(7 * ps_hr, abs=1e-3)
    tool = Relocalize(stacked_path=str(path), pixel_size_hr=ps_hr, local_average=False, l2_weighting_factor=L2)
    out = tool.run()
    assert len(out) == 3 and tool.progress == tool.n_steps == 3 and tool.result is out
    # the shared re-localization settings: a higher threshold keeps only the peaks above it × L2 (90 and 70 > 60)
    strict = Relocalize(stacked_path=str(path), pixel_size_hr=ps_hr, local_average=False, relocalize_threshold=0.6,
                        l2_weighting_factor=L2)
    assert strict.run().x.tolist() == [7 * ps_hr, 30 * ps_hr]
    # without L2: the notebook's default automatic normalization for the upsampling (x8: 170.2 > 90 / 0.6 ...)
    default = Relocalize(stacked_path=str(path), pixel_size_hr=ps_hr, local_average=False, relocalize_threshold=0.45,
                         upsampling=8)
    assert default.run().x.tolist() == [7 * ps_hr]  # 90 > 0.45 * 170.2 = 76.6 > 70
    assert "170.2" in default.result.meta.conversion and "notebook default" in default.result.meta.conversion
    assert strict.settings_record()["relocalize_threshold"] == 0.6 and strict.result.meta.pixel_size is None


@pytest.mark.parametrize("local_average", [True, False])
def test_relocalizing_the_simulated_stack_reproduces_the_csv(tmp_path, local_average):
    rng = np.random.default_rng(2)
    n_frames, shape, ps = 6, (24, 24), 100.0
    write_tif(tmp_path / "m.tif", rng.poisson(50, (n_frames, *shape)).astype(np.uint16), pixel_size=ps)
    # sparse truth: blobs never overlap (grid 600 nm apart)
    gx, gy = np.meshgrid(np.arange(300.0, 2400.0, 600.0), np.arange(300.0, 2400.0, 600.0))
    n = gx.size
    truth = LocTable(
        {"frame": np.repeat(np.arange(n_frames), n), "x": np.tile(gx.ravel() + 13.0, n_frames),
         "y": np.tile(gy.ravel() - 7.0, n_frames)},
        LocMeta(pixel_size=ps, image_shape=shape, n_frames=n_frames),
    )
    paths = make_prediction_folder(
        tmp_path / "pred", truth, tmp_path / "m.tif", upsampling=8, seed=4, false_positive_fraction=0.0,
        local_average=local_average, jitter_nm=0.0,
    )
    csv = read_locs(paths["localizations"])
    re_found = relocalize_stack(paths["stacked"], 0.1, 100.0, local_average, pixel_size_hr=ps / 8)
    assert len(re_found) == len(csv)
    res = match(csv, re_found, tolerance=1.0)
    assert res.tp == len(csv)
    assert np.max(np.hypot(res.dx, res.dy)) < 1e-3  # float32 rounding in the stack only
    np.testing.assert_allclose(re_found["confidence"][res.pred_index], csv["confidence"][res.gt_index], rtol=1e-5)


def test_notebook_default_l2_is_its_automatic_normalization_formula():
    # section 3.2: 100 / sqrt(min(n_locs_per_patch, 7) * 8**2 / (u**2 * 20.28)), min = 7 at usual densities
    for u, expected in ((4, 85.1), (8, 170.2), (16, 340.4)):
        assert notebook_default_l2(u) == pytest.approx(expected, abs=0.05)
        assert notebook_default_l2(u) == pytest.approx(100 / np.sqrt(7 * 64 / (u**2 * 20.28)))


def test_maxima_hand_computed_ties_borders_and_neighbourhoods():
    img = np.zeros((7, 8), np.float32)
    img[0, 0] = 5.0  # corner: outside the image never wins
    img[3, 3] = img[3, 4] = 4.0  # a tie: both equal their neighbourhood maximum, both detected
    img[5, 6] = 3.0  # 2 px from the tie: a maximum of 3x3, not of 5x5 (the tie is within 2 px)
    img[6, 7] = 1.0  # corner, next to the 3.0: not a maximum
    rows, cols, conf = find_maxima(img, 0.01, 10.0, local_average=False, neighborhood_size=3)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 0), (3, 3), (3, 4), (5, 6)]  # row-major as tf.where
    assert conf.tolist() == pytest.approx([0.5, 0.4, 0.4, 0.3])
    rows, cols, _ = find_maxima(img, 0.01, 10.0, local_average=False, neighborhood_size=5)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 0), (3, 3), (3, 4)]
    # neighbourhood 1: every pixel above the threshold
    assert len(find_maxima(img, 0.01, 10.0, local_average=False, neighborhood_size=1)[0]) == 5
    # an even neighbourhood pads like TensorFlow's 'same' pooling: the window reaches one pixel right/down
    # (offsets 0..1 for 2): the 1.0 at (6, 7) does not see the 3.0 up-left of it and counts (it would not with
    # offsets -1..0, the other possible choice)
    rows, cols, _ = find_maxima(img, 0.01, 10.0, local_average=False, neighborhood_size=2)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 0), (3, 3), (3, 4), (5, 6), (6, 7)]
    # local averaging at the border: zeros outside; the tie's CoG is half a pixel towards the twin
    rows, cols, conf = find_maxima(img, 0.01, 10.0, local_average=True, neighborhood_size=3)
    assert (rows[0], cols[0], conf[0]) == (0.0, 0.0, pytest.approx(0.5))
    assert (rows[1], cols[1]) == (3.0, pytest.approx(3.5)) and (rows[2], cols[2]) == (3.0, pytest.approx(3.5))
    assert conf[1] == pytest.approx(0.8)
    # the threshold is compared in float32 like the notebook's layer: 0.1 * 30 rounds to the stored 3.0
    one = np.zeros((3, 3), np.float32)
    one[1, 1] = np.float32(0.1) * np.float32(30.0)
    assert len(find_maxima(one, 0.1, 30.0, local_average=False)[0]) == 0  # not greater


def test_neighborhood_size_is_a_setting_of_relocalize_and_the_review():
    from imagebinner.tools.review import PredictionReview

    assert "neighborhood_size" in Relocalize.settings and "neighborhood_size" in PredictionReview.settings
    with pytest.raises(ValueError):
        Relocalize(neighborhood_size=0)
