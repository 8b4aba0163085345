"""``panel serve dashboards/predict.py``: run a trained Deep-STORM model on movies (open on data with
?model=...&movie=...&output=..., $IMAGEBINNER_DATA, else on the demo data)."""

import panel as pn

from imagebinner.apps.pages import extensions, page
from imagebinner.apps.predict import template  # noqa: F401 (the page's layout; built per session by page())

extensions()  # notifications, throttled sliders, Bokeh; nothing fetched off the machine

if pn.state.served:
    page("predict").servable()  # the app closes its files when the session ends
