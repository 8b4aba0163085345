"""Notebook outputs in JupyterLab: the page's comm messages handled in order, the kernel's updates sent in order.

Panel and HoloViews talk to a notebook output over two comms per output: the page opens a *client* comm (page ->
kernel: widget changes, acknowledged one by one; the page's ``CommManager`` sends nothing more until the kernel's
acknowledgement arrives or 5 s pass, and only on the next change), and its opening makes the kernel open the
*server* comm (kernel -> page: held document events, one Bokeh message = several comm frames). Panel assumes both
are handled in the kernel's main thread in the order they were sent. JupyterLab >= 4.4 with ipykernel >= 7 sends
comm messages over kernel *subshells* (one thread per comm target) while ``comm_open`` goes to the main shell, behind
the cells still running (Run All). Two failures follow, both seen in the notebook's browser test:

* a message of a new output handled on its subshell before its ``comm_open`` is dropped by ipykernel ("No such
  comm", no acknowledgement): the page's ``CommManager`` stays blocked, and a player click in the next 5 s is kept in
  the page until some later change of that output (none comes): the kernel never sees the step, the frame is not
  redrawn;
* an update pushed before the output's comm is open is deferred by Panel on a timer, and a later update sent as soon
  as the comm opens overtakes it: the page is told about a model by reference before its definition ("reference …
  isn't known", e.g. the notifications sent while the notebook still runs).

:func:`comms_in_order` restores Panel's assumption: comm messages from the page are handled in the kernel's main
thread (as without subshells), and those that arrive before their comm is opened are kept and handled right after the
opening, in order; the server comms queue what is sent before they are open and send it, in order, when they open.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

#: messages kept for a comm that is not open yet (beyond that, the oldest are dropped as ipykernel would drop them)
MAX_PENDING = 1000


class _Queue:
    """Stands in for a server comm's Jupyter comm until the page has opened the output's client comm: keeps every
    frame sent, in order (truthy, so Panel does not defer its pushes on timers)."""

    def __init__(self) -> None:
        self.frames: list[tuple[Any, Any, Any]] = []

    def send(self, data=None, metadata=None, buffers=None) -> None:
        self.frames.append((data, metadata, list(buffers or [])))

    def close(self) -> None:
        self.frames.clear()


def _ordered_server_comm(base: type) -> type:
    """A subclass of pyviz_comms' ``JupyterComm`` whose frames sent before it opens are queued and sent first, in
    order, when it opens (:meth:`init`, called when the page opens the output's client comm)."""

    class OrderedJupyterComm(base):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._lock = threading.RLock()
            self._comm = _Queue()

        def init(self) -> None:
            with self._lock:
                queued = self._comm.frames if isinstance(self._comm, _Queue) else []
                self._comm = None
                super().init()
                for data, metadata, buffers in queued:
                    self._comm.send(data, metadata=metadata, buffers=buffers)

        def send(self, data=None, metadata=None, buffers=None) -> None:
            with self._lock:
                self._comm.send(data, metadata=metadata, buffers=list(buffers or []))

    OrderedJupyterComm.__name__ = OrderedJupyterComm.__qualname__ = f"Ordered{base.__name__}"
    return OrderedJupyterComm


def _kernel():
    """The running IPython kernel, or None outside one."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return getattr(shell, "kernel", None)


def _handle_in_main_thread(kernel) -> None:
    """Comm messages handled in the kernel's main thread; those for a comm not opened yet kept until it opens."""
    if getattr(kernel, "_imagebinner_comms_in_order", False):
        return
    handlers = kernel.shell_handlers
    opened, on_msg, on_close = handlers["comm_open"], handlers["comm_msg"], handlers["comm_close"]
    comms = kernel.comm_manager.comms
    pending: dict[str, list[tuple[Callable, tuple]]] = {}
    closed: set[str] = set()
    main = threading.main_thread()

    def in_main(work: Callable[[], None]) -> None:
        if threading.current_thread() is main:
            work()
        else:  # (the callback runs in the context of the message: its parent header)
            kernel.io_loop.add_callback(work)

    def deliver(handler: Callable, stream, ident, msg) -> None:
        comm_id = msg["content"].get("comm_id")
        if comm_id in comms and comm_id not in pending:
            handler(stream, ident, msg)
        elif comm_id not in closed:
            kept = pending.setdefault(comm_id, [])
            kept.append((handler, (stream, ident, msg)))
            del kept[:-MAX_PENDING]
        if handler is on_close:
            closed.add(comm_id)

    def open_comm(stream, ident, msg) -> None:
        def work() -> None:
            comm_id = msg["content"].get("comm_id")
            closed.discard(comm_id)
            opened(stream, ident, msg)
            for handler, args in pending.pop(comm_id, []):
                if comm_id in comms:
                    handler(*args)
        in_main(work)

    def message(stream, ident, msg) -> None:
        in_main(lambda: deliver(on_msg, stream, ident, msg))

    def close(stream, ident, msg) -> None:
        in_main(lambda: deliver(on_close, stream, ident, msg))

    handlers.update(comm_open=open_comm, comm_msg=message, comm_close=close)
    kernel._imagebinner_comms_in_order = True


def comms_in_order() -> bool:
    """Have Panel's and HoloViews' notebook outputs talk to the page in order (see the module's docstring): call
    once per kernel, before displaying anything (the notebook's first cell). False outside a Jupyter kernel."""
    kernel = _kernel()
    if kernel is None or not hasattr(kernel, "shell_handlers"):
        return False
    from panel.io import notebook

    server = notebook.JupyterCommManagerBinary.server_comm
    if not getattr(server, "_queues_until_open", False):
        ordered = _ordered_server_comm(server)
        ordered._queues_until_open = True
        notebook.JupyterCommManagerBinary.server_comm = ordered
    if not getattr(notebook.send, "_whole_messages", False):
        notebook.send = _whole_messages(notebook.send)
    _handle_in_main_thread(kernel)
    return True


def _whole_messages(send: Callable) -> Callable:
    """Panel's ``send`` (one Bokeh message as several comm frames) holding the comm's lock for the whole message, so
    that pushes from two threads (a job thread, the main thread) do not interleave their frames."""

    def whole(comm, msg) -> None:
        lock = getattr(comm, "_lock", None)
        if lock is None:
            send(comm, msg)
            return
        with lock:
            send(comm, msg)

    whole._whole_messages = True
    return whole
