"""PredictionReview: file discovery, metrics at a threshold, sweep, density, histogram, save, CLI."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest

from imagebinner.cli import main
from imagebinner.errors import FormatError, OutputExistsError, ParameterError
from imagebinner.io import LocMeta, LocTable, read_locs, write_locs, write_tif
from imagebinner.simulate.prediction import make_prediction_folder
from imagebinner.tools.matching import Matcher, naive_sweep
from imagebinner.io.predictions import find_prediction_files
from imagebinner.tools.review import PredictionReview

PS, U, SHAPE, N_FRAMES = 100.0, 8, (24, 32), 12


@pytest.fixture(scope="module")
def measurement(tmp_path_factory):
    d = tmp_path_factory.mktemp("review")
    rng = np.random.default_rng(7)
    write_tif(d / "meas.tif", rng.poisson(80, (N_FRAMES, *SHAPE)).astype(np.uint16), pixel_size=PS)
    n = 240
    frames = rng.integers(0, N_FRAMES - 1, n)  # the last frame stays empty
    truth = LocTable(
        {"frame": frames, "x": rng.uniform(0, SHAPE[1] * PS, n), "y": rng.uniform(0, SHAPE[0] * PS, n)},
        LocMeta(pixel_size=PS, image_shape=SHAPE, n_frames=N_FRAMES),
    )
    write_locs(truth, d / "truth.csv")  # DeepSTORM training CSV
    paths = make_prediction_folder(d / "pred", truth, d / "meas.tif", upsampling=U, seed=3)
    return {"dir": d, "truth": truth, "paths": paths, "pred": d / "pred"}


def test_demo_folder_layout_and_tags(measurement):
    from imagebinner.io import open_movie

    names = sorted(p.name for p in measurement["pred"].iterdir())
    assert names == [
        "Localizations_meas_avg.csv", "Predicted_meas.tif", "Predicted_stacked_meas.tif", "Widefield_meas.tif"
    ]
    with open_movie(measurement["paths"]["predicted"]) as m:
        assert m.shape == (SHAPE[0] * U, SHAPE[1] * U) and m.pixel_size == pytest.approx(PS / U)
    with open_movie(measurement["paths"]["stacked"]) as m:
        assert m.n_frames == N_FRAMES and m.pixel_size is None
    first_line = measurement["paths"]["localizations"].read_text().splitlines()[0]
    assert first_line == "frame,x [nm],y [nm],confidence [a.u]"
    pred = read_locs(measurement["paths"]["localizations"])
    assert pred["confidence"].max() > 1.0  # like the notebook's _avg values


def test_find_files_errors_and_exact_patterns(tmp_path, measurement):
    folder = tmp_path / "p"
    shutil.copytree(measurement["pred"], folder)
    # saved/filtered files and look-alikes are not taken for predictions
    (folder / "Localizations_meas_avg_filtered.csv").write_text("x")
    (folder / "my_Localizations_meas_max.csv").write_text("x")
    found = find_prediction_files(folder)
    assert found["stem"] == "meas" and found["variant"] == "avg"
    assert found["stacked"].name == "Predicted_stacked_meas.tif" and found["predicted"].name == "Predicted_meas.tif"
    # both _avg and _max: an error naming both
    (folder / "Localizations_meas_max.csv").write_text("frame,x [nm],y [nm],confidence [a.u]\n")
    with pytest.raises(FormatError, match="Localizations_meas_avg.csv and Localizations_meas_max.csv"):
        find_prediction_files(folder)
    (folder / "Localizations_meas_max.csv").unlink()
    # a second stem: ambiguity listing both, resolved by `stem`
    shutil.copy(folder / "Localizations_meas_avg.csv", folder / "Localizations_other_max.csv")
    with pytest.raises(FormatError, match=r"several predictions.*meas: .*other: Localizations_other_max.csv"):
        find_prediction_files(folder)
    assert find_prediction_files(folder, "other")["variant"] == "max"
    with pytest.raises(FormatError, match="no prediction files for stem 'nope'"):
        find_prediction_files(folder, "nope")
    # none at all
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "Localizations.csv").write_text("x")
    with pytest.raises(FormatError, match="no DeepSTORM prediction files"):
        find_prediction_files(empty)
    with pytest.raises(FormatError, match="not found"):
        find_prediction_files(tmp_path / "missing")


def test_review_metrics_threshold_sweep_density_histogram(measurement):
    review = PredictionReview(
        folder=str(measurement["pred"]), ground_truth=str(measurement["dir"] / "truth.csv"),
        movie=str(measurement["dir"] / "meas.tif"),
    ).load()
    pred = read_locs(measurement["paths"]["localizations"])
    truth = measurement["truth"]
    assert review.upsampling_used == U and review.camera_pixel_size == PS
    assert review.pixel_size_hr == pytest.approx(PS / U) and review.n_frames == N_FRAMES
    assert review.hr_shape == (SHAPE[0] * U, SHAPE[1] * U) and review.image_shape == SHAPE
    # threshold 0 keeps all; metrics equal a from-scratch matching
    ref = Matcher(truth, pred, 100.0).match().metrics
    for k in ("tp", "fp", "fn", "n_gt", "n_pred"):
        assert review.metrics[k] == ref[k]
    assert review.metrics["jaccard"] == pytest.approx(ref["jaccard"])
    assert 0.7 < review.metrics["jaccard"] < 0.95 and 20 < review.metrics["rmse_nm"] < 40
    # changing the threshold: filtered table, metrics and per-frame metrics follow
    t = float(np.quantile(pred["confidence"], 0.3))
    review.threshold = t
    kept = pred["confidence"] >= t
    assert len(review.filtered) == int(kept.sum())
    ref = naive_sweep(truth, pred, 100.0, [t])
    assert review.metrics["tp"] == ref["tp"][0] and review.metrics["threshold"] == t
    assert review.metrics["rmse_nm"] == pytest.approx(ref["rmse_nm"][0], rel=1e-10)
    fm = review.frame_metrics
    assert len(fm["frame"]) == N_FRAMES and fm["tp"].sum() == review.metrics["tp"]
    assert fm["fn"].sum() == review.metrics["fn"] and fm["n_pred"].sum() == len(review.filtered)
    # sweep over 50 thresholds spanning the confidences, equal to the naive per-threshold matching
    sw = review.sweep
    assert len(sw["threshold"]) == 50
    assert sw["threshold"][0] == pytest.approx(pred["confidence"].min())
    assert sw["threshold"][-1] == pytest.approx(pred["confidence"].max())
    naive = naive_sweep(truth, pred, 100.0, sw["threshold"])
    assert np.array_equal(sw["tp"], naive["tp"]) and np.array_equal(sw["fp"], naive["fp"])
    np.testing.assert_allclose(sw["jaccard"], naive["jaccard"], rtol=1e-12, equal_nan=True)
    best = review.suggested_thresholds
    assert np.nanmax(sw["jaccard"]) == sw["jaccard"][list(sw["threshold"]).index(best["jaccard"])]
    # density per frame, empty frames included, in locs per µm²
    area = SHAPE[0] * SHAPE[1] * (PS / 1000) ** 2
    dens = review.density
    assert len(dens["frame"]) == N_FRAMES and dens["ground_truth"][-1] == 0.0
    np.testing.assert_allclose(dens["ground_truth"], truth.counts_per_frame(N_FRAMES) / area)
    np.testing.assert_allclose(dens["predictions"] * area, review.filtered.counts_per_frame(N_FRAMES))
    # histogram over the data's range (confidences > 1 included)
    hist = review.confidence_histogram
    assert hist["counts"].sum() == len(pred) and hist["edges"][-1] == pytest.approx(pred["confidence"].max())
    # threshold bounds come from the data (above 1)
    assert review.param.threshold.bounds[1] == pytest.approx(pred["confidence"].max())
    assert review.param.threshold.bounds[1] > 1
    # a tolerance change re-matches
    review.tolerance = 10.0
    assert review.metrics["tp"] < ref["tp"][0] and review.metrics["tolerance_nm"] == 10.0


def test_movie_beside_the_predictions_is_found_by_its_exact_name(measurement, tmp_path):
    folder = tmp_path / "p"
    shutil.copytree(measurement["pred"], folder)
    shutil.copy(measurement["dir"] / "meas.tif", folder / "meas_other.tif")  # not the stem: ignored
    review = PredictionReview(folder=str(folder)).load()
    assert review.files["movie"] is None and review.upsampling_used is None and review.camera_pixel_size is None
    shutil.copy(measurement["dir"] / "meas.tif", folder / "meas.tif")
    review = PredictionReview(folder=str(folder)).load()
    assert review.files["movie"] == str(folder / "meas.tif")
    assert review.upsampling_used == U and review.camera_pixel_size == PS and review.image_shape == SHAPE
    review.close()


def test_review_without_truth_and_from_the_stacked_density(measurement, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    from imagebinner.io import open_movie

    with open_movie(measurement["dir"] / "meas.tif") as m:
        for k in range(m.n_frames):
            write_tif(frames / f"meas_frame{k + 1:05d}.tif", m.frame(k), pixel_size=PS)
        frame3 = m.frame(3)
    # the simulated predictions used L2 = 100: the model folder's model_metadata.mat tells the review
    from imagebinner.simulate.model import write_metadata

    (tmp_path / "model").mkdir()
    write_metadata(tmp_path / "model" / "model_metadata.mat", 0.2, 0.1, U, 100.0)
    review = PredictionReview(folder=str(measurement["pred"]), movie=str(frames), source="stacked",
                              model_folder=str(tmp_path / "model")).load()
    assert review.l2_used == 100.0 and review.l2_source == "model_metadata.mat"
    assert review.model_metadata["upsampling"] == U
    assert review.metrics == {} and review.sweep == {} and review.n_frames == N_FRAMES
    assert review.upsampling_used == U and np.array_equal(review.movie_frame(3), frame3)
    csv = read_locs(measurement["paths"]["localizations"])
    assert abs(len(review.predictions) - len(csv)) <= 0.05 * len(csv)  # overlapping blobs may merge or split
    assert review.predictions.meta.pixel_size == PS


def test_save_filtered_atomic_no_overwrite_and_formats(measurement, tmp_path):
    review = PredictionReview(folder=str(measurement["pred"]), threshold=1.0).load()
    out = tmp_path / "filtered.csv"
    review.output_path = str(out)
    review.save()
    back = read_locs(out)
    assert out.read_text().splitlines()[0] == "frame,x [nm],y [nm],confidence [a.u]"
    assert len(back) == len(review.filtered) and back["confidence"].min() >= 1.0
    np.testing.assert_array_equal(back.frame, review.filtered.frame)
    np.testing.assert_allclose(back.x, review.filtered.x)
    with pytest.raises(OutputExistsError):
        review.save()
    review.threshold = 2.0
    review.overwrite = True
    review.save()
    assert len(read_locs(out)) == len(review.filtered)
    review.param.update(output_path=str(tmp_path / "f.csv"), output_format="thunderstorm", overwrite=False)
    review.save()
    assert read_locs(tmp_path / "f.csv").frame.tolist() == review.filtered.frame.tolist()
    review.param.update(output_path=str(measurement["paths"]["localizations"]), output_format="deepstorm-prediction",
                        overwrite=True)
    with pytest.raises(OutputExistsError, match="input of this job"):
        review.save()
    review.param.update(output_path=str(measurement["pred"] / "Localizations_meas_keep_avg.csv"), overwrite=False)
    with pytest.raises(ParameterError, match="taken for a prediction"):
        review.save()


@pytest.mark.filterwarnings("ignore:.*Picasso will drop")
def test_save_never_writes_over_an_input_or_its_sidecar(measurement, tmp_path):
    """Saving onto the ground truth (or its Picasso YAML) or onto the Localizations CSV is refused even with
    overwrite, and nothing is written; so is an output whose sidecar would replace the ground truth's YAML."""
    folder = tmp_path / "pred"
    shutil.copytree(measurement["pred"], folder)
    truth = tmp_path / "truth.hdf5"
    write_locs(measurement["truth"], truth)  # Picasso: truth.hdf5 + truth.yaml
    csv = folder / "Localizations_meas_avg.csv"
    review = PredictionReview(folder=str(folder), ground_truth=str(truth), movie=str(measurement["dir"] / "meas.tif"),
                              overwrite=True).load()
    before = {p: p.read_bytes() for p in (truth, tmp_path / "truth.yaml", csv)}
    for target, fmt in ((truth, "picasso"), (tmp_path / "truth.yaml", "deepstorm"), (csv, "deepstorm-prediction"),
                        (tmp_path / "other" / ".." / "truth.hdf5", "picasso"), (measurement["dir"] / "meas.tif", None)):
        review.param.update(output_path=str(target), output_format=fmt or "thunderstorm")
        with pytest.raises(OutputExistsError, match="input of this job"):
            review.save()
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred", "truth.hdf5", "truth.yaml"]
    # a free name is written
    review.param.update(output_path=str(tmp_path / "kept.hdf5"), output_format="picasso", overwrite=False)
    assert [p.name for p in review.save()] == ["kept.hdf5", "kept.yaml"]
    assert len(read_locs(tmp_path / "kept.hdf5")) == len(review.filtered)


