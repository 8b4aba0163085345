"""``panel serve dashboards/addons.py``: Convert, Split, Merge and Explode in tabs."""

import panel as pn

from imagebinner.apps.addons import template  # noqa: F401 (the page's layout; built per session by page())
from imagebinner.apps.pages import extensions, page

extensions()  # notifications, throttled sliders, Bokeh; nothing fetched off the machine

if pn.state.served:
    page("addons").servable()  # the app closes its files when the session ends
