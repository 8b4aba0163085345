"""The page template of every dashboard: Panel's Bootstrap template, its Bokeh document built in one pass."""

from __future__ import annotations

import panel as pn


class DashboardTemplate(pn.template.BootstrapTemplate):
    """Panel's ``BootstrapTemplate`` (header, collapsible sidebar, main area) whose session document recomputes its
    model graph once, when the page is built.

    Bootstrap rather than the Fast list template: the same layout without the Fast web components (0.9 MB of script
    and their start-up in the browser), measured in Chromium on the demo data as 0.3-0.7 s sooner ready per page.
    One walk of the model graph: Panel adds each part of a template (header, sidebar, every main item,
    notifications, ...) as a root of its own, and Bokeh walks every model reachable from every root after each one
    is added; on the Binner page (20 roots, about 400 models) those walks took 0.5 s of a session's 1.2 s CPU start,
    and sessions opened together wait for each other's. Inside ``doc.models.freeze()`` the walk runs once."""

    def _init_doc(self, doc=None, comm=None, title=None, notebook=False, location=True):
        from bokeh.document import Document

        doc = doc or pn.state.curdoc or Document()
        with doc.models.freeze():
            return super()._init_doc(doc, comm, title, notebook, location)
