"""``panel serve dashboards/addons.py``: Convert, Split, Merge and Explode in tabs."""

import holoviews as hv
import panel as pn

from imagebinner.apps.addons import AddonsApp, template

pn.extension(notifications=True)
hv.extension("bokeh")

if pn.state.served:
    template(AddonsApp()).servable(title="ImageBinner: add-ons")
