"""The tutorial notebook runs top to bottom in a Jupyter kernel (nbclient) and its steps do what the text says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "notebooks" / "tutorial.ipynb"
TUTORIAL = NOTEBOOK.parents[1] / "tutorial.md"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The tutorial executed in a kernel whose working folder is a temporary folder."""
    folder = tmp_path_factory.mktemp("tutorial")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}}).execute()
    return nb, folder


def _text(nb, marker: str) -> str:
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and marker in c.source]
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o["output_type"] == "stream")


def test_the_tutorial_runs_without_errors_and_writes_every_step(executed):
    nb, folder = executed
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, errors[0]
    for path in ("training/binned.tif", "training/binned.csv", "training/binned.json",
                 "prediction/Localizations_movie_avg.csv", "prediction/Predicted_stacked_movie.tif",
                 "tuned/localizations.hdf5"):
        assert (folder / path).is_file(), path


def test_the_binned_frames_reach_the_test_movies_density(executed):
    nb, folder = executed
    table = _text(nb, 'record = json.loads(Path("training/binned.json")')
    means = {row.split()[0]: float(row.split()[-6]) for row in table.splitlines()
             if row.startswith(("test movie", "target", "binned"))}
    assert abs(means["binned"] - means["test"]) <= 0.05 * means["test"]
    record = json.loads((folder / "training" / "binned.json").read_text())
    assert record["target"]["test"]["n_frames"] == 12 and record["parameters"]["target_spread"] == "test"
    targets = np.array([f["target_density"] for f in record["binned_frames"]])
    assert np.mean(targets) == pytest.approx(means["target"], abs=1e-3)
    settings = record["outputs"]["notebook_settings"]
    assert settings["patch_size"] == 26 and settings["pixel_size"] == pytest.approx(107.0)
    assert "notebook settings: patch_size = 26, num_patches_per_frame = 1" in _text(nb, 'assert imagebinner(["bin"')


def test_the_review_steps_report_metrics_against_ground_truth(executed):
    nb, _ = executed
    text = _text(nb, 'print("suggested threshold:"')
    assert re.search(r"vs 196 ground truth within 100 nm: Jaccard 0\.\d+", text)
    sizes = re.findall(r"neighborhood_size (\d+):", _text(nb, 'review.source = "stacked"'))
    assert sizes == ["3", "5", "7", "9"]


def test_the_stored_notebook_is_executed_and_the_tutorial_page_shows_its_steps():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("outputs") for c in code[1:]), "store the notebook executed (outputs are the tutorial's figures)"
    page = TUTORIAL.read_text()
    for command in ("imagebinner demo", "imagebinner bin", "--target-density-from", "imagebinner predict",
                    "imagebinner review"):
        assert command in page
