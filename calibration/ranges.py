"""Activation ranges from calibration data, computed by ONNX Runtime's own calibrators.

We drive `create_calibrator` + `collect_data` + `compute_data` ourselves instead of letting
`quantize_static` do it: in ONNX Runtime 1.32, `quantize_static` forwards only symmetric/moving-average/
percentile options to the calibrator (quantize.py, `calib_extra_options_keys`), so Entropy runs with
`num_bins=num_quantized_bins=128`, which leaves exactly one candidate threshold in
`HistogramCollector.get_entropy_threshold` (loop `range(num_quantized_bins // 2, num_bins // 2 + 1)`):
"entropy" then equals MinMax bit for bit.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from densenet_deploy.core.errors import DataError, DnxError

log = logging.getLogger(__name__)

METHODS = ("entropy", "minmax", "percentile")

# Ops whose inputs (and Concat outputs) get Q/DQ; the calibrator records their float tensors.
CALIBRATED_OPS = ("Conv", "Gemm", "MatMul", "Concat")

# ORT's histogram is signed and centred on 0 (get_entropy_threshold: zero_bin_index = num_bins // 2),
# so num_quantized_bins=128 means 64 levels per side. Measured on the digits DenseNet-BC (docs/calibration.md,
# 512 samples, 359 held-out): 512/128, 1024/256, 2048/128, 2048/256, 2048/512 all
# kept accuracy within 0.6 points with rel L2 0.127-0.153; 512/128 had the lowest rel L2 and is the
# fastest (candidates = (num_bins - num_quantized_bins) / 2).
DEFAULT_NUM_BINS = 512
DEFAULT_NUM_QUANTIZED_BINS = 128
DEFAULT_PERCENTILE = 99.99
# collect_data keeps every intermediate output of one call in memory before histogramming (whatever
# the batch size). Histograms accumulate across calls, but a later chunk that widens a tensor's range
# makes ORT add bins, so results depend slightly on chunking: one chunk for small inputs (the digits
# tests), chunks of CHUNK_PIXELS / (H*W) samples for large ones (about 5 samples at 224x224).
CHUNK_PIXELS = 512 * 32 * 32


@dataclass
class RangeSettings:
    """How ranges are computed; part of the calibration cache key."""

    method: str = "entropy"
    num_bins: int = DEFAULT_NUM_BINS
    num_quantized_bins: int = DEFAULT_NUM_QUANTIZED_BINS
    percentile: float = DEFAULT_PERCENTILE
    batch_size: int = 16

    def key(self) -> dict:
        out = {"method": self.method}
        if self.method == "entropy":
            out.update(num_bins=self.num_bins, num_quantized_bins=self.num_quantized_bins)
        elif self.method == "percentile":
            out.update(num_bins=self.num_bins, percentile=self.percentile)
        return out


@dataclass
class Ranges:
    """Per-tensor (low, high) float ranges plus how they were obtained."""

    values: dict[str, tuple[float, float]]
    settings: dict = field(default_factory=dict)
    source: str = "calibration"  # calibration | cache | trt-cache

    def amax(self, name: str) -> float:
        lo, hi = self.values[name]
        return float(max(abs(lo), abs(hi)))


class _Reader:
    """The CalibrationDataReader protocol (get_next -> feed dict or None) over an array."""

    def __init__(self, input_name: str, images: np.ndarray, batch_size: int):
        # ORT's histogram collectors stack each tensor's per-batch outputs with np.asarray, which fails
        # on a short last batch ("inhomogeneous shape"); so every batch of one collect_data call has the
        # same size: the largest divisor of the chunk length that is <= batch_size.
        n = len(images)
        batch_size = max(1, min(batch_size, n))
        while n % batch_size:
            batch_size -= 1
        self.input_name, self.images, self.batch_size, self.pos = input_name, images, batch_size, 0

    def get_next(self):
        if self.pos >= len(self.images):
            return None
        batch = self.images[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def __len__(self):
        return len(self.images)


def check_images(images: np.ndarray, input_size) -> np.ndarray:
    """Refuse calibration data that cannot give meaningful ranges (empty, wrong shape, NaN/inf)."""
    images = np.asarray(images)
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(input_size):
        raise DataError(
            f"calibration data has shape {tuple(images.shape)}, expected (N, "
            f"{', '.join(map(str, input_size))}) as the model's metadata says"
        )
    if len(images) == 0:
        raise DataError("calibration data is empty: give at least one sample")
    if not np.all(np.isfinite(images)):
        bad = int((~np.isfinite(images)).reshape(len(images), -1).any(1).sum())
        raise DataError(f"calibration data has NaN/inf values in {bad} of {len(images)} samples; clean the arrays")
    return images.astype(np.float32, copy=False)


def compute_ranges(
    model_path: str,
    images: np.ndarray,
    input_name: str,
    settings: RangeSettings | None = None,
    progress: bool = False,
    symmetric: bool = True,
) -> Ranges:
    """Calibrate `model_path` (fp32 ONNX) on `images` and return per-tensor ranges.

    `symmetric` (TensorRT int8): ranges are +-amax; False keeps (low, high) for asymmetric uint8.
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    s = settings or RangeSettings()
    if s.method not in METHODS:
        raise DnxError(f"unknown calibration method {s.method!r}; choose one of {', '.join(METHODS)}")
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[s.method]
    # Symmetric for TensorRT (it only uses amax = max(|low|, |high|); percentile is then taken of |x|).
    extra = {"symmetric": symmetric}
    if s.method == "entropy":
        extra.update(num_bins=s.num_bins, num_quantized_bins=s.num_quantized_bins)
    elif s.method == "percentile":
        extra.update(num_bins=s.num_bins, percentile=s.percentile)
    chunk = max(4, CHUNK_PIXELS // int(np.prod(images.shape[2:])))
    chunks = range(0, len(images), chunk)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc=f"calibrating ({s.method})", unit="chunk", leave=False)
    # ORT's calibrators print() progress; stdout belongs to --json, and our own progress bar says it better.
    chatter = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="dnx-calib-") as tmp, contextlib.redirect_stdout(chatter):
        calibrator = create_calibrator(
            model_path,
            list(CALIBRATED_OPS),
            augmented_model_path=os.path.join(tmp, "augmented.onnx"),
            calibrate_method=method,
            providers=["CPUExecutionProvider"],
            extra_options=extra,
        )
        try:
            for start in chunks:
                calibrator.collect_data(_Reader(input_name, images[start : start + chunk], s.batch_size))
            if s.method == "entropy":
                # ORT's histograms, ORT's KL search, vectorised: compute_data's pure-Python loops take
                # ~100 s for a 22-layer digits model at 2048/256 bins; this gives the same thresholds.
                values = {
                    name: entropy_threshold(hist, s.num_quantized_bins)
                    for name, hist in calibrator.collector.histogram_dict.items()
                }
            else:
                tensors = calibrator.compute_data()
                values = {name: data.range_value for name, data in tensors.items()}
        finally:
            del calibrator
    if chatter.getvalue().strip():
        log.debug("onnxruntime calibrator: %s", " / ".join(chatter.getvalue().split("\n")).strip(" /"))
    values = {name: (float(np.min(lo)), float(np.max(hi))) for name, (lo, hi) in values.items()}
    log.info("calibrated %d tensors with %s on %d samples", len(values), s.method, len(images))
    return Ranges(values=values, settings=s.key(), source="calibration")


