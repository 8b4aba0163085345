"""``panel serve dashboards/binner.py``: the Binner dashboard (open on data with ?movie=...&locs=... or
$IMAGEBINNER_DATA)."""

import holoviews as hv
import panel as pn

from imagebinner.apps.binner import BinnerApp, template

pn.extension(notifications=True, throttled=True)
hv.extension("bokeh")

if pn.state.served:
    app = BinnerApp()
    pn.state.on_session_destroyed(lambda session_context: app.close())
    template(app).servable(title="ImageBinner: Binner")
