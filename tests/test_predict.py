"""Predict: the model folder layouts, the network against an independent numpy reference, the notebook's outputs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile

from imagebinner.io.deepstorm_model import read_model
from imagebinner.io.movie import write_tif
from imagebinner.simulate.model import LAYOUTS, random_blocks, write_model_folder
from imagebinner.tools.predict import Predict
from imagebinner.tools.predict.network import make_session, normalize_frames, run_network
from imagebinner.tools.relocalize import find_maxima

EPS = 1e-3


# -- an independent numpy reference of the notebook's buildModel ----------------------------------------------
def _conv_same(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Keras Conv2D 'same', stride 1, no bias; x (n, h, w, c), kernel (kh, kw, c, f): cross-correlation."""
    kh, kw = kernel.shape[:2]
    padded = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))  # n, h, w, c, kh, kw
    return np.einsum("nhwcij,ijcf->nhwf", windows, kernel.astype(np.float64))


def reference_density(model, camera_frames: np.ndarray) -> np.ndarray:
    """The notebook's prediction of (n, M, N) raw frames: project_01, normalize_im, np.kron, network, negatives 0."""
    meta = model.metadata
    out = []
    for frame in camera_frames.astype(np.float64):
        p = (frame - frame.min()) / (frame.max() - frame.min())
        x = np.kron((p - meta.mean_test) / meta.std_test, np.ones((meta.upsampling, meta.upsampling)))
        x = x[None, :, :, None]
        for i, b in enumerate(model.blocks, start=1):
            if i in (5, 6, 7):
                x = x.repeat(2, axis=1).repeat(2, axis=2)
            x = _conv_same(x, b.kernel)
            x = b.gamma * (x - b.moving_mean) / np.sqrt(b.moving_variance.astype(np.float64) + b.epsilon) + b.beta
            x = np.maximum(x, 0)
            if i in (1, 2, 3):
                n, h, w, c = x.shape
                x = x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
        y = _conv_same(x, model.prediction_kernel)[0, :, :, 0]
        y[y < 0] = 0
        out.append(y)
    return np.array(out)


@pytest.fixture(scope="module")
def weights():
    return random_blocks(seed=5, epsilon=EPS)


@pytest.fixture(scope="module", params=LAYOUTS)
def model_folder(request, tmp_path_factory, weights):
    folder = tmp_path_factory.mktemp(request.param)
    return write_model_folder(folder, *weights, upsampling=4, l2=50.0, mean_test=0.31, std_test=0.27,
                              layout=request.param)


def test_each_layout_reads_the_known_weights_and_matches_the_numpy_reference(model_folder, weights):
    model = read_model(model_folder)
    blocks, prediction = weights
    assert model.layout in LAYOUTS and len(model.blocks) == 7
    for got, want in zip(model.blocks, blocks):
        np.testing.assert_array_equal(got.kernel, want.kernel)
        np.testing.assert_array_equal(got.moving_variance, want.moving_variance)
        assert got.epsilon == pytest.approx(EPS)
    np.testing.assert_array_equal(model.prediction_kernel, prediction)
    assert (model.metadata.upsampling, model.metadata.l2_weighting_factor) == (4, 50.0)
    frames = np.random.default_rng(1).integers(90, 400, (3, 6, 4)).astype(np.uint16)
    normalized, n_constant = normalize_frames(frames, model.metadata.mean_test, model.metadata.std_test)
    session, provider = make_session(model, "cpu")
    got = run_network(session, normalized)
    want = reference_density(model, frames)
    assert provider == "CPUExecutionProvider" and n_constant == 0
    assert got.shape == (3, 24, 16) and got.dtype == np.float32
    assert np.count_nonzero(want) > 100 and np.count_nonzero(want == 0) > 0  # the ReLU cut something
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5 * want.max())


# -- the tool -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    path = tmp_path_factory.mktemp("movie") / "cells.tif"
    rng = np.random.default_rng(7)
    frames = rng.poisson(120, (5, 6, 4)).astype(np.uint16)
    frames[:, 2, 1] += np.array([900, 0, 400, 800, 50], np.uint16)
    write_tif(path, frames, pixel_size=100.0)
    return path, frames


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def _resolution(path: Path) -> tuple[int, float, str]:
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        x = page.tags["XResolution"].value
        return int(page.tags["ResolutionUnit"].value), x[0] / x[1], str(page.dtype)


