"""The add-ons app: one tab per tool (Convert, Split, Merge, Explode), widgets from the tools' params, threaded runs."""

from __future__ import annotations

import panel as pn
from panel.viewable import Viewer

from imagebinner.apps.common import Job, check_path, notify, tool_widgets
from imagebinner.errors import ImageBinnerError
from imagebinner.tools.addons import Explode, Merge, Split
from imagebinner.tools.base import Task
from imagebinner.tools.convert import Convert

COMMON = ["to", "output_folder", "overwrite", "pixel_size", "half_pixel"]

#: tool class -> (settings shown, params typed as text, input file params checked on the server, list params)
TOOLS: dict[str, tuple[type[Task], list[str], tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "Convert": (Convert, ["input_path", "output_path", "to", "input_format", "pixel_size", "half_pixel", "overwrite",
                          "drop_outside"], ("input_path", "output_path"), ("input_path",), ()),
    "Split": (Split, ["movie", "locs", "at", *COMMON], ("movie", "locs", "output_folder"), ("movie", "locs"), ()),
    "Merge": (Merge, ["output_name", *COMMON], ("output_name", "output_folder"), (), ("movies", "locs")),
    "Explode": (Explode, ["movie", "locs", *COMMON], ("movie", "locs", "output_folder"), ("movie", "locs"), ()),
}


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
    """One tool: its params as widgets, a Run button (threaded, disabled while running), progress, result."""

    def __init__(self, name: str, tool: Task | None = None, **params):
        super().__init__(**params)
        cls, shown, text, inputs, lists = TOOLS[name]
        self.title = name
        self.tool = tool or cls()
        self.inputs, self.lists = inputs, lists
        self.job = Job()
        self.list_inputs = {
            key: pn.widgets.TextAreaInput(label=f"{key} (one path per line)", description=cls.param[key].doc,
                                          value="\n".join(getattr(self.tool, key)), height=90,
                                          sizing_mode="stretch_width")
            for key in lists
        }
        self.settings = tool_widgets(self.tool, shown, text=text, labels=LABELS)
        self.run_button = pn.widgets.Button(label=f"Run {name}", color="primary", on_click=self._run,
                                            disabled=self.job.param.busy)
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

    def _run(self, event=None, threaded: bool = True) -> None:
        try:
            for key, widget in self.list_inputs.items():
                values = [line.strip() for line in widget.value.splitlines() if line.strip()]
                for value in values:
                    check_path(value, key)
                setattr(self.tool, key, values)
            for key in self.inputs:
                check_path(getattr(self.tool, key) or "", key.replace("_", " "))
        except ImageBinnerError as exc:
            notify("error", f"{self.title}: {exc}")
            return
        self.job.start(self.tool.run, lambda written: f"{self.title}: {self.tool.status or 'done'}",
                       label=self.title, threaded=threaded)

    def __panel__(self):
        doc = (type(self.tool).__doc__ or "").strip().split("\n\n")[0]
        return pn.Column(pn.pane.Markdown(" ".join(doc.split())), *self.list_inputs.values(), self.settings,
                         self.run_button, self.progress, self.status, self.written, sizing_mode="stretch_width",
                         max_width=900)


class AddonsApp(Viewer):
    """Convert localization files, and split, merge or explode movies with their localizations."""

    def __init__(self, **params):
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
