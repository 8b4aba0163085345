"""Serving without a browser: the confinement rule, the rooted file browser, notifications, Job warnings, demo data,
`imagebinner serve`, `panel serve dashboards/*.py` and session cleanup."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from urllib.parse import urlencode

import pytest

pn = pytest.importorskip("panel")
requests = pytest.importorskip("requests")

from imagebinner.apps import demo_data as demo_module  # noqa: E402
from imagebinner.apps import jobs  # noqa: E402
from imagebinner.apps.common import (  # noqa: E402
    DATA_ENV,
    ROOT_ENV,
    Job,
    RootedFileSelector,
    check_path,
    data_folder,
    data_root,
    find_measurement_pairs,
    notify,
    session_arg,
)
from imagebinner.errors import ImageBinnerError  # noqa: E402
from servers import free_port, open_files_under, process_alive, sessions_client, stop  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """``data/`` (the root: a.tif, sub/b.tif, a symlink to a file outside, a symlink to a folder outside) beside
    ``data2/`` (a sibling whose name starts like the root) and ``outside/``; the working folder is elsewhere."""
    root, sibling, outside = tmp_path / "data", tmp_path / "data2", tmp_path / "outside"
    for folder in (root / "sub", sibling, outside, tmp_path / "cwd"):
        folder.mkdir(parents=True)
    for f in (root / "a.tif", root / "sub" / "b.tif", sibling / "s.tif", outside / "o.tif"):
        f.write_bytes(b"x")
    (root / "link.tif").symlink_to(outside / "o.tif")
    (root / "linkdir").symlink_to(outside)
    (root / "sub" / "alias.tif").symlink_to(root / "a.tif")  # a symlink staying inside: a file like any other
    monkeypatch.setenv(ROOT_ENV, str(root))
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path / "cwd")
    return root.resolve()


# -- the confinement rule ----------------------------------------------------------------------------------------
def test_check_path_accepts_paths_inside_the_root_only(tree):
    assert data_root() == tree
    assert check_path(str(tree / "a.tif"), "movie") == tree / "a.tif"
    assert check_path("sub/b.tif", "movie") == tree / "sub" / "b.tif"  # relative to the root, not the cwd
    assert check_path("sub/../a.tif", "movie") == tree / "a.tif"
    assert check_path("new/out.csv", "output", kind="any", must_exist=False) == tree / "new" / "out.csv"
    refused = {
        "../outside/o.tif": "outside the data folder",  # ..
        str(tree.parent / "outside" / "o.tif"): "outside the data folder",  # absolute, outside
        "link.tif": "outside the data folder",  # a symlink inside pointing out
        "linkdir/o.tif": "outside the data folder",
        str(tree.parent / "data2" / "s.tif"): "outside the data folder",  # a sibling starting like the root
        "../data2/new.csv": "outside the data folder",  # outputs too
        "missing.tif": "not found",
        "sub": "not a file",
        "": "no movie given",
    }
    for text, cause in refused.items():
        with pytest.raises(ImageBinnerError, match=cause) as info:
            check_path(text, "movie")
        assert "\n" not in str(info.value)
    with pytest.raises(ImageBinnerError, match="not a folder"):
        check_path("a.tif", "folder", kind="folder")


def test_data_root_is_the_working_folder_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(ROOT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("x")
    assert data_root() == tmp_path.resolve()
    assert check_path("x.csv", "table") == tmp_path.resolve() / "x.csv"
    with pytest.raises(ImageBinnerError, match="outside"):
        check_path("/etc/hostname", "table")


def test_file_browser_lists_and_accepts_nothing_outside_the_root(tree):
    selector = RootedFileSelector(directory=str(tree), root_directory=str(tree))
    listed = set(selector._selector.options.values())
    assert listed == {str(tree / "a.tif"), str(tree / "sub")}  # no link.tif, no linkdir
    selector._directory.value = str(tree.parent / "data2")  # typed into the address box: prefix of the root
    assert selector.directory == str(tree)
    selector._update_files()
    assert str(tree.parent / "data2" / "s.tif") not in set(selector._selector.options.values())
    selector._directory.value = str(tree / "sub")  # inside: fine
    selector._update_files()
    assert set(selector._selector.options.values()) == {"..", str(tree / "sub" / "alias.tif"),
                                                        str(tree / "sub" / "b.tif")}
    assert "📁alias.tif" not in selector._selector.options  # (Panel's own listing shows file links as folders)
    selector._selector.value = [str(tree / "link.tif"), str(tree / "sub" / "b.tif")]  # a forged pick
    assert selector.value == [str(tree / "sub" / "b.tif")]


def test_path_picker_refuses_paths_outside_the_root(tree, capsys):
    from imagebinner.apps.common import PathPicker

    chosen = []
    picker = PathPicker({"movie": chosen.append})
    assert picker.root == tree
    for path in (tree / "link.tif", tree.parent / "data2" / "s.tif"):
        picker.selector.value = [str(path)]
        picker._use(chosen.append)
        assert "outside" in capsys.readouterr().out
    picker.selector.value = [str(tree / "a.tif")]
    picker._use(chosen.append)
    assert chosen == [str(tree / "a.tif")]


def test_query_parameters_and_discovery_are_confined(tree, monkeypatch, capsys):
    args = {"movie": [b"sub/b.tif"], "locs": [b"../outside/o.tif"], "n": [b"3"]}
    monkeypatch.setattr(type(pn.state), "session_args", property(lambda self: args))
    assert session_arg("movie") == [str(tree / "sub" / "b.tif")]  # relative to the root
    assert session_arg("locs") == [] and "../outside/o.tif: query parameter locs is outside" in capsys.readouterr().out
    assert session_arg("n", check=False) == ["3"]
    # discovery: a pair reached through a symlink out of the root is left out, with a warning
    for folder in (tree / "m", tree.parent / "outside" / "m"):
        folder.mkdir()
        (folder / "x.tif").write_bytes(b"x")
        (folder / "x_locs.csv").write_text("x")
    (tree / "m" / "y.tif").symlink_to(tree.parent / "outside" / "m" / "x.tif")
    (tree / "m" / "y_locs.csv").write_text("x")
    assert find_measurement_pairs(tree / "m") == [(str(tree / "m" / "x.tif"), str(tree / "m" / "x_locs.csv"))]
    assert "1 measurement(s) left out" in capsys.readouterr().out
    monkeypatch.setenv(DATA_ENV, "linkdir")
    assert data_folder() is None and "outside the data folder" in capsys.readouterr().out
    monkeypatch.setenv(DATA_ENV, "m")
    assert data_folder() == tree / "m"


# -- notifications and jobs --------------------------------------------------------------------------------------
class _Area:
    def __init__(self):
        self.sent = []
        self.param = type("P", (), {"update": lambda *a, **k: None})()

    def send(self, message, duration, type):
        self.sent.append((type, message, duration))


def test_notifications_time_out_by_kind_and_wait_for_the_page(monkeypatch):
    area = _Area()
    for kind in ("success", "info", "warning", "error"):
        notify(kind, f"a {kind}", area)
    assert [(t, d) for t, _m, d in area.sent] == [("success", 5000), ("info", 5000), ("warning", 10000),
                                                  ("error", 20000)]
    with pytest.raises(ValueError):
        notify("fatal", "no such kind", area)
    # during page setup: sent once the page has loaded
    loaded = []
    monkeypatch.setattr(type(pn.state), "notifications", property(lambda self: area))
    monkeypatch.setattr(jobs, "_page_not_loaded", lambda: True)
    monkeypatch.setattr(type(pn.state), "onload", lambda self, callback, threaded=False: loaded.append(callback))
    area.sent.clear()
    notify("error", "refused during setup")
    assert area.sent == [] and len(loaded) == 1
    loaded[0]()
    assert area.sent == [("error", "refused during setup", 20000)]


def test_job_turns_warnings_of_its_work_into_notifications(capsys, monkeypatch):
    def work():
        warnings.warn("pixel size 100 nm of the table differs from the movie's 107 nm")
        return 1

    job = Job()
    other = []

    def other_thread():  # a warning of another thread at the same time stays a plain warning
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.warn("not a job's")
        other.extend(str(w.message) for w in caught)

    job.start(work, lambda result: f"got {result}", label="Load")
    thread = threading.Thread(target=other_thread)
    thread.start()
    job.wait()
    thread.join()
    out = capsys.readouterr().out
    assert "imagebinner warning: Load: pixel size 100 nm" in out and "imagebinner success: got 1" in out
    assert job.warned == ["pixel size 100 nm of the table differs from the movie's 107 nm"]
    assert other == ["not a job's"]
    job.start(work, label="Load", threaded=False)  # the same warning again: reported again
    assert "Load: pixel size" in capsys.readouterr().out
    from imagebinner.apps.common import warnings_as_notifications

    with warnings_as_notifications("page setup") as caught:  # synchronous code, e.g. data loaded in a constructor
        work()
    assert caught and "imagebinner warning: page setup: pixel size" in capsys.readouterr().out
    shown = []  # outside the block (the hook still installed): the ordinary way of showing warnings
    monkeypatch.setattr(warnings, "_showwarnmsg_impl", shown.append)
    assert warnings.showwarning is jobs._showwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # (the test module's warning was shown once already)
        work()
    assert [str(m.message) for m in shown] == [job.warned[0]] and capsys.readouterr().out == ""


# -- demo data ---------------------------------------------------------------------------------------------------
def test_demo_data_is_made_once_inside_the_root_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    made = []
    real_make = demo_module._make
    monkeypatch.setattr(demo_module, "_make", lambda folder: (made.append(folder), real_make(folder)))
    results = []
    threads = [threading.Thread(target=lambda: results.append(demo_module.demo_data())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len({r.folder for r in results}) == 1
    data = results[0]
    assert data.folder == tmp_path.resolve() / "imagebinner-demo"
    assert len(data.measurements) == 2 and data.movie == data.measurements[0][0]
    for path in [*sum(data.measurements, ()), data.prediction_folder, data.ground_truth]:
        assert Path(path).exists() and check_path(path, "demo file", kind="any")
    assert [p.name for p in tmp_path.iterdir()] == ["imagebinner-demo"]  # no temporary folder left
    assert demo_module.demo_data() == data and len(made) == 1  # reused
    umask = os.umask(0)
    os.umask(umask)
    assert data.folder.stat().st_mode & 0o777 == 0o777 & ~umask  # readable like a folder made by mkdir (not 0700)


def test_demo_data_concurrent_processes_share_one_folder(tmp_path):
    """Two servers on one root at once: both get the same complete folder (atomic rename), nothing left over."""
    code = "from imagebinner.apps.demo_data import demo_data; print(demo_data().folder)"
    env = {**os.environ, ROOT_ENV: str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs[0] == outs[1]
    assert [p.name for p in tmp_path.iterdir()] == ["imagebinner-demo"]


def test_demo_data_refuses_a_foreign_folder_of_its_name(tmp_path, monkeypatch):
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    (tmp_path / "imagebinner-demo").mkdir()
    (tmp_path / "imagebinner-demo" / "mine.txt").write_text("keep me")
    with pytest.raises(ImageBinnerError, match="not a complete demo folder"):
        demo_module.demo_data()
    assert (tmp_path / "imagebinner-demo" / "mine.txt").read_text() == "keep me"


# -- serving -----------------------------------------------------------------------------------------------------
def _wait_until(condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_session_that_ends_closes_its_apps_files(tmp_path, monkeypatch, capsys):
    """The page factory (used by `imagebinner serve` and dashboards/*.py) closes the app when its session ends: the
    files it opened are released (the old scripts' lambda failed with "name 'app' is not defined")."""
    from imagebinner.apps.binner import BinnerApp
    from imagebinner.apps.pages import extensions, factories
    from imagebinner.apps.review import ReviewApp

    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    monkeypatch.delenv(DATA_ENV, raising=False)
    demo = demo_module.demo_data()
    closed = []
    for cls in (BinnerApp, ReviewApp):
        original = cls.close
        monkeypatch.setattr(cls, "close", lambda self, original=original: (closed.append(type(self).__name__),
                                                                            original(self))[1])
    extensions()
    port = free_port()
    pn.serve(factories(["binner", "review"]), port=port, address="127.0.0.1", threaded=True, show=False,
             websocket_origin=[f"127.0.0.1:{port}"], check_unused_sessions_milliseconds=200,
             unused_session_lifetime_milliseconds=200)
    for name in ("binner", "review"):
        _wait_until(lambda: _get(f"http://127.0.0.1:{port}/{name}"), what=f"/{name}")
    _wait_until(lambda: sorted(closed) == ["BinnerApp", "ReviewApp"], what="the sessions' close()")
    assert open_files_under(demo.folder) == 0
    assert "closing the session's app failed" not in capsys.readouterr().out  # nothing redrawn into a gone page


def _get(url: str) -> bool:
    try:
        return requests.get(url, timeout=30).status_code == 200
    except requests.ConnectionError:
        return False


def _serve(command: list[str], port: int, log: Path, cwd: Path, env: dict) -> subprocess.Popen:
    out = open(log, "w")
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
    out.close()
    deadline = time.monotonic() + 60
    while not _get(f"http://127.0.0.1:{port}/"):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    return proc


TITLES = {"binner": "ImageBinner: Binner", "review": "ImageBinner: prediction review",
          "addons": "ImageBinner: add-ons"}


def _listening_addresses(pid: int, port: int) -> set[str]:
    """Local addresses the process listens on at ``port`` (from /proc/net/tcp and tcp6)."""
    import ipaddress

    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port and fields[9] in inodes:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # little-endian words
                found.add(str(ipaddress.ip_address(raw)))
    return found


def test_imagebinner_serve_listens_on_this_machine_only_with_the_root(tmp_path):
    """`imagebinner serve` (all four by default, each built once before listening): 127.0.0.1 only, an index page
    that loads nothing off the machine, each dashboard with its title, the data root exported to the sessions (the
    demo data is made inside it)."""
    port = free_port()
    root = tmp_path / "root"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in (ROOT_ENV, DATA_ENV)}
    proc = _serve([sys.executable, "-m", "imagebinner.cli", "serve", "--root", str(root), "--port", str(port)],
                  port, tmp_path / "serve.log", tmp_path, env)
    try:
        assert _listening_addresses(proc.pid, port) == {"127.0.0.1"}
        # every page was built once before the server listened (warmed: the first user does not wait for imports
        # and caches), so the demo data each page opens on is there before any page was asked for
        assert (root / "imagebinner-demo" / "measurement1" / "movie.tif").is_file()
        index = requests.get(f"http://127.0.0.1:{port}/", timeout=30).text
        assert "http" not in index.replace('href="./', "")  # every link relative, nothing fetched from elsewhere
        for name, title in TITLES.items():
            assert f'href="./{name}"' in index
            page = requests.get(f"http://127.0.0.1:{port}/{name}", timeout=60)
            assert page.status_code == 200 and f"<title>{title}</title>" in page.text, name
            assert "fonts.googleapis" not in page.text and "cdn." not in page.text
        assert (root / "imagebinner-demo" / "measurement1" / "movie.tif").is_file()
        # a page from another origin cannot open a session's websocket; the served address can
        assert _websocket_status(port, f"http://example.org:{port}") == 403
        assert _websocket_status(port, f"http://127.0.0.1:{port}") != 403
        # a page's HTML frame comes from a cached session of the page without query (several processes:
        # reuse_sessions), and BokehJS fills its placeholders with the user's session's roots by position: every
        # dashboard has as many roots with a query string as without
        client = sessions_client()
        demo = "imagebinner-demo"
        m2 = f"{demo}/measurement2/movie.tif"
        queries = {"binner": {"movie": m2, "locs": f"{demo}/measurement2/movie_locs.csv"},
                   "predict": {"model": f"{demo}/model", "movie": m2},
                   "review": {"folder": f"{demo}/prediction", "movie": f"{demo}/measurement1/movie.tif"},
                   "addons": {"movie": m2, "locs": "../outside.csv"}}
        for name, query in queries.items():
            plain, = client.open_sessions(f"http://127.0.0.1:{port}", name, 1, warm_up=0)
            asked, = client.open_sessions(f"http://127.0.0.1:{port}", name, 1, query=urlencode(query), warm_up=0)
            assert plain["roots"] == asked["roots"] > 0, name
    finally:
        stop(proc)
    log = (tmp_path / "serve.log").read_text()
    assert f"http://127.0.0.1:{port}/binner" in log and "Traceback" not in log, log
    assert "W-1005" not in log, log  # (Bokeh's fixed-size check, silenced: the frame plots are sized as intended)


def _websocket_status(port: int, origin: str) -> int:
    """HTTP status of a session's websocket handshake to ``/binner/ws`` (a valid token from the page) sent with the
    given Origin (101: upgraded)."""
    import base64
    import re

    page = requests.get(f"http://127.0.0.1:{port}/binner", timeout=60).text
    token = re.search(r'"token":"([^"]+)"', page).group(1)
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall((f"GET /binner/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                      f"Sec-WebSocket-Protocol: bokeh, {token}\r\nOrigin: {origin}\r\n\r\n").encode())
        return int(sock.recv(1024).split(b" ")[1])


def test_imagebinner_serve_refuses_bad_arguments(tmp_path, capsys):
    from imagebinner.cli import main

    assert main(["serve", "viewer"]) == 2 and "unknown dashboard 'viewer'" in capsys.readouterr().err
    assert main(["serve", "--root", str(tmp_path / "nope")]) == 2 and "data root" in capsys.readouterr().err
    assert main(["serve", "--num-procs", "0"]) == 2 and "--num-procs must be >= 1" in capsys.readouterr().err
    with socket.socket() as taken:  # a port another server holds: refused before any process is started
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "review", "--root", str(tmp_path), "--port", str(port), "--num-procs", "2"]) == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in capsys.readouterr().err


def test_imagebinner_serve_builds_concurrent_sessions_in_every_process(tmp_path):
    """`imagebinner serve review --num-procs 2`: two warmed processes behind one listening socket; six sessions
    opened at once as browsers open them (page, websocket, document) each get the whole document, both processes
    build sessions, the log holds no error, and SIGTERM leaves no process behind."""
    import collections
    import re

    client = sessions_client()
    root = tmp_path / "root"
    root.mkdir()
    with client.served(root, ("review",), num_procs=2, log=tmp_path / "serve.log") as (base, proc, log):
        children = client.ready_pids(log)
        assert len(set(children)) == 2 and proc.pid not in children
        port = int(base.rsplit(":", 1)[1])
        assert _listening_addresses(proc.pid, port) == {"127.0.0.1"}  # one socket, bound once by the parent
        assert all(_listening_addresses(pid, port) == {"127.0.0.1"} for pid in children)  # and shared
        opened = client.open_sessions(base, "review", 6, warm_up=0)
        assert len(opened) == 6 and len({o["roots"] for o in opened}) == 1 and opened[0]["roots"] > 0
        built = collections.Counter(map(int, re.findall(r"process \d \(pid (\d+)\) opened a session",
                                                        log.read_text())))
        assert sum(built.values()) == 6 and set(built) == set(children), built  # each process built some
    assert proc.returncode is not None
    assert not any(map(process_alive, children))  # stopped with the parent, none orphaned
    text = log.read_text()
    assert "Traceback" not in text and "imagebinner error" not in text and "warning" not in text, text


def test_a_server_process_ending_on_its_own_stops_the_server(capsys):
    """The parent of `imagebinner serve --num-procs N` does not go on half-alive: a child that dies (here: killed)
    makes it stop the other children and exit with status 1, saying which process ended and how."""
    from imagebinner.apps.multiprocess import _supervise

    children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
    children[0].kill()
    assert _supervise({child.pid: number for number, child in enumerate(children, 1)}) == 1
    assert (f"server process 1 (pid {children[0].pid}) ended on its own (killed by SIGKILL); stopping the server"
            in capsys.readouterr().out)
    assert not any(process_alive(child.pid) for child in children)


def test_panel_serve_dashboards_with_the_readme_flags(tmp_path):
    """The README's `panel serve dashboards/*.py --address 127.0.0.1 ...` with IMAGEBINNER_ROOT: every page answers,
    the session cleanup runs without the old "name 'app' is not defined"."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if k != DATA_ENV}, ROOT_ENV: str(tmp_path)}
    scripts = sorted(str(p) for p in (REPO / "dashboards").glob("*.py"))
    proc = _serve([sys.executable, "-m", "panel", "serve", *scripts, "--index", "dashboards/index.html", "--warm",
                   "--address", "127.0.0.1", "--port", str(port), "--allow-websocket-origin", f"127.0.0.1:{port}",
                   "--check-unused-sessions", "200", "--unused-session-lifetime", "200"],
                  port, tmp_path / "serve.log", REPO, env)
    try:
        index = requests.get(f"http://127.0.0.1:{port}/", timeout=30).text
        assert all(f'href="./{name}"' in index for name in TITLES) and "http" not in index
        for name, title in TITLES.items():
            page = requests.get(f"http://127.0.0.1:{port}/{name}", timeout=60)
            assert page.status_code == 200 and f"<title>{title}</title>" in page.text, name
            assert "fonts.googleapis" not in page.text
        time.sleep(1.5)  # the unused sessions are destroyed (their cleanup runs)
    finally:
        stop(proc)
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log and "is not defined" not in log and "imagebinner error" not in log, log


# -- honest controls ---------------------------------------------------------------------------------------------
def test_out_of_bounds_numbers_are_refused_at_the_widget_with_the_bounds(capsys):
    """Typed out-of-bounds values (bin size 0, patch size -5, an empty required box) change nothing, the box shows
    the kept value again, and an error notification names the bounds; the browser is not told to clamp silently."""
    from bokeh.document import Document
    from bokeh.models import Spinner
    from pyviz_comms import Comm

    from imagebinner.apps.common import param_widget, tool_widgets
    from imagebinner.tools.binner import Binner

    binner = Binner(bin_size=4, patch_size=27)
    pane = tool_widgets(binner, Binner.settings)
    root = pane.get_root(Document(), comm=Comm())
    bin_size, patch_size, pixel_size = (param_widget(pane, n) for n in ("bin_size", "patch_size", "pixel_size"))
    model = next(m for m in root.select({"type": Spinner}) if m.title == bin_size.label)
    assert (model.low, model.high) == (None, None) and "≥ 1" in bin_size.stylesheets[0]
    for widget, typed, kept, bounds in ((bin_size, 0, 4, "≥ 1"), (patch_size, -5, 27, "≥ 1"),
                                        (bin_size, None, 4, "a value is required"), (pixel_size, 0, None, "> 0")):
        widget._process_events({"value": typed, "value_throttled": typed})  # as the browser sends a typed value
        assert getattr(binner, widget.what.lower().replace(" ", "_")) == kept and widget.value == kept
        out = capsys.readouterr().out
        assert f"imagebinner error: {widget.what}: {typed} refused" in out and bounds in out and f"kept {kept}" in out
    assert model.value == 4  # the box in the page shows the kept value
    bin_size._process_events({"value": 7, "value_throttled": 7})
    pixel_size._process_events({"value": 130.0, "value_throttled": 130.0})
    assert (binner.bin_size, binner.pixel_size, capsys.readouterr().out) == (7, 130.0, "")


def test_status_pane_wraps_long_lines():
    from imagebinner.apps.common import status_pane

    pane = status_pane("x" * 500)
    assert any("pre-wrap" in css for css in pane.stylesheets) and pane.sizing_mode == "stretch_width"


def test_the_committed_index_page_is_the_generated_one(tmp_path):
    from imagebinner.apps.offline import write_index
    from imagebinner.apps.pages import PAGES

    generated = write_index(tmp_path, {name: title for name, (_m, _c, title) in PAGES.items()})
    assert (REPO / "dashboards" / "index.html").read_text() == generated.read_text()


def _stylesheet_urls(model) -> set[str]:
    from bokeh.models import ImportedStyleSheet

    return {str(s.url) for s in model.select({"type": ImportedStyleSheet})}


def test_component_stylesheets_never_fall_back_to_panels_cdn(monkeypatch):
    """A model built or updated for a document that has no dist URL yet (a concurrent session's setup, a notebook
    update) links Panel's stylesheets from the served ``static/`` folder, or inline in a notebook with inline
    resources, never from cdn.holoviz.org (Panel's fallback, closed by apps.offline.local_stylesheets)."""
    from bokeh.document import Document
    from bokeh.settings import settings
    from panel.io.resources import CDN_DIST

    from imagebinner.apps.offline import local_stylesheets

    local_stylesheets()
    # (settings.resources is a PrioritizedSetting: patch its user value, so the old one comes back after the test)
    monkeypatch.setattr(settings.resources, "_user_value", "server")
    md = pn.pane.Markdown("one")
    served = _stylesheet_urls(md.get_root(Document()))
    assert served and all(u.startswith("static/extensions/panel/") for u in served), served
    monkeypatch.setattr(pn.config, "inline", True)
    md = pn.pane.Markdown("one")
    model = md.get_root(Document())
    md.object = "two"  # an update re-sends the pane's stylesheets (panel/pane/markup.py _update)
    inline = _stylesheet_urls(model)
    assert inline and all(u.startswith("data:text/css;base64,") for u in inline), inline
    assert not any(CDN_DIST in u for u in served | inline)


def test_the_file_browser_is_rendered_when_first_opened(tree):
    """The picker's card starts collapsed and empty (a page session renders no file browser it does not show);
    opening it renders the browser and its buttons once."""
    from bokeh.document import Document
    from bokeh.models import Button as BokehButton

    from imagebinner.apps.common import PathPicker

    card = pn.panel(PathPicker({"movie": lambda path: None}))
    doc = Document()
    root = card.get_root(doc)
    assert card.collapsed and not card.objects and not list(root.select({"type": BokehButton}))
    card.collapsed = False
    assert len(card.objects) == 2 and list(root.select({"type": BokehButton}))
    objects = list(card.objects)
    card.collapsed, card.collapsed = True, False
    assert card.objects == objects  # built once
