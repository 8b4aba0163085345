"""The Predict app in-process (no browser): opens on the demo data, Run writes what the headless tool writes, progress
to the end, written files downloadable, a preview of one frame, the review's address, refused paths, session end."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

pn = pytest.importorskip("panel")
hv = pytest.importorskip("holoviews")

from bokeh.document import Document  # noqa: E402
from pyviz_comms import Comm  # noqa: E402
from servers import free_port, open_files_under  # noqa: E402

from imagebinner.apps.common import DATA_ENV, ROOT_ENV, check_path, hv_pane  # noqa: E402
from imagebinner.apps.predict import DEMO_MAX_FRAMES, OUTPUT_DIR, PredictApp, movie_outputs, template  # noqa: E402
from imagebinner.io import open_movie, read_locs  # noqa: E402
from imagebinner.tools.predict import Predict  # noqa: E402

hv.extension("bokeh")
N_FRAMES = 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny demo folder (the demo model, two 4-frame 24 × 24 px movies with ground truth): a run takes seconds."""
    from imagebinner.simulate import make_demo

    return make_demo(tmp_path_factory.mktemp("predict_tiny") / "demo", seed=5,
                     settings={"n_frames": N_FRAMES, "height": 24, "width": 24, "emitters_per_frame": 3.0})


@pytest.fixture
def root(tiny, monkeypatch) -> Path:
    root = tiny.out_dir.parent.resolve()
    monkeypatch.setenv(ROOT_ENV, str(root))
    monkeypatch.delenv(DATA_ENV, raising=False)
    return root


def _fresh(base: Path, name: str) -> Path:
    k, path = 0, base / name
    while path.exists():
        k += 1
        path = base / f"{name}{k}"
    return path


def _render(app: PredictApp):
    return pn.panel(app).get_root(Document(), comm=Comm())


def _query(monkeypatch, **args) -> None:
    """The page's query string as Panel reports it (values as bytes)."""
    values = {k: [v.encode() for v in (vs if isinstance(vs, list) else [vs])] for k, vs in args.items()}
    monkeypatch.setattr(type(pn.state), "session_args", property(lambda self: values))


def test_opens_on_the_demo_model_and_movie_with_the_output_inside_the_root(tmp_path, monkeypatch):
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    monkeypatch.delenv(DATA_ENV, raising=False)
    app = PredictApp()
    _render(app)
    root = tmp_path.resolve()
    assert app.tool.model_folder == str(root / "imagebinner-demo" / "model")
    assert (Path(app.tool.model_folder) / "model_metadata.mat").is_file()
    assert app.tool.movies == [str(root / "imagebinner-demo" / "measurement1" / "movie.tif")]
    assert app.tool.output_folder == str(root / OUTPUT_DIR) and not (root / OUTPUT_DIR).exists()
    assert app.tool.max_frames == DEMO_MAX_FRAMES < 200  # a first Run on the demo takes seconds, not minutes
    # the controls are the tool's declaration, in its order (no hand-made widget), Run is its event
    assert app.controls.parameters == [*Predict.inputs, *Predict.settings, *Predict.outputs, *Predict.actions]
    assert app.run_button.label == "Run prediction" and not app.run_button.disabled
    assert app.review_url() is None and not app.frame.visible


def test_opens_on_the_data_folder_and_the_query_string_confined(root, tiny, monkeypatch, capsys):
    monkeypatch.setenv(DATA_ENV, str(tiny.out_dir))
    app = PredictApp()
    assert app.tool.model_folder == str(tiny.out_dir / "model")
    # the measurement pairs' movies, one per stem (both are movie.tif: their outputs would collide)
    assert app.tool.movies == [str(tiny.measurements[0].movie)]
    assert "imagebinner info: predict: 1 movie(s) left out" in capsys.readouterr().out
    movie = tiny.measurements[1].movie
    _query(monkeypatch, model="demo/model", movie=str(movie.relative_to(root)), output="here")
    app = PredictApp()
    assert (app.tool.model_folder, app.tool.movies) == (str(tiny.out_dir / "model"), [str(movie)])
    assert app.tool.output_folder == str(root / "here")
    _query(monkeypatch, model="../elsewhere", movie="../../etc/passwd")  # refused: nothing prefilled from them
    app = PredictApp()
    out = capsys.readouterr().out
    assert "imagebinner error: ../elsewhere: query parameter model is outside the data folder" in out
    assert "query parameter movie is outside the data folder" in out
    assert (app.tool.model_folder, app.tool.movies) == ("", [])


