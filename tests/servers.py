"""Test helpers for served pages: a free local port, waiting for a server process to answer, stopping it, counting
the files this process still holds open under a folder, and the benchmark's session clients (benchmarks/sessions.py:
sessions opened as a browser opens them, ``imagebinner serve`` run as a user runs it)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def sessions_client() -> ModuleType:
    """``benchmarks/sessions.py`` (one copy of the client code, for the benchmark and the tests)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("imagebinner_bench_sessions", BENCHMARKS / "sessions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def process_alive(pid: int) -> bool:
    """``pid`` is a running process (not gone, not a zombie waiting for its parent)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_answering(proc: subprocess.Popen, url: str, log: Path, timeout: float = 60.0) -> None:
    """Wait until ``url`` answers 200; fails with the server's log when the process ends or time runs out."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=5).ok:
                return
        except requests.ConnectionError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    """Terminate a server process (killed when it does not end within 10 s)."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def open_files_under(folder: Path) -> int:
    """Open file descriptors and memory maps of this process on files under ``folder``."""
    folder = str(folder.resolve())
    fds = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds += os.readlink(f"/proc/self/fd/{fd}").startswith(folder)
        except OSError:
            pass
    return fds + sum(folder in line for line in Path("/proc/self/maps").read_text().splitlines())
