"""Served pages work offline: nothing is fetched from off the machine (no CDN fonts, icons or scripts).

Measured with Chromium logging every request of each served dashboard (tests/ui/test_serving_ui.py): Panel serves
BokehJS, Panel's models, the Fast components, notyf (notifications) and Font Awesome from its own ``static/`` folder;
the only requests leaving the machine were the Fast design's web font (``fonts.googleapis.com/css?family=Open+Sans``,
twice per page) and, on the multi-app index page, Panel's default index (Google's Kumbh Sans font, favicon and logo
from ``cdn.holoviz.org``). :func:`offline_config` drops the font (the pages fall back to the system's sans-serif) and
:func:`write_index` replaces the index page by one that loads nothing.
"""

from __future__ import annotations

import html
from pathlib import Path


def offline_config() -> None:
    """Drop the Fast design's web font (the one off-machine request of a served dashboard); keep resources served.

    Bokeh's resource mode defaults to "cdn" where nothing says otherwise; Panel resolves component stylesheets with the
    process-wide mode, so an update made outside a page render (a job thread) could link them from the CDN. A served
    process says "server" once, for every thread."""
    from bokeh.settings import settings
    from panel.theme.fast import Fast, FastStyle

    settings.resources = "server"

    if Fast._resources.get("font"):
        Fast._resources = {**Fast._resources, "font": {}}
    FastStyle.param.font_url.default = ""  # (the grid template links it directly)


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
