"""The prediction review app: load a DeepSTORM prediction folder (+ movie, ground truth), live threshold, metrics.

Opens on the page's query parameters (``?folder=pred/&movie=movie.tif&truth=movie_locs.hdf5``), the constructor's
arguments, ``$IMAGEBINNER_DATA`` (a prediction folder, or a folder holding ``prediction/`` plus a movie and its
``<stem>_locs`` file), else the demo data (made once inside the data root). Every path goes through ``check_path``.
The views sit in tabs built when shown (the page is ready once the frames are drawn); a tab left is dropped.
"""

from __future__ import annotations

import contextlib
import html
from pathlib import Path

import holoviews as hv
import panel as pn
from panel.viewable import Viewer

from imagebinner.apps.common import (
    DATA_ENV,
    Job,
    PathPicker,
    check_path,
    data_folder,
    data_root,
    find_measurement_pairs,
    hv_pane,
    lazy_card,
    notify,
    rebuilt_on,
    session_arg,
    tool_widgets,
)
from imagebinner.apps.template import DashboardTemplate
from imagebinner.errors import ImageBinnerError
from imagebinner.tools.review import PredictionReview
from imagebinner.views.review import NO_STACKED_MESSAGE, ReviewView

MIN_INTERVAL_MS = 200
#: the default save target, inside the data root (shown in the output box)
DEFAULT_OUTPUT = "kept_predictions.csv"
TABS = ("Frames", "All frames", "Density", "Metrics")


def _folder_inputs(folder: Path) -> dict:
    """A prediction folder, or a folder holding one (``prediction/``) beside a measurement pair."""
    if any(p.name.startswith("Localizations_") for p in folder.iterdir()):
        return {"folder": str(folder)}
    sub = [p for p in sorted(folder.iterdir()) if p.is_dir() and any(q.name.startswith("Localizations_")
                                                                     for q in p.iterdir())]
    if not sub:
        notify("warning", f"review: no prediction folder in {folder}")
        return {}
    out = {"folder": str(sub[0])}
    pairs = find_measurement_pairs(folder, max_depth=1)
    if pairs:
        out["movie"], out["ground_truth"] = pairs[0]
    return out


def initial_inputs() -> dict:
    """Inputs from the page's query parameters, else ``$IMAGEBINNER_DATA``, else the demo data (refused paths:
    a notification and nothing prefilled)."""
    found = {key: (session_arg(arg, kind=kind, must_exist=True) or [""])[0] for key, arg, kind in
             (("folder", "folder", "folder"), ("movie", "movie", "any"), ("ground_truth", "truth", "file"))}
    if found["folder"]:
        return {k: v for k, v in found.items() if v}
    if (pn.state.session_args or {}).get("folder"):
        return {}  # a refused folder: the notification says why
    import os

    if os.environ.get(DATA_ENV, "").strip():
        folder = data_folder()
        return _folder_inputs(folder) if folder is not None else {}
    from imagebinner.apps.demo_data import demo_data

    try:
        demo = demo_data()
    except ImageBinnerError as exc:
        notify("error", f"review: no demo data: {exc}")
        return {}
    return {"folder": demo.prediction_folder, "movie": demo.movie, "ground_truth": demo.ground_truth}


