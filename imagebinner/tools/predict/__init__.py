"""Local Deep-STORM prediction: a trained ZeroCostDL4Mic model run with onnxruntime on whole movies.

* :mod:`.tool`: :class:`Predict`, the tool (inputs, settings, streaming, the notebook's output files);
* :mod:`.network`: the ONNX graph built from the weights (batch norm folded), the session, the normalization.

The model folder is read by :mod:`imagebinner.io.deepstorm_model`; the local maxima are
:func:`imagebinner.tools.relocalize.find_maxima` (one implementation of the notebook's ``Maximafinder``).
"""

from imagebinner.tools.predict.tool import Predict

__all__ = ["Predict"]
