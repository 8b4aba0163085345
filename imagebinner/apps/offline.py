"""Served pages work offline: nothing is fetched from off the machine (no CDN fonts, icons or scripts).

Measured with Chromium logging every request of each served dashboard (tests/ui/test_serving_ui.py): Panel serves
BokehJS, Panel's models, the Fast components, notyf (notifications) and Font Awesome from its own ``static/`` folder;
the only requests leaving the machine were the Fast design's web font (``fonts.googleapis.com/css?family=Open+Sans``,
twice per page) and, on the multi-app index page, Panel's default index (Google's Kumbh Sans font, favicon and logo
from ``cdn.holoviz.org``). :func:`offline_config` drops the font (the pages fall back to the system's sans-serif) and
:func:`write_index` replaces the index page by one that loads nothing.

Component stylesheets: Panel links them from its CDN whenever a model is built or updated for a document that does not
(yet) know the served stylesheet folder (``panel/reactive.py`` ``_get_properties`` falls back to ``CDN_DIST``): ten
concurrent review sessions made 165 such requests, and in a notebook a Markdown pane updated after its first render
re-sent its stylesheets as CDN links. :func:`local_stylesheets` closes that fallback where it is taken (Panel's
``patch_stylesheet``): a served process links its own ``static/`` copy, a notebook with inline resources gets the
stylesheet inline (a ``data:`` URL of Panel's bundled file).
"""

from __future__ import annotations

import base64
import html
from functools import lru_cache
from pathlib import Path


def offline_config() -> None:
    """Drop the Fast design's web font (the one off-machine request of a served dashboard); keep resources served.

    Bokeh's resource mode defaults to "cdn" where nothing says otherwise; Panel resolves component stylesheets with the
    process-wide mode, so an update made outside a page render (a job thread) could link them from the CDN. A served
    process says "server" once, for every thread."""
    from bokeh.settings import settings
    from panel.theme.fast import Fast, FastStyle

    settings.resources = "server"
    local_stylesheets()

    if Fast._resources.get("font"):
        Fast._resources = {**Fast._resources, "font": {}}
    FastStyle.param.font_url.default = ""  # (the grid template links it directly)


def local_stylesheets() -> None:
    """Never fall back to Panel's CDN for a component stylesheet (idempotent; process-wide, as Panel's fallback is):
    where Panel would link ``cdn.holoviz.org`` for want of a document's dist URL, a served process (Bokeh resources
    "server") links its own ``static/extensions/panel/`` copy and a notebook with inline resources
    (``pn.extension(inline=True)``) gets the bundled file inline; anything else (a notebook on the CDN) is left
    as Panel makes it."""
    import panel.reactive
    from panel.io import resources

    original = resources.patch_stylesheet
    if getattr(original, "_imagebinner_local", False):
        return

    def patch_stylesheet(stylesheet, dist_url: str) -> None:
        if dist_url != resources.CDN_DIST:
            original(stylesheet, dist_url)
            return
        import panel as pn
        from bokeh.settings import settings

        if pn.config.inline:
            _inline(stylesheet)
        elif settings.resources(default="server") == "server":
            original(stylesheet, resources.get_dist_path(cdn=False))

    patch_stylesheet._imagebinner_local = True  # type: ignore[attr-defined]
    resources.patch_stylesheet = patch_stylesheet  # (Panel's themes and patch_model_css look it up here)
    panel.reactive.patch_stylesheet = patch_stylesheet  # (imported by name)


def _inline(stylesheet) -> None:
    """An ``ImportedStyleSheet`` of Panel's (CDN or local URL) pointed at its bundled file as a ``data:`` URL."""
    from panel.io import resources

    try:
        url = str(stylesheet.url)
    except Exception:  # noqa: BLE001 (an unset URL: nothing to do, as Panel's own patch)
        return
    for prefix in (resources.CDN_DIST, resources.LOCAL_DIST):
        if url.startswith(prefix):
            data = _data_url(url[len(prefix):].split("?")[0])
            if data is not None:
                stylesheet.url = data
            return


@lru_cache(maxsize=64)
def _data_url(relative: str) -> str | None:
    from panel.io.resources import DIST_DIR

    path = (DIST_DIR / relative).resolve()
    if not path.is_file() or DIST_DIR.resolve() not in path.parents:
        return None
    return "data:text/css;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


INDEX_HTML = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>ImageBinner dashboards</title>
<style>body {{ font-family: sans-serif; margin: 2em; }} li {{ margin: 0.5em 0; font-size: 1.2em; }}</style>
</head>
<body><h1>ImageBinner dashboards</h1><ul>
{items}
</ul></body>
</html>
"""


def write_index(folder: Path, pages: dict[str, str]) -> Path:
    """An index page (``{slug: title}`` as links) that loads nothing, written to ``folder``; for ``pn.serve(index=)``."""
    items = "\n".join(f'<li><a href="./{html.escape(slug)}">{html.escape(title)}</a></li>'
                      for slug, title in pages.items())
    path = Path(folder) / "index.html"
    path.write_text(INDEX_HTML.format(items=items), encoding="utf-8")
    return path