def test_predict_writes_the_notebook_files_with_its_numbers(model_folder, movie, tmp_path):
    path, frames = movie
    out = tmp_path / "out"
    tool = Predict(model_folder=str(model_folder), movies=[str(path)], output_folder=str(out), threshold=0.0001,
                   batch_size=2)
    written = tool.run()
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["Localizations_cells_avg.csv", "Predicted_cells.tif", "Widefield_cells.tif",
                            "Predicted_stacked_cells.tif", "model_metadata.mat"])
    assert sorted(p.name for p in written) == names
    model = read_model(model_folder)
    want = reference_density(model, frames)
    stacked = tifffile.imread(out / "Predicted_stacked_cells.tif")
    assert stacked.shape == (5, 24, 16) and stacked.dtype == np.float32
    np.testing.assert_allclose(stacked, want, rtol=2e-4, atol=2e-5 * want.max())
    np.testing.assert_allclose(tifffile.imread(out / "Predicted_cells.tif"), stacked.sum(axis=0), rtol=1e-5)
    widefield = tifffile.imread(out / "Widefield_cells.tif")
    np.testing.assert_array_equal(widefield, np.kron(frames.sum(axis=0), np.ones((4, 4))).astype(np.float32))
    for name in ("Predicted_cells.tif", "Widefield_cells.tif", "Predicted_stacked_cells.tif"):
        unit, xres, dtype = _resolution(out / name)
        assert (unit, dtype) == (3, "float32") and xres == pytest.approx(1e7 / 25.0)  # pixels per cm, ps_hr 25 nm
    rows = _rows(out / "Localizations_cells_avg.csv")
    assert rows[0] == ["frame", "x [nm]", "y [nm]", "confidence [a.u]"]
    expected = []
    for k, page in enumerate(stacked):
        r, c, conf = find_maxima(page, 0.0001, 50.0, True, 3)
        expected += [(k + 1, x, y, cf) for x, y, cf in zip(c * 25.0, r * 25.0, conf)]
    got = [(int(a), float(b), float(c), float(d)) for a, b, c, d in rows[1:]]
    assert len(got) == len(expected) > 5
    assert [g[0] for g in got] == [e[0] for e in expected] and min(g[0] for g in got) == 1
    np.testing.assert_allclose(np.array(got)[:, 1:], np.array(expected)[:, 1:], rtol=1e-6)


def test_batches_do_not_change_the_result_and_outputs_are_not_replaced(model_folder, movie, tmp_path):
    path, _ = movie
    runs = {}
    for batch in (1, 5):
        out = tmp_path / f"b{batch}"
        Predict(model_folder=str(model_folder), movies=[str(path)], output_folder=str(out), batch_size=batch,
                local_average=False).run()
        stacked = tifffile.imread(out / "Predicted_stacked_cells.tif")
        runs[batch] = (out / "Localizations_cells_max.csv").read_text(), stacked
    assert runs[1][0] == runs[5][0]
    np.testing.assert_array_equal(runs[1][1], runs[5][1])
    again = Predict(model_folder=str(model_folder), movies=[str(path)], output_folder=str(tmp_path / "b1"))
    with pytest.raises(Exception, match="exists already"):
        again.run()
    again.overwrite = True
    again.run()


def test_max_frames_predicts_the_first_frames_exactly_as_the_whole_movie_does(model_folder, movie, tmp_path):
    path, _ = movie
    whole, first = tmp_path / "whole", tmp_path / "first"
    Predict(model_folder=str(model_folder), movies=[str(path)], output_folder=str(whole), threshold=0.0001).run()
    tool = Predict(model_folder=str(model_folder), movies=[str(path)], output_folder=str(first), threshold=0.0001,
                   max_frames=2, batch_size=3)
    tool.run()
    stacked = tifffile.imread(first / "Predicted_stacked_cells.tif")
    np.testing.assert_array_equal(stacked, tifffile.imread(whole / "Predicted_stacked_cells.tif")[:2])
    rows = _rows(first / "Localizations_cells_avg.csv")[1:]
    whole_rows = _rows(whole / "Localizations_cells_avg.csv")[1:]
    assert rows == [r for r in whole_rows if int(r[0]) <= 2] and rows
    assert tool.summary["movies"][0]["frames"] == 2 and tool.summary["movies"][0]["movie_frames"] == 5
    assert tool.progress == tool.n_steps == 2


def test_a_keras3_file_without_config_reads_by_keras_group_order(tmp_path, weights):
    """Without config.json (epsilon unknown: Keras' default), the layers are Keras' container names in order:
    conv2d, conv2d_1, ..., conv2d_7 (the 1x1 prediction) and batch_normalization, batch_normalization_1, ..."""
    import zipfile

    folder = write_model_folder(tmp_path / "m", *weights, upsampling=8, layout="keras3")
    path = folder / "best.weights.keras"
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist() if n != "config.json"}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    model = read_model(folder)
    for got, want in zip(model.blocks, weights[0]):
        np.testing.assert_array_equal(got.kernel, want.kernel)
        np.testing.assert_array_equal(got.beta, want.beta)
    np.testing.assert_array_equal(model.prediction_kernel, weights[1])
