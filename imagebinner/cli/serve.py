"""``imagebinner serve [binner|predict|review|addons ...]``: serve the dashboards on this machine (127.0.0.1 by default)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from imagebinner.errors import ParameterError

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
    parser.add_argument("--show", action="store_true", help="Open the page in the web browser.")
    parser.set_defaults(func=run)


def websocket_origins(address: str, port: int, extra: list[str]) -> list[str]:
    """Origins allowed to open a session: the served address (and its loopback aliases) at the port, plus ``extra``."""
    hosts = ("127.0.0.1", "localhost") if address in LOOPBACK else (address,)
    return [*(f"{h}:{port}" for h in hosts if ":" not in h), *extra]  # (Bokeh's allowlist takes no IPv6 literal)


def run(args: argparse.Namespace) -> int:
    unknown = [name for name in args.dashboards if name not in DASHBOARDS]
    if unknown:
        raise ParameterError(f"unknown dashboard {unknown[0]!r} (choose from {', '.join(DASHBOARDS)})")
    root = Path(args.root).expanduser().resolve()
    if not root.is_dir():
        raise ParameterError("data root not found (or not a folder)", args.root)
    if not 0 < args.port < 65536:
        raise ParameterError(f"--port must be in 1..65535, got {args.port}")
    os.environ["IMAGEBINNER_ROOT"] = str(root)  # read by every session (imagebinner.apps.paths.data_root)

    import tempfile

    import panel as pn  # only here: building the CLI's parser stays light

    from imagebinner.apps.offline import write_index
    from imagebinner.apps.pages import PAGES, extensions, factories

    names = list(dict.fromkeys(args.dashboards or DASHBOARDS))
    extensions()
    host = f"[{args.address}]" if ":" in args.address else args.address
    for name in names:
        print(f"imagebinner: serving {PAGES[name][2]} at http://{host}:{args.port}/{name}", flush=True)
    print(f"imagebinner: data root {root} (Ctrl+C stops the server)", flush=True)
    titles = {name: PAGES[name][2] for name in names}
    with tempfile.TemporaryDirectory(prefix="imagebinner-serve-") as folder:
        pn.serve(factories(names), port=args.port, address=args.address,
                 websocket_origin=websocket_origins(args.address, args.port, args.origins), title=titles,
                 index=str(write_index(Path(folder), titles)), show=args.show, verbose=False, threaded=False,
                 warm=True)  # each page built once before the first user: imports, kernels and caches ready
    return 0
