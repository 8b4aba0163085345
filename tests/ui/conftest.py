"""Browser-test fixtures: a small simulated demo folder and a prediction folder, a large viewport, the data root."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _data_root(tmp_path_factory, monkeypatch):
    """Every path a served session touches must lie inside ``$IMAGEBINNER_ROOT``: the tests' temporary base folder
    holds the shared demo and each test's tmp_path (and the demo data the apps open on without arguments)."""
    monkeypatch.setenv("IMAGEBINNER_ROOT", str(tmp_path_factory.getbasetemp()))
    monkeypatch.delenv("IMAGEBINNER_DATA", raising=False)


@pytest.fixture(scope="session")
def ui_demo(small_demo):
    """``demo/measurement1|2`` and ``demo/prediction`` (the shared small demo of tests/conftest.py)."""
    return small_demo


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1500, "height": 1100}}


@pytest.fixture
def panel_page(page):
    """The browser page with generous waits (a busy 2-core machine); Panel's servers and state reset afterwards."""
    import panel as pn

    page.set_default_timeout(30_000)
    yield page
    pn.state.reset()
