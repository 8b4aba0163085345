"""imagebinner: dense, correctly labelled DeepSTORM2D training data from SMLM measurements.

Layers (one direction): ``imagebinner.io`` → ``imagebinner.tools`` (param only) → ``imagebinner.views``
(HoloViews) → ``imagebinner.apps`` (Panel) → ``dashboards/``. The CLI uses the tools only.
"""

__version__ = "0.1.0"