class ReviewApp(Viewer):
    """Review DeepSTORM predictions against ground truth: threshold, frames, merged images, metrics, sweep.

    In-process use: ``app.step(k)`` shows frame ``k`` (one batched update), ``app.set_threshold(t)`` moves the
    threshold as the slider does, ``app.view.render_sr()`` renders the all-frames image.
    """

    def __init__(self, folder: str | None = None, movie: str | None = None, ground_truth: str | None = None,
                 review: PredictionReview | None = None, **params):
        super().__init__(**params)
        self.review = review or PredictionReview()
        self.view = ReviewView(self.review)
        self.job = Job()
        given = {k: v for k, v in (("folder", folder), ("movie", movie), ("ground_truth", ground_truth)) if v}
        initial = given or ({} if review is not None else initial_inputs())
        if initial:
            self.review.param.update(**{k: str(v) for k, v in initial.items()})
        if not self.review.output_path:
            self.review.output_path = str(data_root() / DEFAULT_OUTPUT)
        self._build_widgets()
        self.review.executor = self._execute  # Load and Save run in the job thread, after the server-side checks
        self.review.param.watch(self._follow_load, "predictions")
        if self.review.folder:
            self._execute("Load", self.review.load, threaded=False)
        self._follow_load()

    def _build_widgets(self) -> None:
        r, v = self.review, self.view
        groups = r.setting_groups
        busy = {"disabled": self.job.param.busy}
        self.inputs = tool_widgets(r, (*r.inputs, *groups["prediction"], "request_load"),
                                   text=("folder", "stem", "movie", "ground_truth"), widgets={"request_load": busy})
        self.picker = PathPicker({
            "prediction folder": lambda path: setattr(r, "folder", path),
            "movie": lambda path: setattr(r, "movie", path),
            "ground truth": lambda path: setattr(r, "ground_truth", path),
        })
        self.relocalize = tool_widgets(r, groups["relocalization"])
        self.matching = tool_widgets(r, groups["matching"], widgets={"tolerance": {"throttled": True}})
        self.save_controls = tool_widgets(r, (*r.outputs, "request_save"), widgets={"request_save": busy},
                                          labels={"output_path": "Save kept predictions to"})
        self.progress = pn.indicators.Progress(value=r.param.progress, max=r.param.n_steps, height=20,
                                               sizing_mode="stretch_width")
        self.status = pn.pane.HTML(pn.bind(lambda s: f"<div>{html.escape(s or '')}</div>", r.param.status),
                                   sizing_mode="stretch_width",
                                   styles={"white-space": "normal", "overflow-wrap": "anywhere"})
        (threshold,) = groups["threshold"]
        self.threshold = pn.widgets.FloatSlider.from_param(r.param[threshold], throttled=True, step=0.01,
                                                           label="Confidence threshold", sizing_mode="stretch_width")
        self.player = pn.widgets.Player(start=0, end=max(v.param.frame.bounds[1], 1), value=0, label="Frame",
                                        interval=MIN_INTERVAL_MS, loop_policy="loop", show_loop_controls=False,
                                        sizing_mode="stretch_width")
        self.player.param.watch(lambda event: self.step(event.new), "value_throttled")
        self.classes = pn.widgets.CheckButtonGroup(options=list(v.classes), value=list(v.classes),
                                                   sizing_mode="stretch_width")
        self.classes.param.watch(self._classes_changed, "value")
        v.param.watch(lambda e: self.classes.param.update(value=[c for c in v.classes if c in e.new]), "shown")
        self.summary = pn.pane.Markdown(pn.bind(self._summary, r.param.metrics, r.param.match_status),
                                        sizing_mode="stretch_width")

    # -- in-process controls (the widgets call these) -------------------------------------------------------------
    def step(self, frame: int) -> None:
        """Show ``frame``: the frame images, marks and the density's frame marker change in one batched update."""
        lo, hi = self.view.param.frame.bounds
        with batched():
            self.view.frame = min(max(int(frame), lo), hi)
        if self.player.value != self.view.frame:
            self.player.value = self.view.frame

    def set_threshold(self, value: float) -> None:
        """Move the threshold as a slider release does (metrics, marks and the all-frames view follow)."""
        with batched():
            self.review.threshold = float(value)

    def _classes_changed(self, event) -> None:
        other = [c for c in self.view.param.shown.objects if c not in self.view.classes]
        with batched():
            self.view.shown = [*event.new, *other]

    def _follow_load(self, *_event) -> None:
        """After a (re)load: the player's range, the slider's range (the loaded confidences) and the classes."""
        r, v = self.review, self.view
        v._sync()
        self.player.param.update(end=max(v.param.frame.bounds[1], 1), value=min(self.player.value, v.frame))
        self.classes.param.update(options=list(v.classes), value=[c for c in v.classes if c in v.shown])
        if r.loaded:
            lo, hi = r.param.threshold.softbounds
            self.threshold.param.update(start=lo, end=hi, step=max((hi - lo) / 200, 1e-6), value=r.threshold)

    @property
    def load_button(self) -> pn.widgets.Button:
        """The Load button (generated from the review's ``request_load`` event)."""
        return _button(self.inputs)

    @property
    def save_button(self) -> pn.widgets.Button:
        """The Save button (generated from the review's ``request_save`` event)."""
        return _button(self.save_controls)

    # -- actions ----------------------------------------------------------------------------------------------
    def _execute(self, label: str, work, threaded: bool = True) -> None:
        """The review's executor: check the paths on the server (resolved, inside the data root), then run the
        action in the job thread."""
        r = self.review
        saving = getattr(work, "__name__", "") == "save"

        def confined() -> dict[str, str]:
            if saving:
                return {"output_path": str(check_path(r.output_path, "output file", kind="any", must_exist=False))}
            checked = {"folder": str(check_path(r.folder, "prediction folder", kind="folder"))}
            if r.movie:
                checked["movie"] = str(check_path(r.movie, "movie", kind="any"))
            if r.ground_truth:
                checked["ground_truth"] = str(check_path(r.ground_truth, "ground truth"))
            return checked

        self.job.start_checked(confined, r, f"review: {label.lower()} failed", work,
                               self._saved if saving else self._loaded, label=label, threaded=threaded)

    def _loaded(self, result) -> str:
        self._follow_load()
        return self.review.status

    def _saved(self, written) -> str:
        return f"wrote {', '.join(str(p) for p in written)} ({len(self.review.filtered)} predictions)"

    def _summary(self, *_results) -> str:
        r = self.review
        if not r.loaded:
            return "*Give a prediction folder (and optionally the movie and ground truth) and press Load.*"
        lines = [f"**{r.summary_line()}**"]
        st = {k: v for k, v in (r.suggested_thresholds or {}).items() if v is not None}
        if st:
            lines.append("Suggested thresholds: " + ", ".join(f"{k} {v:.3g}" for k, v in st.items()))
        lines.append(f"hr pixel {r.pixel_size_hr or float('nan'):.4g} nm, camera pixel "
                     f"{r.camera_pixel_size or float('nan'):.4g} nm, upsampling {r.upsampling_used}, "
                     f"{r.n_frames} frames")
        return "\n\n".join(lines)

    def close(self) -> None:
        """Close the files the views and the review keep open; called when the browser session ends."""
        self.view.close()
        self.review.close()

    # -- layout -----------------------------------------------------------------------------------------------
    @property
    def sidebar(self) -> list:
        return [
            "### Prediction", self.inputs, self.progress, self.status,
            "### Threshold", self.threshold,
            "### Matching", self.matching,
            lazy_card(lambda: (self.relocalize,), title="Re-localization (source = stacked)",
                      sizing_mode="stretch_width", margin=(5, 10)),
            "### Save", self.save_controls,
        ]

    def _frames_tab(self):
        v = self.view

        def plots():
            if not self.review.loaded:
                return pn.pane.Markdown("*No prediction loaded.*")
            camera = hv_pane(v.camera_plot())  # without a movie: the marks on an empty frame
            stacked = hv_pane(v.stacked_plot()) if v.has_stacked else pn.pane.Alert(
                NO_STACKED_MESSAGE, alert_type="info", width=420)
            return pn.Row(camera, stacked)

        rebuilt = pn.panel(pn.bind(lambda _p: plots(), self.review.param.predictions))
        return pn.Column(self.player, self.classes, rebuilt, sizing_mode="stretch_width")

    def _merged_tab(self):
        v = self.view
        return rebuilt_on(self.review.param.predictions,
                          lambda: (v.sum_plot("widefield") + v.sum_plot("predicted")
                                   + v.merged_localizations()).opts(shared_axes=True).cols(3), stretch=False)

    def _density_tab(self):
        v = self.view
        small = dict(sizing_mode="stretch_width", height=240)
        return pn.Column(hv_pane(v.density_plot(), **small), hv_pane(hv.DynamicMap(v.summary.density_boxplot), **small),
                         sizing_mode="stretch_width")

    def _metrics_tab(self):
        s = self.view.summary
        small = dict(sizing_mode="stretch_width", height=240)
        return pn.Column(
            self.summary,
            pn.Row(hv_pane(s.with_threshold(s.confidence_histogram), **small),
                   self._metrics_table(), sizing_mode="stretch_width"),
            pn.Row(hv_pane(s.with_threshold(s.sweep_plot), **small), hv_pane(s.with_threshold(s.rmse_plot), **small),
                   sizing_mode="stretch_width"),
            sizing_mode="stretch_width")

    def _metrics_table(self) -> pn.pane.DataFrame:
        """The metrics table, made once (a pane bound to the review keeps its watcher: one per build would pile up
        as the tab is shown again)."""
        if getattr(self, "_table", None) is None:
            self._table = pn.pane.DataFrame(self.view.summary.metrics_table, index=False, width=260)
        return self._table

    @property
    def main(self) -> list:
        """The file browser and the views in tabs; a tab's plots are built when it is shown. The frames stay; the
        other tabs' plots are dropped when another tab is shown (a threshold move updates only what is seen: the
        all-frames aggregation and the series of a hidden tab cost nothing)."""
        self._makers = (self._merged_tab, self._density_tab, self._metrics_tab)
        self._slots = [pn.Column(sizing_mode="stretch_width") for _ in self._makers]
        self.tabs = pn.Tabs((TABS[0], pn.param.ParamFunction(pn.bind(self._frames_tab), lazy=True)),
                            *zip(TABS[1:], self._slots), dynamic=True, sizing_mode="stretch_width")
        self.tabs.param.watch(self._tab_shown, "active")
        return [self.picker, self.tabs]

    def _tab_shown(self, event) -> None:
        """Build the shown tab's plots; empty the tab left (its plots are cleaned up)."""
        for k, (slot, make) in enumerate(zip(self._slots, self._makers), start=1):
            if k == event.new and not slot.objects:
                slot.objects = [make()]
            elif k != event.new and slot.objects:
                slot.objects = []

    def __panel__(self):
        return pn.Row(pn.Column(*self.sidebar, width=340), pn.Column(*self.main, sizing_mode="stretch_width"),
                      sizing_mode="stretch_width")