def test_explicit_upsampling_gives_the_hr_pixel_size_and_wins_over_the_images(measurement, tmp_path):
    """Without the summed images (no resolution tags) and without a movie, only an explicit upsampling tells the hr
    pixel size: the field area and the re-localization of the stacked density need it."""
    folder = tmp_path / "p"
    folder.mkdir()
    for role in ("localizations", "stacked"):
        shutil.copy(measurement["paths"][role], folder)
    plain = PredictionReview(folder=str(folder), pixel_size=PS).load()
    assert plain.upsampling_used is None and plain.pixel_size_hr is None and plain.field_area_um2 is None
    assert plain.hr_shape == (SHAPE[0] * U, SHAPE[1] * U) and plain.camera_pixel_size == PS
    given = PredictionReview(folder=str(folder), pixel_size=PS, upsampling=U).load()
    assert given.upsampling_used == U and given.pixel_size_hr == PS / U and given.camera_pixel_size == PS
    assert given.field_area_um2 == pytest.approx(SHAPE[0] * SHAPE[1] * (PS / 1000) ** 2)
    assert np.isfinite(given.density["predictions"]).all() and np.isnan(plain.density["predictions"]).all()
    with pytest.raises(ParameterError, match="hr pixel size unknown .*give pixel_size and upsampling"):
        PredictionReview(folder=str(folder), pixel_size=PS, source="stacked").load()
    stacked = PredictionReview(folder=str(folder), pixel_size=PS, upsampling=U, source="stacked").load()
    tagged = PredictionReview(folder=str(measurement["pred"]), source="stacked").load()
    assert len(stacked.predictions) == len(tagged.predictions) > 0
    np.testing.assert_allclose(stacked.predictions.x, tagged.predictions.x)
    # an explicit upsampling wins over the one the images give, with a warning when they disagree
    with pytest.warns(UserWarning, match=r"hr images are 192x256, the camera image 24x32 at upsampling 4"):
        wrong = PredictionReview(folder=str(measurement["pred"]), movie=str(measurement["dir"] / "meas.tif"),
                                 upsampling=4).load()
    assert wrong.upsampling_used == 4 and wrong.camera_pixel_size == PS and wrong.pixel_size_hr == PS / U


