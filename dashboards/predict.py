"""``panel serve dashboards/predict.py``: run a trained Deep-STORM model on movies (open on data with
?model=...&movie=...&output=..., $IMAGEBINNER_DATA, else on the demo data)."""

import panel as pn

from imagebinner.apps.pages import extensions
from imagebinner.apps.predict import PredictApp, template

extensions()  # notifications, throttled sliders, Bokeh; nothing fetched off the machine

if pn.state.served:
    from imagebinner.apps.jobs import configure_notifications
    from imagebinner.apps.pages import close_on_session_end

    # (as apps.pages.page("predict") does once "predict" is registered in apps.pages.PAGES)
    configure_notifications()
    app = PredictApp()  # query string, $IMAGEBINNER_DATA or the demo data
    close_on_session_end(app)  # the app is closed when the session ends
    template(app).servable()
