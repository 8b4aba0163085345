"""``imagebinner demo`` and ``simulate.make_demo``: files, determinism, no overwrite, no half-written demo."""

from __future__ import annotations

import numpy as np
import pytest

import imagebinner.simulate.demo as demo_module
from imagebinner.cli import main
from imagebinner.errors import OutputExistsError
from imagebinner.io import open_movie, read_locs
from imagebinner.simulate import make_demo

EXPECTED = [
    "README.txt",
    "binned/binned.csv",
    "binned/binned.json",
    "binned/binned.tif",
    "measurement1/movie.tif",
    "measurement1/movie_locs.hdf5",
    "measurement1/movie_locs.yaml",
    "measurement2/movie.tif",
    "measurement2/movie_locs.csv",
    "model/best.weights.keras",
    "model/model_metadata.mat",
    "prediction/Localizations_movie_avg.csv",
    "prediction/Predicted_movie.tif",
    "prediction/Widefield_movie.tif",
]


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo"
    assert main(["demo", "-o", str(out)]) == 0
    return out


def test_demo_command_writes_the_expected_files(demo_dir):
    assert _tree(demo_dir) == EXPECTED
    for name, fmt in (("measurement1", "picasso"), ("measurement2", "thunderstorm")):
        with open_movie(demo_dir / name / "movie.tif") as movie:
            assert (movie.n_frames, movie.shape, movie.dtype) == (200, (64, 64), np.uint16)
            assert movie.pixel_size == pytest.approx(107.0, rel=1e-6)
        locs_name = "movie_locs.hdf5" if fmt == "picasso" else "movie_locs.csv"
        truth = read_locs(demo_dir / name / locs_name)
        assert truth.meta.source_format == fmt
        assert len(truth) > 1000 and truth.frame.max() < 200


def test_demo_bins_both_measurements(demo_dir):
    """The main job: 100 binned frames of 27 px from both measurements (Picasso and ThunderSTORM input)."""
    import json

    with open_movie(demo_dir / "binned/binned.tif") as binned:
        assert (binned.n_frames, binned.shape, binned.dtype) == (100, (27, 27), np.uint16)
        assert binned.pixel_size == pytest.approx(107.0, rel=1e-6)
    labels = read_locs(demo_dir / "binned/binned.csv")
    assert labels.meta.source_format == "deepstorm"
    assert set(np.unique(labels.frame)) == set(range(100))
    assert labels.x.min() >= 0 and labels.x.max() < 27 * 107.0
    provenance = json.loads((demo_dir / "binned/binned.json").read_text())
    used = {part["measurement"] for frame in provenance["binned_frames"] for part in frame["parts"]}
    assert used == {0, 1}


def test_demo_prediction_folder_reviews(demo_dir, capsys):
    capsys.readouterr()
    assert main(["review", str(demo_dir / "prediction"), "--ground-truth",
                 str(demo_dir / "measurement1/movie_locs.hdf5"), "--json"]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert 0.7 < result["jaccard"] < 0.95 and result["fp"] > 0 and result["fn"] > 0


def test_second_run_without_overwrite_fails_with_one_line(demo_dir, capsys):
    before = {p: (demo_dir / p).read_bytes() for p in EXPECTED}
    capsys.readouterr()
    assert main(["demo", "-o", str(demo_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("imagebinner: error: ")
    assert "exists already" in err and "Traceback" not in err
    assert {p: (demo_dir / p).read_bytes() for p in EXPECTED} == before


def test_overwrite_and_seed(demo_dir, tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "d"), "--seed", "0"]) == 0
    # same seed, same movie bytes
    assert (tmp_path / "d/measurement1/movie.tif").read_bytes() == (demo_dir / "measurement1/movie.tif").read_bytes()
    assert main(["demo", "-o", str(tmp_path / "d"), "--seed", "5", "--overwrite"]) == 0
    assert (tmp_path / "d/measurement1/movie.tif").read_bytes() != (demo_dir / "measurement1/movie.tif").read_bytes()
    assert _tree(tmp_path / "d") == EXPECTED  # no temporary files left
    out = capsys.readouterr().out
    assert "binned: 100 frames" in out and "measurement2" in out and "Jaccard" in out


def test_demo_is_dense_enough_for_binning(demo_dir):
    """Patch 27 px: most random windows of a frame hold at least 2 emitters."""
    truth = read_locs(demo_dir / "measurement1" / "movie_locs.hdf5")
    ps, patch = 107.0, 27
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(500):
        k = rng.integers(0, 200)
        row, col = rng.integers(0, 64 - patch + 1, 2)
        rows = truth.frame_rows(int(k))
        c, r = np.floor(truth.x[rows] / ps), np.floor(truth.y[rows] / ps)
        counts.append(np.count_nonzero((c >= col) & (c < col + patch) & (r >= row) & (r < row + patch)))
    counts = np.array(counts)
    assert np.mean(counts >= 2) > 0.5
    assert counts.mean() > 2


def test_make_demo_removes_what_it_wrote_when_a_later_step_fails(tmp_path, monkeypatch):
    calls = []
    real = demo_module.write_measurement

    def failing_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(demo_module, "write_measurement", failing_second)
    with pytest.raises(OSError):
        make_demo(tmp_path / "d", settings={"n_frames": 5})
    assert _tree(tmp_path / "d") == []


def test_make_demo_checks_every_output_first(tmp_path):
    (tmp_path / "d" / "measurement2").mkdir(parents=True)
    (tmp_path / "d" / "measurement2" / "movie_locs.csv").write_text("mine")
    with pytest.raises(OutputExistsError, match="movie_locs.csv"):
        make_demo(tmp_path / "d", settings={"n_frames": 5})
    assert _tree(tmp_path / "d") == ["measurement2/movie_locs.csv"]
    paths = make_demo(tmp_path / "d", settings={"n_frames": 5}, overwrite=True)
    assert [m.loc_format for m in paths.measurements] == ["picasso", "thunderstorm"]
    assert all(f.exists() for f in paths.files)


def test_predict_runs_on_the_demo_model_and_movie(demo_dir, tmp_path, capsys):
    """The demo's model folder is a notebook model folder: ``imagebinner predict`` runs on it (here on the first 4
    frames of the demo movie, to stay fast), and the review opens its output folder directly."""
    from imagebinner.io import write_tif
    from imagebinner.io.deepstorm_model import read_model
    from imagebinner.tools.review import PredictionReview

    model = read_model(demo_dir / "model")
    assert (model.layout, model.metadata.upsampling, model.metadata.l2_weighting_factor) == ("keras3", 8, 100.0)
    with open_movie(demo_dir / "measurement1" / "movie.tif") as movie:
        write_tif(tmp_path / "movie.tif", np.stack([movie.frame(k) for k in range(4)]), pixel_size=movie.pixel_size)
    assert main(["predict", str(demo_dir / "model"), str(tmp_path / "movie.tif"), "-o", str(tmp_path / "out"),
                 "--threshold", "0.05"]) == 0
    assert "4 frames" in capsys.readouterr().out
    truth = read_locs(demo_dir / "measurement1" / "movie_locs.hdf5")
    truth = truth.take(truth.frame < 4)
    review = PredictionReview(folder=str(tmp_path / "out"), movie=str(tmp_path / "movie.tif"))
    review.load()
    assert review.upsampling_used == 8 and review.model_metadata["l2_weighting_factor"] == 100.0
    assert len(review.predictions) > 0.5 * len(truth)
    assert "imagebinner predict model measurement1/movie.tif" in (demo_dir / "README.txt").read_text()