@contextlib.contextmanager
def batched():
    """Changes sent to the browser together, and the session document's model graph recomputed once (not once per
    updated plot: that walk of every model of the page dominated a frame step)."""
    doc = pn.state.curdoc
    with pn.io.hold(), (_graph_recomputed_if_changed(doc) if doc is not None else contextlib.nullcontext()):
        yield


@contextlib.contextmanager
def _graph_recomputed_if_changed(doc):
    """Like ``doc.models.freeze()`` (model-graph changes inside recompute the graph once, at the end), but no
    recompute when nothing changed the graph: a frame step or a threshold move only updates data and properties
    (``freeze``, which HoloViews also wraps around every plot update, walks all ~400 models of the page on exit
    whatever happened). Bokeh reports a changed reference through ``invalidate``; roots are compared."""
    models = doc.models
    if "invalidate" in vars(models):  # nested: the outer block decides
        yield
        return
    changed: list[bool] = []
    roots = list(doc.roots)
    models.invalidate = lambda: changed.append(True)
    models.recompute = lambda: None  # the plots' own freeze blocks: deferred to the end of this one
    try:
        yield
    finally:
        del models.invalidate, models.recompute
        if changed or list(doc.roots) != roots:
            models.recompute()


def _button(controls: pn.Param) -> pn.widgets.Button:
    """The (one) button among generated widgets."""
    (button,) = [w for w in controls.layout if isinstance(w, pn.widgets.Button)]
    return button


def template(app: ReviewApp) -> DashboardTemplate:
    """The served page: inputs and threshold in the sidebar, views in the main area (one root each)."""
    return DashboardTemplate(title="ImageBinner: prediction review", sidebar_width=360,
                     sidebar=[pn.Column(*app.sidebar, sizing_mode="stretch_width")],
                     main=[pn.Column(*app.main, sizing_mode="stretch_width")])
