"""Notebook comms in order (imagebinner.apps.notebook_comms), with a stand-in kernel and comm: page messages handled
in the kernel's main thread and, when they arrive before their comm is opened, right after the opening; a server
comm's frames sent before it opens go out first, in order; a Bokeh message's frames are sent under the comm's lock."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from imagebinner.apps import notebook_comms
from imagebinner.apps.notebook_comms import _handle_in_main_thread, _ordered_server_comm, _whole_messages


class FakeKernel:
    """The parts of an ipykernel kernel the ordering uses: shell handlers, open comms, the main thread's loop."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, str]] = []  # (handler, comm id or data, thread name)
        self.comm_manager = SimpleNamespace(comms={})
        self.callbacks: list = []  # added from other threads, run by ``run_main_loop`` in the main thread
        self.io_loop = SimpleNamespace(add_callback=self.callbacks.append)
        self.shell_handlers = {"comm_open": self._open, "comm_msg": self._record("msg"),
                               "comm_close": self._record("close"), "execute_request": self._record("execute")}

    def _open(self, _stream, _ident, msg) -> None:
        comm_id = msg["content"]["comm_id"]
        self.comm_manager.comms[comm_id] = object()
        self.log.append(("open", comm_id, threading.current_thread().name))

    def _record(self, kind: str):
        def handler(_stream, _ident, msg) -> None:
            content = msg["content"]
            self.log.append((kind, f"{content.get('comm_id')}:{content.get('data')}",
                             threading.current_thread().name))
            if kind == "close":
                self.comm_manager.comms.pop(content.get("comm_id"), None)
        return handler

    def from_subshell(self, kind: str, comm_id: str, data: object = None) -> None:
        """A message handled by a subshell thread, as JupyterLab sends comm messages."""
        msg = {"content": {"comm_id": comm_id, "data": data}}
        thread = threading.Thread(target=self.shell_handlers[kind], args=(None, [], msg), name="subshell")
        thread.start()
        thread.join()

    def run_main_loop(self) -> None:
        while self.callbacks:
            self.callbacks.pop(0)()


def _msg(comm_id: str, data: object = None) -> dict:
    return {"content": {"comm_id": comm_id, "data": data}}


def test_messages_before_their_comm_opens_are_handled_right_after_it_in_the_main_thread():
    kernel = FakeKernel()
    _handle_in_main_thread(kernel)
    kernel.from_subshell("comm_msg", "c1", 1)  # the page's first message, before the comm_open reached the kernel
    kernel.from_subshell("comm_msg", "c1", 2)
    assert kernel.log == []  # nothing handled in the subshell
    kernel.run_main_loop()
    assert kernel.log == []  # kept: the comm is not open (ipykernel would drop them)
    kernel.shell_handlers["comm_open"](None, [], _msg("c1"))  # the main shell, after the running cells
    main = threading.current_thread().name
    assert kernel.log == [("open", "c1", main), ("msg", "c1:1", main), ("msg", "c1:2", main)]


def test_messages_for_an_open_comm_are_handled_in_the_main_thread_in_order():
    kernel = FakeKernel()
    _handle_in_main_thread(kernel)
    kernel.shell_handlers["comm_open"](None, [], _msg("c1"))
    for k in range(3):
        kernel.from_subshell("comm_msg", "c1", k)
    assert [entry[0] for entry in kernel.log] == ["open"]  # waiting for the main thread (a cell may be running)
    kernel.run_main_loop()
    main = threading.current_thread().name
    assert kernel.log[1:] == [("msg", f"c1:{k}", main) for k in range(3)]


def test_a_closed_comm_gets_no_message_and_other_handlers_are_untouched():
    kernel = FakeKernel()
    execute = kernel.shell_handlers["execute_request"]
    _handle_in_main_thread(kernel)
    _handle_in_main_thread(kernel)  # once per kernel
    assert kernel.shell_handlers["execute_request"] is execute
    kernel.shell_handlers["comm_open"](None, [], _msg("c1"))
    kernel.from_subshell("comm_close", "c1")
    kernel.from_subshell("comm_msg", "c1", "late")
    kernel.run_main_loop()
    assert [entry[:2] for entry in kernel.log] == [("open", "c1"), ("close", "c1:None")]
    kernel.from_subshell("comm_msg", "c1", "later")  # not kept either: the comm is gone
    kernel.run_main_loop()
    kernel.shell_handlers["comm_open"](None, [], _msg("c2"))
    assert [entry[:2] for entry in kernel.log][-1] == ("open", "c2")


class FakeJupyterComm:
    """pyviz_comms.JupyterComm's shape: ``init`` opens the Jupyter comm, ``send`` writes to it."""

    def __init__(self, id=None, on_msg=None, on_error=None, on_stdout=None, on_open=None) -> None:
        self.id = id or "server"
        self._comm = None
        self.sent: list[tuple] = []

    def init(self) -> None:
        self._comm = SimpleNamespace(send=lambda data=None, metadata=None, buffers=None: self.sent.append(
            (data, metadata, buffers)), close=lambda: None)


def test_a_server_comm_sends_what_was_sent_before_it_opened_first_and_in_order():
    comm = _ordered_server_comm(FakeJupyterComm)()
    assert comm._comm  # Panel pushes at once (no deferral on a timer, which a later push could overtake)
    comm.send("header-1")
    comm.send("content-1", buffers=[b"x"])
    assert comm.sent == []  # the page has not opened the output's client comm yet
    comm.init()
    comm.send("header-2")
    assert [frame[0] for frame in comm.sent] == ["header-1", "content-1", "header-2"]
    assert comm.sent[1][2] == [b"x"]
    comm.init()  # opened again (the output drawn again): nothing sent twice
    assert len(comm.sent) == 3


def test_a_bokeh_message_is_sent_whole_under_the_comms_lock():
    comm = _ordered_server_comm(FakeJupyterComm)()
    comm.init()
    owned = []
    whole = _whole_messages(lambda c, msg: owned.append(hasattr(c, "_lock") and c._lock._is_owned()))
    whole(comm, "message")
    whole(SimpleNamespace(), "message")  # a comm without a lock: sent as it is
    assert owned == [True, False]


def test_outside_a_kernel_nothing_changes():
    from panel.io import notebook

    server = notebook.JupyterCommManagerBinary.server_comm
    assert notebook_comms.comms_in_order() is False
    assert notebook.JupyterCommManagerBinary.server_comm is server
