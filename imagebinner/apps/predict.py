"""The Predict app: run a ZeroCostDL4Mic Deep-STORM model on movies, list the written files, preview one frame.

Opens on the page's query parameters (``?model=model/&movie=a.tif&movie=b.tif&output=predicted``), the constructor's
arguments, ``$IMAGEBINNER_DATA`` (a folder holding a model folder and movies), else the demo data (the demo model
folder and the first demo movie, made once inside the data root); the output folder defaults to
``<root>/imagebinner-predict``. Every path, input or output, goes through ``check_path`` before a run. The controls
are generated from :class:`~imagebinner.tools.predict.Predict`'s declaration; Run is its ``request_run`` event, run
in the job thread with the progress bar on the tool's ``progress``/``n_steps``.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import panel as pn
import param
from panel.viewable import Viewer

from imagebinner.apps.downloads import download_buttons, shown_path, status_html, written_files
from imagebinner.apps.common import (
    DATA_ENV,
    Job,
    check_path,
    data_folder,
    data_root,
    hv_pane,
    notify,
    param_widget,
    session_arg,
    tool_widgets,
)
from imagebinner.apps.template import DashboardTemplate
from imagebinner.errors import ImageBinnerError
from imagebinner.io.deepstorm_model import METADATA_NAME, WEIGHT_NAMES
from imagebinner.tools.predict import Predict

#: folder (inside the data root) receiving the predictions by default
OUTPUT_DIR = "imagebinner-predict"
#: clearer labels than the param names (the tooltips keep the full docs)
LABELS = {
    "model_folder": "Model folder",
    "movies": "Movies",
    "neighborhood_size": "Neighbourhood size",
    "local_average": "Local averaging",
    "pixel_size": "Camera pixel size [nm]",
    "output_folder": "Output folder",
    "request_run": "Run prediction",
}


# -- what the page opens on --------------------------------------------------------------------------------------
def _model_in(folder: Path) -> str:
    """The model folder of a data folder: the folder itself or its first sub-folder holding the metadata."""
    if (folder / METADATA_NAME).is_file():
        return str(folder)
    found = sorted(p.parent for p in folder.glob(f"*/{METADATA_NAME}"))
    return str(check_path(found[0], "model folder", kind="folder")) if found else ""


def _movies_in(folder: Path) -> list[str]:
    """The movies directly in a data folder (TIF or Picasso .raw, no prediction outputs), else those of its
    measurement pairs (``<stem>.tif`` + ``<stem>_locs.*``); the first of each file stem."""
    from imagebinner.apps.common import find_measurement_pairs
    from imagebinner.io.movie import MOVIE_SUFFIXES
    from imagebinner.io.predictions import is_prediction_name

    loose = [str(check_path(p, "movie")) for p in sorted(folder.iterdir())
             if p.is_file() and p.suffix.lower() in MOVIE_SUFFIXES and not is_prediction_name(p.name)]
    movies = loose or [movie for movie, _locs in find_measurement_pairs(folder)]
    by_stem: dict[str, str] = {}
    for movie in movies:  # one movie per stem: two of one stem would write the same files (Predict refuses it)
        by_stem.setdefault(Path(movie).stem, movie)
    if len(by_stem) < len(movies):
        notify("info", f"predict: {len(movies) - len(by_stem)} movie(s) left out: their names repeat another's "
                       "(the outputs are named after the movie); run them into another output folder")
    return list(by_stem.values())


#: frames predicted when the page opens on the demo data (the full-size network runs ≈1 frame/s at ×8 on 2 cores)
DEMO_MAX_FRAMES = 8


def initial_inputs() -> dict[str, Any]:
    """Model folder and movies from the query string, else ``$IMAGEBINNER_DATA``, else the demo data; a refused
    path is a notification and leaves its input empty. ``output`` (query) names the output folder."""
    args = pn.state.session_args or {}
    found: dict[str, Any] = {}
    output = session_arg("output", kind="any")
    if output:
        found["output_folder"] = output[0]
    if "model" in args or "movie" in args:
        model = session_arg("model", kind="folder", must_exist=True)
        movies = session_arg("movie", kind="file", must_exist=True)
        return {**found, **({"model_folder": model[0]} if model else {}), **({"movies": movies} if movies else {})}
    if os.environ.get(DATA_ENV, "").strip():
        folder = data_folder()  # refused (outside the root, missing): a notification, nothing prefilled
        if folder is None:
            return found
        inputs = {"model_folder": _model_in(folder), "movies": _movies_in(folder)}
        if not inputs["model_folder"]:
            notify("warning", f"predict: no model folder ({METADATA_NAME}) in {folder}")
        return {**found, **{k: v for k, v in inputs.items() if v}}
    from imagebinner.apps.demo_data import demo_data
    from imagebinner.simulate.demo import MODEL_DIR

    try:
        demo = demo_data()
    except ImageBinnerError as exc:
        notify("error", f"predict: no demo data: {exc}")
        return found
    model = demo.folder / MODEL_DIR
    if not (model / METADATA_NAME).is_file():  # a demo folder made before the demo had a model
        notify("warning", f"predict: the demo folder {demo.folder} has no model (remove it to remake it)")
        return {**found, "movies": [demo.movie]}
    # the first frames only, so a first Run takes seconds on a CPU; clear "max frames" to predict the whole movie
    return {"model_folder": str(model), "movies": [demo.movie], "max_frames": DEMO_MAX_FRAMES, **found}


# -- the results of a run ------------------------------------------------------------------------------------------
def movie_outputs(entry: dict) -> dict[str, Path]:
    """The files written for one movie (an entry of ``Predict.summary["movies"]``), by role."""
    from imagebinner.io.predictions import PREDICTION_PATTERNS

    roles: dict[str, Path] = {}
    for path in map(Path, entry.get("written", [])):
        for role, pattern in PREDICTION_PATTERNS.items():
            if pattern.match(path.name):
                roles.setdefault("localizations" if role.startswith("localizations") else role, path)
                break
    return roles


def _ground_truth(movie: Path) -> Path | None:
    """The movie's ``<stem>_locs.hdf5|.h5|.csv`` beside it, if any (the review's ground truth)."""
    from imagebinner.io.discovery import LOCS_SUFFIXES

    for suffix in LOCS_SUFFIXES:
        locs = movie.with_name(f"{movie.stem}_locs{suffix}")
        if locs.is_file():
            return locs
    return None


def review_query(folder: str | Path, movie: str | Path | None = None) -> str:
    """The review page's address for a prediction folder (paths relative to the data root): ``review?folder=...
    &movie=...&truth=...`` (the movie's ``<stem>_locs`` file as ground truth when there is one)."""
    query = {"folder": shown_path(Path(folder))}
    if movie:
        query["movie"] = shown_path(Path(movie))
        truth = _ground_truth(Path(movie))
        if truth is not None:
            query["truth"] = shown_path(truth)
    return "review?" + urlencode(query)


class PredictApp(Viewer):
    """Run a trained Deep-STORM model on movies (Predict), then see the written files and one predicted frame.

    In-process use: ``app.run()`` presses Run (``app.job.wait()`` waits for it), ``app.tool`` is the headless
    :class:`Predict`, ``app.frame_plot(k)`` is the preview of frame ``k``.
    """

    def __init__(self, model_folder: str | None = None, movies: list[str] | None = None,
                 output_folder: str | None = None, tool: Predict | None = None, **params: Any):
        super().__init__(**params)
        self.tool = tool or Predict()
        self.job = Job()
        given = {k: v for k, v in (("model_folder", model_folder), ("movies", movies),
                                   ("output_folder", output_folder)) if v}
        initial = given or ({} if tool is not None else initial_inputs())
        if initial:
            self.tool.param.update(**initial)
        if not self.tool.output_folder or (tool is None and "output_folder" not in initial):
            self.tool.output_folder = str(data_root() / OUTPUT_DIR)
        self.tool.executor = self._execute
        self._locs_cache: tuple[str, Any] | None = None
        self._build_widgets()

    def _build_widgets(self) -> None:
        t = self.tool
        paths = (*Predict.inputs, *Predict.outputs[:1])  # wide enough to show whole paths
        self.controls = tool_widgets(
            t, (*Predict.inputs, *Predict.settings, *Predict.outputs, *Predict.actions), labels=LABELS,
            widgets={**{p: {"sizing_mode": "stretch_width"} for p in paths},
                     **{event: {"disabled": self.job.param.busy} for event in Predict.actions}})
        self.run_button = param_widget(self.controls, "request_run")
        self.progress = pn.indicators.Progress(value=t.param.progress, max=t.param.n_steps, height=20,
                                               sizing_mode="stretch_width",
                                               visible=pn.bind(lambda running, status: running or bool(status),
                                                               t.param.running, t.param.status))
        self.status = pn.pane.HTML(pn.bind(status_html, t.param.status), sizing_mode="stretch_width")
        # the results are shown after each run (a rerun may write files of the same names and an equal summary:
        # no param event would say they are new)
        self.files = pn.Column(sizing_mode="stretch_width")
        self.review_link = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.frame = pn.widgets.IntSlider(label="Frame", start=0, end=1, value=0, visible=False,
                                          sizing_mode="stretch_width")
        self.frame.param.watch(lambda event: self.show_frame(event.new), "value_throttled")
        self.preview = pn.Column(sizing_mode="stretch_width")
        self.refresh()

    # -- running ----------------------------------------------------------------------------------------------
    def run(self, threaded: bool = True) -> None:
        """Press Run (as the button does): the paths checked, then ``Predict.run`` in the job thread."""
        if threaded:
            self.tool.param.trigger("request_run")  # what the button's click does
        else:
            self._execute("Predict", self.tool.run, threaded=False)

    def confined(self) -> dict[str, Any]:
        """The model folder, movies and output folder checked against the data root (relative = relative to the
        root), as resolved path strings; raises :class:`ImageBinnerError` naming the refused path."""
        t = self.tool
        if not t.movies:
            raise ImageBinnerError("no movie given")
        out = check_path(t.output_folder, "output folder", kind="any", must_exist=False)
        if out.exists() and not out.is_dir():
            raise ImageBinnerError("output folder is a file", out)
        model = check_path(t.model_folder, "model folder", kind="folder")
        movies = [check_path(str(m), "movie") for m in t.movies]
        # the files the tool opens beside them (a link out of the root is refused like a path typed)
        for path in (*(model / name for name in (METADATA_NAME, *WEIGHT_NAMES)),
                     *(m.with_suffix(".yaml") for m in movies if m.suffix.lower() == ".raw")):
            if path.exists() or path.is_symlink():
                check_path(path, f"{path.parent.name}/{path.name}", kind="any", must_exist=False)
        return {"model_folder": str(model), "movies": [str(m) for m in movies], "output_folder": str(out)}

    def _execute(self, label: str, work, threaded: bool = True) -> None:
        """The tool's executor: every path checked on the server (a refusal is a notification, nothing runs), the
        resolved paths used, then the action in the job thread."""
        self.job.start_checked(self.confined, self.tool, "predict", work, self._finished, label="predict",
                               threaded=threaded)

    def _finished(self, _written) -> str:
        self.refresh()
        return f"predict: {self.tool.status or 'done'}"

    # -- results ----------------------------------------------------------------------------------------------
    def downloads(self, paths: list) -> list[pn.widgets.FileDownload]:
        """Download buttons of the written files (see :func:`imagebinner.apps.downloads.download_buttons`)."""
        return download_buttons(paths, "predict")

    def _files(self, paths: list) -> pn.Column:
        return written_files(paths, "predict")

    def review_url(self) -> str | None:
        """The review page's address for the last run's output folder and its first movie (None before a run)."""
        movies = self.tool.summary.get("movies") or []
        if not movies:
            return None
        return review_query(Path(movies[0]["written"][0]).parent, movies[0]["movie"])

    def _review_text(self) -> str:
        url = self.review_url()
        if url is None:
            return ""
        folder = shown_path(Path(self.tool.summary["movies"][0]["written"][0]).parent)
        return (f"**Tune the post-processing** (threshold, neighbourhood, local averaging) and compare with the "
                f"ground truth: [open the review on `{folder}`](./{url}) (served pages; in a notebook: "
                f"`ReviewApp(folder=\"{folder}\")`).")

    def refresh(self) -> None:
        """Show the last run's results (called when a run ends): the written files, the review's link, the frame
        slider over the first movie's frames and its frame 0."""
        movies = self.tool.summary.get("movies") or []
        n = int(movies[0]["frames"]) if movies else 0
        self._locs_cache = None
        self.files.objects = [self._files(self.tool.written)]
        self.review_link.object = self._review_text()
        self.frame.param.update(end=max(n - 1, 1), value=0, visible=n > 1)
        with param.parameterized.discard_events(self.frame), param.edit_constant(self.frame):
            self.frame.value_throttled = 0
        self.show_frame(0)

    def show_frame(self, frame: int) -> None:
        """Preview frame ``frame`` of the first movie (what the slider does)."""
        self.preview.objects = [self._preview(frame)]

    def _locs(self, csv: Path):
        """The localizations of a written CSV (canonical table, read once per run)."""
        from imagebinner.io import read_locs

        if self._locs_cache is None or self._locs_cache[0] != str(csv):
            self._locs_cache = (str(csv), read_locs(csv, format="deepstorm-prediction"))
        return self._locs_cache[1]

    def frame_plot(self, frame: int = 0):
        """Frame ``frame`` of the last run's first movie: the camera frame and its predicted density (hr), each
        with that frame's localizations as crosses (nm; the review's pixel-centre conventions)."""
        import holoviews as hv

        from imagebinner.io import open_movie
        from imagebinner.views.frames import crosses, frame_image, hr_image, image_clim, is_large, maybe_rasterize

        entry = (self.tool.summary.get("movies") or [None])[0]
        if entry is None:
            return None
        files = movie_outputs(entry)
        frame = min(max(int(frame), 0), int(entry["frames"]) - 1)
        table = self._locs(files["localizations"])
        rows = table.frame_rows(frame)
        x, y = np.asarray(table["x"][rows]), np.asarray(table["y"][rows])
        with open_movie(entry["movie"], pixel_size=entry["pixel_size"]) as movie:
            raw = np.asarray(movie.frame(frame), dtype=np.float32)
        with open_movie(files["stacked"]) as stacked:
            density = np.asarray(stacked.frame(frame), dtype=np.float32)
        n = len(x)
        camera = frame_image(raw, entry["pixel_size"], clim=image_clim([raw]), label="camera frame")
        hr = hr_image(density, entry["pixel_size_hr"], clim=image_clim([density]), label="predicted density")
        if is_large(density.shape):  # e.g. 2048² hr pixels: 16 MB as a plain image; rasterized to the plot's size
            plain = hr
            hr = maybe_rasterize(hv.DynamicMap(lambda: plain), density.shape, entry["pixel_size_hr"])
        if is_large(raw.shape):
            plain_raw = camera
            camera = maybe_rasterize(hv.DynamicMap(lambda: plain_raw), raw.shape, entry["pixel_size"])
        marks = crosses(x, y, label="localizations")
        title = f"frame {frame} ({n} localizations)"
        plots = [(image.opts(title=f"{what}, {title}") * marks).opts(show_legend=False)
                 for what, image in (("camera", camera), ("prediction", hr))]
        return (plots[0] + plots[1]).opts(shared_axes=True).cols(2)

    def _preview(self, frame: int | None):
        if not self.tool.summary.get("movies"):
            return pn.pane.Markdown("*Press **Run prediction**: the written files and a predicted frame with its "
                                    "localizations appear here.*")
        try:
            return hv_pane(self.frame_plot(frame or 0))
        except (ImageBinnerError, OSError, KeyError) as exc:  # the outputs moved or were removed meanwhile
            return pn.pane.Alert(f"No preview: {exc}", alert_type="warning")

    def close(self) -> None:
        """Drop what the app keeps of the last run (it holds no file open between callbacks); called when the
        browser session ends."""
        self._locs_cache = None

    # -- layout -----------------------------------------------------------------------------------------------
    @property
    def sidebar(self) -> list:
        return [pn.pane.Markdown(html.escape(Predict.description(), quote=False)), self.controls, self.progress,
                self.status]

    @property
    def main(self) -> list:
        return [pn.Column(self.files, self.review_link, self.frame, self.preview, sizing_mode="stretch_width")]

    def __panel__(self):
        return pn.Row(pn.Column(*self.sidebar, width=360), pn.Column(*self.main, sizing_mode="stretch_width"),
                      sizing_mode="stretch_width")


def template(app: PredictApp) -> DashboardTemplate:
    """The served page: the model, movies and settings in the sidebar, the results in the main area."""
    return DashboardTemplate(title="ImageBinner: predict", sidebar_width=380, sidebar=app.sidebar,
                                        main=app.main)
