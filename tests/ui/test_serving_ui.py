"""Served by `imagebinner serve` and opened in headless Chromium: every request stays on the server's own address,
no console errors, refusals (query string during page setup, out-of-bounds numbers) appear as notifications."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlparse

import pytest

pytest.importorskip("panel")
pytest.importorskip("pytest_playwright")
requests = pytest.importorskip("requests")

from servers import free_port, stop, wait_until_answering  # noqa: E402

pytestmark = pytest.mark.ui
TIMEOUT = 30_000  # ms


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`imagebinner serve` (all dashboards) on a free port with an empty data root; yields (base url, root)."""
    port = free_port()
    root = tmp_path_factory.mktemp("serve_root")
    (root.parent / "outside").mkdir(exist_ok=True)
    log = root.parent / f"serve-{port}.log"
    env = {k: v for k, v in os.environ.items() if k not in ("IMAGEBINNER_ROOT", "IMAGEBINNER_DATA")}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "imagebinner.cli", "serve", "--root", str(root), "--port",
                                 str(port)], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root.parent)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(proc, f"{base}/", log)
        yield base, root
    finally:
        stop(proc)
    text = log.read_text()
    assert "Traceback" not in text and "is not defined" not in text, text


class Recorder:
    """Every request and websocket of a page, and its console errors."""

    def __init__(self, page):
        self.urls: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("websocket", lambda ws: self.urls.append(ws.url))
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def off_machine(self, base: str) -> list[str]:
        """Requests that do not go to the server's own address (blob: and data: URLs stay in the page)."""
        own = urlparse(base).netloc
        bad = []
        for url in self.urls:
            parsed = urlparse(url)
            if parsed.scheme == "data":
                continue
            if parsed.scheme == "blob":
                parsed = urlparse(parsed.path)
            if parsed.netloc != own:
                bad.append(url)
        return bad


def _notification(page, text: str):
    return page.locator(".notyf__message", has_text=text).first


@pytest.mark.parametrize("name", ["", "binner", "predict", "review", "addons"])
def test_pages_load_everything_from_their_own_server(page, server, name):
    """The index and each dashboard (opened with no arguments: on the demo data) fetch nothing from off the machine
    (no CDN fonts, icons or scripts) and log no console error."""
    base, root = server
    page.set_default_timeout(TIMEOUT)
    recorder = Recorder(page)
    page.goto(f"{base}/{name}")
    if name in ("binner", "review"):
        page.locator("canvas").first.wait_for(state="attached")  # plots drawn (the demo data)
    elif name == "addons":
        page.get_by_role("button", name="Run Convert").wait_for()
    elif name == "predict":
        page.get_by_role("button", name="Run prediction").wait_for()
    page.wait_for_load_state("networkidle")
    assert recorder.urls and not recorder.off_machine(base), recorder.off_machine(base)
    assert not recorder.errors, recorder.errors
    if name:
        assert (root / "imagebinner-demo" / "measurement1" / "movie.tif").is_file()


def test_a_refused_query_path_is_a_notification_during_page_setup(page, server):
    base, _root = server
    page.set_default_timeout(TIMEOUT)
    recorder = Recorder(page)
    page.goto(f"{base}/review?folder=../outside")
    _notification(page, "outside the data folder").wait_for()  # shown without any click
    assert not recorder.off_machine(base) and not recorder.errors, recorder.errors


def test_an_out_of_bounds_number_is_refused_with_its_bounds(page, server):
    base, _root = server
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{base}/binner")
    box = page.get_by_role("textbox", name="Bin size")  # (a Bokeh spinner)
    kept = box.input_value()
    box.fill("0")
    box.press("Enter")
    _notification(page, "Bin size: 0 refused, must be ≥ 1").wait_for()
    page.wait_for_function("([el, kept]) => el.value === kept", arg=[box.element_handle(), kept], timeout=TIMEOUT)

