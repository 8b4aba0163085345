"""Predict: bad inputs give one-line errors and write nothing; the CLI; simulate -> predict -> review round trip."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from imagebinner.cli import main
from imagebinner.errors import FormatError, ImageBinnerError, ParameterError
from imagebinner.io.deepstorm_model import read_model
from imagebinner.io.movie import write_tif
from imagebinner.simulate import simulate_measurement, write_measurement
from imagebinner.simulate.model import detector_blocks, random_blocks, write_model_folder
from imagebinner.tools.predict import Predict
from imagebinner.tools.review import PredictionReview


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    blocks, prediction = random_blocks(seed=2)
    write_model_folder(d / "model", blocks, prediction, upsampling=4, l2=80.0)
    write_tif(d / "m.tif", np.random.default_rng(0).poisson(100, (3, 4, 6)).astype(np.uint16), pixel_size=100.0)
    write_tif(d / "odd.tif", np.ones((2, 5, 6), np.uint16), pixel_size=100.0)  # 5 rows: 20 at x4, not / 8
    write_tif(d / "untagged.tif", np.ones((2, 4, 6), np.uint16))
    return {"dir": d, "blocks": blocks, "prediction": prediction}


def _model_copy(good, tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(good["dir"] / "model", folder)
    return folder


def _bad_models(good, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Broken model folders and the error each must give."""
    out = {}
    no_meta = _model_copy(good, tmp_path, "no_meta")
    (no_meta / "model_metadata.mat").unlink()
    out["missing metadata"] = (no_meta, r"model_metadata.mat: model metadata not found")
    no_weights = _model_copy(good, tmp_path, "no_weights")
    (no_weights / "best.weights.keras").unlink()
    out["missing weights"] = (no_weights, r"no_weights: no weights in the model folder \(expected best.weights.keras")
    corrupt = _model_copy(good, tmp_path, "corrupt")
    (corrupt / "best.weights.keras").write_bytes(b"PK\x03\x04 not really a zip" * 10)
    out["corrupt weights"] = (corrupt, r"best.weights.keras: cannot read the weights")
    bad_meta = _model_copy(good, tmp_path, "bad_meta")
    (bad_meta / "model_metadata.mat").write_bytes(b"MATLAB 5.0 MAT-file garbage")
    out["corrupt metadata"] = (bad_meta, r"model_metadata.mat: cannot read as a MATLAB file")
    blocks = list(good["blocks"])
    b = blocks[1]
    blocks[1] = dataclasses.replace(b, kernel=b.kernel[..., :63], gamma=b.gamma[:63], beta=b.beta[:63],
                                    moving_mean=b.moving_mean[:63], moving_variance=b.moving_variance[:63])
    wrong = write_model_folder(tmp_path / "wrong_shape", tuple(blocks), good["prediction"], upsampling=4,
                               layout="keras2-model")
    out["mismatched shapes"] = (wrong, r"weights_best.hdf5: layer conv-CNNF2: kernel has shape \(3, 3, 32, 63\), "
                                       r"expected \(3, 3, 32, 64\)")
    six = write_model_folder(tmp_path / "six_blocks", tuple(good["blocks"][:6]), good["prediction"], upsampling=4,
                             layout="keras2-weights")
    out["missing layers"] = (six, r"weights_best.hdf5: 13 weighted layers \(7 conv, 6 batch-norm\) in the wrong order")
    return out


def test_bad_models_give_one_line_errors_and_write_nothing(good, tmp_path):
    for what, (folder, message) in _bad_models(good, tmp_path).items():
        out = tmp_path / f"out_{folder.name}"
        tool = Predict(model_folder=str(folder), movies=[str(good["dir"] / "m.tif")], output_folder=str(out))
        with pytest.raises(FormatError, match=message) as info:
            tool.run()
        assert "\n" not in str(info.value), what
        assert not out.exists(), what


