"""Session starts as a browser makes them, without a browser: the server's part of opening a dashboard.

A browser opening a served page (1) GETs the page: the server answers the HTML holding the session's token (built
for a new session, or from a cached session with ``reuse_sessions``); (2) opens the session's websocket (subprotocols
``bokeh`` + token), gets an ``ACK`` and asks for the document (``PULL-DOC-REQ``); the server (building the session
now, if the page came from a cached one) serialises it (``PULL-DOC-REPLY``). Everything after that — scripts,
building and painting the views — runs in the user's browser, on the user's machine. :func:`open_sessions` does (1)
and (2) for several sessions at once, as that many users would, and times each until its document has arrived; used
by ``benchmarks/dashboard.py`` and ``tests/test_serving.py``. :func:`served` runs ``imagebinner serve`` as a user
does (a subprocess), for measuring the server as it is deployed.

    .venv/bin/python benchmarks/sessions.py [--num-procs 1 2] [--runs 3] [--sessions 10]

alternates runs of ``imagebinner serve review --num-procs N`` on the demo data (one fresh server per run) and prints
the slowest and median session ready time of each run, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

TOKEN = re.compile(r'"token":"([^"]+)"')
#: printed by each process of ``imagebinner serve --num-procs N`` (N > 1) once it has warmed its pages
READY = re.compile(r"server process \d+/\d+ \(pid (\d+)\) ready")


async def _message(ws) -> tuple[dict, str]:
    """One Bokeh protocol message (header, metadata, content and any buffers); returns its header and content."""
    header = json.loads(await ws.read_message())
    await ws.read_message()  # metadata
    content = await ws.read_message()
    for _ in range(header.get("num_buffers", 0)):
        await ws.read_message()  # buffer header
        await ws.read_message()  # buffer payload
    return header, content


async def open_session(base_url: str, name: str, query: str = "", timeout: float = 300.0) -> dict[str, float]:
    """Open one session of page ``name`` (``query``: the address's query string, without ``?``) as a browser does
    (page, websocket, document); seconds from the request to the page (``page_s``) and to the whole document
    (``ready_s``), and the number of root models of the document received (``roots``)."""
    from tornado.httpclient import AsyncHTTPClient
    from tornado.websocket import websocket_connect

    t0 = time.perf_counter()
    url = f"{base_url}/{name}" + (f"?{query}" if query else "")
    response = await AsyncHTTPClient().fetch(url, request_timeout=timeout)
    page_s = time.perf_counter() - t0
    token = TOKEN.search(response.body.decode())
    if token is None:
        raise RuntimeError(f"no session token in the page {url}")
    ws_url = base_url.replace("http://", "ws://", 1) + f"/{name}/ws"
    ws = await websocket_connect(ws_url, subprotocols=["bokeh", token.group(1)], connect_timeout=timeout)
    try:
        if (await _message(ws))[0]["msgtype"] != "ACK":
            raise RuntimeError(f"{ws_url}: no ACK")
        for part in (json.dumps({"msgid": uuid.uuid4().hex, "msgtype": "PULL-DOC-REQ"}), "{}", "{}"):
            await ws.write_message(part)
        while True:
            header, content = await _message(ws)
            if header["msgtype"] == "PULL-DOC-REPLY":
                break
    finally:
        ws.close()
    roots = len(json.loads(content)["doc"]["roots"])
    return {"page_s": page_s, "ready_s": time.perf_counter() - t0, "roots": roots}


def open_sessions(base_url: str, name: str, n: int, query: str = "", warm_up: int = 1) -> list[dict[str, float]]:
    """``n`` sessions of page ``name`` opened at once (after ``warm_up`` sessions opened one by one)."""

    async def run() -> list[dict[str, float]]:
        for _ in range(warm_up):
            await open_session(base_url, name, query)
        return list(await asyncio.gather(*[open_session(base_url, name, query) for _ in range(n)]))

    try:
        asyncio.get_running_loop()
    except RuntimeError:  # (none: the usual case)
        return asyncio.run(run())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # this thread runs a loop already (e.g. Playwright's): the clients run beside it
        return pool.submit(asyncio.run, run()).result()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready_pids(log: Path) -> list[int]:
    """Processes of a multi-process server that reported ready in its log."""
    return [int(pid) for pid in READY.findall(log.read_text())]


def sessions_per_process(log: Path) -> dict[int, int]:
    """Sessions built so far by each process of a multi-process server (its log lines; none for one process)."""
    counts: dict[int, int] = {}
    for pid in re.findall(r"process \d+ \(pid (\d+)\) opened a session", log.read_text()):
        counts[int(pid)] = counts.get(int(pid), 0) + 1
    return counts


@contextlib.contextmanager
def served(root: Path, names: tuple[str, ...] = ("review",), num_procs: int | None = None, log: Path | None = None,
           timeout: float = 120.0, stop_signal: int = signal.SIGTERM) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """``imagebinner serve NAMES --root ROOT`` (``--num-procs`` when given) on a free port, as a user runs it;
    yields (base url, process, log file) once every server process is ready; stopped with ``stop_signal`` (SIGINT:
    as Ctrl+C) afterwards."""
    import requests

    port = free_port()
    log = log or Path(tempfile.mkstemp(prefix="imagebinner-serve-", suffix=".log")[1])
    command = [sys.executable, "-m", "imagebinner.cli", "serve", *names, "--root", str(root), "--port", str(port)]
    if num_procs is not None:
        command += ["--num-procs", str(num_procs)]
    env = {k: v for k, v in os.environ.items() if k not in ("IMAGEBINNER_ROOT", "IMAGEBINNER_DATA")}
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"imagebinner serve did not start:\n{log.read_text()}")
            text = log.read_text()
            match = re.search(r"data root .*, (one process|(\d+) processes)", text)
            if match:
                expected = int(match.group(2) or 1)
                try:
                    answering = requests.get(f"{base}/", timeout=5).ok
                except requests.ConnectionError:
                    answering = False
                if answering and (expected == 1 or len(ready_pids(log)) == expected):
                    break
            time.sleep(0.2)
        yield base, proc, log
    finally:
        proc.send_signal(stop_signal)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num-procs", type=int, nargs="+", default=[1, 2], help="server processes to alternate (1 2)")
    ap.add_argument("--runs", type=int, default=3, help="runs of each (3)")
    ap.add_argument("--sessions", type=int, default=10, help="concurrent review sessions (10)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="imagebinner-sessions-")).resolve()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; data root {root}", flush=True)
    results: dict[int, list[dict[str, float]]] = {n: [] for n in args.num_procs}
    for run in range(args.runs):
        for n in args.num_procs:
            with served(root, num_procs=n) as (base, _proc, log):
                open_sessions(base, "review", 1, warm_up=0)  # one first session, as benchmarks/dashboard.py does
                before = sessions_per_process(log)
                ready = [o["ready_s"] for o in open_sessions(base, "review", args.sessions, warm_up=0)]
                after = sessions_per_process(log)
            row = {"slowest_s": round(max(ready), 2), "median_s": round(statistics.median(ready), 2),
                   "per_process": sorted((after[p] - before.get(p, 0) for p in after), reverse=True) or [len(ready)]}
            results[n].append(row)
            print(f"run {run + 1}: imagebinner serve review --num-procs {n}: {args.sessions} sessions, slowest "
                  f"{row['slowest_s']:.2f} s, median {row['median_s']:.2f} s, sessions per process "
                  f"{row['per_process']} (load {os.getloadavg()[0]:.1f})", flush=True)
    print(json.dumps({"benchmark": "sessions", "sessions": args.sessions, "cores": os.cpu_count(),
                      "runs": {str(n): rows for n, rows in results.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
