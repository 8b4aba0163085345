"""Browser-test fixtures: a small simulated demo folder and a prediction folder, a large viewport."""

from __future__ import annotations

import pytest

from imagebinner.io import read_locs
from imagebinner.simulate import make_demo
from imagebinner.simulate.prediction import make_prediction_folder


@pytest.fixture(scope="session")
def ui_demo(tmp_path_factory):
    """``demo/measurement1|2`` (64×64 px, 60 frames, 107 nm) and ``demo/prediction`` for measurement 1."""
    root = tmp_path_factory.mktemp("ui_demo")
    paths = make_demo(root / "demo", seed=7, settings={"n_frames": 60})
    m1 = paths.measurements[0]
    make_prediction_folder(root / "demo" / "prediction", read_locs(m1.locs), m1.movie, upsampling=4, seed=3)
    return paths


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1500, "height": 1100}}