def test_bad_movies_and_settings_give_one_line_errors_and_write_nothing(good, tmp_path):
    d, out = good["dir"], tmp_path / "out"
    cases = [
        ([str(d / "missing.tif")], FormatError, r"missing.tif: movie file not found"),
        ([str(d / "m.tif"), str(d / "odd.tif")], ParameterError,
         r"odd.tif: frames of 6 x 5 px give a 24 x 20 network input at upsampling 4, not divisible by 8"),
        ([str(d / "untagged.tif")], ParameterError, r"untagged.tif: pixel size unknown .*set pixel_size"),
        ([str(d / "m.tif"), str(d / "m.tif")], ParameterError, r"two movies with the stem 'm'"),
    ]
    for movies, error, message in cases:
        tool = Predict(model_folder=str(d / "model"), movies=movies, output_folder=str(out))
        with pytest.raises(error, match=message):
            tool.run()
        assert not out.exists()
    # predicting into the model folder: its model_metadata.mat is the model's own and is not copied onto itself
    tool = Predict(model_folder=str(d / "model"), movies=[str(d / "m.tif")], output_folder=str(d / "model"))
    assert tool.run()  # the metadata in the model folder is the model's own: not copied onto itself
    for p in tool.written:
        Path(p).unlink()


def test_cli_runs_and_bad_input_exits_2_with_one_line(good, tmp_path, capsys):
    d = good["dir"]
    assert main(["predict", str(d / "model"), str(d / "m.tif"), "-o", str(tmp_path / "ok"), "--no-local-average",
                 "--batch-size", "2", "--neighborhood-size", "5", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "upsampling 4, L2 80, on CPUExecutionProvider" in text and "3 frames" in text
    assert (tmp_path / "ok" / "Localizations_m_max.csv").is_file()
    code = main(["predict", str(d / "model"), str(d / "odd.tif"), "-o", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("imagebinner: error: ")
    assert "not divisible by 8" in err and not (tmp_path / "bad").exists()
    code = main(["predict", str(d / "model"), str(d / "untagged.tif"), "-o", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert code == 2 and "set --pixel-size" in err and err.count("\n") == 1
    code = main(["predict", str(d / "model"), str(d / "m.tif"), "-o", str(tmp_path / "ok"), "--no-local-average"])
    err = capsys.readouterr().err
    assert code == 2 and "exists already (set --overwrite to replace it)" in err


def test_round_trip_simulate_predict_review(tmp_path):
    """A model built from a known kernel (a spot detector) finds simulated emitters: the review opens the predict
    output folder directly (L2 and upsampling from the copied model_metadata.mat) and recalls most of the truth."""
    blocks, prediction = detector_blocks(offset=0.05, scale=100.0)
    write_model_folder(tmp_path / "model", blocks, prediction, upsampling=8, l2=100.0, layout="keras3")
    m = simulate_measurement(n_frames=8, height=24, width=24, emitters_per_frame=3, n_sites=2000, psf_sigma=110,
                             photons=3000, seed=2)
    write_measurement(m, tmp_path / "m" / "movie.tif", tmp_path / "m" / "movie_locs.csv", loc_format="thunderstorm")
    Predict(model_folder=str(tmp_path / "model"), movies=[str(tmp_path / "m" / "movie.tif")],
            output_folder=str(tmp_path / "out"), threshold=0.05).run()
    review = PredictionReview(folder=str(tmp_path / "out"), ground_truth=str(tmp_path / "m" / "movie_locs.csv"),
                              movie=str(tmp_path / "m" / "movie.tif"), tolerance=100.0).load()
    assert review.model_metadata["l2_weighting_factor"] == 100.0 and review.upsampling_used == 8
    assert review.metrics["n_gt"] >= 15
    assert review.metrics["recall"] >= 0.75
    assert max(review.sweep["f1"]) >= 0.7  # a confidence threshold separates most false detections
    assert review.metrics["rmse_nm"] < 70  # the detector peaks 3 of 8 hr pixels into the camera pixel
    # the stacked densities re-localize to the same localizations as the CSV
    again = PredictionReview(folder=str(tmp_path / "out"), source="stacked", relocalize_threshold=0.05).load()
    assert again.l2_used == 100.0 and len(again.predictions) == len(review.predictions)
    np.testing.assert_allclose(np.sort(again.predictions.x), np.sort(review.predictions.x), atol=1e-3)


def test_every_error_is_an_imagebinner_error_naming_the_file(good, tmp_path):
    folder, _ = _bad_models(good, tmp_path)["corrupt weights"]
    with pytest.raises(ImageBinnerError) as info:
        read_model(folder)
    assert info.value.path == folder / "best.weights.keras"


def test_frames_are_read_batch_by_batch_never_the_whole_movie(good, tmp_path, monkeypatch):
    from imagebinner.io.movie import Movie

    calls = []
    frames = Movie.frames
    monkeypatch.setattr(Movie, "frames", lambda self, start=0, stop=None: calls.append((start, stop))
                        or frames(self, start, stop))
    monkeypatch.setattr(Movie, "read", lambda self: pytest.fail("the whole movie was read"))
    tool = Predict(model_folder=str(good["dir"] / "model"), movies=[str(good["dir"] / "m.tif")],
                   output_folder=str(tmp_path / "o"), batch_size=2)
    seen = []
    tool.param.watch(lambda e: seen.append(e.new), "progress")
    tool.run()
    assert calls == [(0, 2), (2, 3)]
    assert seen[-3:] == [1, 2, 3] and tool.n_steps == 3  # progress: one step per frame


def test_cuda_asked_without_a_cuda_provider_is_a_one_line_error(good, tmp_path):
    from imagebinner.tools.predict.network import PROVIDERS, available_providers

    if PROVIDERS["cuda"] in available_providers():
        pytest.skip("onnxruntime has a CUDA provider here")
    tool = Predict(model_folder=str(good["dir"] / "model"), movies=[str(good["dir"] / "m.tif")],
                   output_folder=str(tmp_path / "o"), device="cuda")
    with pytest.raises(ParameterError, match="device is 'cuda' but onnxruntime has no CUDA provider"):
        tool.run()
    assert not (tmp_path / "o").exists()


def test_a_constant_frame_is_counted_and_does_not_poison_the_sums(good, tmp_path):
    frames = np.random.default_rng(3).poisson(100, (3, 4, 6)).astype(np.uint16)
    frames[1] = 7
    write_tif(tmp_path / "c.tif", frames, pixel_size=100.0)
    tool = Predict(model_folder=str(good["dir"] / "model"), movies=[str(tmp_path / "c.tif")],
                   output_folder=str(tmp_path / "o"))
    tool.run()
    assert tool.summary["movies"][0]["constant_frames"] == 1
    import tifffile

    assert np.isfinite(tifffile.imread(tmp_path / "o" / "Predicted_c.tif")).all()


def test_several_movies_and_runs_share_one_output_folder(good, tmp_path):
    d, out = good["dir"], tmp_path / "out"
    write_tif(tmp_path / "n.tif", np.random.default_rng(5).poisson(90, (2, 4, 6)).astype(np.uint16), pixel_size=100.0)
    first = Predict(model_folder=str(d / "model"), movies=[str(d / "m.tif"), str(tmp_path / "n.tif")],
                    output_folder=str(out))
    first.run()
    assert [s["frames"] for s in first.summary["movies"]] == [3, 2]
    # a later run with the same model adds its files; the identical model_metadata.mat is left as it is
    write_tif(tmp_path / "k.tif", np.random.default_rng(6).poisson(90, (2, 4, 6)).astype(np.uint16), pixel_size=100.0)
    later = Predict(model_folder=str(d / "model"), movies=[str(tmp_path / "k.tif")], output_folder=str(out))
    assert "model_metadata.mat" not in {Path(p).name for p in later.run()}
    review = PredictionReview(folder=str(out), stem="n", source="stacked").load()
    assert review.n_frames == 2 and review.l2_used == 80.0 and review.upsampling_used == 4
    with pytest.raises(FormatError, match="several predictions in one folder"):
        PredictionReview(folder=str(out)).load()
    # another model's metadata is not replaced silently
    other = write_model_folder(tmp_path / "other", *random_blocks(seed=9), upsampling=4, l2=60.0)
    shutil.copy(tmp_path / "n.tif", tmp_path / "z.tif")
    with pytest.raises(Exception, match="model_metadata.mat: exists already"):
        Predict(model_folder=str(other), movies=[str(tmp_path / "z.tif")], output_folder=str(out)).run()
    assert not (out / "Predicted_z.tif").exists()
