"""Test helpers: render a Panel/HoloViews object to Bokeh models without a browser, and find its data sources."""

from __future__ import annotations

import panel as pn
from bokeh.document import Document
from bokeh.models import ColumnDataSource, GlyphRenderer
from pyviz_comms import Comm


def render(obj):
    """The Bokeh root model of ``obj`` in a fresh document (as a notebook output would build it)."""
    return pn.panel(obj).get_root(Document(), comm=Comm())


def sources(root, glyph_type, **props) -> list[ColumnDataSource]:
    """The distinct data sources of the renderers under ``root`` whose glyph is a ``glyph_type`` with ``props``."""
    out: list[ColumnDataSource] = []
    for renderer in root.select({"type": GlyphRenderer}):
        glyph = renderer.glyph
        if isinstance(glyph, glyph_type) and all(getattr(glyph, k, None) == v for k, v in props.items()):
            if all(renderer.data_source is not o for o in out):
                out.append(renderer.data_source)
    return out
