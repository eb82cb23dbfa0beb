"""Calibration caches: our JSON cache of tensor ranges, and TensorRT's text calibration cache.

JSON cache: ranges keyed by the model's graph hash, the data fingerprint and the range settings, so a
re-run with the same model and data skips calibration. TensorRT cache (the format `IInt8Calibrator`
`writeCalibrationCache` produced up to TensorRT 10): first line `TRT-<version>-EntropyCalibration2`,
then one `tensor_name: <8 hex digits>` line per tensor, the hex being the big-endian IEEE float32 scale,
scale = amax / 127 (symmetric int8).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct

from densenet_deploy.calibration.ranges import Ranges
from densenet_deploy.core.errors import DataError
from densenet_deploy.core.io import atomic_write_text

log = logging.getLogger(__name__)

CACHE_FORMAT = "dnx-calibration-cache/1"
# TensorRT 10.x encodes its version as major*10000 + minor*100 + patch in this header (e.g. 10.3.0 ->
# 100300); TensorRT only logs a warning when the version differs, the scales are read regardless.
DEFAULT_TRT_VERSION = "100300"
TRT_ALGORITHM = "EntropyCalibration2"
_TRT_LINE = re.compile(r"^(?P<name>.+):\s*(?P<hex>[0-9a-fA-F]{1,8})\s*$")


def graph_hash(model) -> str:
    """SHA-256 of the graph (nodes, initializers, I/O), independent of metadata_props."""
    return hashlib.sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()


def cache_key(graph_sha256: str, data_fingerprint: str, settings: dict, samples: int) -> dict:
    return {
        "graph_sha256": graph_sha256,
        "data_fingerprint": data_fingerprint,
        "settings": settings,
        "samples": int(samples),
    }


def load_cache(path: str, key: dict) -> Ranges | None:
    """Ranges from `path` when it exists and its key matches, else None (a stale cache is recomputed)."""
    if not path or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as exc:  # ValueError: JSONDecodeError and UnicodeDecodeError (a binary file)
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise DataError(f"calibration cache {path} is not readable JSON ({reason}); delete it to recalibrate") from exc
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT:
        found = (
            f"format {doc.get('format')!r}"
            if isinstance(doc, dict)
            else f"it holds a JSON {type(doc).__name__}, not an object"
        )
        raise DataError(f"{path} is not a dnx calibration cache ({found}); for a TensorRT cache use --from-trt-cache")
    stored = doc.get("key")
    if not isinstance(stored, dict):
        raise DataError(f"calibration cache {path} has no valid 'key' object; delete it to recalibrate")
    if stored != key:
        stale = [k for k in key if stored.get(k) != key[k]]
        log.warning("calibration cache %s does not match (%s differ); recalibrating", path, ", ".join(stale))
        return None
    values = _cache_ranges(path, doc.get("ranges"))
    return Ranges(values=values, settings=key["settings"], source="cache")


def _cache_ranges(path: str, ranges) -> dict[str, tuple[float, float]]:
    """The cache's {tensor: [low, high]} with finite numbers and low <= high, else a one-line DataError."""
    import math

    advice = "delete it to recalibrate"
    if not isinstance(ranges, dict) or not ranges:
        raise DataError(
            f"calibration cache {path}: 'ranges' should be a non-empty object of tensor: [low, high]; {advice}"
        )
    values = {}
    for name, pair in ranges.items():
        if not (
            isinstance(pair, (list, tuple))
            and len(pair) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
        ):
            raise DataError(
                f"calibration cache {path}: range of {name!r} should be [low, high] numbers, "
                f"got {json.dumps(pair)[:60]}; {advice}"
            )
        lo, hi = float(pair[0]), float(pair[1])
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
            raise DataError(
                f"calibration cache {path}: range of {name!r} is [{lo}, {hi}] (needs finite low <= high); {advice}"
            )
        values[name] = (lo, hi)
    return values


def save_cache(path: str, key: dict, ranges: Ranges) -> None:
    doc = {
        "format": CACHE_FORMAT,
        "key": key,
        "ranges": {name: [lo, hi] for name, (lo, hi) in sorted(ranges.values.items())},
    }
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def write_trt_cache(
    path: str, ranges: Ranges, tensors: list[str] | None = None, version: str = DEFAULT_TRT_VERSION
) -> int:
    """Write TensorRT's text calibration cache for `tensors` (default: all); returns lines written."""
    names = tensors if tensors is not None else sorted(ranges.values)
    lines = [f"TRT-{version}-{TRT_ALGORITHM}"]
    for name in names:
        scale = max(ranges.amax(name), 1e-12) / 127.0
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return len(lines) - 1


def read_trt_cache(path: str) -> Ranges:
    """Symmetric ranges (+-127 * scale) from a TensorRT text calibration cache."""
    if not os.path.isfile(path):
        raise DataError(f"TensorRT calibration cache {path}: no such file")
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = [ln.rstrip("\n") for ln in fh if ln.strip()]
    if not lines or not re.match(r"^TRT-\d+-\w+$", lines[0]):
        raise DataError(
            f"{path} is not a TensorRT calibration cache (first line should be "
            f"'TRT-<version>-{TRT_ALGORITHM}', got {lines[0][:60] if lines else 'nothing'!r})"
        )
    values = {}
    for number, line in enumerate(lines[1:], start=2):
        match = _TRT_LINE.match(line)
        if not match:
            raise DataError(f"{path}:{number}: expected 'tensor: <8 hex digits>', got {line[:60]!r}")
        scale = struct.unpack(">f", bytes.fromhex(match["hex"].zfill(8)))[0]
        amax = scale * 127.0
        values[match["name"]] = (-amax, amax)
    if not values:
        raise DataError(f"{path} holds no tensor scales")
    return Ranges(values=values, settings={"method": "trt-cache", "header": lines[0]}, source="trt-cache")
