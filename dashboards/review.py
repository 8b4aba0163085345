"""``panel serve dashboards/review.py``: review DeepSTORM predictions (open on data with
?folder=...&movie=...&truth=... or $IMAGEBINNER_DATA)."""

import holoviews as hv
import panel as pn

from imagebinner.apps.review import ReviewApp, template

pn.extension(notifications=True, throttled=True)
hv.extension("bokeh")

if pn.state.served:
    app = ReviewApp()
    pn.state.on_session_destroyed(lambda session_context: app.close())
    template(app).servable(title="ImageBinner: prediction review")
