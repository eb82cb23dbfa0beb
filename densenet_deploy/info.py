"""Describe a model: measured params and MACs beside the paper's figures."""

from __future__ import annotations

import os

from .paper import params_match_rounding, paper_entry


def describe(model: str, weights: str | None = None, input_size: int | None = None,
             num_classes: int | None = None) -> dict:
    """Dispatch on what MODEL is: an exported artifact (counted from its graph) or a zoo name/checkpoint."""
    if model.lower().endswith(".onnx") and not _is_ort_deployment(model):
        from .onnx_info import describe_onnx

        return describe_onnx(model)
    if model.lower().endswith((".xml", ".plan", ".engine", ".onnx")):
        return describe_built_artifact(model)
    return describe_zoo_model(model, weights=weights, input_size=input_size, num_classes=num_classes)


def describe_zoo_model(model: str, weights: str | None = None, input_size: int | None = None,
                       num_classes: int | None = None) -> dict:
    """params/MACs of a zoo name or checkpoint at its input size, with the paper's values and ratios."""
    from .counting import count_macs, count_params
    from .models.loading import load_model

    loaded = load_model(model, weights=weights, num_classes=num_classes, input_size=input_size)
    params = count_params(loaded.model)
    macs = count_macs(loaded.model, loaded.input_size)
    result = {
        "model": loaded.name,
        "source": loaded.source,
        "params": params,
        "macs": macs,
        "input_size": list(loaded.input_size),
        "num_classes": loaded.config["num_classes"],
        "paper": paper_figures(loaded.name, params, macs,
                               default_classes=loaded.config["num_classes"] == _default_classes(loaded.name),
                               input_size=loaded.input_size),
    }
    return result


def _is_ort_deployment(path: str) -> bool:
    """A `build-engine --target onnxruntime` output: its graph holds fused and NCHWc-reordered ops whose
    weights and shapes no longer count as the model's, so it is described like the other built artifacts.
    Known by its sidecar, or without one by its com.microsoft ops (what check_plain_export refuses)."""
    from .metadata import load_onnx, read_sidecar, sidecar_path

    if os.path.isfile(sidecar_path(path)):
        _, doc = read_sidecar(path)  # a corrupt sidecar is an error here as everywhere else
        if "onnxruntime" in doc:
            return True
    graph = load_onnx(path, load_weights=False).graph
    return any(node.domain not in ("", "ai.onnx") for node in graph.node)


def describe_built_artifact(path: str) -> dict:
    """An OpenVINO IR, TensorRT plan or ONNX Runtime deployment, described from its sidecar; params and
    MACs are those of the PyTorch model its metadata names (these formats cannot be counted as the model
    without their runtime: fused, reordered or compiled weights)."""
    from .counting import count_macs, count_params
    from .errors import ArtifactError
    from .metadata import read_artifact_meta
    from .models import build_from_config

    meta, doc = read_artifact_meta(path)
    if not meta.model_config:
        raise ArtifactError(f"{path}: its sidecar has no model config (dnx.model_config)")
    net = build_from_config(meta.model_config)
    params, macs = count_params(net), count_macs(net, meta.input_size)
    return {
        "model": meta.model, "source": path, "precision": meta.precision, "params": params, "macs": macs,
        "input_size": list(meta.input_size), "num_classes": meta.num_classes, "labels": meta.labels,
        "target": next((k for k in ("tensorrt", "openvino", "onnxruntime") if k in doc),
                       "onnxruntime" if path.lower().endswith(".onnx") else None),
        "counted_from": "the PyTorch model its metadata describes",
        "paper": paper_figures(meta.model, params, macs,
                               default_classes=meta.num_classes == _default_classes(meta.model),
                               input_size=meta.input_size),
    }


def _paper_input_size(name: str) -> tuple[int, int, int]:
    from .models import get_spec

    return get_spec(name).input_size


def _default_classes(name: str) -> int:
    from .models import get_spec

    return get_spec(name).num_classes


def paper_figures(name: str, params: int, macs: int, default_classes: bool = True, input_size=None) -> dict:
    """The paper's numbers for `name` and how the measured ones compare (ratios, rounding match).

    `input_size` (C, H, W) is what `macs` was counted at; MACs grow with H x W, so when it differs from
    the paper's input (224x224 ImageNet, 32x32 CIFAR) there is no MACs ratio, only `macs_note`.
    """
    entry = paper_entry(name)
    if entry is None:
        return {}
    out = entry.as_dict()
    out["macs"] = int(entry.macs_g * 1e9) if entry.macs_g else None
    out["params"] = entry.params if entry.params is not None else (
        int(entry.params_m * 1e6) if entry.params_m is not None else None)
    out["top1_error"] = entry.top1_error
    if out["params"]:
        out["params_ratio"] = round(params / out["params"], 4)
    paper_hw = tuple(_paper_input_size(name)[1:])
    if out["macs"] and input_size is not None and tuple(input_size)[1:] != paper_hw:
        out["macs_ratio"] = None
        out["macs_note"] = (f"ratio n/a: counted at {'x'.join(map(str, tuple(input_size)[1:]))}, "
                            f"the paper's figure is for {'x'.join(map(str, paper_hw))}")
    elif out["macs"]:
        out["macs_ratio"] = round(macs / out["macs"], 4)
    # The paper's figures are for its class count (1000 ImageNet, 10 CIFAR); another head changes params.
    out["params_match"] = params_match_rounding(params, entry) if default_classes else None
    return out
