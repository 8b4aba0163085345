"""The Binner app: measurement list, Binner settings, Preview/Run (threaded, with progress), input and binned players.

Open on data with query parameters (``?movie=a.tif&locs=a_locs.hdf5&movie=...&locs=...&output=out/``), the
constructor's ``measurements``, or ``$IMAGEBINNER_DATA`` (a folder searched for ``<stem>.tif`` +
``<stem>_locs.hdf5|.csv`` pairs).
"""

from __future__ import annotations

from pathlib import Path

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
from imagebinner.tools.binner import Binner
from imagebinner.views.binner import BinnerView
from imagebinner.views.frames import frame_cost_ms

SETTINGS = ["pixel_size", "camera_offset", "patch_size", "n_patches", "n_binned", "bin_size", "min_emitters", "seed",
            "reuse_patches", "output_dtype", "half_pixel", "max_attempts"]
OUTPUT = ["output_folder", "output_name", "overwrite"]
MIN_INTERVAL_MS = 150
UPDATE_MS_PER_LAYER = 50  # Bokeh model update per plot layer and frame (measured on the demo data, 2-core machine)


def player_interval(compute_ms: float, n_layers: int) -> int:
    """Player interval (ms) at or above the per-frame cost: twice the computing time plus the model updates."""
    return max(MIN_INTERVAL_MS, int(2 * compute_ms + UPDATE_MS_PER_LAYER * n_layers))


