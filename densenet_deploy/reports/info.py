"""`dnx info`: describe a zoo model, a checkpoint or an artifact: measured params and MACs beside the paper's
figures. An exported ONNX is counted from its graph (and compared with the PyTorch model its metadata names);
a built artifact (plan, IR, ONNX Runtime deployment) is described from its sidecar and counted as that model."""

from __future__ import annotations

import logging
import os

from densenet_deploy.core.errors import ArtifactError, DnxError, UnknownModelError
from densenet_deploy.core.formats import format_of, guess_precision, ort_deployment_reason
from densenet_deploy.core.metadata import load_onnx, read_onnx_meta
from densenet_deploy.core.sidecars import read_artifact_meta
from densenet_deploy.models import build_from_config, get_spec
from densenet_deploy.models.counting import count_macs, count_onnx_macs, count_onnx_params, count_params
from densenet_deploy.models.loading import load_model
from densenet_deploy.reports.paper_facts import paper_figures

log = logging.getLogger(__name__)


def describe(
    model: str, weights: str | None = None, input_size: int | None = None, num_classes: int | None = None
) -> dict:
    """Dispatch on what MODEL is: an exported ONNX (counted from its graph), a built artifact (from its
    sidecar), or a zoo name/checkpoint."""
    fmt = format_of(model)
    if fmt is None:
        return describe_zoo_model(model, weights=weights, input_size=input_size, num_classes=num_classes)
    if fmt.name == "onnx":
        proto = load_onnx(model)
        if ort_deployment_reason(proto, model) is None:
            return describe_onnx(model, proto)
    return describe_built_artifact(model)


def describe_zoo_model(
    model: str, weights: str | None = None, input_size: int | None = None, num_classes: int | None = None
) -> dict:
    """params/MACs of a zoo name or checkpoint at its input size, with the paper's values and ratios."""
    loaded = load_model(model, weights=weights, num_classes=num_classes, input_size=input_size)
    params = count_params(loaded.model)
    macs = count_macs(loaded.model, loaded.input_size)
    return {
        "model": loaded.name,
        "source": loaded.source,
        "params": params,
        "macs": macs,
        "input_size": list(loaded.input_size),
        "num_classes": loaded.config["num_classes"],
        "paper": paper_figures(
            loaded.name, params, macs, num_classes=loaded.config["num_classes"], input_size=loaded.input_size
        ),
    }


def describe_built_artifact(path: str) -> dict:
    """An OpenVINO IR, TensorRT plan or ONNX Runtime deployment, described from its sidecar; params and
    MACs are those of the PyTorch model its metadata names (these formats cannot be counted as the model
    without their runtime: fused, reordered or compiled weights)."""
    meta, doc = read_artifact_meta(path)
    if not meta.model_config:
        raise ArtifactError(f"{path}: its sidecar has no model config (dnx.model_config)")
    net = build_from_config(meta.model_config)
    params, macs = count_params(net), count_macs(net, meta.input_size)
    return {
        "model": meta.model,
        "source": path,
        "precision": meta.precision,
        "params": params,
        "macs": macs,
        "input_size": list(meta.input_size),
        "num_classes": meta.num_classes,
        "labels": meta.labels,
        "target": next(
            (k for k in ("tensorrt", "openvino", "onnxruntime") if k in doc),
            "onnxruntime" if format_of(path).name == "onnx" else None,
        ),
        "counted_from": "the PyTorch model its metadata describes",
        "paper": paper_figures(meta.model, params, macs, num_classes=meta.num_classes, input_size=meta.input_size),
    }


def describe_onnx(path, model=None, compare_torch: bool = True) -> dict:
    """What `dnx info X.onnx` shows: metadata, params/MACs counted from the graph, the paper's figures,
    and (when the metadata names a zoo model) the PyTorch model's own counts for comparison.
    `model`: the loaded ModelProto, when the caller has it already."""
    model = model if model is not None else load_onnx(path)
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
        "precision": meta.precision if meta else guess_precision(model),
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
    try:
        get_spec(meta.model)
    except UnknownModelError:
        return {}
    return paper_figures(meta.model, params, macs, num_classes=meta.num_classes, input_size=meta.input_size)


def _torch_counts(meta, params: int, macs: int) -> dict:
    """Rebuild the PyTorch model from the metadata's config and count it the PyTorch way."""
    try:
        net = build_from_config(meta.model_config)
    except (DnxError, KeyError, TypeError) as exc:
        log.warning("cannot rebuild %s from its metadata config (%s); no PyTorch comparison", meta.model, exc)
        return {}
    torch_params = count_params(net)
    torch_macs = count_macs(net, meta.input_size)
    return {
        "torch_params": torch_params,
        "torch_macs": torch_macs,
        "counts_match": torch_params == params and torch_macs == macs,
    }
