"""The Binner page in headless Chromium: no arguments (demo data) and real Picasso files; players' ranges in the page.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

pn = pytest.importorskip("panel")
pytest.importorskip("pytest_playwright")
hv = pytest.importorskip("holoviews")

from panel.tests.util import serve_component, wait_until  # noqa: E402

from imagebinner.apps.binner import BinnerApp, template  # noqa: E402
from imagebinner.apps.common import ROOT_ENV  # noqa: E402
from imagebinner.apps.pages import extensions  # noqa: E402
from browser import console_errors  # noqa: E402

pytestmark = [pytest.mark.ui, pytest.mark.usefixtures("panel_page")]
TIMEOUT = 20_000  # ms, for every wait

extensions()  # as served: notifications, Bokeh, nothing fetched off the machine

#: ``[start, end, value]`` of the page's player titled ``title`` (BokehJS models), or null
PLAYER_JS = """(title) => { for (const doc of Bokeh.documents) for (const m of doc.all_models)
    if (m.title === title && "end" in m && "interval" in m) return [m.start, m.end, m.value]; return null; }"""




def _player(page, title: str) -> list:
    return page.evaluate(PLAYER_JS, title)


def _wait_player(page, title: str, end: int) -> None:
    """Wait until the page's player ``title`` spans 0..end (what a user can reach with it)."""
    page.wait_for_function(f"() => {{ const p = ({PLAYER_JS})({title!r}); return p && p[0] === 0 && p[1] === {end}; }}")


def _serve(page, apps: list, suffix: str = ""):
    """Serve the Binner page (one app per session, as served); the console messages, and the requests checked to
    go to the server only when the test ends."""
    def session() -> pn.template.BaseTemplate:
        apps.append(BinnerApp())
        return template(apps[-1])

    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    msgs, port = serve_component(page, session, suffix=suffix)
    page.locator("canvas").first.wait_for(state="attached")
    msgs.append(requests)  # (checked by _no_errors)
    msgs.append(port)
    return msgs


def _no_errors(msgs) -> None:
    """No console errors and no request off the machine."""
    *console, requests, port = msgs
    assert not console_errors(console)
    own = (f"http://localhost:{port}/", f"blob:http://localhost:{port}/", f"ws://localhost:{port}/", "data:")
    assert [url for url in requests if not url.startswith(own)] == []


def test_no_arguments_open_the_demo_step_preview_run_with_honest_players(page, tmp_path):
    """Opened with nothing: the demo measurements, input player 0..59 in the page; a step shows the next frame;
    after Preview and after Run (other sizes) the binned player spans exactly the binned frames in the page."""
    apps: list[BinnerApp] = []
    msgs = _serve(page, apps)
    (app,) = apps
    assert len(app.view.measurements) == 2 and app.binner.output_folder == "binned"
    _wait_player(page, "Input frame", app.view.measurements[0].n_frames - 1)
    page.locator("button.next").first.click()
    wait_until(lambda: app.view.frame == 1, page, timeout=TIMEOUT)
    page.wait_for_function(f"() => ({PLAYER_JS})('Input frame')[2] === 1")
    app.binner.param.update(n_patches=40, n_binned=7, bin_size=3, seed=2, output_folder=str(tmp_path / "out"))
    page.get_by_role("button", name="Preview", exact=True).click()
    wait_until(lambda: app.view.has_binned and not app.job.busy, page, timeout=TIMEOUT)
    _wait_player(page, "Binned frame", 6)
    _wait_player(page, "Input frame", 59)
    page.locator("button.next").nth(1).click()  # the binned player steps; the input player jumps to a source frame
    wait_until(lambda: app.view.binned_frame == 1, page, timeout=TIMEOUT)
    app.binner.n_binned = 4
    page.get_by_role("button", name="Run", exact=True).click()
    wait_until(lambda: (tmp_path / "out" / "binned.json").exists() and not app.job.busy, page, timeout=TIMEOUT)
    _wait_player(page, "Binned frame", 3)
    page.get_by_text("Density per frame").wait_for()
    page.screenshot(path=str(tmp_path / "binner_demo.png"), full_page=True)
    _no_errors(msgs)


@pytest.mark.filterwarnings("ignore:.*YAML documents disagree on the pixel size")
def test_real_picasso_files_from_the_query_string(page, shared_data, monkeypatch, tmp_path):
    """The real Picasso movie (1000 frames of 32 × 32 px) and its localizations, named relative to the data root in
    the query string: the input player spans 1000 frames in the page; a step and a preview work."""
    monkeypatch.setenv(ROOT_ENV, str(shared_data))
    query = urlencode({"movie": "picasso/testdata.tif", "locs": "picasso/testdata_locs.hdf5"})
    apps: list[BinnerApp] = []
    msgs = _serve(page, apps, suffix=f"?{query}")
    (app,) = apps
    assert [str(m.movie_path) for m in app.view.measurements] == [str(shared_data / "picasso" / "testdata.tif")]
    _wait_player(page, "Input frame", 999)
    busy = int(app.view.measurements[0].locs_per_frame().argmax())
    app.step(busy - 1)
    page.wait_for_function(f"() => ({PLAYER_JS})('Input frame')[2] === {busy - 1}")
    page.locator("button.next").first.click()
    wait_until(lambda: app.view.frame == busy, page, timeout=TIMEOUT)
    assert len(app.view.input_points()) == app.view.measurements[0].locs_per_frame()[busy] > 1
    app.binner.param.update(patch_size=9, n_patches=20, n_binned=5, bin_size=2, min_emitters=1, seed=1)
    page.get_by_role("button", name="Preview", exact=True).click()
    wait_until(lambda: app.view.has_binned and not app.job.busy, page, timeout=TIMEOUT)
    _wait_player(page, "Binned frame", 4)
    _no_errors(msgs)
