"""INT8 calibration: data sources, activation ranges, Q/DQ placement for TensorRT, calibration caches.

Public API: quantize_int8(onnx_path, output, data, ...) -> CalibrationResult (see calibration.quantize);
heavy imports happen on first use, so `import calibration` stays cheap.
"""

from __future__ import annotations

__all__ = ["quantize_int8", "calibrate", "CalibrationResult", "METHODS", "CONCAT_MODES"]

METHODS = ("entropy", "minmax", "percentile")
CONCAT_MODES = ("shared", "independent", "float")


def quantize_int8(onnx_path, output, data, **options):
    """Calibrate and write an explicit Q/DQ INT8 model; see calibration.quantize.quantize_int8."""
    from .quantize import quantize_int8 as _quantize

    return _quantize(onnx_path, output, data, **options)


def calibrate(onnx_path, data, output, **options):
    """quantize_int8 with (model, data, output) argument order, kept for callers that use it."""
    return quantize_int8(onnx_path, output, data, **options)


def __getattr__(name):
    if name == "CalibrationResult":
        from .quantize import CalibrationResult

        return CalibrationResult
    raise AttributeError(name)
