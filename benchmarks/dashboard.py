"""Benchmark: the dashboards against issue 9's speed goals, server side (in-process) and in Chromium.

Measured (each figure printed next to its goal as a ratio, ratio <= 1 meets the goal, with the peak memory):

* page ready of each dashboard on the demo data (goal 2 s): in-process, the page built and serialised as the server
  does for a new session; in Chromium, navigation start -> every Bokeh document idle, every view finished and no
  plot repainted for a quiet period (the last paint counts). Cold = the first page of the process (imports, JIT),
  warm = median of the next loads. Chromium opens the pages twice: from this script's in-process server (a thread of
  this process, one process, no cached page frames) and from ``imagebinner serve`` run as a subprocess, as users get
  them ("chromium, imagebinner serve (N processes)");
* ten concurrent review sessions (goal: each ready in 6 s): on the server alone (clients that ask for the page and
  its document as a browser does, ``sessions.py``: what ten users in their own browsers wait for from the server),
  on this script's in-process server (one process) and on ``imagebinner serve review`` run as a subprocess (its
  default ``--num-procs``: one process per usable core; ``--num-procs N`` here to choose), and in one Chromium on
  this machine (ten pages rendered on the server's own cores as well, in-process server);
* Binner frame step, a 512 x 512 frame with 200 crosses: server side = the step's param change -> Bokeh model updates
  -> the PATCH-DOC message encoded (goal 50 ms); in Chromium = click on the player's "next" -> the last repaint of
  the step (goal 150 ms);
* review confidence threshold -> every shown view, 10 M predictions and 10 M ground truth, server side (goal 200 ms);
* super-resolution render of 10 M localizations (the review's merged-localizations view into Bokeh models; 0.5 s).

A measurement whose API is missing is skipped with a note (the script never stops on it). Memory: peak RSS of this
process during the measurement (Linux VmHWM, reset before each); the browser's RSS (all its processes) after a run.

    .venv/bin/python benchmarks/dashboard.py [--quick] [--no-browser] [--n 10000000] [--sessions 10] [--num-procs N]

``--quick``: small sizes (200 k localizations, 3 sessions, few repeats), a smoke run of seconds. The last line printed is
one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CHROMIUM = "/usr/bin/chromium"
GOALS_S = {  # issue 9, "Speed"
    "page_ready": 2.0, "concurrent_review_ready": 6.0, "binner_step_server": 0.050, "binner_step_browser": 0.150,
    "threshold_all_views_server": 0.200, "superres_render": 0.5,
}
QUIET_S = 0.5  # a page is ready when nothing was repainted for this long (the last paint counts)
STEP_QUIET_S = 0.3


# -- figures and memory -------------------------------------------------------------------------------------------
class Figures:
    """Collected figures: ``{name: {seconds, goal_s, ratio, peak_rss_mb, note}}`` (or a skip note)."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def add(self, name: str, seconds: float | None, goal: str | None = None, peak_mb: float | None = None,
            note: str = "", **extra: Any) -> None:
        goal_s = GOALS_S.get(goal or name)
        row = {"seconds": None if seconds is None else round(seconds, 4), "goal_s": goal_s,
               "ratio": None if seconds is None or goal_s is None else round(seconds / goal_s, 2),
               "peak_rss_mb": None if peak_mb is None else round(peak_mb), **extra}
        if note:
            row["note"] = note
        self.rows[name] = row
        ratio = f"{row['ratio']:.2f} x goal ({goal_s * 1000:.0f} ms)" if row["ratio"] is not None else "(no goal)"
        value = "skipped" if seconds is None else f"{seconds * 1000:9.1f} ms  {ratio}"
        mem = f"  peak RSS {row['peak_rss_mb']} MB" if peak_mb is not None else ""
        more = "".join(f"  {k}={v}" for k, v in extra.items())
        print(f"{name:42s} {value}{mem}{more}{'  ' + note if note else ''}", flush=True)

    def skip(self, name: str, note: str) -> None:
        self.add(name, None, note=f"skipped: {note}")


