"""Q/DQ placement for TensorRT's strongly typed INT8, written by ONNX Runtime's QDQ quantizer.

TensorRT's rules for explicit quantization (TensorRT developer guide, "Explicit Quantization" /
"Q/DQ Layer-Placement Recommendations"): symmetric INT8 only, zero points constant 0, per-channel scales
only for weights (Conv: axis 0 = output channels), activations per-tensor; quantize the *inputs* of
weighted layers and their weights, leave bias in float, and do not put a Q after a weighted layer's
output (TensorRT fuses the next Quantize into the layer itself). ONNX Runtime's `quantize_static` defaults
differ (asymmetric uint8 activations, int32 bias, quantized outputs), so every option is set here.
NVIDIA ModelOpt's ONNX INT8 mode drives the same ORT QDQ quantizer with equivalent settings
(modelopt/onnx/quantization/int8.py); we reproduce that recipe instead of depending on it.

Concat, DenseNet's INT8 risk: TensorRT runs a Concat whose inputs and output carry Q/DQ in INT8 only if
the scales agree, otherwise it requantises. `concat_scales="shared"` gives every tensor linked through a
Concat one range (the widest), "independent" keeps each tensor's own calibrated range, "float" leaves
Concat unquantized.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from densenet_deploy.calibration.ranges import Ranges, to_tensors_data
from densenet_deploy.core.errors import DnxError, did_you_mean

log = logging.getLogger(__name__)

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
CONCAT_MODES = ("shared", "independent", "float")


@dataclass
class QdqSummary:
    """What the Q/DQ check found: quantized weighted nodes, Q/DQ counts, nodes left float."""

    quantized_nodes: list[str]
    float_nodes: list[str]
    quantize_linear: int
    dequantize_linear: int
    quantized_concats: int
    problems: list[str] = field(default_factory=list)


def weighted_nodes(model) -> list:
    return [n for n in model.graph.node if n.op_type in WEIGHTED_OPS]


def end_nodes(model) -> list[str]:
    """Names of the first weighted node fed by the graph input and the weighted node(s) feeding the output."""
    graph_inputs = {i.name for i in model.graph.input}
    graph_outputs = {o.name for o in model.graph.output}
    producers = {out: n for n in model.graph.node for out in n.output}
    names = [n.name for n in weighted_nodes(model) if n.input and n.input[0] in graph_inputs]
    # Walk back from each output through shape-only/elementwise nodes to the last weighted node.
    for out in graph_outputs:
        node = producers.get(out)
        while node is not None and node.op_type not in WEIGHTED_OPS:
            node = producers.get(node.input[0]) if node.input else None
        if node is not None:
            names.append(node.name)
    return list(dict.fromkeys(names))


def share_concat_ranges(model, ranges: Ranges) -> Ranges:
    """One range per group of tensors linked through Concat nodes (union-find; widest range wins)."""
    parent: dict[str, str] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for node in model.graph.node:
        if node.op_type != "Concat":
            continue
        tensors = [t for t in list(node.input) + list(node.output) if t in ranges.values]
        for t in tensors[1:]:
            parent[find(t)] = find(tensors[0])
    groups: dict[str, list[str]] = {}
    for t in parent:
        groups.setdefault(find(t), []).append(t)
    values = dict(ranges.values)
    for members in groups.values():
        amax = max(ranges.amax(t) for t in members)
        for t in members:
            values[t] = (-amax, amax)
    log.info("concat-scales shared: %d tensors in %d groups", len(parent), len(groups))
    return Ranges(values=values, settings=ranges.settings, source=ranges.source)


@contextlib.contextmanager
def _quiet_root_logger():
    # quantize_static logs a "consider pre-processing" warning on the root logger on every call.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def insert_qdq(
    model_path: str,
    output_path: str,
    ranges: Ranges,
    *,
    exclude: list[str] = (),
    concat_scales: str = "shared",
    activation_type: str = "int8",
) -> None:
    """Write a Q/DQ model of `model_path` to `output_path` using the given activation ranges.

    activation_type "int8" (TensorRT, OpenVINO) or "uint8" (ONNX Runtime's fast u8s8 CPU path, *not*
    loadable by TensorRT: it needs symmetric int8 with zero point 0).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    if concat_scales not in CONCAT_MODES:
        raise DnxError(f"unknown concat-scales {concat_scales!r}; choose one of {', '.join(CONCAT_MODES)}")
    if activation_type not in ("int8", "uint8"):
        raise DnxError(f"activation type must be int8 or uint8, got {activation_type!r}")
    model = onnx.load(model_path)
    names = {n.name for n in model.graph.node}
    unknown = [n for n in exclude if n not in names]
    if unknown:
        raise DnxError(
            f"--exclude-nodes: no node named {unknown[0]!r} in {model_path}{did_you_mean(unknown[0], names)}"
        )
    if concat_scales == "shared":
        ranges = share_concat_ranges(model, ranges)
    op_types = list(WEIGHTED_OPS) + (["Concat"] if concat_scales != "float" else [])
    symmetric = activation_type == "int8"
    extra = {
        "ActivationSymmetric": symmetric,  # zero point 0 (TensorRT rule); uint8 is asymmetric
        "WeightSymmetric": True,
        "QuantizeBias": False,  # bias stays float; TensorRT folds it into the layer
        "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "Gemm": 0, "MatMul": 1},
        "OpTypesToExcludeOutputQuantization": list(WEIGHTED_OPS),
        "AddQDQPairToWeight": False,  # int8 weight initializer -> DequantizeLinear (4x smaller file)
        "DedicatedQDQPair": False,
    }
    method = CalibrationMethod.MinMax
    with tempfile.TemporaryDirectory(prefix="dnx-qdq-") as tmp:
        # quantize_static accepts precomputed ranges through its calibration cache (ORT >= 1.2x,
        # quantize.py: load_tensors_data when calibration_cache_path exists): no second calibration.
        cache = os.path.join(tmp, "ranges.json")
        save_tensors_data(to_tensors_data(ranges, "minmax"), cache)
        with _quiet_root_logger():
            quantize_static(
                model_path,
                output_path,
                None,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=op_types,
                per_channel=True,
                reduce_range=False,
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(exclude),
                calibrate_method=method,
                extra_options=extra,
                calibration_cache_path=cache,
            )


