"""The Binner: dense DeepSTORM2D training movies by summing patches of several measurements.

Modules, one concern each: :mod:`.inputs` (loading, validation, pixel size, the global localization index and the
patch-membership rule), :mod:`.pool` (drawing the patch pool, a pure function), :mod:`.compose` (the plan),
:mod:`.assembly` (binned frames, labels, TIF writing), :mod:`.provenance` (the JSON record), :mod:`.summary`
(statistics and their text), :mod:`.windows` (window arithmetic) and :mod:`.tool` (the :class:`Binner` param
class orchestrating them).
"""

from imagebinner.tools.binner.assembly import BinnedFrame
from imagebinner.tools.binner.inputs import Measurement
from imagebinner.tools.binner.pool import Pool
from imagebinner.tools.binner.tool import Binner

__all__ = ["Binner", "BinnedFrame", "Measurement", "Pool"]
