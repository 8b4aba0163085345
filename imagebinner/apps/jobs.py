"""Notifications (deferred during page setup, timed out by kind) and the threaded Job that reports results and warnings."""

from __future__ import annotations

import contextlib
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import panel as pn
import param

from imagebinner.errors import ImageBinnerError
from imagebinner.tools.base import results_published_by

#: how long each kind of notification stays (ms): errors longest, never forever
DURATIONS_MS = {"success": 5000, "info": 5000, "warning": 10000, "error": 20000}
#: at most this many notifications at once, at the bottom left (over the sidebar's foot, not over the plots)
MAX_NOTIFICATIONS = 3
POSITION = "bottom-left"


def configure_notifications(area=None) -> None:
    """Place the page's notification area and cap its length (call during page setup; done by :func:`notify` too)."""
    area = area if area is not None else pn.state.notifications
    if area is not None and not getattr(area, "_imagebinner_configured", False):
        area.param.update(max_notifications=MAX_NOTIFICATIONS, position=POSITION)
        area._imagebinner_configured = True


def _page_not_loaded() -> bool:
    doc = pn.state.curdoc
    return doc is not None and getattr(doc, "session_context", None) is not None and not pn.state.loaded


def notify(kind: str, message: str, notifications=None) -> None:
    """A "success", "info", "warning" or "error" notification on the page, always printed (server log) too.

    During page setup (session not loaded yet) it is shown once the page has loaded. It times out after
    :data:`DURATIONS_MS` (errors after 20 s).
    """
    if kind not in DURATIONS_MS:
        raise ValueError(f"kind must be one of {tuple(DURATIONS_MS)}, got {kind!r}")
    print(f"imagebinner {kind}: {message}", flush=True)
    target = notifications if notifications is not None else pn.state.notifications
    if target is None:
        return
    configure_notifications(target)

    def send() -> None:
        target.send(message, duration=DURATIONS_MS[kind], type=kind)

    if notifications is None and _page_not_loaded():
        pn.state.onload(send)
    else:
        send()


def in_session(doc, callback: Callable[[], Any]) -> None:
    """Run ``callback`` in the session's document context (on its event loop when served)."""
    if doc is None or getattr(doc, "session_context", None) is None:
        callback()
        return
    from panel.io.state import set_curdoc

    with set_curdoc(doc):
        pn.state.execute(callback, schedule=True)


#: the longest a job thread waits for its page's thread to apply a result change (then applies it itself)
PUBLISH_WAIT_S = 30.0


def applied_in_session(doc) -> Callable[[Callable[[], None]], None]:
    """A publisher for :func:`~imagebinner.tools.base.results_published_by`: result changes of a job thread applied
    in the session's own thread (its event loop), the job waiting until they are (so the tool's state stays in
    order), their errors raised in the job; at once outside a served session or in the session's thread. A
    session that does not answer (closed) gets them in the job thread after :data:`PUBLISH_WAIT_S`."""

    def publish(apply: Callable[[], None]) -> None:
        if doc is None or getattr(doc, "session_context", None) is None or pn.state._thread_id_.get(doc) in (
                None, threading.get_ident()):
            apply()
            return
        done, failed = threading.Event(), []

        def run() -> None:
            try:
                apply()
            except BaseException as exc:  # noqa: BLE001 (raised again in the job thread)
                failed.append(exc)
            finally:
                done.set()

        in_session(doc, run)
        if not done.wait(PUBLISH_WAIT_S) and not done.is_set():
            apply()  # (the session did not answer: a closed page)
            return
        if failed:
            raise failed[0]

    return publish


def _at_once(apply: Callable[[], None]) -> None:
    apply()


# ---- warnings raised inside a job's work become notifications of that job's page -----------------------------------
_job_local = threading.local()


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    report = getattr(_job_local, "report", None)
    if report is not None:
        report(str(message))
        return
    previous = _showwarning.previous
    if previous is not None and previous is not warnings._showwarning_orig:
        previous(message, category, filename, lineno, file, line)
    else:  # the standard path (also what pytest's warning recorder listens to)
        warnings._showwarnmsg_impl(warnings.WarningMessage(message, category, filename, lineno, file, line))


_showwarning.previous = None


