"""The add-ons app: one tab per tool (Convert, Split, Merge, Explode), widgets generated from each tool's declared
params (inputs, settings, outputs and its Run event), every path confined to the data root, runs in a job thread,
written files offered for download."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import panel as pn
from panel.viewable import Viewer

from imagebinner.apps.common import (
    DATA_ENV,
    Job,
    check_path,
    data_folder,
    data_root,
    find_measurement_pairs,
    notify,
    param_widget,
    session_arg,
    tool_widgets,
)
from imagebinner.apps.downloads import download_buttons, status_html, written_files
from imagebinner.apps.template import DashboardTemplate
from imagebinner.errors import ImageBinnerError
from imagebinner.tools.addons import Explode, Merge, Split
from imagebinner.tools.base import Task
from imagebinner.tools.convert import Convert

#: the tabs, in order
TOOLS: dict[str, type[Task]] = {"Convert": Convert, "Split": Split, "Merge": Merge, "Explode": Explode}

#: clearer labels than the param names (the tooltips keep the full docs)
LABELS = {
    "to": "Localization output format",
    "locs": "Localizations",
    "at": "Split at frame (= frames in part 1)",
    "input_path": "Input localization file",
    "output_path": "Output file",
    "input_format": "Input format",
    "output_name": "Output name (stem)",
    "drop_outside": "Drop localizations outside the camera field",
}

#: folder (inside the data root) receiving the add-ons' outputs by default: one sub-folder per tool
OUTPUT_DIR = "imagebinner-addons"
class ToolPanel(Viewer):
    """One tool: its declared params as widgets, its Run event as the button (disabled while running), progress,
    status and the files written with download links."""

    def __init__(self, name: str, tool: Task | None = None, **params: Any):
        super().__init__(**params)
        cls = TOOLS[name]
        self.title = name
        self.tool = tool or cls()
        self.job = Job()
        self.tool.executor = self._execute
        shown = (*cls.user_params(), *cls.actions)
        paths = (*cls.inputs, cls.output_location())  # wide enough to show whole paths
        self.settings = tool_widgets(self.tool, shown, labels={**LABELS, "request_run": f"Run {name}"},
                                     widgets={**{p: {"sizing_mode": "stretch_width"} for p in paths},
                                              **{event: {"disabled": self.job.param.busy} for event in cls.actions}})
        self.run_button = param_widget(self.settings, "request_run")
        # shown from the first run on (an empty bar before reads as a broken widget)
        self.progress = pn.indicators.Progress(value=self.tool.param.progress, max=self.tool.param.n_steps,
                                               height=20, sizing_mode="stretch_width",
                                               visible=pn.bind(lambda running, status: running or bool(status),
                                                               self.tool.param.running, self.tool.param.status))
        self.status = pn.pane.HTML(pn.bind(status_html, self.tool.param.status), sizing_mode="stretch_width")
        self.files = pn.panel(pn.bind(self._files, self.tool.param.written), sizing_mode="stretch_width")

    # -- results ----------------------------------------------------------------------------------------------
    def downloads(self, paths: list) -> list[pn.widgets.FileDownload]:
        """Download buttons of the written files (see :func:`imagebinner.apps.downloads.download_buttons`)."""
        return download_buttons(paths, self.title.lower())

    def _files(self, paths: list) -> pn.Column:
        return written_files(paths, self.title.lower())

    # -- running ----------------------------------------------------------------------------------------------
    def confined(self) -> dict[str, Any]:
        """Every input and output path of the tool checked against the data root (relative = relative to the
        root), as resolved path strings; raises :class:`ImageBinnerError` naming the refused path."""
        tool, values = self.tool, {}
        for name in tool.inputs:  # a path, or a list of paths (Merge)
            value = getattr(tool, name)
            what = name.replace("_", " ")
            if isinstance(value, (list, tuple)):
                if not value:
                    raise ImageBinnerError(f"no {what} given")
                values[name] = [str(check_path(str(v), what).resolve()) for v in value]
            else:
                values[name] = str(check_path(value or "", what).resolve())
        output = tool.output_location()
        target = check_path(getattr(tool, output) or "", output.replace("_", " "), kind="any",
                            must_exist=False).resolve()
        if target.exists() and output == "output_folder" and not target.is_dir():
            raise ImageBinnerError("output folder is a file", target)
        values[output] = str(target)
        if "output_name" in tool.outputs:  # Merge: <folder>/<name>.tif and its table must stay inside as well
            check_path(str(target / (tool.output_name or "")), "output name", kind="any", must_exist=False)
        return values

    def _execute(self, label: str, work: Callable[[], Any], threaded: bool = True) -> None:
        """The tool's executor: check every path on the server (refusals are notifications, nothing runs), use the
        resolved paths, then run the action in the job thread."""
        self.job.start_checked(self.confined, self.tool, self.title, work,
                               lambda written: f"{self.title}: {self.tool.status or 'done'}", label=self.title,
                               threaded=threaded)

    def __panel__(self):
        return pn.Column(pn.pane.Markdown(type(self.tool).description()), self.settings, self.progress, self.status,
                         self.files, sizing_mode="stretch_width", max_width=900)


def default_measurements() -> list[tuple[str, str]]:
    """What the add-ons open on: ``?movie=...&locs=...`` of the page, else the pairs in ``$IMAGEBINNER_DATA``, else
    the demo data (made once inside the data root). Paths outside the root are refused with a notification."""
    movies = session_arg("movie", kind="file", must_exist=True)
    locs = session_arg("locs", kind="file", must_exist=True)
    if movies or locs:
        if len(movies) != len(locs):
            notify("error", f"add-ons: give one locs per movie in the address ({len(movies)} movie, {len(locs)} locs)")
        return list(zip(movies, locs))
    if os.environ.get(DATA_ENV, "").strip():
        folder = data_folder()  # refused (outside the root, missing): a notification, nothing prefilled
        return find_measurement_pairs(folder) if folder is not None else []
    from imagebinner.apps.demo_data import demo_data

    try:
        return [(str(m), str(l)) for m, l in demo_data().measurements]
    except ImageBinnerError as exc:  # e.g. a read-only root: the tabs open empty, the page says why
        notify("error", f"add-ons: no demo data: {exc}")
        return []


class AddonsApp(Viewer):
    """Convert localization files, and split, merge or explode movies with their localizations."""

    def __init__(self, measurements: list[tuple[str, str]] | None = None, output_folder: str | None = None,
                 **params: Any):
        super().__init__(**params)
        self.panels = {name: ToolPanel(name) for name in TOOLS}
        self.output_folder = Path(output_folder) if output_folder else data_root() / OUTPUT_DIR
        self.prefill(default_measurements() if measurements is None else measurements)
        # a tab's widgets are built when it is first shown (the page opens faster)
        self.tabs = pn.Tabs(*[(name, panel) for name, panel in self.panels.items()], dynamic=True,
                            sizing_mode="stretch_width")

    def prefill(self, measurements: list[tuple[str, str]]) -> None:
        """Inputs from the measurements (the first one for Convert, Split and Explode; all for Merge) and output
        locations inside the data root (one folder per tool, shown in its widget)."""
        tools = {name: panel.tool for name, panel in self.panels.items()}
        for name, tool in tools.items():
            folder = self.output_folder / name.lower()
            if name == "Convert":
                stem = Path(measurements[0][1]).stem if measurements else "converted"
                tool.output_path = str(folder / f"{stem}.csv")
            else:
                tool.output_folder = str(folder)
        if not measurements:
            return
        movie, locs = (str(p) for p in measurements[0])
        tools["Convert"].input_path = locs
        for name in ("Split", "Explode"):
            tools[name].param.update(movie=movie, locs=locs)
        tools["Merge"].param.update(movies=[str(m) for m, _ in measurements], locs=[str(l) for _, l in measurements])
        try:
            from imagebinner.io import open_movie

            with open_movie(movie) as opened:
                tools["Split"].at = max(1, opened.n_frames // 2)
        except Exception:  # an unreadable movie: Split reports it when run
            pass

    @property
    def main(self) -> list:
        return [self.tabs]

    def __panel__(self):
        return self.tabs


def template(app: AddonsApp) -> DashboardTemplate:
    """The served page: one tab per tool."""
    return DashboardTemplate(title="ImageBinner: add-ons", main=app.main)