def reset_peak() -> None:
    """Reset this process's peak RSS (VmHWM) where Linux allows it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def browser_rss_mb() -> float | None:
    """RSS of every descendant process except this one's own threads (Playwright's driver and Chromium)."""
    try:
        import psutil
    except ImportError:
        return None
    total = 0
    for child in psutil.Process().children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def measured(figures: Figures, name: str, work: Callable[[], Any], goal: str | None = None, **extra: Any) -> Any:
    """Run ``work`` once, record its time and peak memory; errors become a skip note."""
    reset_peak()
    t0 = time.perf_counter()
    try:
        result = work()
    except Exception as exc:  # noqa: BLE001 (a missing API or a failure is reported, the run goes on)
        traceback.print_exc(limit=3)
        figures.skip(name, f"{type(exc).__name__}: {exc}")
        return None
    figures.add(name, time.perf_counter() - t0, goal, peak_rss_mb(), **extra)
    return result


# -- data -----------------------------------------------------------------------------------------------------------
def make_root() -> Path:
    """A fresh data root (``$IMAGEBINNER_ROOT``) with the demo data made in it."""
    root = Path(tempfile.mkdtemp(prefix="imagebinner-bench-")).resolve()
    os.environ["IMAGEBINNER_ROOT"] = str(root)
    os.environ.pop("IMAGEBINNER_DATA", None)
    from imagebinner.apps.demo_data import demo_data

    demo_data()
    return root


def make_binner_measurement(root: Path, size: int = 512, n_frames: int = 30, per_frame: int = 200,
                            pixel_size: float = 100.0) -> tuple[str, str]:
    """A ``size`` x ``size`` uint16 movie with ``per_frame`` localizations on every frame (ThunderSTORM CSV)."""
    from imagebinner.io import LocMeta, LocTable, write_locs, write_tif

    rng = np.random.default_rng(0)
    folder = root / "bench512"
    folder.mkdir(exist_ok=True)
    stack = rng.poisson(100, (n_frames, size, size)).astype(np.uint16)
    write_tif(folder / "movie.tif", stack, pixel_size=pixel_size, overwrite=True)
    n = n_frames * per_frame
    table = LocTable({"frame": np.repeat(np.arange(n_frames), per_frame), "x": rng.uniform(0, size * pixel_size, n),
                      "y": rng.uniform(0, size * pixel_size, n), "photons": rng.uniform(500, 5000, n)},
                     LocMeta(pixel_size=pixel_size, image_shape=(size, size), n_frames=n_frames))
    write_locs(table, folder / "movie_locs.csv", format="thunderstorm", overwrite=True)
    return str(folder / "movie.tif"), str(folder / "movie_locs.csv")


def make_review_tables(n: int, n_frames: int, seed: int = 0):
    """``n`` ground-truth and ``n`` predicted localizations (90 % found with 20 nm jitter, the rest false positives),
    a 25.6 µm field of 256 px at 100 nm (as benchmarks/review.py)."""
    from imagebinner.io import LocMeta, LocTable

    rng = np.random.default_rng(seed)
    field = 25_600.0
    frame = np.sort(rng.integers(0, n_frames, n))
    x, y = rng.uniform(0, field, n), rng.uniform(0, field, n)
    meta = LocMeta(pixel_size=100.0, image_shape=(256, 256), n_frames=n_frames)
    truth = LocTable({"frame": frame, "x": x, "y": y}, meta, presorted=True)
    hit = rng.random(n) < 0.9
    n_hit = int(hit.sum())
    n_fp = n - n_hit
    pred = LocTable({"frame": np.r_[frame[hit], rng.integers(0, n_frames, n_fp)],
                     "x": np.r_[x[hit] + rng.normal(0, 20, n_hit), rng.uniform(0, field, n_fp)],
                     "y": np.r_[y[hit] + rng.normal(0, 20, n_hit), rng.uniform(0, field, n_fp)],
                     "confidence": np.r_[rng.uniform(0.3, 2.5, n_hit), rng.uniform(0.1, 0.8, n_fp)]}, meta)
    return truth, pred


# -- server side (in-process) ---------------------------------------------------------------------------------------
def extensions() -> None:
    import holoviews as hv
    import panel as pn

    try:
        from imagebinner.apps.pages import extensions as page_extensions

        page_extensions()
    except ImportError:
        pn.extension(notifications=True, throttled=True)
        hv.extension("bokeh")


def page_factories() -> dict[str, Callable[[], Any]]:
    """What ``imagebinner serve`` serves: one page per dashboard, built with no arguments."""
    try:
        from imagebinner.apps.pages import factories

        return factories()
    except ImportError:
        import importlib

        def factory(module: str, cls: str) -> Callable[[], Any]:
            mod = importlib.import_module(module)
            return lambda: mod.template(getattr(mod, cls)())

        return {"binner": factory("imagebinner.apps.binner", "BinnerApp"),
                "review": factory("imagebinner.apps.review", "ReviewApp"),
                "addons": factory("imagebinner.apps.addons", "AddonsApp")}


class Session:
    """A page in a Bokeh document as for a server session; records the document's change events and encodes them
    as the PATCH-DOC messages the server would send."""

    def __init__(self, page: Any):
        from bokeh.document import Document

        self.doc = Document()
        page.server_doc(self.doc)
        self.doc.to_json()  # as the server does for a new session
        self.events: list = []
        self.doc.on_change(self.events.append)
        import panel as pn

        pn.state._connected[self.doc] = True  # as once the browser is connected: held events are dispatched
        pn.state._thread_id_[self.doc] = threading.get_ident()  # the session's thread, as the server's loop

    def flush(self) -> int:
        """Run the next-tick callbacks the change scheduled (as the server's event loop would), then encode the
        model changes as PATCH-DOC messages; returns the bytes."""
        from bokeh.document.events import DocumentPatchedEvent, SessionCallbackAdded
        from bokeh.protocol import Protocol
        from panel.io.state import set_curdoc

        patches = []
        for _ in range(100):
            events, self.events[:] = list(self.events), []
            if not events:
                break
            patches += [e for e in events if isinstance(e, DocumentPatchedEvent)]
            for event in events:
                if isinstance(event, SessionCallbackAdded):
                    with contextlib.suppress(ValueError):  # (no event loop here: it is run now instead)
                        self.doc.remove_next_tick_callback(event.callback)
                    with set_curdoc(self.doc):
                        event.callback.callback()
        if not patches:
            return 0
        msg = Protocol().create("PATCH-DOC", patches)
        self.n_patches = len(patches)
        return len(msg.header_json) + len(msg.content_json) + sum(len(b.to_bytes()) for b in msg.buffers)

    def timed(self, change: Callable[[], None]) -> tuple[float, int, int]:
        """Seconds, model-change events and PATCH-DOC bytes of one change (inside the document, held as one batch of
        updates, scheduled callbacks run)."""
        import panel as pn
        from panel.io.state import set_curdoc

        self.flush()
        t0 = time.perf_counter()
        with set_curdoc(self.doc), pn.io.hold(self.doc):
            change()
        self.n_patches = 0
        n_bytes = self.flush()
        return time.perf_counter() - t0, self.n_patches, n_bytes


def bench_page_builds(figures: Figures, factories: dict[str, Callable[[], Any]]) -> None:
    """Each page built for a new session and serialised; cold = the first in this process (imports, caches)."""
    for name, factory in factories.items():
        for state in ("cold", "warm"):
            measured(figures, f"server: {name} page built ({state})", lambda f=factory: Session(f()), "page_ready")


def bench_binner_step(figures: Figures, movie: str, locs: str, steps: int) -> None:
    name = "server: binner frame step 512x512+200"
    try:
        from imagebinner.apps.binner import BinnerApp, template

        app = BinnerApp(measurements=[(movie, locs)])
        session = Session(template(app))
    except Exception as exc:  # noqa: BLE001
        figures.skip(name, f"Binner page on the 512 px movie failed: {type(exc).__name__}: {exc}")
        return
    n = app.view.param.frame.bounds[1] + 1
    if n < 2:
        figures.skip(name, "the Binner app did not load the 512 px measurement")
        return
    step = getattr(app, "step", None)
    change = (lambda k: step(frame=k, doc=session.doc)) if step else (lambda k: setattr(app.view, "frame", k))
    note = "" if step else "app.step missing: view.frame set under pn.io.hold"
    reset_peak()
    times, events, sizes = [], [], []
    for k in range(1, steps + 1):
        seconds, n_events, n_bytes = session.timed(lambda k=k: change(k % n))
        times.append(seconds), events.append(n_events), sizes.append(n_bytes)
    figures.add(name, statistics.median(times), "binner_step_server", peak_rss_mb(), note,
                max_ms=round(max(times) * 1000, 1), events=round(statistics.mean(events), 1),
                kb=round(statistics.mean(sizes) / 1024))
    app.close()


def bench_review(figures: Figures, n: int, n_frames: int, steps: int) -> None:
    label = f"{n / 1e6:g} M" if n >= 1e6 else f"{n / 1e3:g} k"
    reset_peak()
    t0 = time.perf_counter()
    truth, pred = make_review_tables(n, n_frames)
    try:
        from imagebinner.tools.review import PredictionReview

        review = PredictionReview()
        review.load_tables(pred, truth, n_frames=n_frames)
    except Exception as exc:  # noqa: BLE001
        figures.skip(f"server: threshold -> all views ({label})", f"review.load_tables failed: {exc}")
        return
    figures.add(f"prepare: review load_tables ({label}+{label})", time.perf_counter() - t0, None, peak_rss_mb(),
                note="(matching and sweep: once per load)")
    from imagebinner.apps.review import ReviewApp, template

    app = ReviewApp(review=review)
    session = measured(figures, f"server: review page built ({label})", lambda: Session(template(app)))
    if session is None:
        return
    lo, hi = review.param.threshold.bounds
    values = np.linspace(lo + 0.1 * (hi - lo), lo + 0.8 * (hi - lo), steps)
    setter = next((getattr(app, m) for m in ("set_threshold", "move_threshold") if hasattr(app, m)), None)
    reset_peak()
    times, sizes = [], []
    for value in values:
        change = (lambda v=float(value): setter(v)) if setter else (lambda v=float(value): setattr(review, "threshold", v))
        seconds, _events, n_bytes = session.timed(change)
        times.append(seconds), sizes.append(n_bytes)
    figures.add(f"server: threshold -> all views ({label})", statistics.median(times), "threshold_all_views_server",
                peak_rss_mb(), max_ms=round(max(times) * 1000, 1), kb=round(statistics.mean(sizes) / 1024))
    step = getattr(app, "step", None)
    if step is None:
        figures.skip(f"server: review frame step ({label})", "ReviewApp.step missing")
    else:
        reset_peak()
        times = [session.timed(lambda k=k: step(k))[0] for k in range(1, steps + 1)]
        figures.add(f"server: review frame step ({label})", statistics.median(times), "binner_step_server",
                    peak_rss_mb(), max_ms=round(max(times) * 1000, 1))
    render_sr = getattr(app.view, "render_sr", None)
    if render_sr is None:
        figures.skip(f"server: super-resolution render ({label})", "ReviewView.render_sr missing")
    else:
        measured(figures, f"server: super-resolution render ({label}, cold)", render_sr, "superres_render",
                 note="(the first aggregation compiles datashader's kernels)")
        (setter or (lambda v: setattr(review, "threshold", v)))(float(lo))  # every prediction kept, nothing cached
        measured(figures, f"server: super-resolution render ({label}, warm)", render_sr, "superres_render",
                 kept=len(review.filtered) if review.filtered is not None else None)
    app.close()


def bench_concurrent_sessions(figures: Figures, port: int, sessions: int, num_procs: int | None = None) -> None:
    """Review sessions opened at once by clients that do what a browser does with the server (page, websocket,
    document; ``sessions.py``) but render nothing: the server's part of ten users opening the page together. Twice:
    on this benchmark's in-process server (one process, as ``--num-procs 1``), then on ``imagebinner serve review``
    run as a user runs it (a subprocess; ``num_procs`` processes, default: one per usable core) on the same data
    root."""
    from sessions import open_sessions, ready_pids, served

    note = "(page + document per session, as a browser asks; the rendering runs in each user's browser)"
    reset_peak()
    t0 = time.perf_counter()
    try:
        opened = open_sessions(f"http://127.0.0.1:{port}", "review", sessions)
    except Exception as exc:  # noqa: BLE001
        figures.skip(f"server: {sessions} concurrent reviews", f"{type(exc).__name__}: {exc}"[:300])
    else:
        ready = [o["ready_s"] for o in opened]
        figures.add(f"server: {sessions} concurrent reviews, slowest", max(ready), "concurrent_review_ready",
                    peak_rss_mb(), median_s=round(statistics.median(ready), 2),
                    wall_s=round(time.perf_counter() - t0, 2), processes=1, note=f"in-process server {note}")
    name = f"imagebinner serve: {sessions} concurrent reviews, slowest"
    try:
        with served(Path(os.environ["IMAGEBINNER_ROOT"]), ("review",), num_procs=num_procs) as (base, _proc, log):
            processes = len(ready_pids(log)) or 1
            t0 = time.perf_counter()
            opened = open_sessions(base, "review", sessions)
            wall = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001
        figures.skip(name, f"{type(exc).__name__}: {exc}"[:300])
        return
    ready = [o["ready_s"] for o in opened]
    figures.add(name, max(ready), "concurrent_review_ready", median_s=round(statistics.median(ready), 2),
                wall_s=round(wall, 2), processes=processes, note=f"subprocess, as deployed {note}")


# -- Chromium ---------------------------------------------------------------------------------------------------------
PAGE_PROBE = """
(() => {
  const ib = window.__ib = {ready_at: null, last_paint: 0, paints: 0, click_at: null, patched: false, plots: 0};
  document.addEventListener('click', () => { ib.click_at = performance.now(); }, true);
  function patch() {
    const B = window.Bokeh;
    if (ib.patched || !B || !B.index) return;
    for (const v of B.index.all_views()) {
      let p = Object.getPrototypeOf(v);
      while (p && !Object.prototype.hasOwnProperty.call(p, '_actual_paint')) p = Object.getPrototypeOf(p);
      if (!p) continue;
      const orig = p._actual_paint;
      p._actual_paint = function (...args) {
        const r = orig.apply(this, args); ib.last_paint = performance.now(); ib.paints += 1; return r;
      };
      ib.patched = true;
      return;
    }
  }
  function ready() {
    const B = window.Bokeh;
    if (!B || !B.documents || !B.documents.length || !B.index) return false;
    if (!B.documents.every(d => d.is_idle)) return false;
    const views = [...B.index.all_views()];
    ib.plots = views.filter(v => typeof v._actual_paint === 'function').length;
    // every DOM view (layouts, plots, widgets) finished; tools and data views never report it
    return views.length > 0 && views.every(v => v.el === undefined || typeof v.has_finished !== 'function'
                                                || v.has_finished());
  }
  function tick() {
    try {
      patch();
      if (ready()) { if (ib.ready_at === null) ib.ready_at = performance.now(); } else { ib.ready_at = null; }
    } catch (e) { ib.error = String(e); }
    requestAnimationFrame(tick);
  }
  requestAnimationFrame(tick);
})();
"""


async def _probe(page) -> dict:
    return await page.evaluate("() => ({...window.__ib, now: performance.now(),"
                               " heap: performance.memory ? performance.memory.usedJSHeapSize : null})")


READY_TIMEOUT_S = 120.0


async def wait_ready(page, timeout: float | None = None) -> dict:
    """Wait until the page is ready and quiet; ``ready_s`` = max(all idle, last paint) since navigation start."""
    timeout = timeout or READY_TIMEOUT_S
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = await _probe(page)
        if state["ready_at"] is not None:
            done = max(state["ready_at"], state["last_paint"])
            if state["now"] - done >= QUIET_S * 1000:
                return {"ready_s": done / 1000, "plots": state["plots"], "heap_mb": (state["heap"] or 0) / 2**20}
        await asyncio.sleep(0.05)
    raise TimeoutError(f"page not ready after {timeout:.0f} s: {await _probe(page)}")


def watch(page, errors: list[str]) -> None:
    """Collect the page's console errors and every request that leaves the machine (or fails) into ``errors``."""
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "favicon" not in m.text else None)
    page.on("request", lambda r: errors.append(f"off-machine request from {page.url}: {r.url}")
            if not r.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")) else None)
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url} ({r.failure})"))


