"""Session starts as a browser makes them, without a browser: the server's part of opening a dashboard.

A browser opening a served page (1) GETs the page: the server runs the app for a new session and answers the HTML
holding the session's token; (2) opens the session's websocket (subprotocols ``bokeh`` + token), gets an ``ACK`` and
asks for the document (``PULL-DOC-REQ``); the server serialises it (``PULL-DOC-REPLY``). Everything after that —
scripts, building and painting the views — runs in the user's browser, on the user's machine. :func:`open_sessions`
does (1) and (2) for several sessions at once, as that many users would, and times each until its document has
arrived; used by ``benchmarks/dashboard.py`` to measure concurrent sessions on the server alone (its Chromium figure
runs every browser on the server's cores too).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

TOKEN = re.compile(r'"token":"([^"]+)"')


async def _message(ws) -> dict:
    """One Bokeh protocol message (header, metadata, content and any buffers); returns its header."""
    header = json.loads(await ws.read_message())
    await ws.read_message()  # metadata
    await ws.read_message()  # content
    for _ in range(header.get("num_buffers", 0)):
        await ws.read_message()  # buffer header
        await ws.read_message()  # buffer payload
    return header


async def open_session(base_url: str, name: str, timeout: float = 300.0) -> dict[str, float]:
    """Open one session of page ``name`` as a browser does (page, websocket, document); seconds from the request to
    the page (``page_s``) and to the whole document (``ready_s``)."""
    from tornado.httpclient import AsyncHTTPClient
    from tornado.websocket import websocket_connect

    t0 = time.perf_counter()
    response = await AsyncHTTPClient().fetch(f"{base_url}/{name}", request_timeout=timeout)
    page_s = time.perf_counter() - t0
    token = TOKEN.search(response.body.decode())
    if token is None:
        raise RuntimeError(f"no session token in the page {base_url}/{name}")
    ws_url = base_url.replace("http://", "ws://", 1) + f"/{name}/ws"
    ws = await websocket_connect(ws_url, subprotocols=["bokeh", token.group(1)], connect_timeout=timeout)
    try:
        if (await _message(ws))["msgtype"] != "ACK":
            raise RuntimeError(f"{ws_url}: no ACK")
        for part in (json.dumps({"msgid": uuid.uuid4().hex, "msgtype": "PULL-DOC-REQ"}), "{}", "{}"):
            await ws.write_message(part)
        while (await _message(ws))["msgtype"] != "PULL-DOC-REPLY":
            pass
    finally:
        ws.close()
    return {"page_s": page_s, "ready_s": time.perf_counter() - t0}


def open_sessions(base_url: str, name: str, n: int) -> list[dict[str, float]]:
    """``n`` sessions of page ``name`` opened at once (after one warm-up session)."""

    async def run() -> list[dict[str, float]]:
        await open_session(base_url, name)
        return list(await asyncio.gather(*[open_session(base_url, name) for _ in range(n)]))

    return asyncio.run(run())