def _initializer(model, name):
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return None


def check_qdq(model, activation_type: str = "int8") -> QdqSummary:
    """Check the TensorRT rules on a Q/DQ model; problems are listed, not raised."""
    producers = {out: n for n in model.graph.node for out in n.output}
    problems, quantized, floating = [], [], []
    for node in weighted_nodes(model):
        act = producers.get(node.input[0])
        wdq = producers.get(node.input[1]) if len(node.input) > 1 else None
        if act is None or act.op_type != "DequantizeLinear":
            floating.append(node.name)
            continue
        quantized.append(node.name)
        q = producers.get(act.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            problems.append(f"{node.name}: activation DequantizeLinear not fed by QuantizeLinear")
        if wdq is None or wdq.op_type != "DequantizeLinear":
            problems.append(f"{node.name}: weight is not dequantized")
        else:
            w = _initializer(model, wdq.input[0])
            scale = _initializer(model, wdq.input[1])
            if w is None or w.dtype != np.int8:
                problems.append(f"{node.name}: weight is not an int8 initializer")
            elif node.op_type == "Conv" and (scale is None or scale.size != w.shape[0]):
                problems.append(f"{node.name}: weight scales are not per output channel")
        if (
            len(node.input) > 2
            and node.input[2] in producers
            and producers[node.input[2]].op_type == "DequantizeLinear"
        ):
            problems.append(f"{node.name}: bias is quantized")
    want = np.int8 if activation_type == "int8" else np.uint8
    counts = {"QuantizeLinear": 0, "DequantizeLinear": 0}
    for node in model.graph.node:
        if node.op_type not in counts:
            continue
        counts[node.op_type] += 1
        zp = _initializer(model, node.input[2]) if len(node.input) > 2 else None
        scale = _initializer(model, node.input[1])
        if scale is None or not np.all(scale > 0):
            problems.append(f"{node.name}: scale missing or not positive")
        if zp is None:
            problems.append(f"{node.name}: no zero point (type would default to uint8)")
        elif zp.dtype == np.int8 and np.any(zp != 0):
            problems.append(f"{node.name}: int8 zero point is not 0 (asymmetric)")
        elif node.op_type == "QuantizeLinear" and zp.dtype != want:
            problems.append(f"{node.name}: activation type {zp.dtype}, expected {np.dtype(want).name}")
    concats = sum(
        1
        for n in model.graph.node
        if n.op_type == "Concat"
        and any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in n.input)
    )
    return QdqSummary(
        quantized_nodes=quantized,
        float_nodes=floating,
        quantize_linear=counts["QuantizeLinear"],
        dequantize_linear=counts["DequantizeLinear"],
        quantized_concats=concats,
        problems=problems,
    )
