"""Browser-test fixtures: a small simulated demo folder and a prediction folder, a large viewport."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ui_demo(small_demo):
    """``demo/measurement1|2`` and ``demo/prediction`` (the shared small demo of tests/conftest.py)."""
    return small_demo


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1500, "height": 1100}}
