"""INT8 calibration: data sources, activation ranges, Q/DQ placement for TensorRT, calibration caches."""