def entropy_threshold(histogram, num_quantized_bins: int):
    """HistogramCollector.get_entropy_threshold (ORT 1.32) with its inner loops vectorised.

    Same candidates, same p/q construction (including q's integer truncation), same smoothing and
    KL, same clamping to the observed min/max; tests compare it with ORT's own function.
    """
    from onnxruntime.quantization.calibrate import entropy
    from onnxruntime.quantization.quant_utils import smooth_distribution

    hist, edges, min_value, max_value = histogram[0], histogram[1], histogram[2], histogram[3]
    num_bins = hist.size
    zero = num_bins // 2
    half = num_quantized_bins // 2
    left = np.concatenate([[0], np.cumsum(hist)])  # left[k] = hist[:k].sum()
    total = left[-1]
    best, best_div = None, np.inf
    for i in range(half, zero + 1):
        start, end = zero - i, min(zero + i + 1, num_bins)
        sliced = hist[start:end]
        p = sliced.astype(np.int64).copy()
        p[0] += left[start]
        p[-1] += total - left[end]
        nonzeros = (p != 0).astype(np.int64)
        merged = sliced.size // num_quantized_bins
        body = num_quantized_bins * merged
        quantized = sliced[:body].reshape(num_quantized_bins, merged).sum(1).astype(np.int64)
        quantized[-1] += sliced[body:].sum()
        norm = nonzeros[:body].reshape(num_quantized_bins, merged).sum(1)
        q = np.zeros(p.size, dtype=np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            fill = np.where(norm != 0, quantized / np.where(norm != 0, norm, 1), 0)
        q[:body] = np.repeat(fill, merged).astype(np.int64)
        ps, qs = smooth_distribution(p), smooth_distribution(q)
        div = np.inf if ps is None or qs is None else float(entropy(ps, qs))
        if best is None or div < best_div:
            best, best_div = (edges[start], edges[end]), div
    lo, hi = best
    return (max(lo, min_value), min(hi, max_value))


def to_tensors_data(ranges: Ranges, method: str):
    """Ranges -> onnxruntime TensorsData (what the QDQ quantizer consumes)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    cm = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }.get(method, CalibrationMethod.MinMax)
    data = {
        name: TensorData(lowest=np.array(lo, dtype=np.float32), highest=np.array(hi, dtype=np.float32))
        for name, (lo, hi) in ranges.values.items()
    }
    return TensorsData(cm, data)
