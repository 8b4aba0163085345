"""The prediction review in headless Chromium: opens on the demo and on a prediction folder, frame steps, threshold,
true/false positive and miss layers with the confidence colour bar in the page, ten concurrent sessions."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlencode

import pytest

pn = pytest.importorskip("panel")
pytest.importorskip("pytest_playwright")
hv = pytest.importorskip("holoviews")

from panel.tests.util import serve_and_wait, serve_component, wait_until  # noqa: E402

from imagebinner.apps.common import ROOT_ENV  # noqa: E402
from imagebinner.apps.review import ReviewApp, template  # noqa: E402

pytestmark = [pytest.mark.ui, pytest.mark.usefixtures("panel_page")]
TIMEOUT = 30_000  # ms, for every wait

from imagebinner.apps.pages import extensions  # noqa: E402
from browser import console_errors  # noqa: E402

extensions()  # as `imagebinner serve`: notifications, Bokeh, nothing fetched from off the machine

#: what the page's Bokeh documents hold: glyph markers, colour-bar titles, legend labels, and plots drawn
MODELS_JS = """() => { const out = {markers: [], colorbars: [], legends: [], plots: 0};
  for (const doc of Bokeh.documents) for (const m of doc.all_models) {
    const t = m.constructor.__name__;
    if (t === 'Scatter' && m.marker && m.marker.value) out.markers.push(m.marker.value);
    if (t === 'ColorBar') out.colorbars.push(m.title);
    if (t === 'LegendItem' && m.label) out.legends.push(m.label.value);
    if (t === 'Figure' || t === 'Plot') out.plots += 1; }
  return out; }"""
#: the mark layers' data sources in the page: each mark's class (``status`` column) and the marker its glyph draws it
#: with (the glyph's ``marker`` column, or its constant marker)
SOURCES_JS = """() => { const out = [];
  for (const doc of Bokeh.documents) for (const m of doc.all_models) {
    if (m.constructor.__name__ !== 'GlyphRenderer') continue;
    const d = m.data_source.data, get = k => d instanceof Map ? d.get(k) : d[k];
    const status = get('status'); if (!status) continue;
    const mk = m.glyph.marker;
    const markers = mk && mk.field ? Array.from(get(mk.field)) : Array.from(status, () => mk && mk.value);
    out.push({status: Array.from(status), markers: markers, x: Array.from(get('x'))}); }
  return out; }"""
MARKERS = {"true positive": "x", "false positive": "triangle", "missed": "square", "matched truth": "circle"}
#: true once the page shows at least two plots (the frames tab) and every plot view has finished painting
DRAWN_JS = """() => { if (!window.Bokeh || !Bokeh.index) return false;
  const plots = [...Bokeh.index.all_views()].filter(v => ['Figure', 'Plot'].includes(v.model.constructor.__name__));
  return plots.length >= 2 && plots.every(v => v.has_finished()); }"""



@pytest.fixture()
def root(ui_demo, monkeypatch):
    """The data root: the folder holding the shared demo (the app's demo cache is made there too)."""
    folder = Path(ui_demo.out_dir).parent
    monkeypatch.setenv(ROOT_ENV, str(folder))
    monkeypatch.delenv("IMAGEBINNER_DATA", raising=False)
    return folder



def _sessions(apps: list):
    def session():  # one app per browser session, as `imagebinner serve` builds it
        app = ReviewApp()
        apps.append(app)
        return template(app)
    return session


def _check_layers(page) -> dict:
    page.wait_for_function(f"() => ({MODELS_JS})().markers.includes('triangle')")
    models = page.evaluate(MODELS_JS)
    assert {"x", "triangle", "square", "circle"} <= set(models["markers"])
    assert "confidence" in models["colorbars"]
    assert {"true positive", "false positive", "missed", "matched truth"} <= set(models["legends"])
    return models


def _check_sources(page, app) -> set[str]:
    """The page's mark sources hold the server's marks of the shown frame (each frame plot: its prediction and truth
    layers), every mark drawn with its class's marker; returns the classes shown."""
    _state, layers = app.view._mark_layers()
    expected = sorted(sorted(map(str, data["status"])) for _key, data in layers)

    def page_layers():
        found = page.evaluate(SOURCES_JS)
        return found, sorted({tuple(sorted(f["status"])) for f in found})

    deadline = time.monotonic() + TIMEOUT / 1000
    while (shown := page_layers())[1] != sorted({tuple(e) for e in expected}):
        assert time.monotonic() < deadline, (shown[1], expected)
        time.sleep(0.1)
    found = shown[0]
    assert len(found) == 2 * len(layers)  # both frame plots
    for layer in found:
        assert [MARKERS[s] for s in layer["status"]] == layer["markers"]
    return {s for layer in found for s in layer["status"]}


def _settled(app: ReviewApp, page, quiet_s: float = 0.5) -> bool:
    """The threshold has not changed for ``quiet_s`` (the page keeps running meanwhile)."""
    value = app.review.threshold
    page.wait_for_timeout(quiet_s * 1000)
    return app.review.threshold == value


def test_review_opens_on_the_demo_steps_frames_and_moves_the_threshold(page, root):
    apps: list[ReviewApp] = []
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    start = time.perf_counter()
    msgs, port = serve_component(page, _sessions(apps))
    page.wait_for_function(DRAWN_JS)
    print(f"review page ready (served in-process, demo data): {time.perf_counter() - start:.2f} s")
    (app,) = apps
    assert app.review.loaded and app.review.truth is not None and "imagebinner-demo" in app.review.folder
    _check_layers(page)
    page.locator("button.next").first.click()
    wait_until(lambda: app.view.frame == 1, page, timeout=TIMEOUT)
    page.locator("button.next").first.click()
    wait_until(lambda: app.view.frame == 2, page, timeout=TIMEOUT)
    seen = _check_sources(page, app)  # the step's marks reached the page's data sources
    # the slider starts at the smallest confidence; moving it changes the kept predictions and the metrics
    lo = float(app.review.predictions["confidence"].min())
    assert app.threshold.start == lo and app.review.threshold == lo
    before = app.review.metrics["n_pred"]
    handle = page.locator(".noUi-handle").first
    handle.focus()
    for _ in range(80):
        page.keyboard.press("ArrowRight")
    wait_until(lambda: app.review.threshold > lo and app.review.metrics["n_pred"] < before, page, timeout=TIMEOUT)
    # the keys' value updates reach the server one after another (a loaded machine: after this point); once the
    # slider has settled, the metrics are those of the last threshold
    wait_until(lambda: _settled(app, page), page, timeout=TIMEOUT)
    assert app.review.metrics["threshold"] == pytest.approx(app.review.threshold)
    seen |= _check_sources(page, app)  # misses appear as the threshold drops predictions
    for _ in range(3):  # (and on the next frames)
        page.locator("button.next").first.click()
        wait_until(lambda f=app.view.frame: app.view.frame == f + 1, page, timeout=TIMEOUT)
        seen |= _check_sources(page, app)
    assert seen == set(MARKERS), seen
    # the other tabs build when shown
    page.locator(".bk-tab", has_text="Density").click()
    wait_until(lambda: app.view.summary.calls["density_boxplot"] >= 1, page, timeout=TIMEOUT)
    page.wait_for_function(DRAWN_JS)
    assert not console_errors(msgs)
    # a second visit on the running server: navigation to every plot drawn (printed, not asserted)
    start = time.perf_counter()
    page.goto(f"http://localhost:{port}")
    page.wait_for_function(DRAWN_JS)
    print(f"review page ready (second session, warm server): {time.perf_counter() - start:.2f} s")
    assert len(apps) == 2 and apps[1].review.loaded
    assert all(url.startswith(f"http://localhost:{port}") or url.startswith("ws://localhost") or url.startswith(
        "data:") or url.startswith("blob:") for url in requests), requests


def test_review_on_a_prediction_folder_from_the_address(page, root, ui_demo):
    m1 = ui_demo.measurements[0]
    rel = lambda p: str(Path(p).relative_to(root))  # noqa: E731 (paths relative to the data root)
    query = urlencode({"folder": rel(ui_demo.out_dir / "prediction"), "movie": rel(m1.movie), "truth": rel(m1.locs)})
    apps: list[ReviewApp] = []
    msgs, _ = serve_component(page, _sessions(apps), suffix=f"?{query}")
    page.wait_for_function(DRAWN_JS)
    (app,) = apps
    assert app.review.loaded and app.review.folder == str((ui_demo.out_dir / "prediction").resolve())
    _check_layers(page)
    page.locator("button.next").first.click()
    wait_until(lambda: app.view.frame == 1, page, timeout=TIMEOUT)
    assert not console_errors(msgs)


def test_ten_concurrent_review_sessions(browser, root, capfd):
    """Ten review pages opened at once in the browser from one server (their sessions set up concurrently): every
    session loads the demo and draws its frames, every request of every page goes to the server's own address
    (Panel linked component stylesheets from its CDN when sessions were set up concurrently: ~100 requests), no
    console error, nothing fails on the server."""
    apps: list[ReviewApp] = []
    port = serve_and_wait(_sessions(apps))
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    urls: list[str] = []
    errors: list[str] = []
    try:
        first = context.new_page()  # a session opened and closed first (as in the benchmark that showed the CDN links)
        first.goto(f"http://localhost:{port}/")
        first.wait_for_function(DRAWN_JS)
        first.close()
        start = time.perf_counter()
        pages = [context.new_page() for _ in range(10)]
        for p in pages:
            p.set_default_timeout(120_000)
            p.on("request", lambda request: urls.append(request.url))
            p.on("console", lambda m: errors.append(m.text) if m.type == "error" and "favicon" not in m.text else None)
            p.goto(f"http://localhost:{port}/", wait_until="commit")
        for p in pages:  # each closed once drawn, while the others are still being set up (sessions destroyed)
            p.wait_for_function(DRAWN_JS)
            p.wait_for_load_state("networkidle")
            p.close()
        ready = time.perf_counter() - start
    finally:
        context.close()
    with capfd.disabled():
        print(f"ten concurrent review pages drawn after {ready:.1f} s")
    own = (f"http://localhost:{port}/", f"ws://localhost:{port}/", "data:", "blob:")
    off = sorted({url for url in urls if not url.startswith(own)})
    assert not off, f"{len(off)} off-machine URLs, e.g. {off[:3]}"
    assert not errors, errors[:3]
    assert len(apps) == 11 and all(a.review.loaded and a.view.calls["marks"] >= 1 for a in apps)
    assert "Traceback" not in capfd.readouterr().err
