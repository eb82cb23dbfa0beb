"""INT8 calibration: activation ranges (ranges), Q/DQ placement for TensorRT (qdq), per-layer sensitivity
(sensitivity), range and TensorRT caches (cache), and the whole step with its held-out gate (quantize).
Its data comes from densenet_deploy.data."""

from densenet_deploy.calibration.qdq import CONCAT_MODES
from densenet_deploy.calibration.quantize import CalibrationOptions, CalibrationResult, quantize_int8
from densenet_deploy.calibration.ranges import METHODS

__all__ = ["quantize_int8", "CalibrationOptions", "CalibrationResult", "METHODS", "CONCAT_MODES"]
