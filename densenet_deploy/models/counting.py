"""Parameters and multiply-accumulates (what the paper calls FLOPs): counted by PyTorch itself for a model,
and from the graph for an ONNX artifact, the same way, so the two agree."""

from __future__ import annotations

import logging

import numpy as np

from densenet_deploy.core.errors import DnxError

log = logging.getLogger(__name__)


def count_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def count_macs(model, input_size: tuple[int, int, int], batch: int = 1) -> int:
    """MACs of one forward pass at `input_size` (C, H, W), per image, via torch.utils.flop_counter.

    The counter reports FLOPs = 2 x MACs for convolutions and matrix products; BN, ReLU, pooling and
    concatenation are not counted, which matches how the paper and torchvision count.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    # A model on the meta device (shapes only, see zoo_listing) is counted with a meta input.
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.zeros((batch, *input_size), device=device)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    except RuntimeError as exc:  # e.g. pooling below 1x1: the input is too small for this architecture
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DnxError(f"input size {'x'.join(map(str, input_size))} does not fit this model ({first[:160]})") from exc
    finally:
        model.train(was_training)
    return int(counter.get_total_flops() // 2 // batch)


# Initializers that are not learned parameters: BN running statistics (PyTorch counts them as buffers,
# not parameters) and quantisation scales / zero points (Q/DQ models).
_NOT_PARAMS = {
    "BatchNormalization": (3, 4),
    "QuantizeLinear": (1, 2),
    "DequantizeLinear": (1, 2),
    "QLinearConv": (1, 2, 4, 5, 6, 7),
    "QLinearMatMul": (1, 2, 4, 5, 6, 7),
}


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