class BinnerApp(Viewer):
    """Bin several measurements into dense DeepSTORM2D training frames, and look at every step."""

    def __init__(self, measurements: list[tuple[str, str]] | None = None, output_folder: str | None = None,
                 binner: Binner | None = None, **params):
        super().__init__(**params)
        self.binner = binner or Binner()
        self.view = BinnerView(self.binner)
        self.job = Job()
        self.job.param.watch(lambda event: setattr(self.view, "busy", event.new), "busy")
        self._last_stats = ""
        if measurements is None:
            measurements = list(self.binner.measurements) if binner is not None else self._initial_measurements()
        output_folder = output_folder or (session_arg("output") or [""])[0]
        if output_folder:
            self.binner.output_folder = output_folder
        self._build_widgets()
        if measurements:
            self.binner.measurements = [tuple(str(x) if isinstance(x, (str, Path)) else x for x in pair)
                                        for pair in measurements]
            self._sync_list()
            self.load()

    # -- initial data -----------------------------------------------------------------------------------------
    @staticmethod
    def _initial_measurements() -> list[tuple[str, str]]:
        movies, locs = session_arg("movie"), session_arg("locs")
        if movies:
            return list(zip(movies, locs))
        folder = data_folder()
        if folder is not None and folder.is_dir():
            return find_measurement_pairs(folder)
        return []

    # -- widgets ----------------------------------------------------------------------------------------------
    def _build_widgets(self) -> None:
        b, v = self.binner, self.view
        self.movie_input = pn.widgets.TextInput(label="Movie (TIF or Picasso .raw)", placeholder="/path/movie.tif",
                                                description=Binner.param.measurements.doc)
        self.locs_input = pn.widgets.TextInput(label="Localizations", placeholder="/path/movie_locs.hdf5",
                                               description=Binner.param.measurements.doc)
        self.add_button = pn.widgets.Button(label="Add measurement", color="default", on_click=self._add)
        self.measurement_list = pn.widgets.MultiSelect(label="Measurements (movie | localizations)", size=4,
                                                       sizing_mode="stretch_width")
        self.remove_button = pn.widgets.Button(label="Remove selected", on_click=self._remove)
        self.picker = PathPicker({
            "movie": lambda path: setattr(self.movie_input, "value", path),
            "localizations": lambda path: setattr(self.locs_input, "value", path),
            "output folder": lambda path: setattr(self.binner, "output_folder", path),
        })
        self.load_button = pn.widgets.Button(label="Load", color="default", on_click=lambda e: self.load(),
                                             disabled=self.job.param.busy)
        self.settings = tool_widgets(b, SETTINGS)
        self.outputs = tool_widgets(b, OUTPUT, text=("output_folder", "output_name"))
        self.preview_button = pn.widgets.Button(label="Preview", color="default", on_click=self._preview,
                                                disabled=self.job.param.busy,
                                                description="Draw the pool and compose the binned frames (no files).")
        self.run_button = pn.widgets.Button(label="Run", color="primary", on_click=self._run,
                                            disabled=self.job.param.busy,
                                            description="Draw, compose and write <name>.tif, .csv and .json.")
        self.progress = pn.indicators.Progress(value=b.param.progress, max=b.param.n_steps, sizing_mode="stretch_width",
                                               height=20)
        self.status = pn.pane.Str(b.param.status, sizing_mode="stretch_width")
        self.frame_player = pn.widgets.Player.from_param(
            v.param.frame, throttled=True, interval=MIN_INTERVAL_MS, loop_policy="loop", show_loop_controls=False,
            label="Input frame", sizing_mode="stretch_width")
        self.measurement_select = pn.widgets.Select(label="Measurement shown", options={"(none)": 0})
        self.measurement_select.param.watch(lambda e: setattr(v, "measurement", e.new), "value")
        v.param.watch(self._measurement_shown, "measurement")
        self.binned_player = pn.widgets.Player.from_param(
            v.param.binned_frame, throttled=True, interval=MIN_INTERVAL_MS, loop_policy="loop",
            show_loop_controls=False, label="Binned frame", sizing_mode="stretch_width")
        self.part_slider = pn.widgets.IntSlider.from_param(v.param.part, label="Part (jumps the input player to it)")
        self.crosses_toggle = pn.widgets.Checkbox.from_param(v.param.show_crosses, label="Show localizations")
        self.stats = pn.pane.Markdown(pn.bind(self._stats_text, v.param.revision, self.job.param.busy),
                                      sizing_mode="stretch_width")

    def _measurement_shown(self, event) -> None:
        if event.new in self.measurement_select.options.values():
            self.measurement_select.value = event.new

    def _sync_list(self) -> None:
        labels = [f"{i + 1}: {m} | {l}" for i, (m, l) in enumerate(self.binner.measurements)]
        self.measurement_list.options = labels
        self.measurement_list.value = []

    def _add(self, event=None) -> None:
        try:
            movie = check_path(self.movie_input.value, "movie")
            locs = check_path(self.locs_input.value, "localization file")
        except ImageBinnerError as exc:
            notify("error", str(exc))
            return
        self.binner.measurements = [*self.binner.measurements, (str(movie), str(locs))]
        self.movie_input.value = self.locs_input.value = ""
        self._sync_list()

    def _remove(self, event=None) -> None:
        drop = {self.measurement_list.options.index(label) for label in self.measurement_list.value}
        self.binner.measurements = [p for i, p in enumerate(self.binner.measurements) if i not in drop]
        self._sync_list()

    # -- actions ----------------------------------------------------------------------------------------------
    def load(self) -> bool:
        """Check the paths on the server, load the measurements (cheap: movies opened lazily), show frame 0."""
        try:
            for movie, locs in self.binner.measurements:
                check_path(movie, "movie")
                if isinstance(locs, (str, Path)):  # (a LocTable given from Python needs no check)
                    check_path(locs, "localization file")
            self.view.refresh(binned=self.view.has_binned)
        except (ImageBinnerError, OSError, ValueError) as exc:
            notify("error", f"load failed: {exc}")
            return False
        self._after_load()
        return True

    def _after_load(self) -> None:
        ms = self.view.measurements
        self.measurement_select.options = {f"{m.index + 1}: {m.movie_path.name}": m.index for m in ms} or {"(none)": 0}
        self.measurement_select.value = self.view.measurement
        if ms:
            cost = frame_cost_ms(lambda: (self.view.input_image(), self.view.input_points()))
            self.frame_player.interval = player_interval(cost, n_layers=4)

    def _preview(self, event=None) -> None:
        # compose loads and draws first, in one job: the progress bar and ``running`` follow the three steps
        self.job.start(self.binner.compose, self._show_binned_done("preview"), label="preview")

    def _run(self, event=None) -> None:
        try:
            check_path(self.binner.output_folder, "output folder", kind="any", must_exist=False)
            self.binner.check_outputs()
        except ImageBinnerError as exc:
            notify("error", str(exc))
            return
        self.job.start(self.binner.run, self._show_binned_done("run"), label="run")

    def _show_binned_done(self, label: str):
        def done(result) -> str:
            self.view.refresh(binned=True)
            self._after_load()
            v = self.view
            cost = frame_cost_ms(lambda: (v.binned_image(), v.binned_points(),
                                          [v.part_element(k) for k in range(v.n_parts)]))
            self.binned_player.interval = player_interval(cost, n_layers=3 + v.n_parts)
            if label == "run":
                return f"{self.binner.status}"
            return f"preview: {self.binner.n_binned} binned frames composed"
        return done

    def _binned_views(self, binned_layout: int = 0):
        """The binned frame with its labels and the emitters per binned frame; a hint before the first preview."""
        if not self.view.has_binned:
            return pn.pane.Markdown("*The binned frames appear after Preview or Run.*", sizing_mode="stretch_width")
        v = self.view
        return pn.Column(hv_pane(v.binned_plot()),  # sized by the plot (image aspect)
                         hv_pane(hv.DynamicMap(v.binned_emitters), sizing_mode="stretch_width", height=200),
                         sizing_mode="stretch_width")

    def _parts(self, binned_layout: int = 0):
        if not self.view.has_binned:
            return pn.pane.Markdown("*The parts of the shown binned frame appear after Preview or Run.*")
        return hv_pane(self.view.parts())

    def _stats_text(self, revision: int, busy: bool) -> str:
        if not self.view.measurements:
            return "*Add measurements and press Load.*"
        if busy:  # the binner is being changed by the worker thread: keep the last statistics
            return self._last_stats + "\n\n*running ...*"
        self._last_stats = "\n".join(f"* {line}" for line in self.binner.summary_lines())
        return self._last_stats

    def close(self) -> None:
        """Close the movies (views' and binner's file handles); called when the browser session ends."""
        self.view.close()
        self.binner.close()

    # -- layout -----------------------------------------------------------------------------------------------
    @property
    def sidebar(self) -> list:
        return [
            "### Measurements", self.movie_input, self.locs_input, self.add_button,
            self.measurement_list,
            pn.Row(self.remove_button, self.load_button),
            "### Settings", self.settings,
            "### Output", self.outputs,
            pn.Row(self.preview_button, self.run_button), self.progress, self.status,
        ]

    @property
    def main(self) -> list:
        v = self.view
        inputs = pn.Column(
            "### Input frames", self.measurement_select, self.frame_player, self.crosses_toggle,
            rebuilt_on(v.param.input_layout, v.input_plot, stretch=False),  # sized by the plot (image aspect)
            hv_pane(hv.DynamicMap(v.input_density), sizing_mode="stretch_width", height=200),
            sizing_mode="stretch_width",
        )
        binned = pn.Column(
            "### Binned frames", self.binned_player,
            pn.panel(pn.bind(self._binned_views, v.param.binned_layout), sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )
        parts = pn.Column("### Parts of the binned frame", self.part_slider,
                          pn.panel(pn.bind(self._parts, v.param.binned_layout)),
                          sizing_mode="stretch_width")
        stats = pn.Column("### Statistics", self.stats, sizing_mode="stretch_width")
        return [self.picker, pn.Row(inputs, binned, sizing_mode="stretch_width"), parts, stats]

    def __panel__(self):
        return pn.Row(pn.Column(*self.sidebar, width=340), pn.Column(*self.main, sizing_mode="stretch_width"),
                      sizing_mode="stretch_width")


def template(app: BinnerApp) -> pn.template.FastListTemplate:
    """The served page: settings in the sidebar, views in the main area."""
    return pn.template.FastListTemplate(title="ImageBinner: Binner", sidebar=app.sidebar, main=app.main,
                                        sidebar_width=360)