async def open_ready(context, url: str, errors: list[str]) -> dict:
    page = await context.new_page()
    watch(page, errors)
    await page.add_init_script(PAGE_PROBE)
    await page.goto(url, wait_until="commit", timeout=READY_TIMEOUT_S * 1000)  # (a busy server answers late)
    result = await wait_ready(page)
    await page.close()
    return result


async def bench_browser(figures: Figures, port: int, names: list[str], sessions: int, repeats: int,
                        binner_apps: list, steps: int) -> None:
    from playwright.async_api import async_playwright

    base = f"http://127.0.0.1:{port}"
    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                                 "--disable-component-update", "--disable-sync"])
        viewport = {"width": 1600, "height": 1000}
        await _pages_ready(figures, browser, base, names, sessions, repeats, errors, "chromium")
        # Binner frame step to new pixels
        context = await browser.new_context(viewport=viewport)
        try:
            await bench_browser_step(figures, context, f"{base}/binner512", binner_apps, steps, errors)
        except Exception as exc:  # noqa: BLE001
            figures.skip("chromium: binner frame step 512x512+200", f"{type(exc).__name__}: {exc}"[:300])
        await context.close()
        await browser.close()
    shown = sorted(set(e for e in errors if e.startswith(("off-machine", "request failed"))))[:3] or errors[:1]
    figures.rows["chromium: console errors and failed/off-machine requests"] = {"count": len(errors), "first": shown}
    print(f"{'chromium: errors, failed/off-machine requests':42s} {len(errors)}" + (f"  e.g. {shown}" if errors else ""))


