"""Deterministic demo data: simulated SMLM measurements with ground truth, and the demo folder.

``simulate_measurement(...)`` returns a :class:`Measurement` (lazy frames + canonical ground-truth LocTable);
``write_measurement(...)`` writes it as a movie TIF plus localizations in any writable format; ``make_demo(out_dir)``
writes the two-measurement demo folder used by ``imagebinner demo``.
"""

from imagebinner.simulate.demo import DEMO_SETTINGS, DemoPaths, make_demo
from imagebinner.simulate.measurement import (
    Measurement,
    MeasurementSettings,
    simulate_from_settings,
    simulate_measurement,
    write_measurement,
)

__all__ = [
    "DEMO_SETTINGS",
    "DemoPaths",
    "Measurement",
    "MeasurementSettings",
    "make_demo",
    "simulate_from_settings",
    "simulate_measurement",
    "write_measurement",
]
