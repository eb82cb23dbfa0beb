"""INT8 with NNCF post-training quantization on the OpenVINO model, fed by dnx's data sources.

nncf.quantize (openvinotoolkit.github.io/nncf, "Post-training Quantization") inserts FakeQuantize
nodes from statistics over `subset_size` samples, then (fast) bias correction. Preset PERFORMANCE is
symmetric activations and weights (no zero-point arithmetic). target_device CPU selects the CPU
hardware config, under which Concat inputs share one scale ("unified scales") and quantizers are
propagated to where the CPU plugin fuses them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time

from densenet_deploy.core.deps import require
from densenet_deploy.core.errors import DataError
from densenet_deploy.data.loading import load_data_for

log = logging.getLogger(__name__)


def quantize_nncf(model, onnx_path: str, meta, calib_data: str, samples: int, options, seed: int = 0) -> dict:
    """Quantize the ov.Model `model` with NNCF; returns {"model": quantized, "method", "samples", ...}."""
    nncf = require("nncf", purpose="the nncf INT8 recipe (or use --recipe qdq)")
    data = load_data_for(calib_data, meta, split="train", limit=samples, seed=seed)
    images = data.images
    # One image per item: NNCF's statistics are defined per sample. A fixed-batch model (an export with
    # --batch N) only takes N at a time, so its items are whole batches (the remainder is dropped).
    step = meta.batch or 1
    items = [images[i : i + step] for i in range(0, len(images) - step + 1, step)]
    if not items:
        raise DataError(f"{calib_data}: {len(images)} calibration samples, but this model's fixed batch is {step}")
    dataset = nncf.Dataset(items)
    kwargs = {
        "preset": nncf.QuantizationPreset(options.preset),
        "target_device": nncf.TargetDevice(options.target_device),
        "subset_size": len(items),
        "fast_bias_correction": options.fast_bias_correction,
    }
    if options.model_type:
        kwargs["model_type"] = nncf.ModelType(options.model_type)
    if options.ignored_scope:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=list(options.ignored_scope), validate=False)
    start = time.perf_counter()
    _quiet_nncf()
    # NNCF draws progress bars with rich on stdout; stdout belongs to `--json`, so send them to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        quantized = nncf.quantize(model, dataset, **kwargs)
    seconds = time.perf_counter() - start
    log.info("nncf.quantize on %d samples in %.1f s", len(images), seconds)
    return {
        "model": quantized,
        "method": "nncf",
        "samples": len(images),
        "fingerprint": data.fingerprint,
        "source": data.source,
        "seconds": round(seconds, 2),
        "nncf_version": nncf.__version__,
        "settings": {k: str(v) for k, v in kwargs.items()},
    }


def classifier_and_stem(model) -> list[str]:
    """Names of the first Convolution and the last MatMul of an ov.Model (the usual sensitive layers)."""
    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    mats = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"]
    return ([convs[0]] if convs else []) + ([mats[-1]] if mats else [])


def _quiet_nncf() -> None:
    # NNCF logs progress bars and INFO lines on its own logger; keep them out of dnx's output.
    logging.getLogger("nncf").setLevel(logging.WARNING)
