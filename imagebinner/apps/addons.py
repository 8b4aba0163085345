"""The add-ons app: one tab per tool (Convert, Split, Merge, Explode), widgets generated from each tool's declared
params (inputs, settings, outputs and its Run event), runs in a job thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import panel as pn
from panel.viewable import Viewer

from imagebinner.apps.common import Job, check_path, notify, param_widget, tool_widgets
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


class ToolPanel(Viewer):
    """One tool: its declared params as widgets, its Run event as the button (disabled while running), progress,
    status and the files written."""

    def __init__(self, name: str, tool: Task | None = None, **params: Any):
        super().__init__(**params)
        cls = TOOLS[name]
        self.title = name
        self.tool = tool or cls()
        self.job = Job()
        self.tool.executor = self._execute
        shown = (*cls.user_params(), *cls.actions)
        self.settings = tool_widgets(self.tool, shown, labels={**LABELS, "request_run": f"Run {name}"},
                                     widgets={event: {"disabled": self.job.param.busy} for event in cls.actions})
        self.run_button = param_widget(self.settings, "request_run")
        # shown from the first run on (an empty bar before reads as a broken widget)
        self.progress = pn.indicators.Progress(value=self.tool.param.progress, max=self.tool.param.n_steps,
                                               height=20, sizing_mode="stretch_width",
                                               visible=pn.bind(lambda running, status: running or bool(status),
                                                               self.tool.param.running, self.tool.param.status))
        self.status = pn.pane.Str(self.tool.param.status, sizing_mode="stretch_width")
        self.written = pn.pane.Markdown(pn.bind(self._written, self.tool.param.written), sizing_mode="stretch_width")

    @staticmethod
    def _written(paths: list) -> str:
        if not paths:
            return ""
        shown = "\n".join(f"* `{p}`" for p in paths[:20])
        more = f"\n* ... and {len(paths) - 20} more" if len(paths) > 20 else ""
        return f"**{len(paths)} file(s) written**\n\n{shown}{more}"

    def _execute(self, label: str, work: Callable[[], Any], threaded: bool = True) -> None:
        """The tool's executor: check the typed paths on the server, then run the action in the job thread."""
        tool = self.tool
        try:
            for name in tool.inputs:  # a path, or a list of paths (Merge)
                for value in [getattr(tool, name)] if isinstance(getattr(tool, name), str) else getattr(tool, name):
                    check_path(value or "", name.replace("_", " "))
            output = tool.output_location()
            check_path(getattr(tool, output), output.replace("_", " "), kind="any", must_exist=False)
        except ImageBinnerError as exc:
            notify("error", f"{self.title}: {exc}")
            return
        self.job.start(work, lambda written: f"{self.title}: {tool.status or 'done'}", label=self.title,
                       threaded=threaded)

    def __panel__(self):
        return pn.Column(pn.pane.Markdown(type(self.tool).description()), self.settings, self.progress, self.status,
                         self.written, sizing_mode="stretch_width", max_width=900)


class AddonsApp(Viewer):
    """Convert localization files, and split, merge or explode movies with their localizations."""

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.panels = {name: ToolPanel(name) for name in TOOLS}
        self.tabs = pn.Tabs(*[(name, panel) for name, panel in self.panels.items()], dynamic=False,
                            sizing_mode="stretch_width")

    @property
    def main(self) -> list:
        return [self.tabs]

    def __panel__(self):
        return self.tabs


def template(app: AddonsApp) -> pn.template.FastListTemplate:
    """The served page: one tab per tool."""
    return pn.template.FastListTemplate(title="ImageBinner: add-ons", main=app.main)
