"""Panel apps (``pn.viewable.Viewer`` subclasses) built on the tools and views; served by dashboards/*.py."""
