"""``imagebinner serve [binner|predict|review|addons ...]``: serve the dashboards on this machine (127.0.0.1 by default)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from imagebinner.errors import ImageBinnerError, ParameterError

DASHBOARDS = ("binner", "predict", "review", "addons")  # (imagebinner.apps.pages.PAGES, without importing panel here)
DEFAULT_PORT = 5006
DEFAULT_ADDRESS = "127.0.0.1"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve the dashboards (Binner, predict, prediction review, add-ons) in the browser",
        description=(
            "Serve the dashboards with Panel on this machine. Every path a page touches must lie inside the data "
            "root (--root); without arguments a dashboard opens on demo data made once into <root>/imagebinner-demo."
        ),
    )
    parser.add_argument("dashboards", nargs="*", metavar="DASHBOARD",
                        help=f"Dashboards to serve: {', '.join(DASHBOARDS)} (default: all).")
    parser.add_argument("--root", metavar="DIR", default=".",
                        help="Data root: the only folder the pages may read or write (default: the current folder).")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"Port (default: {DEFAULT_PORT}).")
    parser.add_argument("--address", default=DEFAULT_ADDRESS,
                        help=f"Address to listen on (default: {DEFAULT_ADDRESS}, this machine only).")
    parser.add_argument("--allow-websocket-origin", dest="origins", action="append", default=[], metavar="HOST[:PORT]",
                        help="Further host names the pages may be opened under (default: the address and port).")
    parser.add_argument("--num-procs", type=int, default=None, metavar="N",
                        help="Server processes sharing the port, so concurrent sessions are built on several cores "
                             "(default: the number of usable cores; 1: one process).")
    parser.add_argument("--show", action="store_true", help="Open the page in the web browser.")
    parser.set_defaults(func=run)


def websocket_origins(address: str, port: int, extra: list[str]) -> list[str]:
    """Origins allowed to open a session: the served address (and its loopback aliases) at the port, plus ``extra``."""
    hosts = ("127.0.0.1", "localhost") if address in LOOPBACK else (address,)
    return [*(f"{h}:{port}" for h in hosts if ":" not in h), *extra]  # (Bokeh's allowlist takes no IPv6 literal)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1; 1 where there is no affinity (not Linux:
    there, forking a process that loaded the GUI libraries is not known to be safe, so one process by default)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return 1


def run(args: argparse.Namespace) -> int:
    unknown = [name for name in args.dashboards if name not in DASHBOARDS]
    if unknown:
        raise ParameterError(f"unknown dashboard {unknown[0]!r} (choose from {', '.join(DASHBOARDS)})")
    root = Path(args.root).expanduser().resolve()
    if not root.is_dir():
        raise ParameterError("data root not found (or not a folder)", args.root)
    if not 0 < args.port < 65536:
        raise ParameterError(f"--port must be in 1..65535, got {args.port}")
    num_procs = usable_cores() if args.num_procs is None else args.num_procs
    if num_procs < 1:
        raise ParameterError(f"--num-procs must be >= 1, got {num_procs}")
    if num_procs > 1 and not hasattr(os, "fork"):
        raise ParameterError("--num-procs above 1 needs a system that forks processes (Linux, macOS)")
    os.environ["IMAGEBINNER_ROOT"] = str(root)  # read by every session (imagebinner.apps.paths.data_root)

    import contextlib
    import importlib
    import tempfile

    import panel as pn  # only here: building the CLI's parser stays light

    from imagebinner.apps.offline import write_index
    from imagebinner.apps.pages import PAGES, extensions, factories

    names = list(dict.fromkeys(args.dashboards or DASHBOARDS))
    extensions()
    host = f"[{args.address}]" if ":" in args.address else args.address
    for name in names:
        print(f"imagebinner: serving {PAGES[name][2]} at http://{host}:{args.port}/{name}", flush=True)
    processes = "one process" if num_procs == 1 else f"{num_procs} processes"
    print(f"imagebinner: data root {root}, {processes} (Ctrl+C stops the server)", flush=True)
    titles = {name: PAGES[name][2] for name in names}
    with tempfile.TemporaryDirectory(prefix="imagebinner-serve-") as folder:
        options = dict(websocket_origin=websocket_origins(args.address, args.port, args.origins), title=titles,
                       index=str(write_index(Path(folder), titles)), verbose=False)
        if num_procs == 1:
            import asyncio

            from imagebinner.apps.multiprocess import quiet_closed_websockets

            loop = asyncio.new_event_loop()  # the loop pn.serve runs (Tornado's current loop of this thread)
            quiet_closed_websockets(loop)
            asyncio.set_event_loop(loop)
            pn.serve(factories(names), port=args.port, address=args.address, show=args.show, threaded=False,
                     warm=True, **options)  # each page built once before the first user: imports, caches ready
            return 0
        from imagebinner.apps.demo_data import demo_data
        from imagebinner.apps.multiprocess import listen, serve_processes

        try:
            sockets = listen(args.address, args.port)
        except OSError as exc:
            raise ParameterError(f"cannot listen on {args.address}:{args.port}: {exc.strerror or exc}") from None
        for name in names:  # imported once, before the processes are forked (shared copy-on-write)
            importlib.import_module(PAGES[name][0])
        with contextlib.suppress(ImageBinnerError):  # (if it cannot be made, each page says why, as with one process)
            demo_data()  # made once here, not by each process warming its pages
        return serve_processes(factories(names), sockets, num_procs=num_procs, show=args.show, **options)
