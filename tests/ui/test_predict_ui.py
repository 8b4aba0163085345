"""The Predict dashboard in headless Chromium: opened with no arguments (on the demo data, or on a data folder), Run
pressed, the progress bar full, the written files offered as downloads, the predicted frame drawn, the review's link;
a refused output is a visible notification; no console error, no request off the machine."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

pn = pytest.importorskip("panel")
pytest.importorskip("pytest_playwright")
hv = pytest.importorskip("holoviews")

from panel.tests.util import serve_component, wait_until  # noqa: E402

from imagebinner.apps.common import DATA_ENV, ROOT_ENV  # noqa: E402
from imagebinner.apps.pages import extensions  # noqa: E402
from imagebinner.apps.predict import OUTPUT_DIR, PredictApp, template  # noqa: E402
from browser import console_errors  # noqa: E402

pytestmark = [pytest.mark.ui, pytest.mark.usefixtures("panel_page")]
TIMEOUT = 30_000  # ms, for every wait (a busy 2-core machine)
N_FRAMES = 3

extensions()  # as `imagebinner serve`: notifications, Bokeh, nothing fetched from off the machine


def _serve(page, monkeypatch, root: Path, data: Path | None = None) -> tuple[list, list[str], list[PredictApp]]:
    """The predict page with no arguments, data root ``root`` (and ``$IMAGEBINNER_DATA``): console messages, every
    request URL, the apps made by the sessions (the last is ours)."""
    monkeypatch.setenv(ROOT_ENV, str(root))
    if data is None:
        monkeypatch.delenv(DATA_ENV, raising=False)
    else:
        monkeypatch.setenv(DATA_ENV, str(data))
    apps: list[PredictApp] = []
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.on("websocket", lambda ws: urls.append(ws.url))

    def page_of_session():
        apps.append(PredictApp())
        return template(apps[-1])

    def review_page():  # as `imagebinner serve` serves it beside, for the link to the review
        from imagebinner.apps import review

        apps.append(review.ReviewApp())
        return review.template(apps[-1])

    msgs, _ = serve_component(page, {"predict": page_of_session, "review": review_page}, suffix="/predict")
    page.get_by_role("button", name="Run prediction").wait_for()
    return msgs, urls, apps


def _off_machine(urls: list[str]) -> list[str]:
    return [u for u in urls if urlparse(u).scheme not in ("data", "blob")
            and urlparse(u).hostname not in ("localhost", "127.0.0.1")]


def test_opens_on_the_demo_model_and_movie(page, tmp_path, monkeypatch):
    start = time.perf_counter()
    msgs, urls, apps = _serve(page, monkeypatch, tmp_path)
    print(f"predict page ready on the demo in {time.perf_counter() - start:.1f} s (demo data made on the way)")
    demo = tmp_path.resolve() / "imagebinner-demo"
    box = page.get_by_role("textbox", name="Model folder")
    assert box.input_value() == str(demo / "model")
    assert str(demo / "measurement1" / "movie.tif") in page.get_by_role("textbox", name="Movies").input_value()
    assert page.get_by_role("textbox", name="Output folder").input_value() == str(tmp_path.resolve() / OUTPUT_DIR)
    page.get_by_text("Press Run prediction").wait_for()
    page.wait_for_load_state("networkidle")
    assert not _off_machine(urls), _off_machine(urls)
    assert not console_errors(msgs)


def test_run_in_the_browser_lists_the_files_and_draws_the_prediction(page, tmp_path, monkeypatch):
    """A data folder holding the demo model and tiny movies (3 frames of 24 × 24 px: seconds to predict)."""
    from imagebinner.simulate import make_demo

    data = tmp_path / "data"
    make_demo(data, seed=2, settings={"n_frames": N_FRAMES, "height": 24, "width": 24, "emitters_per_frame": 3.0})
    msgs, urls, apps = _serve(page, monkeypatch, tmp_path, data)
    app = apps[-1]
    assert app.tool.model_folder == str((data / "model").resolve())
    assert app.tool.movies == [str((data / "measurement1" / "movie.tif").resolve())]
    canvases = page.locator("canvas").count()  # no plot before a run (a hint instead)
    page.get_by_text("Press Run prediction").wait_for()
    start = time.perf_counter()
    page.get_by_role("button", name="Run prediction").click()
    wait_until(lambda: bool(app.job.message) and not app.job.busy, page, timeout=TIMEOUT)
    print(f"one Run ({N_FRAMES} frames of 24 x 24 px at x8) in {time.perf_counter() - start:.1f} s")
    assert "failed" not in app.job.message, app.job.message
    n = len(app.tool.written)
    assert n == 5  # the notebook's 3 files, the stacked densities and the model's metadata
    page.get_by_text(f"{n} file(s) written").wait_for()
    bar = page.locator("progress").first  # full: the tool's progress reached its steps
    page.wait_for_function("el => el.value === el.max && el.max === 3", arg=bar.element_handle(), timeout=TIMEOUT)
    page.locator(".notyf__message", has_text="localizations in 3 frames of 1 movie(s)").wait_for()
    first = Path(app.tool.written[0])
    with page.expect_download() as download:
        page.get_by_text(f"{first.name} (").first.click()
    assert Path(download.value.path()).read_bytes() == first.read_bytes()
    # the camera frame and the predicted density drawn (two plots), the hint gone, the frame slider shown
    wait_until(lambda: page.locator("canvas").count() >= canvases + 2, page, timeout=TIMEOUT)
    assert page.get_by_text("Press Run prediction").count() == 0
    page.get_by_text("Frame: 0").wait_for()
    page.wait_for_load_state("networkidle")
    assert not _off_machine(urls), _off_machine(urls)
    assert not console_errors(msgs)
    # the link opens the review page on the written files, the movie and its ground truth
    folder = Path(app.tool.output_folder).name
    link = page.get_by_role("link", name=f"open the review on {folder}")
    assert link.get_attribute("href") == f"./{app.review_url()}"
    link.click()
    page.get_by_role("button", name="Load").wait_for()
    from imagebinner.apps.review import ReviewApp

    wait_until(lambda: isinstance(apps[-1], ReviewApp) and apps[-1].review.loaded, page, timeout=TIMEOUT)
    review = apps[-1].review
    assert (review.folder, review.movie) == (app.tool.output_folder, app.tool.movies[0])
    assert review.ground_truth == str((data / "measurement1" / "movie_locs.hdf5").resolve())
    assert len(review.predictions) == int(app.tool.summary["movies"][0]["localizations"])
    assert not _off_machine(urls), _off_machine(urls)


def test_a_refused_output_folder_is_a_notification_and_nothing_runs(page, tmp_path, monkeypatch):
    from imagebinner.simulate import make_demo

    root = tmp_path / "root"
    make_demo(root / "data", seed=2, settings={"n_frames": 2, "height": 24, "width": 24})
    msgs, urls, apps = _serve(page, monkeypatch, root, root / "data")
    box = page.get_by_role("textbox", name="Output folder")
    box.fill("../escaped")
    box.press("Enter")
    app = apps[-1]
    wait_until(lambda: app.tool.output_folder == "../escaped", page, timeout=TIMEOUT)
    page.get_by_role("button", name="Run prediction").click()
    page.locator(".notyf__message", has_text="outside the data folder").wait_for()
    assert not (tmp_path / "escaped").exists() and app.tool.written == [] and app.job.thread is None
    assert not console_errors(msgs)