def test_a_shared_setting_edited_once_changes_both_tools_the_cli_help_and_the_provenance(measurement, monkeypatch,
                                                                                        capsys):
    """The re-localization settings are declared once (RelocalizeSettings): editing a default and a doc there
    changes the Relocalize tool, the review, ``imagebinner review --help`` and the review's settings record."""
    from imagebinner.tools.relocalize import Relocalize, RelocalizeSettings

    monkeypatch.setattr(RelocalizeSettings.param.relocalize_threshold, "default", 0.3)
    monkeypatch.setattr(RelocalizeSettings.param.l2_weighting_factor, "doc", "Edited in one place: the L2 factor.")
    with pytest.raises(SystemExit):
        main(["review", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--l2-weighting-factor L2_WEIGHTING_FACTOR Edited in one place: the L2 factor." in help_text
    assert "--relocalize-threshold RELOCALIZE_THRESHOLD" in help_text and "(default: 0.3)" in help_text
    review = PredictionReview(folder=str(measurement["pred"]), source="stacked").load()
    assert review.result_summary()["settings"]["relocalize_threshold"] == 0.3
    tool = Relocalize(stacked_path=str(measurement["paths"]["stacked"]), pixel_size_hr=PS / U, upsampling=U)
    alone = tool.run()
    assert tool.settings_record()["relocalize_threshold"] == 0.3
    np.testing.assert_array_equal(review.predictions.x, alone.x)
    default = PredictionReview(folder=str(measurement["pred"]), source="stacked", relocalize_threshold=0.1).load()
    assert 0 < len(review.predictions) < len(default.predictions)  # the edited default is the one used


def test_cli_json_on_a_generated_prediction_folder(measurement, capsys):
    code = main(["review", str(measurement["pred"]), "--ground-truth", str(measurement["dir"] / "truth.csv"),
                 "--threshold", "0.6", "--tolerance", "80", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("n_gt", "n_pred", "tp", "fp", "fn", "precision", "recall", "f1", "jaccard", "rmse_nm",
                "efficiency", "threshold", "sweep"):
        assert key in data
    assert data["threshold"] == 0.6 and data["tolerance_nm"] == 80.0 and len(data["sweep"]) == 50
    assert set(data["sweep"][0]) >= {"threshold", "jaccard", "f1", "precision", "recall", "rmse_nm"}
    assert data["tp"] + data["fn"] == data["n_gt"] == len(measurement["truth"])
    # without ground truth the metrics are null (NaN never leaks into JSON)
    assert main(["review", str(measurement["pred"]), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["jaccard"] is None and data["sweep"] == [] and data["n_pred"] > 0


def test_cli_text_summary_and_clear_errors(measurement, tmp_path, capsys):
    out = tmp_path / "kept.csv"
    assert main(["review", str(measurement["pred"]), "--ground-truth", str(measurement["dir"] / "truth.csv"),
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tolerance 100 nm" in text and "optimal one-to-one per frame" in text and "max Jaccard at" in text
    assert out.exists()
    bad = tmp_path / "bad"
    shutil.copytree(measurement["pred"], bad)
    shutil.copy(bad / "Localizations_meas_avg.csv", bad / "Localizations_meas_max.csv")
    assert main(["review", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1].split("\r")[-1]  # after the progress bar
    assert err.startswith("imagebinner: error:") and "_avg.csv and Localizations_meas_max.csv" in err


def test_real_picasso_measurement_round_trip(shared_data, tmp_path):
    """Real Picasso localizations + their real movie: a simulated prediction reviewed against the .hdf5 truth.

    Exercises the whole chain of conventions (Picasso px, centre convention -> canonical nm; DeepSTORM 1-based
    frames and hr-index positions): a convention slip would show as a bias of ~65 nm or a collapse of the recall.
    """
    movie = shared_data / "picasso" / "testdata.tif"
    truth_path = shared_data / "picasso" / "testdata_locs.hdf5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the YAML's two pixel sizes disagree (documented in the data README)
        truth = read_locs(truth_path)
        make_prediction_folder(tmp_path / "pred", truth, movie, upsampling=8, seed=1, jitter_nm=10.0,
                               false_positive_fraction=0.0, miss_fraction=0.0, write_stacked=False)
        review = PredictionReview(folder=str(tmp_path / "pred"), movie=str(movie),
                                  ground_truth=str(truth_path), tolerance=50.0).load()
    assert review.camera_pixel_size == 130.0 and review.upsampling_used == 8 and review.n_frames == 1000
    m = review.metrics
    assert m["n_gt"] == len(truth) == 564
    assert m["recall"] > 0.99 and m["precision"] > 0.99
    assert abs(m["bias_x_nm"]) < 3 and abs(m["bias_y_nm"]) < 3 and m["rmse_nm"] < 20
    assert np.count_nonzero(review.density["ground_truth"]) < 1000  # empty frames are counted as zeros


def test_status_follows_the_threshold(measurement):
    """The one-line status (shown by the dashboard) reflects the current threshold, not the one at load time."""
    review = PredictionReview(folder=str(measurement["pred"]),
                              ground_truth=str(measurement["dir"] / "truth.csv")).load()
    total = len(review.predictions)
    review.threshold = float(np.median(review.predictions["confidence"]))
    kept = int(np.count_nonzero(review.predictions["confidence"] >= review.threshold))
    assert 0 < kept < total
    assert review.status.startswith(f"{kept} of {total} predictions kept at threshold {review.threshold:g}")
    assert f"Jaccard {review.metrics['jaccard']:.4f}" in review.status


# -- exploded predictions (the notebook run on single frames <stem>_frame00001.tif, ...) -----------------------------


@pytest.fixture(scope="module")
def exploded(measurement, tmp_path_factory):
    """The same predictions as the whole-movie folder, in the per-frame layout."""
    d = tmp_path_factory.mktemp("exploded")
    paths = make_prediction_folder(d / "pred", measurement["truth"], measurement["dir"] / "meas.tif", upsampling=U,
                                   seed=3, exploded=True)
    return {"pred": d / "pred", "paths": paths}


def _copy_without(src, dst, numbers):
    shutil.copytree(src, dst)
    for n in numbers:
        for p in dst.glob(f"*_meas_frame{n:05d}*"):
            p.unlink()
    return dst


def test_exploded_layout_and_discovery(exploded):
    names = sorted(p.name for p in exploded["pred"].iterdir())
    assert len(names) == 4 * N_FRAMES and names[0] == "Localizations_meas_frame00001_avg.csv"
    assert "Predicted_meas_frame00012.tif" in names and "Predicted_stacked_meas_frame00012.tif" in names
    assert all(read_locs(p).frame.tolist() in ([], [0] * len(read_locs(p))) for p in exploded["paths"]["localizations"])
    found = find_prediction_files(exploded["pred"])
    assert found["stem"] == "meas" and found["variant"] == "avg" and found["localizations"] is None
    ex = found["exploded"]
    assert ex["numbers"].tolist() == list(range(1, N_FRAMES + 1)) and ex["digits"] == 5
    assert [p.name for p in ex["localizations"]][:2] == ["Localizations_meas_frame00001_avg.csv",
                                                          "Localizations_meas_frame00002_avg.csv"]
    assert find_prediction_files(exploded["pred"], "meas")["exploded"] is not None
    # one single-frame prediction chosen explicitly by its own stem stays an ordinary prediction
    single = find_prediction_files(exploded["pred"], "meas_frame00003")
    assert single["exploded"] is None and single["localizations"].name == "Localizations_meas_frame00003_avg.csv"


def test_exploded_gives_exactly_the_whole_movie_review(measurement, exploded):
    truth = str(measurement["dir"] / "truth.csv")
    whole = PredictionReview(folder=str(measurement["pred"]), ground_truth=truth).load()
    ex = PredictionReview(folder=str(exploded["pred"]), ground_truth=truth).load()
    assert ex.n_frames == whole.n_frames == N_FRAMES and ex.files["stem"] == "meas"
    assert ex.upsampling_used is None and ex.pixel_size_hr == pytest.approx(PS / U) and ex.hr_shape == whole.hr_shape
    assert ex.files["exploded"]["n_files"] == {"localizations": 12, "predicted": 12, "widefield": 12, "stacked": 12}
    for t in (0.0, float(np.median(whole.predictions["confidence"]))):
        whole.threshold = ex.threshold = t
        assert ex.metrics == whole.metrics and ex.metrics["tp"] > 100
        for name in ("frame", "x", "y", "confidence"):
            np.testing.assert_array_equal(ex.filtered[name], whole.filtered[name])
        for key in ("tp", "fp", "fn"):
            np.testing.assert_array_equal(ex.frame_metrics[key], whole.frame_metrics[key])
        np.testing.assert_array_equal(ex.density["predictions"], whole.density["predictions"])
    for key in ("tp", "fp", "jaccard", "threshold"):
        np.testing.assert_array_equal(ex.sweep[key], whole.sweep[key])
    assert ex.suggested_thresholds == whole.suggested_thresholds
    np.testing.assert_array_equal(ex.confidence_histogram["counts"], whole.confidence_histogram["counts"])
    # the merged images: the sum of the per-frame images equals the whole-movie images (float32 rounding)
    for role in ("predicted", "widefield"):
        np.testing.assert_allclose(ex.merged_image(role), whole.merged_image(role), rtol=1e-5, atol=1e-4)
    assert ex.merged_image("predicted").max() > 1
    # re-localization from the per-frame stacked densities equals the one from the whole stack
    ex_st = PredictionReview(folder=str(exploded["pred"]), ground_truth=truth, source="stacked").load()
    whole_st = PredictionReview(folder=str(measurement["pred"]), ground_truth=truth, source="stacked").load()
    np.testing.assert_array_equal(ex_st.predictions.frame, whole_st.predictions.frame)
    np.testing.assert_allclose(ex_st.predictions.x, whole_st.predictions.x)
    assert ex_st.metrics == whole_st.metrics


def test_exploded_with_missing_frame_files_keeps_frames(measurement, exploded, tmp_path):
    pred = read_locs(measurement["paths"]["localizations"])
    gone = [2, 5, 12]  # 1-based numbers; frame 12 (index 11) is the empty last frame
    folder = _copy_without(exploded["pred"], tmp_path / "p", gone)
    truth = str(measurement["dir"] / "truth.csv")
    review = PredictionReview(folder=str(folder), movie=str(measurement["dir"] / "meas.tif"), ground_truth=truth)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # missing numbers are frames without predictions, no warning
        review.load()
    keep = ~np.isin(pred.frame, np.array(gone) - 1)
    assert review.n_frames == N_FRAMES and review.files["exploded"]["last_number"] == 11
    np.testing.assert_array_equal(review.predictions.frame, pred.frame[keep])
    np.testing.assert_array_equal(review.predictions.x, pred.x[keep])
    assert review.metrics["n_gt"] == len(measurement["truth"]) and review.metrics["n_pred"] == int(keep.sum())
    assert review.frame_metrics["n_pred"][1] == 0 and review.frame_metrics["n_pred"][2] > 0
    # without the movie: the frame count is the highest number (the truth's frame count when larger)
    alone = PredictionReview(folder=str(folder)).load()
    assert alone.n_frames == 11 and alone.predictions.frame.tolist() == pred.frame[keep].tolist()
    # a frame with images but no CSV is a frame without predictions, with a warning
    (folder / "Localizations_meas_frame00004_avg.csv").unlink()
    with pytest.warns(UserWarning, match="1 of 9 exploded predictions of 'meas' lack a localizations file"):
        review = PredictionReview(folder=str(folder)).load()
    assert 3 not in review.predictions.frame.tolist() and 3 in pred.frame.tolist()


def test_exploded_ambiguities_are_clear_errors(measurement, exploded, tmp_path, capsys):
    # _avg and _max mixed among the frames
    mixed = _copy_without(exploded["pred"], tmp_path / "mixed", [])
    (mixed / "Localizations_meas_frame00007_avg.csv").rename(mixed / "Localizations_meas_frame00007_max.csv")
    with pytest.raises(FormatError, match=r"both _avg and _max .*Localizations_meas_frame00001_avg.csv, .*"
                                          r"\(11 files\) and Localizations_meas_frame00007_max.csv"):
        find_prediction_files(mixed)
    assert main(["review", str(mixed)]) == 2
    assert "Localizations_meas_frame00007_max.csv" in capsys.readouterr().err
    # a whole-movie prediction of the same base beside the exploded ones
    both = _copy_without(exploded["pred"], tmp_path / "both", [])
    shutil.copy(measurement["paths"]["localizations"], both / "Localizations_meas_avg.csv")
    for stem in (None, "meas"):
        with pytest.raises(FormatError, match=r"ambiguous: a whole-movie prediction for 'meas' "
                                              r"\(Localizations_meas_avg.csv\) and 12 exploded .*"
                                              r"Localizations_meas_frame00001_avg.csv"):
            find_prediction_files(both, stem)
    # frame numbers of different widths (two explodes mixed)
    widths = _copy_without(exploded["pred"], tmp_path / "widths", [])
    shutil.copy(widths / "Localizations_meas_frame00001_avg.csv", widths / "Localizations_meas_frame000013_avg.csv")
    with pytest.raises(FormatError, match=r"different widths \(meas_frame00001, meas_frame000013\)"):
        find_prediction_files(widths)
    # another stem beside the exploded ones: several predictions, the exploded group listed once
    other = _copy_without(exploded["pred"], tmp_path / "other", [])
    shutil.copy(measurement["paths"]["localizations"], other / "Localizations_other_avg.csv")
    with pytest.raises(FormatError, match=r"several predictions.*other: Localizations_other_avg.csv; "
                                          r"meas \(exploded, 12 frames\): "):
        find_prediction_files(other)
    assert find_prediction_files(other, "meas")["exploded"]["numbers"].size == 12
    # a per-frame CSV holding several frames is not a single-frame prediction
    multi = _copy_without(exploded["pred"], tmp_path / "multi", [])
    shutil.copy(measurement["paths"]["localizations"], multi / "Localizations_meas_frame00003_avg.csv")
    with pytest.raises(FormatError, match="Localizations_meas_frame00003_avg.csv: holds more than one frame"):
        PredictionReview(folder=str(multi)).load()


def test_cli_json_and_text_on_exploded_predictions(measurement, exploded, capsys, tmp_path):
    truth = str(measurement["dir"] / "truth.csv")
    out = tmp_path / "kept.csv"
    assert main(["review", str(exploded["pred"]), "--ground-truth", truth, "--threshold", "0.6", "--json",
                 "-o", str(out)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert main(["review", str(measurement["pred"]), "--ground-truth", truth, "--threshold", "0.6", "--json"]) == 0
    ref = json.loads(capsys.readouterr().out)
    for key in ("n_gt", "n_pred", "tp", "fp", "fn", "jaccard", "f1", "rmse_nm", "efficiency", "sweep", "n_frames",
                "suggested_thresholds"):
        assert data[key] == ref[key], key
    assert data["stem"] == "meas" and data["files"]["exploded"]["n_files"]["localizations"] == N_FRAMES
    back = read_locs(out)
    assert len(back) == data["n_pred"] and back["confidence"].min() >= 0.6
    assert main(["review", str(exploded["pred"])]) == 0
    assert "exploded single-frame predictions: frame numbers 1..12" in capsys.readouterr().out
    # saving over a per-frame input or under a prediction name is refused
    review = PredictionReview(folder=str(exploded["pred"])).load()
    review.output_path = str(exploded["pred"] / "Localizations_meas_frame00099_avg.csv")
    with pytest.raises(ParameterError, match="taken for a prediction"):
        review.save()
    review.param.update(output_path=str(exploded["paths"]["localizations"][4]), overwrite=True)
    with pytest.raises(OutputExistsError, match="input of this job"):
        review.save()


def test_end_to_end_explode_then_predict_each_frame(tmp_path, capsys):
    """Explode a simulated movie, predict every exploded frame like the notebook does (one input file at a time),
    review against the whole movie's truth with --movie the frames folder or the original movie."""
    from imagebinner.io import open_movie
    from imagebinner.tools.addons import Explode

    rng = np.random.default_rng(11)
    n_frames, shape = 7, (16, 20)
    write_tif(tmp_path / "cells.tif", rng.poisson(50, (n_frames, *shape)).astype(np.uint16), pixel_size=PS)
    n = 60
    frames = rng.choice([0, 1, 2, 4, 5], n)  # frames 3 and 6 (the last) empty
    truth = LocTable(
        {"frame": frames, "x": rng.uniform(200, shape[1] * PS - 200, n),
         "y": rng.uniform(200, shape[0] * PS - 200, n)},
        LocMeta(pixel_size=PS, image_shape=shape, n_frames=n_frames),
    )
    write_locs(truth, tmp_path / "cells.csv")
    Explode(movie=str(tmp_path / "cells.tif"), locs=str(tmp_path / "cells.csv"),
            output_folder=str(tmp_path / "frames")).run()
    frame_movies = sorted((tmp_path / "frames").glob("cells_frame*.tif"))
    assert len(frame_movies) == n_frames
    for k, movie in enumerate(frame_movies):
        if k == 4:
            continue  # the notebook never produced frame 5's files: its predictions are missing
        single_truth = read_locs(movie.with_suffix(".csv"), pixel_size=PS)
        make_prediction_folder(tmp_path / "pred", single_truth, movie, upsampling=4, seed=k, jitter_nm=5.0,
                               miss_fraction=0.0, false_positive_fraction=0.0, write_stacked=False)
    assert (tmp_path / "pred" / "Localizations_cells_frame00001_avg.csv").exists()
    on_frame5 = int(np.count_nonzero(frames == 4))
    for movie in (tmp_path / "frames", tmp_path / "cells.tif"):
        assert main(["review", str(tmp_path / "pred"), "--movie", str(movie), "--ground-truth",
                     str(tmp_path / "cells.csv"), "--tolerance", "40", "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["n_frames"] == n_frames and data["upsampling"] == 4 and data["files"]["movie"] == str(movie)
        assert data["tp"] == n - on_frame5 and data["fp"] == 0 and data["fn"] == on_frame5
    review = PredictionReview(folder=str(tmp_path / "pred"), movie=str(tmp_path / "frames"),
                              ground_truth=str(tmp_path / "cells.csv"), tolerance=40.0).load()
    assert review.n_frames == n_frames and review.upsampling_used == 4 and review.camera_pixel_size == PS
    m = review.metrics
    assert m["n_gt"] == n and m["fp"] == 0 and m["tp"] == n - on_frame5 and m["fn"] == on_frame5
    assert m["rmse_nm"] < 15
    np.testing.assert_array_equal(review.frame_metrics["fn"][[3, 4, 6]], [0, on_frame5, 0])
    with open_movie(tmp_path / "cells.tif") as original:
        assert np.array_equal(review.movie_frame(2), original.frame(2))
        raw_sum = sum(original.frame(k).astype(float) for k in range(n_frames) if k != 4)
    np.testing.assert_allclose(review.merged_image("widefield"), np.kron(raw_sum, np.ones((4, 4))))
    # predictions made inside the exploded frames folder: the frames beside them are the movie
    for p in (tmp_path / "pred").iterdir():
        shutil.copy(p, tmp_path / "frames" / p.name)
    beside = PredictionReview(folder=str(tmp_path / "frames"), ground_truth=str(tmp_path / "cells.csv"),
                              tolerance=40.0).load()
    assert beside.files["movie"] == str(tmp_path / "frames") and beside.n_frames == n_frames
    assert beside.metrics == review.metrics


def test_a_threshold_change_is_a_lookup_not_a_rematch(measurement, monkeypatch):
    """Moving the threshold re-uses the matching of the load (no Matcher built, no match() run, no kept table
    copied); the results equal a fresh load at that threshold."""
    import imagebinner.tools.matching as matching_mod

    truth = str(measurement["dir"] / "truth.csv")
    review = PredictionReview(folder=str(measurement["pred"]), ground_truth=truth).load()
    calls = []
    monkeypatch.setattr(matching_mod.Matcher, "match", lambda self, *a, **k: calls.append("match"))
    original_init = matching_mod.Matcher.__init__
    monkeypatch.setattr(matching_mod.Matcher, "__init__",
                        lambda self, *a, **k: (calls.append("init"), original_init(self, *a, **k))[1])
    t = float(np.quantile(review.predictions["confidence"], 0.4))
    review.threshold = t
    assert calls == [] and not review.filtered.materialised
    monkeypatch.undo()
    fresh = PredictionReview(folder=str(measurement["pred"]), ground_truth=truth, threshold=t).load()
    assert review.metrics == fresh.metrics
    np.testing.assert_array_equal(review.match_status.prediction, fresh.match_status.prediction)
    np.testing.assert_array_equal(review.filtered.x, fresh.filtered.x)
    for key in ("tp", "fp", "fn", "rmse_nm"):
        np.testing.assert_array_equal(review.frame_metrics[key], fresh.frame_metrics[key])


def test_threshold_range_spans_the_loaded_confidences(measurement):
    """The slider's range (soft bounds) is the confidences' range; a threshold below the smallest is raised to it
    (the same predictions are kept), one above the largest stays."""
    review = PredictionReview(folder=str(measurement["pred"])).load()
    conf = review.predictions["confidence"]
    assert review.param.threshold.softbounds == (conf.min(), conf.max())
    assert review.threshold == conf.min() and len(review.filtered) == len(conf)
    high = PredictionReview(folder=str(measurement["pred"]), threshold=float(conf.max()) + 1).load()
    assert high.threshold == conf.max() + 1 and len(high.filtered) == 0
    assert high.param.threshold.softbounds[1] == conf.max() + 1


def test_l2_follows_the_setting_then_the_metadata_beside_then_the_notebook_default(measurement, tmp_path, capsys):
    from imagebinner.simulate.model import write_metadata
    from imagebinner.tools.relocalize import notebook_default_l2

    folder = tmp_path / "p"
    shutil.copytree(measurement["pred"], folder)
    default = PredictionReview(folder=str(folder), source="stacked").load()
    assert default.l2_used == pytest.approx(notebook_default_l2(U)) == pytest.approx(170.2, abs=0.05)
    assert default.l2_source.startswith("notebook default automatic normalization for x8")
    write_metadata(folder / "model_metadata.mat", 0.2, 0.1, 4, 100.0)  # beside the predictions (predict writes it)
    beside = PredictionReview(folder=str(folder), source="stacked").load()
    assert (beside.l2_used, beside.l2_source) == (100.0, "model_metadata.mat")
    assert beside.upsampling_used == 4  # the metadata's upsampling replaces the derived one
    assert len(beside.predictions) > len(default.predictions)  # a lower L2: more peaks above threshold x L2
    given = PredictionReview(folder=str(folder), source="stacked", l2_weighting_factor=150.0).load()
    assert (given.l2_used, given.l2_source) == (150.0, "l2_weighting_factor setting")
    assert main(["review", str(measurement["pred"]), "--source", "stacked"]) == 0
    assert "L2 weighting factor 170.21 (notebook default automatic normalization for x8" in capsys.readouterr().out
    with pytest.raises(FormatError, match="model_metadata.mat: model metadata not found"):
        PredictionReview(folder=str(folder), model_folder=str(tmp_path)).load()
