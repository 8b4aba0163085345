"""Prediction review: DeepSTORM (ZeroCostDL4Mic) outputs against ground truth — threshold, exact metrics, sweep.

* :mod:`.task`: :class:`PredictionReview`, the tool (settings, load orchestration, threshold reactions, save);
* :mod:`.geometry`: pixel sizes, upsampling, image shapes, field area;
* :mod:`.reading`: hr image sizes, the test movie, predictions (CSV, re-localized, exploded), ground truth, frames,
  the model's ``model_metadata.mat`` (given with ``model_folder`` or beside the predictions: L2 and upsampling).

A folder written by ``imagebinner predict`` (:mod:`imagebinner.tools.predict`) opens directly: it holds the
notebook's files, the per-frame densities and a copy of the model's metadata.

The prediction-folder layout (names, exploded frames) lives in :mod:`imagebinner.io.predictions`, the matching and
metrics in :mod:`imagebinner.tools.matching`, the re-localization in :mod:`imagebinner.tools.relocalize`.
"""

from imagebinner.tools.review.task import PredictionReview

__all__ = ["PredictionReview"]
