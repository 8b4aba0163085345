"""The prediction review app: load a DeepSTORM prediction folder (+ movie, ground truth), live threshold, metrics.

Open on data with query parameters (``?folder=pred/&movie=movie.tif&truth=movie_locs.hdf5``), the constructor's
arguments, or ``$IMAGEBINNER_DATA`` (a prediction folder, or a folder holding ``prediction/`` plus a movie and its
``<stem>_locs`` file).
"""

from __future__ import annotations

import holoviews as hv
import panel as pn
from panel.viewable import Viewer

from imagebinner.apps.common import (
    Job,
    PathPicker,
    check_path,
    data_folder,
    find_measurement_pairs,
    hv_pane,
    notify,
    rebuilt_on,
    session_arg,
    tool_widgets,
)
from imagebinner.errors import ImageBinnerError
from imagebinner.tools.review import PredictionReview
from imagebinner.views.review import ReviewView

MIN_INTERVAL_MS = 200


def _initial_inputs() -> dict:
    """Inputs from the page's query parameters, else from ``$IMAGEBINNER_DATA``."""
    found = {key: (session_arg(arg) or [""])[0] for key, arg in
             (("folder", "folder"), ("movie", "movie"), ("ground_truth", "truth"))}
    if found["folder"]:
        return {k: v for k, v in found.items() if v}
    folder = data_folder()
    if folder is None or not folder.is_dir():
        return {}
    if any(p.name.startswith("Localizations_") for p in folder.iterdir()):
        return {"folder": str(folder)}
    sub = [p for p in sorted(folder.iterdir()) if p.is_dir() and any(q.name.startswith("Localizations_")
                                                                     for q in p.iterdir())]
    if not sub:
        return {}
    out = {"folder": str(sub[0])}
    pairs = find_measurement_pairs(folder, max_depth=1)
    if pairs:
        out["movie"], out["ground_truth"] = pairs[0]
    return out


class ReviewApp(Viewer):
    """Review DeepSTORM predictions against ground truth: threshold, frames, merged images, metrics, sweep."""

    def __init__(self, folder: str | None = None, movie: str | None = None, ground_truth: str | None = None,
                 review: PredictionReview | None = None, **params):
        super().__init__(**params)
        self.review = review or PredictionReview()
        self.view = ReviewView(self.review)
        self.job = Job()
        given = {k: v for k, v in (("folder", folder), ("movie", movie), ("ground_truth", ground_truth)) if v}
        initial = given or ({} if review is not None else _initial_inputs())
        if initial:
            self.review.param.update(**{k: str(v) for k, v in initial.items()})
        self._build_widgets()
        self.review.executor = self._execute  # Load and Save run in the job thread, after the server-side checks
        if self.review.folder:
            self._execute("Load", self.review.load, threaded=False)

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
        self.status = pn.pane.Str(r.param.status, sizing_mode="stretch_width")
        (threshold,) = groups["threshold"]
        self.threshold = pn.widgets.FloatSlider.from_param(r.param[threshold], throttled=True, step=0.01,
                                                           label="Confidence threshold", sizing_mode="stretch_width")
        self.player = pn.widgets.Player.from_param(v.param.frame, throttled=True, interval=MIN_INTERVAL_MS,
                                                   loop_policy="loop", show_loop_controls=False, label="Frame",
                                                   sizing_mode="stretch_width")
        self.show_truth = pn.widgets.Checkbox.from_param(v.param.show_truth, label="Ground truth (green circles)")
        self.show_pred = pn.widgets.Checkbox.from_param(v.param.show_predictions, label="Predictions (red crosses)")
        self.summary = pn.pane.Markdown(pn.bind(self._summary, r.param.filtered), sizing_mode="stretch_width")

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
        """The review's executor: check the paths on the server, then run the action in the job thread."""
        r = self.review
        saving = getattr(work, "__name__", "") == "save"
        try:
            if saving:
                check_path(r.output_path, "output file", kind="any", must_exist=False)
            else:
                check_path(r.folder, "prediction folder", kind="folder")
                if r.movie:
                    check_path(r.movie, "movie", kind="any")
                if r.ground_truth:
                    check_path(r.ground_truth, "ground truth")
        except ImageBinnerError as exc:
            notify("error", f"{label.lower()} failed: {exc}" if saving else str(exc))
            return
        self.job.start(work, self._saved if saving else self._loaded, label=label, threaded=threaded)

    def _loaded(self, result) -> str:
        lo, hi = self.review.param.threshold.bounds
        self.threshold.param.update(start=lo, end=hi, step=max((hi - lo) / 200, 1e-6), value=self.review.threshold)
        return self.review.status

    def _saved(self, written) -> str:
        return f"wrote {', '.join(str(p) for p in written)} ({len(self.review.filtered)} predictions)"

    def _summary(self, filtered) -> str:
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
        """Close the files the views keep open; called when the browser session ends."""
        self.view.close()

    # -- layout -----------------------------------------------------------------------------------------------
    @property
    def sidebar(self) -> list:
        return [
            "### Prediction", self.inputs, self.progress, self.status,
            "### Threshold", self.threshold,
            "### Matching", self.matching,
            pn.Card(self.relocalize, title="Re-localization (source = stacked)", collapsed=True,
                    sizing_mode="stretch_width", margin=(5, 10)),
            "### Save", self.save_controls,
        ]

    @property
    def main(self) -> list:
        r, v = self.review, self.view
        frames = pn.Column(
            "### Frame by frame", self.player, pn.Row(self.show_truth, self.show_pred),
            # the plots size themselves (fixed frame, the image's aspect)
            rebuilt_on(r.param.predictions, lambda: (v.camera_plot() + v.stacked_plot()).opts(shared_axes=True),
                       stretch=False),
            sizing_mode="stretch_width",
        )
        merged = pn.Column(
            "### Merged (all frames)",
            # the plots size themselves (fixed frame height, width from the data aspect) and zoom together
            rebuilt_on(r.param.predictions, lambda: (v.sum_plot("widefield") + v.sum_plot("predicted")
                                                  + v.merged_localizations()).opts(shared_axes=True).cols(3),
                       stretch=False),
            sizing_mode="stretch_width",
        )
        small = dict(sizing_mode="stretch_width", height=240)
        metrics = pn.Column(
            "### Metrics", self.summary,
            pn.Row(hv_pane(hv.DynamicMap(v.confidence_histogram), **small),
                   hv_pane(hv.DynamicMap(v.density_curves), **small), sizing_mode="stretch_width"),
            pn.Row(hv_pane(hv.DynamicMap(v.sweep_plot), **small),
                   hv_pane(hv.DynamicMap(v.rmse_plot), **small),
                   pn.pane.DataFrame(v.metrics_table, index=False, width=260),
                   sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        return [self.picker, frames, merged, metrics]

    def __panel__(self):
        return pn.Row(pn.Column(*self.sidebar, width=340), pn.Column(*self.main, sizing_mode="stretch_width"),
                      sizing_mode="stretch_width")


def _button(controls: pn.Param) -> pn.widgets.Button:
    """The (one) button among generated widgets."""
    (button,) = [w for w in controls.layout if isinstance(w, pn.widgets.Button)]
    return button


def template(app: ReviewApp) -> pn.template.FastListTemplate:
    """The served page: inputs and threshold in the sidebar, views in the main area."""
    return pn.template.FastListTemplate(title="ImageBinner: prediction review", sidebar=app.sidebar, main=app.main,
                                        sidebar_width=360)
