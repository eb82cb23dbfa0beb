"""Describe an ONNX artifact from the file itself: its dnx metadata, and params/MACs counted from the graph."""

from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger(__name__)

# Initializers that are not learned parameters: BN running statistics (PyTorch counts them as buffers,
# not parameters) and quantisation scales / zero points (Q/DQ models).
_NOT_PARAMS = {"BatchNormalization": (3, 4), "QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2),
               "QLinearConv": (1, 2, 4, 5, 6, 7), "QLinearMatMul": (1, 2, 4, 5, 6, 7)}
_FLOAT_TYPES = (1, 10, 11, 16)  # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def count_onnx_params(model) -> dict[str, int]:
    """{"params": learned weights, "buffers": BN running stats} from the initializers of `model`.

    Defined so that an export of a PyTorch model gives exactly ``sum(p.numel() for p in parameters())``:
    BN running mean/var are excluded (buffers), and so are integer constants (shapes) and Q/DQ scales,
    except int8 weights feeding DequantizeLinear, which are the parameters of a quantised model.
    """
    stats, not_params, used_as_param, quantized_weights = set(), set(), set(), set()
    for node in model.graph.node:
        skip = _NOT_PARAMS.get(node.op_type, ())
        for i, name in enumerate(node.input):
            if i not in skip:
                used_as_param.add(name)
            elif node.op_type == "BatchNormalization":
                stats.add(name)
            else:
                not_params.add(name)
        if node.op_type == "DequantizeLinear":
            quantized_weights.add(node.input[0])
        if node.op_type in ("QLinearConv", "QLinearMatMul") and len(node.input) > 3:
            quantized_weights.add(node.input[3])
    params = buffers = 0
    for t in model.graph.initializer:
        size = int(np.prod(t.dims)) if len(t.dims) else 1
        # An exporter may share one initializer between a BN bias and a running mean (both zeros):
        # any use as a weight makes it a parameter.
        if t.name not in used_as_param:
            if t.name in stats:
                buffers += size
            continue
        if t.data_type in _FLOAT_TYPES or t.name in quantized_weights:
            params += size
    return {"params": params, "buffers": buffers}


def count_onnx_macs(model) -> int:
    """Multiply-accumulates of one image (batch 1) for Conv and Gemm/MatMul, from inferred shapes.

    Counts as torch.utils.flop_counter does (output elements x input channels per group x kernel area for
    a conv, M x N x K for a matrix product; no bias, BN, pooling or activations), so an exported graph
    and its PyTorch model give the same number.
    """
    import onnx

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    # Fix every symbolic input dim (the batch axis) to 1, then let ONNX infer all shapes.
    for value in probe.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.dim_value = 1
    del probe.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(probe)
    shapes = {t.name: list(t.dims) for t in inferred.graph.initializer}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]

    def weight_and_output(node, w_index):
        w = shapes.get(node.input[w_index]) if len(node.input) > w_index else None
        out = shapes.get(node.output[0])
        return w, out

    macs = 0
    for node in inferred.graph.node:
        op = node.op_type
        if op in ("Conv", "ConvInteger", "QLinearConv"):
            w, out = weight_and_output(node, {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}[op])
            if w and out:
                macs += int(np.prod(out)) * int(np.prod(w[1:]))  # w: (Cout, Cin/groups, kH, kW)
        elif op in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
            a = shapes.get(node.input[0])
            out = shapes.get(node.output[0])
            if a and out:
                trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
                k = a[-2] if (op == "Gemm" and trans_a) else a[-1]
                macs += int(np.prod(out)) * int(k)
        else:
            continue
        if not out:
            log.warning("no inferred shape for %s %s; its MACs are not counted", op, node.name)
    return macs


def describe_onnx(path, compare_torch: bool = True) -> dict:
    """What `dnx info X.onnx` shows: metadata, params/MACs counted from the graph, the paper's figures,
    and (when the metadata names a zoo model) the PyTorch model's own counts for comparison."""
    from .errors import ArtifactError
    from .metadata import load_onnx, read_onnx_meta

    model = load_onnx(path)
    counts = count_onnx_params(model)
    macs = count_onnx_macs(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    try:
        meta = read_onnx_meta(model)
    except ArtifactError as exc:  # a foreign ONNX file: still count it, say what is missing
        log.warning("%s", exc)
        meta = None
    first = model.graph.input[0].type.tensor_type.shape.dim if model.graph.input else []
    graph_size = [d.dim_value for d in list(first)[1:]]
    result = {
        "model": meta.model if meta else (model.graph.name or os.path.basename(os.fspath(path))),
        "source": os.fspath(path),
        "params": counts["params"],
        "bn_buffers": counts["buffers"],
        "macs": macs,
        "input_size": list(meta.input_size) if meta else graph_size,
        "num_classes": meta.num_classes if meta else None,
        "precision": meta.precision if meta else _guess_precision(model),
        "opset": opset,
        "batch": meta.batch if meta else None,
        "metadata": bool(meta),
        "extra": dict(meta.extra) if meta else {},
        "paper": {},
    }
    if meta is None:
        return result
    result["paper"] = _paper(meta, counts["params"], macs)
    if compare_torch and meta.model_config:
        result.update(_torch_counts(meta, counts["params"], macs))
    return result


def _paper(meta, params: int, macs: int) -> dict:
    from .errors import UnknownModelError
    from .info import paper_figures
    from .models import get_spec

    try:
        default_classes = get_spec(meta.model).num_classes == meta.num_classes
    except UnknownModelError:
        return {}
    return paper_figures(meta.model, params, macs, default_classes=default_classes, input_size=meta.input_size)


def _torch_counts(meta, params: int, macs: int) -> dict:
    """Rebuild the PyTorch model from the metadata's config and count it the PyTorch way."""
    from .counting import count_macs, count_params
    from .errors import DnxError
    from .models import build_from_config

    try:
        net = build_from_config(meta.model_config)
    except (DnxError, KeyError, TypeError) as exc:
        log.warning("cannot rebuild %s from its metadata config (%s); no PyTorch comparison", meta.model, exc)
        return {}
    torch_params = count_params(net)
    torch_macs = count_macs(net, meta.input_size)
    return {"torch_params": torch_params, "torch_macs": torch_macs,
            "counts_match": torch_params == params and torch_macs == macs}


def _guess_precision(model) -> str:
    ops = {n.op_type for n in model.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv"}:
        return "int8"
    if any(t.data_type == 10 for t in model.graph.initializer):
        return "fp16"
    return "fp32"
