"""The served pages: one factory per dashboard (a session's app in its template, closed when the session ends)."""

from __future__ import annotations

import contextlib
import importlib
import traceback
from collections.abc import Callable
from typing import Any

import panel as pn
import param
from panel.viewable import Viewable

#: dashboard name -> (module, app class, page title); the order of ``imagebinner serve``'s index
PAGES: dict[str, tuple[str, str, str]] = {
    "binner": ("imagebinner.apps.binner", "BinnerApp", "ImageBinner: Binner"),
    "predict": ("imagebinner.apps.predict", "PredictApp", "ImageBinner: predict"),
    "review": ("imagebinner.apps.review", "ReviewApp", "ImageBinner: prediction review"),
    "addons": ("imagebinner.apps.addons", "AddonsApp", "ImageBinner: add-ons"),
}


def extensions() -> None:
    """Panel and HoloViews set up for the dashboards: notifications, throttled sliders, Bokeh, nothing from a CDN."""
    import holoviews as hv

    from imagebinner.apps.offline import offline_config

    pn.extension(notifications=True, throttled=True)
    hv.extension("bokeh")
    offline_config()
    no_mathjax()
    quiet_fixed_size_check()


def quiet_fixed_size_check() -> None:
    """No Bokeh warning W-1005 in the server log for every session: frame plots have a fixed size given as HoloViews'
    ``frame_width``/``frame_height`` (the data area) and their columns take the plots' size, which Bokeh's check
    (``width``/``height`` of fixed-size models) reports although the page lays them out as intended."""
    from bokeh.core.validation import silence
    from bokeh.core.validation.warnings import FIXED_SIZING_MODE

    silence(FIXED_SIZING_MODE, True)


def no_mathjax() -> None:
    """Pages load no MathJax: Panel adds BokehJS's MathJax bundle (1.8 MB of the page's 5.8 MB of scripts) to every
    page holding a Markdown or HTML pane in case it holds LaTeX; the dashboards' texts hold none (Bokeh still adds it
    for a model that does)."""
    from panel.io import resources

    resources._panel_use_mathjax = lambda roots: False


def close_on_session_end(app: Any) -> None:
    """Close ``app`` (its tool's open files) when the current session ends (no-op outside a server)."""
    close = getattr(app, "close", None)
    if close is None or pn.state.curdoc is None or pn.state.curdoc.session_context is None:
        return

    def on_destroyed(_session_context, close: Callable[[], None] = close) -> None:
        # the page is gone: the app's objects (tool, views) emit no events while closing, so nothing is redrawn
        # into the destroyed document (Bokeh runs the session's destroy callbacks in no set order)
        quiet = [obj for obj in (app, *vars(app).values()) if isinstance(obj, param.Parameterized)
                 and not isinstance(obj, Viewable)]
        try:
            with contextlib.ExitStack() as stack:
                for obj in quiet:
                    stack.enter_context(param.parameterized.discard_events(obj))
                close()
        except Exception as exc:  # noqa: BLE001 (a failing close must not break the server's cleanup)
            print(f"imagebinner error: closing the session's app failed: {exc}", flush=True)
            traceback.print_exc()

    pn.state.on_session_destroyed(on_destroyed)


def page(name: str) -> pn.template.BaseTemplate:
    """The page of dashboard ``name`` for the current session: its app (built with no arguments: query string,
    ``$IMAGEBINNER_DATA`` or the demo data) in the app module's template, closed when the session ends."""
    from imagebinner.apps.jobs import configure_notifications

    module_name, class_name, title = PAGES[name]
    module = importlib.import_module(module_name)
    configure_notifications()
    app = getattr(module, class_name)()
    close_on_session_end(app)
    template = module.template(app)
    template.title = title
    return template


def factories(names: list[str] | tuple[str, ...] | None = None) -> dict[str, Callable[[], Any]]:
    """``{name: page factory}`` for ``pn.serve`` (one app per session)."""
    return {name: (lambda name=name: page(name)) for name in (names or PAGES)}
