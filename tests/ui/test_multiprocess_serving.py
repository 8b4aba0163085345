"""`imagebinner serve --num-procs 2` in headless Chromium: the page's HTML comes from a process's cached session
(Panel's ``reuse_sessions``) and the session is built where its websocket lands, so pages opened together with
different query strings must each show their own data, with plots drawn, refusals notified and no console error."""

from __future__ import annotations

import re
import signal
from pathlib import Path
from urllib.parse import urlencode

import pytest

pytest.importorskip("panel")
pytest.importorskip("pytest_playwright")

from servers import process_alive, sessions_client  # noqa: E402

pytestmark = pytest.mark.ui
TIMEOUT = 60_000  # ms: pages opened together on a busy 2-core machine
#: true once the page shows at least two plots (the frames tab) and every plot view has finished painting
DRAWN_JS = """() => { if (!window.Bokeh || !Bokeh.index) return false;
  const plots = [...Bokeh.index.all_views()].filter(v => ['Figure', 'Plot'].includes(v.model.constructor.__name__));
  return plots.length >= 2 && plots.every(v => v.has_finished()); }"""


@pytest.fixture(scope="module")
def served(ui_demo, tmp_path_factory):
    """`imagebinner serve review --num-procs 2` on the shared demo's folder, which also holds a second prediction
    folder (of the second measurement: other predictions than the demo's); yields (base url, root, log)."""
    from imagebinner.io import read_locs
    from imagebinner.simulate.prediction import make_prediction_folder

    root = Path(ui_demo.out_dir).parent
    m2 = ui_demo.measurements[1]
    if not (root / "prediction2").is_dir():
        make_prediction_folder(root / "prediction2", read_locs(m2.locs), m2.movie, upsampling=4, seed=5)
    (root.parent / "outside").mkdir(exist_ok=True)
    log = tmp_path_factory.mktemp("multiprocess") / "serve.log"
    client = sessions_client()
    with client.served(root, ("review",), num_procs=2, log=log, stop_signal=signal.SIGINT) as (base, proc, _log):
        children = client.ready_pids(log)
        yield base, root, log
    assert proc.returncode == 0 and not any(map(process_alive, children))  # Ctrl+C stopped every process
    text = log.read_text()
    errors = [line for line in text.splitlines() if "imagebinner error" in line and "is outside" not in line]
    assert "Traceback" not in text and not errors, text  # (the refusal the last test asks for is logged too)


def _predictions(folder: Path) -> int:
    """Rows of the folder's localizations table (ZeroCostDL4Mic's ``Localizations_*.csv``: a header, a row each)."""
    (table,) = folder.glob("Localizations_*.csv")
    return len(table.read_text().splitlines()) - 1


def _watch(page, errors: list[str]) -> None:
    page.set_default_timeout(TIMEOUT)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "favicon" not in m.text else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))


def test_pages_opened_together_with_different_queries_show_their_own_data(browser, served, ui_demo):
    base, root, log = served
    rel = lambda p: str(Path(p).resolve().relative_to(root.resolve()))  # noqa: E731 (paths relative to the root)
    m1 = ui_demo.measurements[0]
    demo_prediction = root / "imagebinner-demo" / "prediction"  # what the page opens on without a query
    expected = {  # query -> (prediction folder shown, number of predictions)
        "": demo_prediction,
        urlencode({"folder": "prediction2"}): root / "prediction2",
        urlencode({"folder": rel(Path(ui_demo.out_dir) / "prediction"), "movie": rel(m1.movie),
                   "truth": rel(m1.locs)}): Path(ui_demo.out_dir) / "prediction",
        urlencode({"folder": "prediction2", "theme": "dark"}): root / "prediction2",
    }
    sessions_before = log.read_text().count("opened a session")
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    errors: list[str] = []
    try:
        pages = {}
        for query in expected:  # opened together: their sessions are built at the same time, in both processes
            page = context.new_page()
            _watch(page, errors)
            page.goto(f"{base}/review" + (f"?{query}" if query else ""), wait_until="commit")
            pages[query] = page
        for query, folder in expected.items():
            page = pages[query]
            page.wait_for_function(DRAWN_JS)  # its plots drawn
            shown = page.get_by_role("textbox", name="Folder", exact=True)
            page.wait_for_function("([el, v]) => el.value === v", arg=[shown.element_handle(), str(folder.resolve())])
            n = _predictions(folder)
            page.get_by_text(re.compile(rf"^{n} of {n} predictions kept")).first.wait_for()
            dark = 'data-bs-theme="dark"' in page.content()
            assert dark == ("theme=dark" in query), query  # the page's frame in its own theme
        assert _predictions(root / "prediction2") != _predictions(demo_prediction)  # (the pages differ)
    finally:
        context.close()
    assert not errors, errors
    built = len(re.findall(r"process \d \(pid \d+\) opened a session", log.read_text())) - sessions_before
    # one session per page, wherever its page came from, plus the dark frame built once by each process that served a
    # dark page (only the default frame is built before the first user)
    assert len(expected) <= built <= len(expected) + 2, built


def test_a_refused_query_path_is_a_notification(page, served):
    base, _root, _log = served
    errors: list[str] = []
    _watch(page, errors)
    page.goto(f"{base}/review?folder=../outside")
    page.locator(".notyf__message", has_text="outside the data folder").first.wait_for()  # shown without a click
    assert not errors, errors
