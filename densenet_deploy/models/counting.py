"""Parameters and multiply-accumulates (what the paper calls FLOPs): counted by PyTorch itself for a model,
and from the graph for an ONNX artifact, the same way, so the two agree."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from densenet_deploy.core.errors import DnxError
from densenet_deploy.models.zoo import get_spec

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


# --- counted from the spec, without building the model ----------------------------------------------
# `dnx models` and `dnx info NAME` must answer at once: building 18 models (even on torch's meta device) and
# tracing them through FlopCounterMode took 30 s on a 2-core AVX2 machine. The architectures are small
# formulas, so params and MACs follow from the spec directly, counted the way torch.utils.flop_counter and
# model.parameters() count (tests/test_models.py checks every listed model against both): a convolution
# costs output elements x input channels x kernel area, a Linear in x out; BN has 2 parameters per
# channel and, like pooling and ReLU, no MACs.


def _out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class _Tally:
    def __init__(self, input_size):
        self.channels, self.h, self.w = (int(v) for v in input_size)
        self.params = self.macs = self.bn_params = 0

    def conv(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> None:
        self.h, self.w = _out(self.h, kernel, stride, padding), _out(self.w, kernel, stride, padding)
        if self.h < 1 or self.w < 1:
            raise ValueError("spatial size below 1x1")
        self.params += cin * cout * kernel * kernel
        self.macs += self.h * self.w * cout * cin * kernel * kernel

    def bn(self, channels: int) -> None:
        self.params += 2 * channels
        self.bn_params += 2 * channels

    def pool(self, kernel: int, stride: int, padding: int = 0) -> None:
        self.h, self.w = _out(self.h, kernel, stride, padding), _out(self.w, kernel, stride, padding)
        if self.h < 1 or self.w < 1:
            raise ValueError("spatial size below 1x1")

    def linear(self, fin: int, fout: int) -> None:
        self.params += fin * fout + fout
        self.macs += fin * fout


@dataclass(frozen=True)
class Counts:
    params: int
    macs: int  # per image
    bn_params: int  # of `params`: BatchNorm weights and biases (the paper's Table 2 leaves them out)


def spec_counts(spec, num_classes: int | None = None, in_channels: int | None = None, input_size=None) -> Counts:
    """Params and MACs per image of zoo model `spec` with `num_classes` and `in_channels` (None: the spec's) at
    `input_size` (C, H, W; None: the spec's), as count_params and count_macs would give for the built model."""
    num_classes = spec.num_classes if num_classes is None else int(num_classes)
    in_channels = spec.input_size[0] if in_channels is None else int(in_channels)
    size = tuple(input_size) if input_size is not None else spec.input_size
    t = _Tally((in_channels, *size[1:]))
    try:
        {"densenet": _densenet, "resnet": _resnet, "preact_resnet": _preact_resnet}[spec.family](
            t, spec.arch, in_channels
        )
    except ValueError as exc:
        raise DnxError(f"input size {'x'.join(map(str, size))} does not fit {spec.name} ({exc})") from exc
    t.linear(t.channels, num_classes)
    return Counts(t.params, t.macs, t.bn_params)


def _densenet(t: _Tally, arch: dict, cin: int) -> None:
    k, stem = arch["growth_rate"], arch["num_init_features"]
    if arch["stem"] == "imagenet":
        t.conv(cin, stem, 7, 2, 3)
        t.bn(stem)
        t.pool(3, 2, 1)
    else:
        t.conv(cin, stem, 3, 1, 1)
    channels, blocks = stem, arch["block_config"]
    for b, layers in enumerate(blocks, start=1):
        for i in range(layers):
            c = channels + i * k
            t.bn(c)
            if arch["bn_size"]:
                inner = arch["bn_size"] * k
                t.conv(c, inner, 1)
                t.bn(inner)
                t.conv(inner, k, 3, 1, 1)
            else:
                t.conv(c, k, 3, 1, 1)
        channels += layers * k
        if b != len(blocks):
            out = int(channels * arch["compression"])
            t.bn(channels)
            t.conv(channels, out, 1)
            t.pool(2, 2)
            channels = out
    t.bn(channels)
    t.channels = channels


def _resnet(t: _Tally, arch: dict, cin: int) -> None:
    t.conv(cin, 64, 7, 2, 3)
    t.bn(64)
    t.pool(3, 2, 1)
    expansion = 1 if arch["block"] == "basic" else 4
    inplanes = 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), arch["layers"]), start=1):
        for j in range(blocks):
            stride = (1 if i == 1 else 2) if j == 0 else 1
            h, w = t.h, t.w
            if arch["block"] == "basic":
                t.conv(inplanes, planes, 3, stride, 1)
                t.bn(planes)
                t.conv(planes, planes, 3, 1, 1)
                t.bn(planes)
            else:
                t.conv(inplanes, planes, 1)
                t.bn(planes)
                t.conv(planes, planes, 3, stride, 1)
                t.bn(planes)
                t.conv(planes, planes * 4, 1)
                t.bn(planes * 4)
            if stride != 1 or inplanes != planes * expansion:
                after = t.h, t.w
                t.h, t.w = h, w
                t.conv(inplanes, planes * expansion, 1, stride)
                t.bn(planes * expansion)
                t.h, t.w = after
            inplanes = planes * expansion
    t.channels = inplanes


def _preact_resnet(t: _Tally, arch: dict, cin: int) -> None:
    n = (arch["depth"] - 2) // 9
    t.conv(cin, 16, 3, 1, 1)
    channels = 16
    for planes, stride in ((16, 1), (32, 2), (64, 2)):
        for j in range(n):
            s, out = (stride if j == 0 else 1), planes * 4
            h, w = t.h, t.w
            t.bn(channels)
            t.conv(channels, planes, 1)
            t.bn(planes)
            t.conv(planes, planes, 3, s, 1)
            t.bn(planes)
            t.conv(planes, out, 1)
            if s != 1 or channels != out:
                after = t.h, t.w
                t.h, t.w = h, w
                t.conv(channels, out, 1, s)
                t.h, t.w = after
            channels = out
    t.bn(channels)
    t.channels = channels


def config_counts(config: dict, input_size) -> Counts:
    """spec_counts of the model a checkpoint or artifact's model config rebuilds (name, num_classes,
    in_channels), at `input_size`."""
    return spec_counts(get_spec(config["name"]), config.get("num_classes"), config.get("in_channels"), input_size)