async def _pages_ready(figures: Figures, browser, base: str, names: list[str], sessions: int, repeats: int,
                       errors: list[str], prefix: str) -> None:
    """Each page opened ``repeats + 1`` times (cold, then the median of the warm ones), then ``sessions`` review
    pages opened at once in the one browser (on the server's cores too)."""
    viewport = {"width": 1600, "height": 1000}
    for name in names:
        loads = []
        for _ in range(repeats + 1):
            context = await browser.new_context(viewport=viewport)
            try:
                loads.append(await open_ready(context, f"{base}/{name}", errors))
            except Exception as exc:  # noqa: BLE001
                figures.skip(f"{prefix}: {name} page ready", f"{type(exc).__name__}: {exc}"[:300])
                loads = []
                break
            finally:
                await context.close()
        if loads:
            figures.add(f"{prefix}: {name} page ready (cold)", loads[0]["ready_s"], "page_ready",
                        plots=loads[0]["plots"])
            warm = loads[1:] or loads
            figures.add(f"{prefix}: {name} page ready (warm)", statistics.median(r["ready_s"] for r in warm),
                        "page_ready", plots=warm[0]["plots"], js_heap_mb=round(warm[0]["heap_mb"]),
                        browser_rss_mb=round(browser_rss_mb() or 0))
    contexts = [await browser.new_context(viewport=viewport) for _ in range(sessions)]
    reset_peak()
    t0 = time.perf_counter()
    try:
        results = await asyncio.gather(*[open_ready(c, f"{base}/review", errors) for c in contexts])
        ready = [r["ready_s"] for r in results]
        figures.add(f"{prefix}: {sessions} concurrent reviews, slowest", max(ready), "concurrent_review_ready",
                    peak_rss_mb(), median_s=round(statistics.median(ready), 2),
                    wall_s=round(time.perf_counter() - t0, 2), browser_rss_mb=round(browser_rss_mb() or 0))
    except Exception as exc:  # noqa: BLE001
        figures.skip(f"{prefix}: {sessions} concurrent reviews", f"{type(exc).__name__}: {exc}"[:300])
    for c in contexts:
        await c.close()