def test_run_writes_what_the_tool_writes_with_progress_downloads_preview_and_review_link(root, tiny, monkeypatch,
                                                                                          capsys):
    movie = tiny.measurements[0].movie
    out = _fresh(root, "predicted")
    app = PredictApp(model_folder="demo/model", movies=[str(movie.relative_to(root))],
                     output_folder=out.name)  # relative to the root
    _render(app)
    steps = []
    app.tool.param.watch(lambda e: steps.append(e.new), "progress")
    app.run()
    app.job.wait(180)
    assert app.job.message.startswith("predict: ") and "failed" not in app.job.message, app.job.message
    assert "imagebinner success: predict: " in capsys.readouterr().out
    assert steps == list(range(1, N_FRAMES + 1)) and app.tool.n_steps == N_FRAMES and not app.tool.running
    written = [Path(p) for p in app.tool.written]
    assert sorted(p.name for p in written) == sorted(["Localizations_movie_avg.csv", "Predicted_movie.tif",
                                                      "Widefield_movie.tif", "Predicted_stacked_movie.tif",
                                                      "model_metadata.mat"])
    assert all(p.parent == out and p.is_file() for p in written)
    # the same files as the headless tool (and the CLI) writes with the same settings
    headless = _fresh(root, "headless")
    Predict(model_folder=str(tiny.out_dir / "model"), movies=[str(movie)], output_folder=str(headless)).run()
    for p in written:
        assert p.read_bytes() == (headless / p.name).read_bytes(), p.name
    # downloads: each file's bytes, and all of them as one zip, built when clicked
    buttons = app.downloads(app.tool.written)
    assert [b.filename for b in buttons[:-1]] == [p.name for p in written]
    assert buttons[0].callback().getvalue() == written[0].read_bytes()
    with zipfile.ZipFile(io.BytesIO(buttons[-1].callback().getvalue())) as archive:
        assert sorted(archive.namelist()) == sorted(p.name for p in written)
    # the preview: frame k's camera frame and density, with exactly that frame's localizations of the CSV
    assert app.frame.visible and (app.frame.start, app.frame.end) == (0, N_FRAMES - 1)
    locs = read_locs(out / "Localizations_movie_avg.csv")
    for k in range(N_FRAMES):
        (camera, marks), (density, marks_hr) = (overlay.values() for overlay in app.frame_plot(k).values())
        rows = locs.frame_rows(k)
        np.testing.assert_array_equal(marks.dimension_values("x"), locs["x"][rows])
        np.testing.assert_array_equal(marks_hr.dimension_values("y"), locs["y"][rows])
        with open_movie(out / "Predicted_stacked_movie.tif") as stacked:
            np.testing.assert_array_equal(density.data["intensity"], stacked.frame(k))
        assert camera.data["intensity"].shape == (24, 24) and density.data["intensity"].shape == (192, 192)
    with pn.param.param.edit_constant(app.frame):
        app.frame.value_throttled = 2  # the slider released on frame 2: the preview shows it
    (_camera, marks), _hr = (overlay.values() for overlay in app.preview.objects[0].object.values())
    np.testing.assert_array_equal(marks.dimension_values("x"), locs["x"][locs.frame_rows(2)])
    assert movie_outputs(app.tool.summary["movies"][0])["stacked"] == out / "Predicted_stacked_movie.tif"
    # frames above the rasterize limit are rasterized (to the plot's size: 2048² hr pixels are not sent as they are)
    monkeypatch.setattr("imagebinner.views.frames.RASTERIZE_ABOVE_PIXELS", 24 * 24 * 4)
    camera_plot, hr_plot = app.frame_plot(1)
    assert isinstance(camera_plot, hv.Overlay) and isinstance(hr_plot, hv.DynamicMap)  # camera plain, hr rasterized
    hv_pane(app.frame_plot(1)).get_root(Document(), comm=Comm())  # renders
    # the review page's address opens the review on these files (its own query parsing, paths inside the root)
    url = app.review_url()
    assert url.startswith("review?") and f"]({'./' + url})" in app.review_link.object
    query = {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
    assert query == {"folder": out.name, "movie": str(movie.relative_to(root)),
                     "truth": str(tiny.measurements[0].locs.relative_to(root))}
    from imagebinner.apps.review import initial_inputs

    _query(monkeypatch, **query)
    assert initial_inputs() == {"folder": str(out), "movie": str(movie),
                                "ground_truth": str(tiny.measurements[0].locs)}
    # a second run into the same folder is refused (no overwrite), then replaces the files when asked
    before = {p: p.stat().st_mtime_ns for p in written}
    app.run()
    app.job.wait(180)
    assert "failed" in app.job.message and "exists already" in app.job.message
    assert {p: p.stat().st_mtime_ns for p in written} == before
    app.tool.overwrite = True
    with pn.param.param.edit_constant(app.frame):
        app.frame.value_throttled = 2  # the slider released on frame 2
    shown = (app.preview.objects[0], app.files.objects[0])
    app.run()
    app.job.wait(180)
    assert "failed" not in app.job.message and steps[-N_FRAMES:] == list(range(1, N_FRAMES + 1))
    assert app.frame.value_throttled == 0  # the new run's preview starts at frame 0
    # shown anew although the rerun's summary and file list equal the last ones (no param event)
    assert app.preview.objects[0] is not shown[0] and app.files.objects[0] is not shown[1]


@pytest.mark.parametrize("field, value, what", [
    ("output_folder", "../escaped", "output folder is outside the data folder"),
    ("model_folder", "../elsewhere/model", "model folder is outside the data folder"),
    ("movies", ["../elsewhere/movie.tif"], "movie is outside the data folder"),
    ("output_folder", "demo/measurement1/movie.tif", "output folder is a file"),
    ("model_folder", "", "no model folder given"),
])
def test_refused_paths_are_notifications_and_nothing_runs(root, tiny, field, value, what, capsys):
    movie = str(tiny.measurements[0].movie)
    out = _fresh(root, "refused")
    app = PredictApp(model_folder=str(tiny.out_dir / "model"), movies=[movie], output_folder=str(out))
    setattr(app.tool, field, value)
    before = set(root.parent.iterdir()) | set(root.iterdir())
    app.run(threaded=False)
    printed = capsys.readouterr().out
    assert "imagebinner error: predict: " in printed and what in printed, printed
    assert app.job.thread is None and app.tool.written == [] and app.tool.n_steps in (0, 1)
    assert set(root.parent.iterdir()) | set(root.iterdir()) == before  # nothing written anywhere


def test_a_model_file_linked_from_outside_the_root_is_refused(root, tiny, tmp_path_factory, capsys):
    outside = tmp_path_factory.getbasetemp().parent / f"outside-{os.getpid()}"
    outside.mkdir(exist_ok=True)
    model = _fresh(root, "linked_model")
    model.mkdir()
    for f in (tiny.out_dir / "model").iterdir():
        (outside / f.name).write_bytes(f.read_bytes())
        (model / f.name).symlink_to(outside / f.name)
    out = _fresh(root, "linked")
    app = PredictApp(model_folder=str(model), movies=[str(tiny.measurements[0].movie)], output_folder=str(out))
    app.run(threaded=False)
    assert "is outside the data folder" in capsys.readouterr().out
    assert app.job.thread is None and not out.exists()


def test_a_served_session_that_ends_closes_its_app(root, tiny, monkeypatch):
    """Served as dashboards/predict.py serves it (the app closed when the session ends); the page answers with its
    title; nothing stays open under the data."""
    import requests

    from imagebinner.apps.pages import close_on_session_end, extensions

    closed = []
    original = PredictApp.close
    monkeypatch.setattr(PredictApp, "close", lambda self: (closed.append(self), original(self))[1])
    monkeypatch.setenv(DATA_ENV, str(tiny.out_dir))
    extensions()

    def page():
        app = PredictApp()
        close_on_session_end(app)
        return template(app)

    port = free_port()
    pn.serve({"predict": page}, port=port, address="127.0.0.1", threaded=True, show=False,
             websocket_origin=[f"127.0.0.1:{port}"], check_unused_sessions_milliseconds=200,
             unused_session_lifetime_milliseconds=200)
    deadline = time.monotonic() + 60
    text = ""
    while time.monotonic() < deadline and "ImageBinner: predict" not in text:
        try:
            text = requests.get(f"http://127.0.0.1:{port}/predict", timeout=10).text
        except requests.ConnectionError:
            time.sleep(0.2)
    assert "ImageBinner: predict" in text
    while time.monotonic() < deadline and not closed:
        time.sleep(0.1)
    assert len(closed) == 1
    assert open_files_under(tiny.out_dir) == 0


def test_check_path_is_the_rule_for_the_resolved_inputs(root, tiny):
    """After a run the tool holds the resolved paths inside the root (what it opened)."""
    out = _fresh(root, "resolved")
    app = PredictApp(model_folder="demo/./model", movies=["demo/measurement2/../measurement2/movie.tif"],
                     output_folder=f"{out.name}/../{out.name}")
    app.run(threaded=False)
    assert app.tool.model_folder == str(check_path("demo/model", "m", kind="folder"))
    assert app.tool.movies == [str(tiny.measurements[1].movie)] and app.tool.output_folder == str(out)
    assert (out / "Localizations_movie_avg.csv").is_file()


def test_a_warning_of_the_run_is_a_notification(root, tiny, monkeypatch, capsys):
    """Warnings raised while the tool runs (e.g. a truncated TIF's) are warning notifications of the page."""
    import warnings

    original = Predict._plans

    def plans(self, model):
        warnings.warn(f"{self.movies[0]}: ImageJ metadata announce 9 images but the file holds 4 pages", stacklevel=2)
        return original(self, model)

    monkeypatch.setattr(Predict, "_plans", plans)
    app = PredictApp(model_folder=str(tiny.out_dir / "model"), movies=[str(tiny.measurements[1].movie)],
                     output_folder=str(_fresh(root, "warned")))
    app.run()
    app.job.wait(180)
    assert "failed" not in app.job.message and len(app.job.warned) == 1
    assert "imagebinner warning: predict: " in capsys.readouterr().out and app.tool.written