def _install_warning_hook() -> None:
    """Route warnings of job threads to their reporter (thread-local: sessions' jobs never mix); other threads'
    warnings go where they went before. Warnings of imagebinner's own modules are always shown (not once per site)."""
    if warnings.showwarning is not _showwarning:
        _showwarning.previous = warnings.showwarning
        warnings.showwarning = _showwarning
    if not any(f[0] == "always" and f[3] is Warning and getattr(f[2], "pattern", None) == r"imagebinner\."
               for f in warnings.filters):
        warnings.filterwarnings("always", category=Warning, module=r"imagebinner\.")


@contextlib.contextmanager
def warnings_as_notifications(label: str = "") -> Iterator[list[str]]:
    """Within the block, warnings raised in this thread become "warning" notifications (prefixed ``label: ``) instead
    of server-log lines, e.g. around data loaded during page setup; yields the list of their texts."""
    collected: list[str] = []

    def report(text: str) -> None:
        collected.append(text)
        notify("warning", f"{label}: {text}" if label else text)

    _install_warning_hook()
    previous, _job_local.report = getattr(_job_local, "report", None), report
    try:
        yield collected
    finally:
        _job_local.report = previous


class Job(param.Parameterized):
    """Runs one long task at a time in a daemon thread; success/error notifications, warnings raised by the work as
    warning notifications; ``busy`` while running."""

    busy = param.Boolean(default=False, doc="True while a job runs (buttons are disabled).")
    message = param.String(default="", doc="Result or error of the last job.")
    warned = param.List(default=[], item_type=str, doc="Warnings raised by the last job's work.")

    def __init__(self, **params):
        super().__init__(**params)
        self.thread: threading.Thread | None = None

    def start_checked(self, check: Callable[[], dict[str, Any] | None], target: param.Parameterized | None,
                      refused: str, work: Callable[[], Any], done: Callable[[Any], str] | None = None,
                      label: str = "job", threaded: bool = True) -> bool:
        """Check on the server before ``work`` runs: ``check()`` returns resolved values (set on ``target`` where
        they differ) or raises :class:`ImageBinnerError`, shown as the error notification ``"<refused>: <cause>"``
        (nothing runs, False); then :meth:`start`."""
        try:
            values = check() or {}
        except ImageBinnerError as exc:
            notify("error", f"{refused}: {exc}")
            return False
        if target is not None:
            target.param.update(**{k: v for k, v in values.items() if getattr(target, k) != v})
        self.start(work, done, label=label, threaded=threaded)
        return True

    def start(self, work: Callable[[], Any], done: Callable[[Any], str] | None = None,
              label: str = "job", threaded: bool = True) -> None:
        """Run ``work()``; then ``done(result)`` (in the session) whose text is the success message."""
        if self.busy:
            notify("warning", f"{label}: another job is still running")
            return
        notifications = pn.state.notifications
        doc = pn.state.curdoc
        self.busy = True
        self.warned = []
        collected: list[str] = []

        def report(text: str) -> None:
            collected.append(text)
            in_session(doc, lambda: notify("warning", f"{label}: {text}", notifications))

        def finish(result: Any = None, error: BaseException | None = None) -> None:
            self.busy = False  # first: the buttons are enabled again before the done callback runs
            self.warned = list(collected)
            try:
                if error is None:
                    text = done(result) if done else f"{label} done"
                    self.message = text or f"{label} done"
                    notify("success", self.message, notifications)
                else:
                    self.message = f"{label} failed: {error}"
                    notify("error", self.message, notifications)
            except Exception as exc:  # the done callback itself failed
                self.message = f"{label} failed: {exc}"
                notify("error", self.message, notifications)
                traceback.print_exc()

        def target() -> None:
            _install_warning_hook()
            previous, _job_local.report = getattr(_job_local, "report", None), report
            try:
                with results_published_by(applied_in_session(doc) if threaded else _at_once):
                    result = work()
            except Exception as exc:
                if not isinstance(exc, ImageBinnerError):
                    traceback.print_exc()
                error = exc  # (``exc`` is unbound after the except block; the callback may run later)
                in_session(doc, lambda: finish(error=error))
                return
            finally:
                _job_local.report = previous
            in_session(doc, lambda: finish(result))

        if threaded:
            self.thread = threading.Thread(target=target, name=f"imagebinner-{label}", daemon=True)
            self.thread.start()
        else:
            target()

    def wait(self, timeout: float = 30.0) -> None:
        """Wait for the running thread (tests, scripts)."""
        if self.thread is not None:
            self.thread.join(timeout)
