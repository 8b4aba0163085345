"""Serving the dashboards from several processes on one port: one Panel server per core, sessions spread over them.

A session costs its server 0.5-1 s of CPU (building the app, then serialising its document), so one Python
process serves concurrent users one after the other. ``serve_processes`` forks ``num_procs`` children after the
imports (shared copy-on-write) and before any app ran (Bokeh refuses to fork after that); each child warms its pages,
then serves them on the listening socket the parent bound. A child accepts one waiting connection per turn of its
event loop and none while it has work queued, so a child busy setting up a session takes no new connection and an
idle one takes it: the listen queue works as one queue shared by the children. (Tornado's own accept loop takes every waiting connection at once, so the
first child to wake takes a whole burst: measured 8 of 10 sessions in one process; ``SO_REUSEPORT`` sockets spread
connections by a hash of the client's address, at random: 6/4 twice, 7/3 and 10/0 in four runs.)

Pages are served with Panel's ``reuse_sessions``: a page request (GET) is answered from the child's cached session
of that page, and the user's session is built when its websocket connects, from the query string carried in the
page's token, in the process that holds the websocket; a page and its websocket may reach different processes. The
parent only supervises: SIGTERM or SIGINT stop the children; a child ending on its own stops the whole server
(exit status 1, with a message), rather than leave it half-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import panel as pn

#: a process with work queued takes a waiting connection only if it took none for this long (the others are busy too)
BUSY_WAIT_S = 2.0
DEFAULT_THEME = "default"
THEMES = tuple(pn.config.param["_theme"].objects)  # Panel's themes (``?theme=``): default, dark


def listen(address: str, port: int) -> list[socket.socket]:
    """The listening sockets the server processes share (raises ``OSError`` when the port is taken)."""
    from tornado.netutil import bind_sockets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # (tornado leaves a socket it failed to bind unclosed)
        try:
            return bind_sockets(port, address)
        except OSError as exc:
            error = OSError(exc.errno, exc.strerror)
    raise error


def serve_processes(pages: dict[str, Callable[[], Any]], sockets: list[socket.socket], *, num_procs: int,
                    show: bool = False, **serve_kwargs: Any) -> int:
    """Serve ``pages`` (``pn.serve``'s dict of page factories; ``serve_kwargs`` as for ``pn.serve``) on the
    listening ``sockets`` (see :func:`listen`) from ``num_procs`` warmed processes; returns the exit status once the
    server stopped."""
    if num_procs < 1:
        raise ValueError(f"num_procs must be >= 1, got {num_procs}")
    sys.stdout.flush()
    sys.stderr.flush()
    children: dict[int, int] = {}  # pid -> process number
    parent = os.getpid()
    for number in range(1, num_procs + 1):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                status = _child(number, num_procs, pages, sockets, parent=parent, show=show and number == 1,
                                **serve_kwargs)
            except BaseException as exc:  # noqa: BLE001 (reported, then this process ends without the parent's cleanup)
                print(f"imagebinner error: server process {number} failed: {exc!r}", flush=True)
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)  # never return into the parent's code (its temporary index folder, its exit)
        children[pid] = number
    try:
        return _supervise(children)
    finally:
        for sock in sockets:
            sock.close()


def _supervise(children: dict[int, int]) -> int:
    """Wait for the children; SIGTERM/SIGINT stop them all, a child ending on its own stops the others (exit 1)."""
    alive = dict(children)
    stopping = False
    failed = False

    def stop_all(_signum: int | None = None, _frame: Any = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(alive):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while alive:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            number = alive.pop(pid, None)
            if number is None or stopping:
                continue
            failed = True
            print(f"imagebinner error: server process {number} (pid {pid}) ended on its own ({_describe(status)}); "
                  "stopping the server", flush=True)
            stop_all()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if failed else 0


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.WEXITSTATUS(status)}"


def quiet_closed_websockets(loop: asyncio.AbstractEventLoop) -> None:
    """No "Task exception was never retrieved" traceback in the server log when a page was closed while the server
    was still writing to its websocket (Bokeh's writes raise ``WebSocketClosedError`` then): the user has gone, nothing
    failed. Every other unretrieved exception is reported as before."""
    from tornado.iostream import StreamClosedError
    from tornado.websocket import WebSocketClosedError

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if not isinstance(context.get("exception"), (WebSocketClosedError, StreamClosedError)):
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send this child SIGTERM when its parent ends (even by SIGKILL): no orphaned server process."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    if os.getppid() != parent:  # the parent ended before that
        os._exit(0)


@contextlib.contextmanager
def _listening_on(sockets: list[socket.socket]) -> Iterator[None]:
    """Bokeh's server (which binds its own sockets and takes none) is given no socket in here: ``_accept_one_by_one``
    hands it the connections of the parent's ``sockets``."""
    from bokeh.server import server as bokeh_server

    port = sockets[0].getsockname()[1]
    original = bokeh_server.bind_sockets
    bokeh_server.bind_sockets = lambda address, _port: ([], port)
    try:
        yield
    finally:
        bokeh_server.bind_sockets = original


def _accept_one_by_one(server: Any, sockets: list[socket.socket]) -> None:
    """Give ``server`` the connections of ``sockets``, one per turn of its event loop, and none while the loop has
    other work queued (unless it took none for ``BUSY_WAIT_S``): a process finishes the session it is setting up (its document sent)
    before it takes the next connection, so sessions are ready one after the other (measured, ten sessions on two
    processes: the first after 0.9 s, the median 2.5 s, instead of all together after 3.4-4.5 s) and an idle process
    takes the waiting connections."""
    from tornado.ioloop import IOLoop
    from tornado.iostream import IOStream

    http = server._http  # (Bokeh's HTTPServer)
    loop = IOLoop.current()
    queued = getattr(loop.asyncio_loop, "_ready", ())  # (CPython's asyncio: the callbacks due in this turn)
    last_accept = [time.monotonic()]

    def accept(sock: socket.socket, _events: int) -> None:
        if queued and time.monotonic() - last_accept[0] < BUSY_WAIT_S:
            return  # work queued here: an idle process takes the connection (or this one, when it is idle again)
        try:
            connection, address = sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):  # another child took it
            return
        last_accept[0] = time.monotonic()
        http.handle_stream(IOStream(connection, max_buffer_size=http.max_buffer_size,
                                    read_chunk_size=http.read_chunk_size), address)

    for sock in sockets:
        sock.setblocking(False)
        loop.add_handler(sock, accept, IOLoop.READ)


def page_key(request: Any) -> tuple[str, str]:
    """Panel's ``session_key_func`` for the cached page sessions: the page's path and its theme (``?theme=``, one of
    Panel's themes), whatever else the query string holds.

    The cached session gives a page request only its HTML frame (the template, its theme's stylesheets, its scripts,
    one placeholder per root); BokehJS fills the placeholders, by position, with the roots of the user's own session,
    built from the query string carried in the page's token. Every dashboard has the same roots whatever its query
    (checked in Chromium: tests/ui/test_multiprocess_serving.py), so a cached session per page and theme is right
    (a dark page needs the dark frame), and the cache stays bounded: an unknown theme counts as the default one
    (Panel's own key adds a session for every ``?theme=`` value, any string)."""
    theme = request.arguments.get("theme", [b""])[0].decode("utf-8", "replace")
    return request.path, theme if theme in THEMES else DEFAULT_THEME


def _warm_and_cache(server: Any) -> None:
    """Build each page once in this process (imports, kernels, caches ready) and keep the session as the page's
    cached session: page requests are answered from it (``reuse_sessions``), as ``panel serve --warm
    --reuse-sessions`` does."""
    from panel.io.document import _cleanup_doc
    from panel.io.session import generate_session
    from panel.io.state import set_curdoc, state

    for path, context in server._tornado.applications.items():
        session = generate_session(context.application)
        with set_curdoc(session.document):
            state._session_key_funcs[path] = page_key
            state._sessions[(path, DEFAULT_THEME)] = session
            session.block_expiration()
            state._on_load(None)
        _cleanup_doc(session.document, destroy=False)


def _child(number: int, count: int, pages: dict[str, Callable[[], Any]], sockets: list[socket.socket], *,
           parent: int, show: bool, **serve_kwargs: Any) -> int:
    """One server process: warm the pages, then serve the shared sockets' connections until SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the parent, which stops the children
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent(parent)
    loop = asyncio.new_event_loop()  # never the parent's loop
    quiet_closed_websockets(loop)
    asyncio.set_event_loop(loop)
    pn.config.reuse_sessions = True
    pn.config.session_key_func = page_key
    address, port = sockets[0].getsockname()[:2]
    with _listening_on(sockets):
        server = pn.serve(pages, port=port, address=address, show=False, start=False, threaded=False, warm=False,
                          **serve_kwargs)
    _warm_and_cache(server)

    def created(_context: Any) -> None:
        print(f"imagebinner: process {number} (pid {os.getpid()}) opened a session", flush=True)

    pn.state.on_session_created(created)
    print(f"imagebinner: server process {number}/{count} (pid {os.getpid()}) ready", flush=True)
    _accept_one_by_one(server, sockets)
    server.start()
    if show:
        server.show("/")
    server.io_loop.start()
    return 0
