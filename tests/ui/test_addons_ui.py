"""The add-ons dashboard in headless Chromium: opened with no arguments on the demo data, each add-on run by a click,
its written files offered as downloads; a refused output is a visible notification."""

from __future__ import annotations

from pathlib import Path

import pytest

pn = pytest.importorskip("panel")
pytest.importorskip("pytest_playwright")
hv = pytest.importorskip("holoviews")

from panel.tests.util import serve_component, wait_until  # noqa: E402

from imagebinner.apps.addons import TOOLS, AddonsApp, template  # noqa: E402
from imagebinner.apps.common import DATA_ENV, ROOT_ENV  # noqa: E402
from browser import console_errors  # noqa: E402

pytestmark = [pytest.mark.ui, pytest.mark.usefixtures("panel_page")]
TIMEOUT = 20_000  # ms, for every wait

from imagebinner.apps.pages import extensions  # noqa: E402

extensions()  # as `imagebinner serve`: notifications, Bokeh, nothing fetched from off the machine (each file alone too)




def _serve(page, monkeypatch, root: Path) -> tuple[list, list[AddonsApp]]:
    """The add-ons page with no arguments, data root ``root``; the apps made by the sessions (the last is ours)."""
    monkeypatch.setenv(ROOT_ENV, str(root))
    monkeypatch.delenv(DATA_ENV, raising=False)
    apps: list[AddonsApp] = []

    def page_of_session():
        apps.append(AddonsApp())
        return template(apps[-1])

    msgs, _ = serve_component(page, page_of_session)
    page.get_by_role("button", name="Run Convert").wait_for()
    return msgs, apps


def test_each_add_on_runs_on_the_demo_and_offers_its_files(page, tmp_path, monkeypatch):
    msgs, apps = _serve(page, monkeypatch, tmp_path)
    app = apps[-1]
    root = tmp_path.resolve()
    for name in TOOLS:
        page.get_by_text(name, exact=True).click()  # the tab
        panel = app.panels[name]
        assert Path(getattr(panel.tool, panel.tool.output_location())).is_relative_to(root / "imagebinner-addons")
        page.get_by_role("button", name=f"Run {name}").click()
        wait_until(lambda: bool(panel.tool.written) and not panel.job.busy, page, timeout=TIMEOUT)
        first = Path(panel.tool.written[0]).name
        link = page.get_by_text(f"{first} (").locator("visible=true").first
        link.wait_for()
        page.get_by_text(f"{len(panel.tool.written)} file(s) written").locator("visible=true").wait_for()
        with page.expect_download() as download:
            link.click()
        assert download.value.suggested_filename == first
        assert Path(download.value.path()).read_bytes() == Path(panel.tool.written[0]).read_bytes()
    explode = app.panels["Explode"]
    n = len(explode.tool.written)
    with page.expect_download() as download:  # the zip of all, built when clicked
        page.get_by_text(f"All {n} files as zip").click()
    assert download.value.suggested_filename == f"explode-{n}-files.zip"
    page.get_by_text(f"{n - 6} more:").wait_for()
    assert not console_errors(msgs)


def test_a_refused_output_is_a_notification_and_nothing_is_written(page, tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    msgs, apps = _serve(page, monkeypatch, root)
    box = page.locator("input[placeholder^='File to write']")
    box.fill("../escaped.csv")
    box.press("Enter")
    convert = apps[-1].panels["Convert"]
    wait_until(lambda: convert.tool.output_path == "../escaped.csv", page, timeout=TIMEOUT)
    page.get_by_role("button", name="Run Convert").click()
    page.locator(".notyf__toast", has_text="outside the data folder").wait_for()
    assert not (tmp_path / "escaped.csv").exists() and convert.tool.written == []
    assert not console_errors(msgs)