async def bench_browser_served(figures: Figures, base: str, names: list[str], sessions: int, repeats: int,
                               processes: int) -> None:
    """The pages as users get them: served by ``imagebinner serve`` (its own process or processes, as deployed),
    opened in Chromium (page ready; ten reviews at once)."""
    from playwright.async_api import async_playwright

    errors: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                                 "--disable-component-update", "--disable-sync"])
        await _pages_ready(figures, browser, base, names, sessions, repeats, errors,
                           f"chromium, imagebinner serve ({processes} processes)")
        await browser.close()
    figures.rows["chromium, imagebinner serve: console errors and failed/off-machine requests"] = {
        "count": len(errors), "first": errors[:3]}
    print(f"{'chromium, imagebinner serve: errors, failed/off-machine requests':42s} {len(errors)}")


async def bench_browser_step(figures: Figures, context, url: str, apps: list, steps: int, errors: list) -> None:
    page = await context.new_page()
    watch(page, errors)
    await page.add_init_script(PAGE_PROBE)
    await page.goto(url, wait_until="commit", timeout=READY_TIMEOUT_S * 1000)
    await wait_ready(page)
    app = apps[-1]
    button = page.locator("button.next").first
    times = []
    for _ in range(steps):
        before = app.view.frame
        await page.evaluate("() => { window.__ib.click_at = null; }")
        await button.click()
        deadline = time.monotonic() + 20
        while True:
            state = await _probe(page)
            click = state["click_at"]
            if (click is not None and state["last_paint"] > click and app.view.frame != before
                    and state["now"] - state["last_paint"] >= STEP_QUIET_S * 1000):
                times.append((state["last_paint"] - click) / 1000)
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"no repaint after the step (frame {before} -> {app.view.frame})")
            await asyncio.sleep(0.02)
    figures.add("chromium: binner frame step 512x512+200", statistics.median(times), "binner_step_browser",
                max_ms=round(max(times) * 1000, 1), steps=len(times))
    await page.close()


