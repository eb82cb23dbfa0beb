"""quantize_int8: calibrate, place Q/DQ, check the TensorRT rules, verify on held-out data, write."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from densenet_deploy.calibration import cache as cal_cache
from densenet_deploy.calibration.qdq import CONCAT_MODES, WEIGHTED_OPS, check_qdq, end_nodes, insert_qdq
from densenet_deploy.calibration.ranges import (
    DEFAULT_NUM_BINS,
    DEFAULT_NUM_QUANTIZED_BINS,
    DEFAULT_PERCENTILE,
    METHODS,
    Ranges,
    RangeSettings,
    check_images,
    compute_ranges,
)
from densenet_deploy.calibration.sensitivity import rank_layers
from densenet_deploy.core.errors import DataError, DnxError, OptionError, VerificationFailed
from densenet_deploy.core.io import atomic_output, check_output_path
from densenet_deploy.core.metadata import load_fp32_export, load_onnx, write_onnx_meta
from densenet_deploy.core.policy import GateOptions, gate_for
from densenet_deploy.core.results import CheckedResult
from densenet_deploy.core.sidecars import drop_stale_sidecar
from densenet_deploy.data.loading import Dataset, load_data_for
from densenet_deploy.verify.compare import compare_outputs

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 512
DEFAULT_EVAL_SAMPLES = 500
# Measured on the digits DenseNet-BC (docs/calibration.md): shared concat scales cost
# nothing over "independent" (which requantises at every Concat and was *less* accurate) and let
# TensorRT run DenseNet's concatenations in INT8.
DEFAULT_CONCAT_SCALES = "shared"
# Percentile 99.99 kept accuracy and had ~6x lower logit error (rel L2 0.025) than entropy (0.13-0.15) on
# the digits DenseNet-BC, at a third of the time: the default. Entropy stays available (TensorRT's classic).
DEFAULT_METHOD = "percentile"


@dataclass(frozen=True)
class CalibrationOptions:
    """How quantize_int8 calibrates and gates (the `dnx calibrate` flags of the same names).

    method: activation range method (percentile of |x|; entropy = KL, TensorRT's classic; minmax).
    samples / eval_samples: calibration samples (train split) and held-out samples (val split).
    cache: a JSON range cache, reused when model and data match. concat_scales: one scale for all tensors
    joined by a Concat ("shared"), each its own, or Concat left in float. exclude_nodes / keep_ends_float /
    auto_exclude: layers kept in float (auto: the most INT8-sensitive ones, until the gate passes, at most
    max_auto_exclude). from_trt_cache / write_trt_cache: TensorRT calibration caches. activation_type:
    int8 (TensorRT) or uint8 (ONNX Runtime only). num_bins, num_quantized_bins, percentile: histogram
    settings. gate: changes to the policy's int8 gate.
    """

    method: str = DEFAULT_METHOD
    samples: int = DEFAULT_SAMPLES
    eval_samples: int = DEFAULT_EVAL_SAMPLES
    cache: str | None = None
    concat_scales: str = DEFAULT_CONCAT_SCALES
    exclude_nodes: tuple[str, ...] = ()
    keep_ends_float: bool = False
    auto_exclude: bool = False
    max_auto_exclude: int = 16
    from_trt_cache: str | None = None
    write_trt_cache: str | None = None
    activation_type: str = "int8"
    num_bins: int = DEFAULT_NUM_BINS
    num_quantized_bins: int = DEFAULT_NUM_QUANTIZED_BINS
    percentile: float = DEFAULT_PERCENTILE
    gate: GateOptions = field(default_factory=GateOptions)
    seed: int = 0

    def validate(self) -> "CalibrationOptions":
        if self.method not in METHODS:
            raise OptionError("method", f"must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.concat_scales not in CONCAT_MODES:
            raise OptionError("concat_scales", f"must be one of {', '.join(CONCAT_MODES)}, got {self.concat_scales!r}")
        if self.activation_type not in ("int8", "uint8"):
            raise OptionError("activation_type", f"must be int8 or uint8, got {self.activation_type!r}")
        for name in ("samples", "eval_samples"):
            if getattr(self, name) < 1:
                raise OptionError(name, f"must be >= 1, got {getattr(self, name)}")
        if self.activation_type == "uint8" and self.write_trt_cache:
            raise DnxError("a TensorRT calibration cache needs symmetric int8 activations, not uint8")
        return self


@dataclass
class CalibrationResult(CheckedResult):
    """What quantize_int8 did; truthy when the held-out gate passed."""

    output: str
    method: str
    samples: int
    quantized_nodes: int
    parity: dict
    excluded: list[str]
    auto_excluded: list[str]
    seconds: float
    ranges_from: str  # calibration | cache | trt-cache
    concat_scales: str
    activation_type: str
    qdq: dict = field(default_factory=dict)
    data_fingerprint: str = ""
    skipped: int = 0
    trt_cache: str | None = None
    passed: bool = True
    failures: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        r = self
        p = r.parity
        lines = [
            f"{'wrote' if r.passed else 'NOT written:'} {r.output} ({r.activation_type} Q/DQ, method {r.method}, "
            f"{r.samples} samples, ranges from {r.ranges_from}, concat scales {r.concat_scales}) in {r.seconds:.1f} s",
            f"quantized {r.quantized_nodes} weighted nodes; {r.qdq.get('quantize_linear')} Q / "
            f"{r.qdq.get('dequantize_linear')} DQ; {r.qdq.get('quantized_concats')} concats in int8",
        ]
        if r.excluded:
            lines.append(
                f"float     {', '.join(r.excluded)}"
                + (f" (auto: {', '.join(r.auto_excluded)})" if r.auto_excluded else "")
            )
        lines.append(
            f"held-out  {p['samples']} samples: top-1 agreement {p['top1_agreement'] * 100:.2f} %, "
            f"rel L2 {p['rel_l2']:.4f}, cosine min {p['cosine_min']:.4f}"
        )
        if p.get("accuracy"):
            lines.append(f"accuracy  fp32 {p['accuracy']['ref'] * 100:.2f} %  int8 {p['accuracy']['cand'] * 100:.2f} %")
        if r.trt_cache:
            lines.append(f"TensorRT calibration cache: {r.trt_cache}")
        if r.failures:
            lines.append("FAIL: " + "; ".join(r.failures))
        return "\n".join(lines)


def _load(data, meta, split, limit, seed, progress):
    if isinstance(data, Dataset):
        return data
    if not isinstance(data, str):
        raise DnxError(f"data must be a SRC string or a Dataset, got {type(data).__name__}")
    # data 'random' warns once per command where it is read (data_formats.read_random)
    return load_data_for(data, meta, split=split, limit=limit, seed=seed, progress=progress)


def run_onnx(path: str, images: np.ndarray, batch_size: int = 64, threads: int | None = None) -> np.ndarray:
    """Logits of an ONNX model on `images` with ONNX Runtime on the CPU."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outs = [session.run(None, {name: images[i : i + batch_size]})[0] for i in range(0, len(images), batch_size)]
    return np.concatenate(outs).reshape(len(images), -1)


def quantize_int8(
    onnx_path: str,
    output: str,
    data,
    options: CalibrationOptions | None = None,
    *,
    eval_data=None,
    progress: bool = False,
    failure_advice: str | None = None,
) -> CalibrationResult:
    """Calibrate `onnx_path` (fp32, dnx metadata) on `data` and write an explicit-Q/DQ INT8 model to `output`.

    `data` is a SRC string (its "train" split, `options.samples` seeded samples, calibrates; its "val" split
    verifies) or a densenet_deploy.data.Dataset (then give `eval_data` too). The INT8 model is run with
    ONNX Runtime on held-out samples and judged by the policy's int8 parity gate (changed by
    `options.gate`): on a miss nothing is written and VerificationFailed carries the result.
    `options.activation_type="uint8"` makes an ONNX Runtime-only variant (asymmetric activations; TensorRT
    rejects it). Raises DataError for unusable data, DnxError for bad options.
    """
    o = (options or CalibrationOptions()).validate()
    method, samples, eval_samples, cache = o.method, o.samples, o.eval_samples, o.cache
    concat_scales, activation_type, seed = o.concat_scales, o.activation_type, o.seed
    write_trt_cache, from_trt_cache = o.write_trt_cache, o.from_trt_cache
    start = time.perf_counter()
    check_output_path(output)
    _check_distinct_paths(onnx_path, output, cache, write_trt_cache, from_trt_cache)
    if write_trt_cache:
        check_output_path(write_trt_cache)
    model, meta = load_fp32_export(onnx_path, "calibrate")
    if isinstance(data, str) is False and eval_data is None:
        raise DnxError("with a Dataset as calibration data, pass eval_data (held-out samples) too")

    calib = _load(data, meta, "train", samples, seed, progress)
    images = check_images(calib.images, meta.input_size)
    held = _load(eval_data if eval_data is not None else data, meta, "val", eval_samples, seed, progress)
    held_images = check_images(held.images, meta.input_size)

    settings = RangeSettings(
        method=method, num_bins=o.num_bins, num_quantized_bins=o.num_quantized_bins, percentile=o.percentile
    )
    key = cal_cache.cache_key(
        cal_cache.graph_hash(model),
        calib.fingerprint,
        {**settings.key(), "activation_type": activation_type},
        len(images),
    )
    if from_trt_cache:
        ranges = cal_cache.read_trt_cache(from_trt_cache)
        _check_coverage(model, ranges, concat_scales, from_trt_cache)
    else:
        ranges = cal_cache.load_cache(cache, key) if cache else None
        if ranges is None:
            ranges = compute_ranges(
                onnx_path, images, meta.input_name, settings, progress=progress, symmetric=activation_type == "int8"
            )
            if cache:
                cal_cache.save_cache(cache, key, ranges)

    excluded = list(dict.fromkeys(list(o.exclude_nodes) + (end_nodes(model) if o.keep_ends_float else [])))
    reference = run_onnx(onnx_path, held_images)
    gate = o.gate.apply(gate_for("int8"))
    real_data = not (isinstance(data, str) and data.strip() == "random")

    with tempfile.TemporaryDirectory(prefix="dnx-int8-") as tmp:

        def attempt(exclude):
            path = os.path.join(tmp, f"q{len(exclude)}.onnx")
            insert_qdq(
                onnx_path, path, ranges, exclude=exclude, concat_scales=concat_scales, activation_type=activation_type
            )
            parity = compare_outputs(
                reference, run_onnx(path, held_images), labels=held.labels, gate=gate, real_data=real_data
            )
            return path, parity, parity.failures

        path, parity, failures = attempt(excluded)
        auto = []
        if failures and o.auto_exclude:
            ranking = [n for n in rank_layers(onnx_path, images[:64], meta.input_name, ranges) if n not in excluded]
            step = 1
            while failures and len(auto) < min(o.max_auto_exclude, len(ranking)):
                auto = ranking[: min(step, o.max_auto_exclude, len(ranking))]
                log.info("auto-exclude: trying %d float layer(s): %s", len(auto), ", ".join(auto))
                path, parity, failures = attempt(excluded + auto)
                step *= 2
        qmodel = load_onnx(path)
        summary = check_qdq(qmodel, activation_type)
        if summary.problems:
            raise DnxError(
                f"Q/DQ model breaks the placement rules: {summary.problems[0]} ({len(summary.problems)} problem(s))"
            )
        result = CalibrationResult(
            output=os.fspath(output),
            method="trt-cache" if from_trt_cache else method,
            samples=len(images),
            quantized_nodes=len(summary.quantized_nodes),
            parity=parity.as_dict(),
            excluded=excluded + auto,
            auto_excluded=auto,
            seconds=0.0,
            ranges_from=ranges.source,
            concat_scales=concat_scales,
            activation_type=activation_type,
            data_fingerprint=calib.fingerprint,
            skipped=calib.skipped,
            qdq={
                "quantize_linear": summary.quantize_linear,
                "dequantize_linear": summary.dequantize_linear,
                "quantized_concats": summary.quantized_concats,
                "float_nodes": summary.float_nodes,
            },
            passed=not failures,
            failures=failures,
        )
        if failures:
            result.seconds = round(time.perf_counter() - start, 3)
            # Callers that calibrate into a temporary file (build-engine) give their own advice.
            advice = failure_advice or f"{output} not written (try --auto-exclude or another --method)"
            raise VerificationFailed(f"INT8 model failed the held-out check ({'; '.join(failures)}); {advice}", result)
        calibration = {
            "method": result.method,
            "samples": len(images),
            "data_fingerprint": calib.fingerprint,
            "data_source": calib.source,
            "settings": ranges.settings,
            "ranges_from": ranges.source,
            "concat_scales": concat_scales,
            "activation_type": activation_type,
            "excluded_nodes": result.excluded,
            "auto_excluded": auto,
            "keep_ends_float": o.keep_ends_float,
            "target": "tensorrt" if activation_type == "int8" else "onnxruntime",
        }
        write_onnx_meta(qmodel, meta.replace(precision="int8", calibration=calibration))
        import onnx

        with atomic_output(output) as tmp_out:
            onnx.save(qmodel, tmp_out)
        drop_stale_sidecar(output)
    if write_trt_cache:
        tensors = _activation_tensors(qmodel)
        cal_cache.write_trt_cache(write_trt_cache, ranges_for(tensors, ranges, qmodel), tensors)
        result.trt_cache = os.fspath(write_trt_cache)
    result.seconds = round(time.perf_counter() - start, 3)
    return result


def _check_distinct_paths(onnx_path, output, cache, write_trt_cache, from_trt_cache) -> None:
    """Refuse (before any work) when two of the files calibrate reads or writes are the same file."""
    files = [
        ("the input model", onnx_path),
        ("output -o", output),
        ("--cache", cache),
        ("--write-trt-cache", write_trt_cache),
        ("--from-trt-cache", from_trt_cache),
    ]
    files = [(label, os.fspath(p), os.path.realpath(p)) for label, p in files if p]
    for i, (label_a, path_a, real_a) in enumerate(files):
        for label_b, path_b, real_b in files[i + 1 :]:
            if real_a != real_b:
                continue
            if i == 0 and label_b == "output -o":
                raise DnxError(f"output {path_b} would overwrite the input model; choose another -o")
            if i == 0:
                raise DnxError(f"{label_b} {path_b} is the input model; choose another file for {label_b}")
            raise DnxError(f"{label_a} and {label_b} are the same file ({path_b}); give each its own file")


def _check_coverage(model, ranges, concat_scales, source) -> None:
    """Every activation the Q/DQ model quantizes needs a scale in an imported TensorRT cache."""
    inits = {i.name for i in model.graph.initializer}
    ops = WEIGHTED_OPS + (("Concat",) if concat_scales != "float" else ())
    needed = [
        t
        for n in model.graph.node
        if n.op_type in ops
        for t in ([n.input[0]] if n.op_type != "Concat" else list(n.input) + list(n.output))
        if t not in inits
    ]
    missing = list(dict.fromkeys(t for t in needed if t not in ranges.values))
    if missing:
        raise DataError(
            f"{source} has no scale for {len(missing)} tensor(s) this model quantizes (e.g. "
            f"{missing[0]!r}); was it written for this ONNX model? (try --concat-scales float)"
        )


def _activation_tensors(qmodel) -> list[str]:
    """Float tensors entering a QuantizeLinear (the activations TensorRT needs a scale for)."""
    inits = {i.name for i in qmodel.graph.initializer}
    return list(
        dict.fromkeys(
            n.input[0] for n in qmodel.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits
        )
    )


def ranges_for(tensors, ranges, qmodel):
    """Ranges of `tensors` as the Q/DQ model actually uses them (its scales x 127), for the TRT cache."""
    from onnx import numpy_helper

    inits = {i.name: i for i in qmodel.graph.initializer}
    values = {}
    for node in qmodel.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in tensors:
            amax = float(numpy_helper.to_array(inits[node.input[1]]).max()) * 127.0
            values[node.input[0]] = (-amax, amax)
    missing = [t for t in tensors if t not in values]
    if missing:
        raise DataError(f"no scale for {missing[0]}")
    return Ranges(values=values, settings=ranges.settings, source=ranges.source)
