"""The Binner app: widgets generated from the Binner's declared params and events, threaded jobs, input/binned players.

Open on data with query parameters (``?movie=a.tif&locs=a_locs.hdf5&movie=...&locs=...&output=out/``), the
constructor's ``measurements``, or ``$IMAGEBINNER_DATA`` (a folder searched for ``<stem>.tif`` +
``<stem>_locs.hdf5|.csv`` pairs).

Threads: Load, Preview and Run are the Binner's events; the app sets ``binner.executor`` so that they run in a
:class:`~imagebinner.apps.common.Job` thread. The Binner sets its result params (``loaded``, ``pool``, ``plan``,
``running``, ``progress``, ``status``) from that thread and the views depend on them directly; Panel and HoloViews
do not touch the page from a foreign thread but schedule the model changes on the session's event loop (widget, pane
and plot updates check the document lock, ``state._unblocked(doc)``, and otherwise go through
``pn.state.execute(..., schedule=True)`` or ``doc.add_next_tick_callback``), so the page follows the results without
marshalling them by hand (tests/ui checks the players' ends and the binned images in the page). While the Binner
works the binned views show placeholders (``BinnerView.plan`` is None while ``running``, checked as each frame is
drawn), so the session does not read the Binner's files during a job; the input views read their own file handles;
the notifications and the player intervals are set in the session
when the job ends (``Job``'s ``done`` callback).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
    notify,
    param_widget,
    rebuilt_on,
    session_arg,
    tool_widgets,
)
from imagebinner.apps.demo_data import demo_data
from imagebinner.apps.template import DashboardTemplate
from imagebinner.errors import ImageBinnerError
from imagebinner.tools.binner import Binner
from imagebinner.views.binner import BinnerView
from imagebinner.views.binner_density import target_density_plot
from imagebinner.views.frames import frame_cost_ms

MIN_INTERVAL_MS = 150
#: long status lines and paths wrap instead of being cut off
WRAP_CSS = "pre, p, code { white-space: pre-wrap; overflow-wrap: anywhere; }"
#: the default output folder, relative to the data root (shown in the Output section)
DEFAULT_OUTPUT = "binned"
UPDATE_MS_PER_LAYER = 50  # Bokeh model update per plot layer and frame (measured on the demo data, 2-core machine)
#: what each part of an item of the measurement list is (named in the path-check messages)
MEASUREMENT_COLUMNS = ["movie", "localization file"]


def player_interval(compute_ms: float, n_layers: int) -> int:
    """Player interval (ms) at or above the per-frame cost: twice the computing time plus the model updates."""
    return max(MIN_INTERVAL_MS, int(2 * compute_ms + UPDATE_MS_PER_LAYER * n_layers))


@contextlib.contextmanager
def one_update(doc=None) -> Iterator[None]:
    """Batch the page updates of one step (a frame shown) into one message, without needless model-graph walks.

    HoloViews refreshes each plot inside ``doc.models.freeze()``, and Bokeh walks the whole page's model graph when
    the outermost freeze ends (≈ 0.1 ms per model, tens of ms per refresh for this page), although a frame step only
    replaces data. Here the step runs inside one outer freeze whose end walks the graph only when a model reference
    changed meanwhile (Bokeh then calls ``doc.models.invalidate()``; it is recorded instead), and inside
    ``pn.io.hold`` (one message to the page). ``doc``: default the current document; without one, nothing to batch.
    """
    doc = doc if doc is not None else pn.state.curdoc
    models = getattr(doc, "models", None)
    if models is None:
        yield
        return
    changed = []
    models.invalidate = lambda: changed.append(True)  # (an instance attribute shadows the method during the step)
    models._push_freeze()
    try:
        with pn.io.hold(doc):
            yield
    finally:
        del models.invalidate
        models._freeze_count -= 1  # the end of the outer freeze, with the walk only when needed
        if models._freeze_count == 0 and changed:
            models.recompute()


class FramePlayer(pn.widgets.Player):
    """A Player whose steps from the page are one batch of page updates (:func:`one_update`)."""

    def _process_events(self, events: dict[str, Any]) -> None:
        with one_update():
            super()._process_events(events)


class BinnerApp(Viewer):
    """Bin several measurements into dense DeepSTORM2D training frames, and look at every step."""

    def __init__(self, measurements: list[tuple[str, str]] | None = None, output_folder: str | None = None,
                 binner: Binner | None = None, **params):
        super().__init__(**params)
        self.binner = binner or Binner()
        self.view = BinnerView(self.binner)
        self.job = Job()
        self.pending_movie = ""  # a movie picked in the file browser, waiting for its localization file
        self._last_stats = ""
        if measurements is None:
            measurements = list(self.binner.measurements) if binner is not None else self._initial_measurements()
        output_folder = output_folder or (session_arg("output", kind="any") or [""])[0]
        if output_folder:
            self.binner.output_folder = output_folder
        elif not self.binner.output_folder:
            self.binner.output_folder = DEFAULT_OUTPUT  # inside the data root (resolved when used)
        self._build_widgets()
        self.binner.executor = self._execute
        if measurements:
            self.binner.measurements = [tuple(str(x) if isinstance(x, (str, Path)) else x for x in pair)
                                        for pair in measurements]
            self.load()

    # -- initial data -----------------------------------------------------------------------------------------
    @staticmethod
    def _initial_measurements() -> list[tuple[str, str]]:
        """The page's ``movie``/``locs`` query parameters, else the pairs in ``$IMAGEBINNER_DATA``, else the demo
        data (made once inside the data root). Refused paths are notified (by ``session_arg``/``data_folder``)
        and leave the list empty rather than show other data."""
        args = pn.state.session_args or {}
        if "movie" in args or "locs" in args:
            movies, locs = session_arg("movie", kind="file"), session_arg("locs", kind="file")
            if len(movies) != len(locs):
                notify("error", f"query parameters: {len(movies)} movie(s) but {len(locs)} localization file(s)")
                return []
            return list(zip(movies, locs))
        if os.environ.get(DATA_ENV, "").strip():
            folder = data_folder()
            return find_measurement_pairs(folder) if folder is not None else []
        try:
            return list(demo_data().measurements)
        except ImageBinnerError as exc:
            notify("error", f"demo data: {exc}")
            return []

    # -- widgets ----------------------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        b, v = self.binner, self.view
        self.inputs = tool_widgets(b, Binner.inputs, widgets={"measurements": {"columns": MEASUREMENT_COLUMNS}})
        self.measurement_list = param_widget(self.inputs, "measurements")
        self._picker: PathPicker | None = None  # built when first opened (its file listing is slow to build)
        self.browse_button = pn.widgets.Button(label="Browse server files", description="Pick movies, localization "
                                               "files or the output folder inside the data folder.")
        self.browse_button.on_click(lambda event: self._open_browser())
        self.browser = pn.Column(self.browse_button, sizing_mode="stretch_width")
        self.settings = tool_widgets(b, Binner.settings)
        self.outputs = tool_widgets(b, Binner.outputs)
        # the Binner's events as buttons (the last, Run, primary), disabled while a job runs
        self.actions = tool_widgets(b, tuple(Binner.actions), default_layout=pn.Row,
                                    widgets={name: {"disabled": self.job.param.busy} for name in Binner.actions})
        self.load_button, self.preview_button, self.run_button = (param_widget(self.actions, name)
                                                                  for name in Binner.actions)
        self.progress = pn.indicators.Progress(value=b.param.progress, max=b.param.n_steps, sizing_mode="stretch_width",
                                               height=20)
        self.status = pn.pane.Str(b.param.status, sizing_mode="stretch_width", stylesheets=[WRAP_CSS])
        self.notebook_settings = pn.pane.Str(pn.bind(notebook_settings_text, b.param.notebook_settings),
                                             sizing_mode="stretch_width", stylesheets=[WRAP_CSS])
        self.root_note = pn.pane.Markdown(f"Relative paths are inside the data folder `{data_root()}`.",
                                          sizing_mode="stretch_width", stylesheets=[WRAP_CSS])
        self.frame_player = FramePlayer.from_param(
            v.param.frame, throttled=True, interval=MIN_INTERVAL_MS, loop_policy="loop", show_loop_controls=False,
            label="Input frame", sizing_mode="stretch_width")
        self.measurement_select = pn.widgets.Select(label="Measurement shown",
                                                    options=pn.bind(self._measurement_options, b.param.loaded))
        self.measurement_select.param.watch(lambda e: setattr(v, "measurement", e.new), "value")
        v.param.watch(self._measurement_shown, "measurement")
        self.binned_player = FramePlayer.from_param(
            v.param.binned_frame, throttled=True, interval=MIN_INTERVAL_MS, loop_policy="loop",
            show_loop_controls=False, label="Binned frame", sizing_mode="stretch_width")
        self.part_slider = pn.widgets.IntSlider.from_param(v.param.part, label="Part (jumps the input player to it)")
        self.crosses_toggle = pn.widgets.Checkbox.from_param(v.param.show_crosses, label="Show localizations")
        self.stats = pn.pane.Markdown(pn.bind(self._stats_text, b.param.stats, b.param.running),
                                      sizing_mode="stretch_width")

    @property
    def picker(self) -> PathPicker:
        """The server-file browser (built on first use)."""
        if self._picker is None:
            self._picker = PathPicker({
                "movie": self._pick_movie,
                "localizations": self._pick_locs,
                "output folder": lambda path: setattr(self.binner, "output_folder", path),
            })
        return self._picker

    def _open_browser(self) -> None:
        card = pn.panel(self.picker)
        card.collapsed = False
        self.browser.objects = [card]

    @staticmethod
    def _measurement_options(loaded: list) -> dict[str, int]:
        return {f"{m.index + 1}: {m.movie_path.name}": m.index for m in loaded or []} or {"(none)": 0}

    def _measurement_shown(self, event) -> None:
        if event.new in self.measurement_select.options.values():
            self.measurement_select.value = event.new

    def _pick_movie(self, path: str) -> None:
        self.pending_movie = path
        notify("info", f"movie {Path(path).name} chosen: now choose its localization file")

    def _pick_locs(self, path: str) -> None:
        if not self.pending_movie:
            notify("warning", "choose the movie first, then its localization file")
            return
        self.binner.measurements = [*self.binner.measurements, (self.pending_movie, path)]
        self.pending_movie = ""

    # -- actions ----------------------------------------------------------------------------------------------
    def _check_inputs(self) -> None:
        """Server-side path checks of the measurements (they may come from the page's query parameters); relative
        paths are taken relative to the data root: the binner gets the resolved paths."""
        checked = []
        for movie, locs in self.binner.measurements:
            movie = str(check_path(movie, "movie"))
            if isinstance(locs, (str, Path)):  # (a LocTable given from Python needs no check)
                locs = str(check_path(locs, "localization file"))
            checked.append((movie, locs))
        if checked != [tuple(pair) for pair in self.binner.measurements]:
            self.binner.measurements = checked
        for name, what in (("target_density_from", "test localizations"), ("test_movie", "test movie")):
            value = getattr(self.binner, name)
            if value:
                resolved = str(check_path(value, what))
                if resolved != value:
                    setattr(self.binner, name, resolved)

    def _check_output(self) -> None:
        """The output folder through the confinement rule; the binner writes to the resolved folder (shown)."""
        folder = str(check_path(self.binner.output_folder, "output folder", kind="any", must_exist=False))
        if folder != self.binner.output_folder:
            self.binner.output_folder = folder

    def _execute(self, label: str, work: Callable[[], Any]) -> None:
        """The Binner's executor: check the paths in the session, then run the action in the job thread."""
        action = getattr(work, "__name__", "")

        def checked() -> None:
            self._check_inputs()
            if action == "save":
                self._check_output()
                self.binner.check_outputs()

        self.job.start_checked(checked, None, label, work, self._done(action), label=label.lower())

    def load(self) -> bool:
        """Check the paths on the server and load the measurements now (cheap: movies opened lazily)."""
        try:
            self._check_inputs()
            self.binner.load()
        except (ImageBinnerError, OSError, ValueError) as exc:
            notify("error", f"load failed: {exc}")
            return False
        self._measure_players()
        return True

    def _measure_players(self) -> None:
        """Player intervals at or above the measured cost of one frame (all its layers)."""
        v = self.view
        if v.measurements:
            cost = frame_cost_ms(lambda: (v.input_frame_data(), v.input_layers()))  # what a step computes
            self.frame_player.interval = player_interval(cost, n_layers=4)
        if v.has_binned:
            cost = frame_cost_ms(lambda: (v.binned_image(), v.binned_points(),
                                          [v.part_element(k) for k in range(v.n_parts)]))
            self.binned_player.interval = player_interval(cost, n_layers=3 + v.n_parts)

    def _done(self, action: str) -> Callable[[Any], str]:
        def done(result: Any) -> str:
            self._measure_players()
            if action == "save":
                return self.binner.status
            if action == "compose":
                return f"preview: {len(result)} binned frames composed"
            return f"loaded {len(self.view.measurements)} measurement(s)"
        return done

    # -- views ------------------------------------------------------------------------------------------------
    def _binned_views(self, plan):
        """The binned frame with its labels and the emitters per binned frame (new plots, so new ranges, for each
        plan; while the binner works they show placeholders); a hint while there is no (current) plan."""
        if plan is None:
            return pn.pane.Markdown("*The binned frames appear after Preview or Run (again after a setting "
                                    "changes).*", sizing_mode="stretch_width")
        v = self.view
        return pn.Column(hv_pane(v.binned_plot()),  # sized by the plot (image aspect)
                         hv_pane(v.binned_emitters(), sizing_mode="stretch_width", height=190),
                         sizing_mode="stretch_width")

    def _parts(self, plan) -> Any:
        """The parts of the shown binned frame, rebuilt for each plan (their number is the plan's bin size)."""
        if plan is None:
            return pn.pane.Markdown("*The parts of the shown binned frame appear after Preview or Run.*")
        return hv_pane(self.view.parts())

    def _stats_text(self, stats: dict, running: bool) -> str:
        if not self.view.measurements and not running:
            return "*Give measurements and press Load.*"
        if running:  # the binner is being changed by the worker thread: keep the last statistics
            return self._last_stats + "\n\n*running ...*"
        self._last_stats = "\n".join(f"* {line}" for line in self.binner.summary_lines())
        return self._last_stats

    def step(self, frame: int | None = None, binned_frame: int | None = None, doc=None) -> None:
        """Show input ``frame`` and/or ``binned_frame`` as one batch of page updates, as a player step from the page
        does (scripts and benchmarks; ``doc``: the page's document, default the current one)."""
        changes = {name: value for name, value in (("frame", frame), ("binned_frame", binned_frame))
                   if value is not None}
        with one_update(doc):
            self.view.param.update(**changes)

    def close(self) -> None:
        """Close the movies (views' and binner's file handles); called when the browser session ends."""
        self.view.close()
        self.binner.close()

    # -- layout -----------------------------------------------------------------------------------------------
    @property
    def sidebar(self) -> list:
        return [
            "### Inputs", self.inputs,
            "### Settings", self.settings,
            "### Output", self.outputs, self.root_note,
            self.actions, self.progress, self.status, self.notebook_settings,
        ]

    @property
    def main(self) -> list:
        """Input and binned frames side by side; below, tabs built when first shown: the densities per frame (box
        plots for choosing ``bin_size``), the parts of the binned frame, the statistics."""
        v, b = self.view, self.binner
        inputs = pn.Column(
            "### Input frames", self.measurement_select, self.frame_player, self.crosses_toggle,
            rebuilt_on(v.param.input_geometry, v.input_plot, stretch=False),  # sized by the plot (image aspect)
            hv_pane(v.input_density(), sizing_mode="stretch_width", height=190),
            sizing_mode="stretch_width",
        )
        binned = pn.Column(
            "### Binned frames", self.binned_player,
            pn.panel(pn.bind(self._binned_views, b.param.plan), sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        density = pn.Column(
            pn.pane.Markdown("Localizations per µm² in each frame of every measurement, and emitters per µm² in "
                             "each binned frame (after Preview or Run): choose `bin_size` so the binned frames are "
                             "as dense as the data the network should handle.", sizing_mode="stretch_width"),
            hv_pane(v.density_boxes(), sizing_mode="stretch_width", height=280),
            pn.panel(pn.bind(self._target_views, b.param.target_density, b.param.target_density_from),
                     sizing_mode="stretch_width"),
            sizing_mode="stretch_width")
        parts = pn.Column(self.part_slider, pn.panel(pn.bind(self._parts, b.param.plan)), sizing_mode="stretch_width")
        stats = pn.Column(self.stats, sizing_mode="stretch_width")
        self.tabs = pn.Tabs(("Density per frame", density), ("Parts of the binned frame", parts),
                            ("Statistics", stats), dynamic=True, sizing_mode="stretch_width")
        return [self.browser, pn.Row(inputs, binned, sizing_mode="stretch_width"), self.tabs]

    def _target_views(self, target_density: str, target_density_from: str) -> pn.viewable.Viewable:
        """With a target density: the test movie's densities, the targets and what the binned frames reached."""
        if not (target_density or target_density_from):
            return pn.pane.Markdown("Set `target_density` (or `target_density_from` + `test_movie`) to bin to a "
                                    "density instead of a fixed `bin_size`.", sizing_mode="stretch_width")
        return pn.Column(
            pn.pane.Markdown("The test movie's densities, the targets and the densities the binned frames reached "
                             "(after Preview or Run).", sizing_mode="stretch_width"),
            hv_pane(target_density_plot(self.binner), sizing_mode="stretch_width", height=280),
            sizing_mode="stretch_width")

    def __panel__(self):
        return pn.Row(pn.Column(*self.sidebar, width=340), pn.Column(*self.main, sizing_mode="stretch_width"),
                      sizing_mode="stretch_width")


def notebook_settings_text(settings: dict) -> str:
    """The Deep-STORM notebook settings that fit the output (empty until the measurements are loaded)."""
    from imagebinner.tools.binner.notebook import settings_line

    return settings_line(settings) if settings else ""


def template(app: BinnerApp) -> DashboardTemplate:
    """The served page: settings in the sidebar, views in the main area."""
    return DashboardTemplate(title="ImageBinner: Binner", sidebar=app.sidebar, main=app.main,
                                        sidebar_width=360)