def serve(factories: dict[str, Callable[[], Any]]) -> tuple[Any, int]:
    import panel as pn
    from sessions import free_port

    port = free_port()
    server = pn.serve(factories, port=port, address="127.0.0.1", threaded=True, show=False, verbose=False,
                      websocket_origin=[f"127.0.0.1:{port}"])
    import requests

    for _ in range(200):
        try:
            if requests.get(f"http://127.0.0.1:{port}/liveness", timeout=1).status_code < 500:
                break
        except requests.RequestException:
            time.sleep(0.05)
    return server, port


# -- main -------------------------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a smoke run of seconds")
    ap.add_argument("--no-browser", action="store_true", help="server-side figures only")
    ap.add_argument("--n", type=int, default=None, help="predictions (= ground truth) of the review (10 M)")
    ap.add_argument("--sessions", type=int, default=None, help="concurrent review sessions (10)")
    ap.add_argument("--num-procs", type=int, default=None,
                    help="processes of the `imagebinner serve` the concurrent sessions are measured on (default: as "
                         "imagebinner serve, one per usable core)")
    args = ap.parse_args()
    n = args.n or (200_000 if args.quick else 10_000_000)
    sessions = args.sessions or (3 if args.quick else 10)
    repeats, steps = (1, 3) if args.quick else (3, 10)
    figures = Figures()
    global READY_TIMEOUT_S
    READY_TIMEOUT_S = 40.0 if args.quick else 120.0
    load_before = os.getloadavg()[0]
    print(f"imagebinner dashboard benchmark: {os.cpu_count()} cores, load average {load_before:.1f} (figures grow "
          f"with the load of other processes), python {sys.version.split()[0]}", flush=True)
    root = make_root()
    print(f"data root {root}", flush=True)
    extensions()
    factories = page_factories()
    bench_page_builds(figures, factories)
    movie, locs = make_binner_measurement(root, n_frames=12 if args.quick else 30)
    bench_binner_step(figures, movie, locs, steps * 2)
    bench_review(figures, n, 1_000 if args.quick else 10_000, steps)
    from imagebinner.apps.binner import BinnerApp, template

    binner_apps: list = []

    def binner512():
        binner_apps.append(BinnerApp(measurements=[(movie, locs)]))
        return template(binner_apps[-1])

    server, port = serve({**factories, "binner512": binner512})
    try:
        bench_concurrent_sessions(figures, port, sessions, args.num_procs)
        if not args.no_browser and Path(CHROMIUM).exists():
            asyncio.run(bench_browser(figures, port, list(factories), sessions, repeats, binner_apps, steps))
        elif not args.no_browser:
            figures.skip("chromium", f"{CHROMIUM} not found")
    finally:
        server.stop()
    if not args.no_browser and Path(CHROMIUM).exists():
        from sessions import served

        processes = args.num_procs or len(os.sched_getaffinity(0))
        with served(root, tuple(factories), args.num_procs) as (base, _process, _log):
            asyncio.run(bench_browser_served(figures, base, list(factories), sessions, repeats, processes))
    print(json.dumps({"benchmark": "dashboard", "quick": args.quick, "cores": os.cpu_count(),
                      "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)], "n_review": n,
                      "sessions": sessions, "figures": figures.rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
