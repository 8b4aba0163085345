"""Shared fixtures: paths to the real files in ../shared/data, browser settings for Debian's chromium."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


@pytest.fixture(autouse=True)
def _data_root(tmp_path_factory, monkeypatch):
    """The dashboards' data root is the tests' temporary base folder (never the repository): it holds the shared demo,
    each test's tmp_path and the demo data apps open on without arguments. Tests that need another root set their own."""
    monkeypatch.setenv("IMAGEBINNER_ROOT", str(tmp_path_factory.getbasetemp()))
    monkeypatch.delenv("IMAGEBINNER_DATA", raising=False)


@pytest.fixture(autouse=True)
def _reset_panel_state():
    """Panel's process-wide state (sessions, notifications, locations) reset after every test that used Panel;
    tests that never imported it do not import it here (the tools' tests stay free of GUI libraries)."""
    yield
    panel = sys.modules.get("panel")
    if panel is not None:
        panel.state.reset()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """Two simulated measurements (64×64 px, 60 frames, 107 nm; Picasso + ThunderSTORM ground truth) and a
    ZeroCostDL4Mic-layout prediction folder ``<demo>/prediction`` for the first (×4 upsampling)."""
    from imagebinner.io import read_locs
    from imagebinner.simulate import make_demo
    from imagebinner.simulate.prediction import make_prediction_folder

    root = tmp_path_factory.mktemp("small_demo")
    paths = make_demo(root / "demo", seed=3, settings={"n_frames": 60})
    m1 = paths.measurements[0]
    make_prediction_folder(paths.out_dir / "prediction", read_locs(m1.locs), m1.movie, upsampling=4, seed=1)
    return paths


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


def pytest_collection_modifyitems(config, items):
    if CHROMIUM:
        return
    skip = pytest.mark.skip(reason="Debian chromium not installed (/usr/bin/chromium)")
    for item in items:
        if "ui" in item.keywords:
            item.add_marker(skip)
