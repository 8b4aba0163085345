"""``panel serve dashboards/review.py``: review DeepSTORM predictions (open on data with
?folder=...&movie=...&truth=..., $IMAGEBINNER_DATA, else on the demo data)."""

import panel as pn

from imagebinner.apps.review import template  # noqa: F401 (the page's layout; built per session by page())
from imagebinner.apps.pages import extensions, page

extensions()  # notifications, throttled sliders, Bokeh; nothing fetched off the machine

if pn.state.served:
    page("review").servable()  # the app closes its files when the session ends
