"""The example notebook in JupyterLab in headless Chromium with the network cut off: it runs, every tool renders, a
click on the Binner's frame player reaches the kernel and redraws the frame, Preview gives the binned player its range
in the page, notifications show, nothing fails to load."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("pytest_playwright")
pytest.importorskip("jupyterlab")
nbformat = pytest.importorskip("nbformat")

from servers import free_port  # noqa: E402

pytestmark = pytest.mark.ui

NOTEBOOK = Path(__file__).resolve().parents[2] / "docs" / "notebooks" / "imagebinner.ipynb"
JUPYTER = Path(sys.executable).with_name("jupyter")
START_TIMEOUT = 90  # s, JupyterLab's server answering (a loaded 2-core machine is slow to import it all)
RUN_TIMEOUT = 240_000  # ms, all cells run (the kernel builds three apps; the browser renders them)
TIMEOUT = 30_000  # ms, every other wait
#: the cell the test appends: the Binner app's kernel-side frame and number of binned frames shown, as the cell's
#: value (not printed: while a job thread of the app runs, Panel may hold stdout for that app's output)
PROBE = ('(f"kernel: frame {binner_app.view.frame}, "\n'
         ' f"binned frames {0 if binner_app.view.plan is None else len(binner_app.view.plan)}")')
#: the second cell the test appends: a notification with an icon
WARN = 'notify("warning", "probe warning")'
#: the icon font (defined by the notebook, inline) drew something
ICON_FONT_USED_JS = """() => [...document.fonts].some(f => f.family.includes("Font Awesome 5 Free")
    && f.weight === "900" && f.status === "loaded")"""
LOCAL = re.compile(r"^(https?|wss?)://(127\.0\.0\.1|localhost)(:\d+)?/")
#: ``[start, end, value]`` of the player titled ``title`` in any Bokeh document of the page, or null
PLAYER_JS = """(title) => { for (const doc of Bokeh.documents) for (const m of doc.all_models)
    if (m.title === title && "end" in m && "interval" in m) return [m.start, m.end, m.value]; return null; }"""
#: ``[outputs, outputs with page changes not yet sent to the kernel]``: Panel's CommManager of each output keeps the
#: page's changes while it waits for the kernel's acknowledgement of its last message (a message the kernel dropped,
#: e.g. one handled before its comm was opened, leaves them there for good)
UNSENT_JS = """() => { let n = 0, unsent = 0; for (const doc of Bokeh.documents) for (const m of doc.all_models)
    if (m.constructor.__name__ === "CommManager") { n++; if (m._event_buffer.length) unsent++; } return [n, unsent]; }"""
#: every code cell has run (prompt ``[n]``, none pending ``[*]`` or unrun ``[ ]``)
ALL_RUN_JS = """() => { const p = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
    .map(e => e.textContent.trim()); return p.length > 0 && p.every(t => /^\\[\\d+\\]:?$/.test(t)); }"""
#: signs of a resource that did not load (console text)
LOAD_FAILURE = re.compile(r"failed to (load|decode)|err_|net::|404|refused to", re.IGNORECASE)


@pytest.fixture
def jupyter_lab(tmp_path):
    """JupyterLab on 127.0.0.1 (free port, a token) in a temporary folder holding a copy of the notebook (with two
    probe cells appended) and the data root; its configuration, settings and runtime files in that folder too;
    no news, update checks or extension listings fetched. Yields ``(base_url, token, folder)``; killed afterwards."""
    folder = tmp_path / "lab"
    folder.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells += [nbformat.v4.new_code_cell(PROBE), nbformat.v4.new_code_cell(WARN)]
    nbformat.write(nb, folder / NOTEBOOK.name)
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}), encoding="utf-8")
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "IMAGEBINNER_ROOT": str(folder), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    log = (tmp_path / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [str(JUPYTER), "lab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
         "--ServerApp.terminals_enabled=False", "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited ({server.returncode}): {_tail(tmp_path / 'jupyterlab.log')}")
            try:
                if requests.get(f"{base}/api/status", params={"token": token}, timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer in {START_TIMEOUT} s: {_tail(tmp_path / 'jupyterlab.log')}")
            time.sleep(0.3)
        yield base, token, folder
    finally:
        _stop(server)
        log.close()


def _tail(path: Path, n: int = 2000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-n:]


def _stop(server: subprocess.Popen) -> None:
    """Stop the server and its kernels (its own process group)."""
    if server.poll() is None:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(server.pid, sig)
            except ProcessLookupError:
                break
            try:
                server.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue


def _cell(page, text: str):
    """The code cell whose source contains ``text``."""
    return page.locator(".jp-CodeCell").filter(has=page.locator(".jp-InputArea", has_text=text))


def _run(page, cell) -> None:
    """Run ``cell`` again in place (selected in command mode, Ctrl+Enter) and wait until it has run."""
    prompt = cell.locator(".jp-InputArea-prompt")
    before = prompt.text_content()
    prompt.click()
    page.keyboard.press("Control+Enter")
    page.wait_for_function("([el, before]) => el.textContent !== before && /\\[\\d+\\]/.test(el.textContent)",
                           arg=[prompt.element_handle(), before])


def _kernel_says(page, probe, rerun: bool = True) -> tuple[int, int]:
    """(frame, binned frames) as the probe cell shows them, after running it again in place (Ctrl+Enter)."""
    if rerun:
        _run(page, probe)
    said = re.compile(r"kernel: frame (\d+), binned frames (\d+)")
    output = probe.locator(".jp-OutputArea-output").get_by_text(said)
    output.wait_for()
    frame, binned = said.search(output.text_content()).groups()  # (inner_text is empty while scrolled away)
    return int(frame), int(binned)


def test_notebook_in_jupyterlab_offline_runs_and_a_player_click_reaches_the_kernel(page, jupyter_lab):
    base, token, folder = jupyter_lab
    page.set_default_timeout(TIMEOUT)
    outside, failures, messages = [], [], []

    def only_local(route) -> None:
        url = route.request.url
        if LOCAL.match(url) or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.route("**/*", only_local)
    page.on("console", lambda m: messages.append((m.type, m.text, m.location.get("url", ""))))
    page.on("requestfailed", lambda r: failures.append(f"{r.url} {r.failure}"))
    page.on("response", lambda r: r.status >= 400 and failures.append(f"{r.url} {r.status}"))

    started = time.monotonic()
    page.goto(f"{base}/lab/tree/{NOTEBOOK.name}?token={token}")
    page.locator(".jp-NotebookPanel").wait_for(timeout=RUN_TIMEOUT)
    page.get_by_text("| Idle").first.wait_for(timeout=RUN_TIMEOUT)  # the kernel started
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    page.wait_for_function(ALL_RUN_JS, timeout=RUN_TIMEOUT)
    print(f"JupyterLab open and all cells run in {time.monotonic() - started:.1f} s")

    # every tool rendered; the notebook's notification shows (its library and icon font are inline; it times out
    # after 5 s, so it is sent again and looked for at once)
    for text in ("binner_app = BinnerApp", "review_app = ReviewApp", "addons_app = AddonsApp"):
        _cell(page, text).locator(".bk-panel-models-layout-Column, .bk-Column, .bk-Row").first.wait_for(
            state="attached")
    _cell(page, "review_app = ReviewApp").locator("canvas").first.wait_for(state="attached")
    _run(page, _cell(page, 'notify("success"'))
    page.locator(".notyf__toast", has_text="all tools loaded").first.wait_for()
    _run(page, _cell(page, WARN))  # a warning's icon is drawn with the icon font
    page.locator(".notyf__toast", has_text="probe warning").first.wait_for()
    page.wait_for_function(ICON_FONT_USED_JS)
    page.wait_for_function(f"() => {{ const p = ({PLAYER_JS})('Input frame'); return p && p[1] > 0; }}")
    start, end, value = page.evaluate(PLAYER_JS, "Input frame")
    assert (start, value) == (0, 0) and end == 59  # the demo measurements' 60 frames

    binner = _cell(page, "binner_app = BinnerApp")
    frame = binner.locator("canvas").first
    before = frame.screenshot()
    binner.locator("button.next").first.click()
    page.wait_for_function(f"() => ({PLAYER_JS})('Input frame')[2] === 1")
    deadline = time.monotonic() + TIMEOUT / 1000
    while frame.screenshot() == before:  # the kernel sends frame 1; the canvas redraws
        assert time.monotonic() < deadline, "the input frame did not redraw after the player's step"
        time.sleep(0.2)

    probe = _cell(page, "binned frames")
    assert _kernel_says(page, probe, rerun=False) == (0, 0)  # printed by Run All
    assert _kernel_says(page, probe) == (1, 0)

    assert not outside, f"requests off the machine: {outside[:5]}"

    # Preview (in the kernel's job thread): the binned player spans the binned frames in the page too
    binner.get_by_role("button", name="Preview", exact=True).click()
    deadline = time.monotonic() + TIMEOUT / 1000
    while (n_binned := _kernel_says(page, probe)[1]) == 0:
        assert time.monotonic() < deadline, "Preview did not finish in the kernel"
        time.sleep(0.5)
    page.wait_for_function(f"() => {{ const p = ({PLAYER_JS})('Binned frame'); return p && p[1] === {n_binned - 1}; }}")

    # every change made in the page reached the kernel (no output left waiting for an acknowledgement)
    page.wait_for_function(f"() => {{ const [n, unsent] = ({UNSENT_JS})(); return n >= 4 && unsent === 0; }}")
    print(f"whole browser session {time.monotonic() - started:.1f} s")
    # strict: not one request left the machine, also after Preview (an updated Markdown pane re-sends its
    # stylesheets: inline, not as CDN links), nothing failed to load, no console error
    assert not outside, f"requests off the machine: {outside[:5]}"
    assert not failures, failures[:5]
    errors = [text for kind, text, _url in messages if kind == "error" or LOAD_FAILURE.search(text)]
    assert not errors, errors[:5]
    assert (folder / "imagebinner-demo").is_dir()  # the demo data went into the data root
