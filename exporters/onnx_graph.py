"""Canonicalise an exported ONNX graph: standard ops only, no exporter artefacts, stable bytes."""

from __future__ import annotations

import logging
from collections import Counter

from densenet_deploy.core.errors import DnxError

log = logging.getLogger(__name__)

# What a DenseNet may contain after clean-up; TensorRT's parser and every runtime here handle all of
# them. BatchNormalization stays: in a pre-activation network (BN-ReLU-Conv) a BN cannot fold into the
# conv that follows it across the ReLU, and TensorRT and ONNX Runtime fuse the rest at build time.
ALLOWED_OPS = frozenset(
    {
        "Conv",
        "Relu",
        "BatchNormalization",
        "Concat",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "Flatten",
        "Reshape",
        "Gemm",
        "MatMul",
        "Add",
        "Softmax",
    }
)


def canonicalize(model, graph_name: str):
    """Clean `model` (an onnx.ModelProto) in place and return it.

    - initializers are not graph inputs (kept as inputs only so the TorchScript exporter does not merge
      equal-valued parameters into one initializer plus Identity nodes: that would break param counts);
    - Identity nodes and single-input Concat nodes (``torch.cat([x])`` in a block's first layer) are
      bypassed; a ReduceMean over H, W with keepdims (the dynamo exporter's global pool) becomes
      GlobalAveragePool;
    - doc strings and exporter value_info are dropped (shape inference re-adds value_info), and the
      graph gets the model's name, so the same model and options always give the same bytes.
    """
    graph = model.graph
    init_names = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in init_names]
    del graph.input[:]
    graph.input.extend(inputs)

    _bypass(model, lambda n: n.op_type == "Identity" or (n.op_type == "Concat" and len(n.input) == 1))
    _reduce_mean_to_global_pool(model)
    _drop_unused_initializers(model)

    graph.name = graph_name
    graph.doc_string = ""
    model.doc_string = ""
    for node in graph.node:
        node.doc_string = ""
    del graph.value_info[:]
    return model


def op_counts(model) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def check_ops(model, allowed=ALLOWED_OPS, hint: str = "") -> None:
    """DnxError naming every op outside `allowed` (an unclean graph is not written)."""
    extra = sorted({n.op_type for n in model.graph.node} - set(allowed))
    if extra:
        raise DnxError(f"exported graph contains ops outside the clean set: {', '.join(extra)}{hint}")


def _bypass(model, should_remove) -> None:
    """Remove single-path nodes, wiring their consumers to their first input."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    keep = []
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
        if should_remove(node) and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    removed = len(graph.node) - len(keep)
    if removed:
        log.debug("bypassed %d pass-through nodes", removed)
        del graph.node[:]
        graph.node.extend(keep)


def _reduce_mean_to_global_pool(model) -> None:
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    for index, node in enumerate(graph.node):
        if node.op_type != "ReduceMean":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if "axes" in attrs:
            axes = list(attrs["axes"])
        elif len(node.input) > 1 and node.input[1] in inits:  # opset >= 18: axes is an input
            axes = numpy_helper.to_array(inits[node.input[1]]).tolist()
        else:
            continue
        if sorted(a % 4 for a in axes) != [2, 3] or attrs.get("keepdims", 1) != 1:
            continue
        pool = onnx.helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output), name=node.name)
        graph.node[index].CopyFrom(pool)


def _drop_unused_initializers(model) -> None:
    graph = model.graph
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)
