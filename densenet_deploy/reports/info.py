"""`dnx info`: describe a zoo model, a checkpoint or an artifact: measured params and MACs beside the paper's
figures. An exported ONNX is counted from its graph (and compared with the PyTorch model its metadata names);
a built artifact (plan, IR, ONNX Runtime deployment) is described from its sidecar and counted as that model."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from densenet_deploy.core.errors import ArtifactError, DnxError, UnknownModelError
from densenet_deploy.core.formats import format_of, guess_precision, ort_deployment_reason
from densenet_deploy.core.metadata import load_onnx, read_onnx_meta
from densenet_deploy.core.results import Result
from densenet_deploy.core.sidecars import read_artifact_meta
from densenet_deploy.models import get_spec
from densenet_deploy.models.counting import config_counts, count_onnx_macs, count_onnx_params, spec_counts
from densenet_deploy.models.loading import load_model, looks_like_path
from densenet_deploy.reports.paper_facts import paper_figures

log = logging.getLogger(__name__)

# The JSON keys each kind of description has (DESIGN.md's contract: model, params, macs, input_size, paper).
KEYS = {
    "zoo": ("model", "source", "params", "macs", "input_size", "num_classes", "paper"),
    "built": (
        "model",
        "source",
        "precision",
        "params",
        "macs",
        "input_size",
        "num_classes",
        "labels",
        "target",
        "counted_from",
        "paper",
    ),
    "onnx": (
        "model",
        "source",
        "params",
        "bn_buffers",
        "macs",
        "input_size",
        "num_classes",
        "precision",
        "opset",
        "batch",
        "metadata",
        "extra",
        "paper",
    ),
}
TORCH_KEYS = ("torch_params", "torch_macs", "counts_match")


@dataclass
class ModelInfo(Result):
    """`dnx info`: what MODEL is (`kind`: a zoo name or checkpoint, an exported ONNX, a built artifact), its
    measured params and MACs, and the paper's figures beside them."""

    kind: str
    model: str
    source: str
    params: int
    macs: int
    input_size: list
    num_classes: int | None
    paper: dict = field(default_factory=dict)
    precision: str | None = None
    target: str | None = None
    labels: list | None = None
    counted_from: str | None = None
    bn_buffers: int | None = None
    opset: int | None = None
    batch: int | None = None
    metadata: bool | None = None
    extra: dict | None = None
    torch_params: int | None = None
    torch_macs: int | None = None
    counts_match: bool | None = None

    def as_dict(self) -> dict:
        keys = KEYS[self.kind] + (TORCH_KEYS if self.torch_params is not None else ())
        return {k: getattr(self, k) for k in keys}

    def __str__(self) -> str:
        lines = [f"model       {self.model}"]
        for key in ("source", "target", "precision", "opset"):
            if getattr(self, key, None):
                lines.append(f"{key:<12}{getattr(self, key)}")
        lines.append(f"input       {'x'.join(map(str, self.input_size))}")
        lines.append(f"params      {self.params:,}")
        lines.append(f"MACs        {self.macs / 1e9:.3f} G (multiply-accumulates; the paper's 'FLOPs')")
        if self.counted_from:  # a built artifact: its weights are fused or compiled, the model is counted
            lines.append(f"counted     from {self.counted_from}")
        if self.torch_params is not None:  # an ONNX artifact: its graph counts beside PyTorch's
            verdict = "match" if self.counts_match else "DIFFER"
            lines.append(f"PyTorch     {self.torch_params:,} params, {self.torch_macs / 1e9:.3f} G MACs ({verdict})")
        paper = self.paper or {}
        if paper:
            lines.append(f"paper       {paper.get('label', '')}")
            if paper.get("params"):
                match = {True: "matches", False: "DIFFERS", None: "n/a (other class count)"}[paper.get("params_match")]
                lines.append(f"  params    {paper['params']:,} (ratio {paper.get('params_ratio')}; {match})")
            if paper.get("macs"):
                ratio = paper.get("macs_note") or f"ratio {paper.get('macs_ratio')}"
                lines.append(f"  MACs      {paper['macs'] / 1e9:.3f} G ({ratio})")
            if paper.get("top1_error") is not None:
                lines.append(f"  top-1 err {paper['top1_error']:.2f} % (ImageNet, single crop)")
            for ds, err in (paper.get("cifar_error") or {}).items():
                lines.append(f"  {ds:<9} {err:.2f} % error")
        return "\n".join(lines)


def describe(
    model: str, weights: str | None = None, input_size: int | None = None, num_classes: int | None = None
) -> ModelInfo:
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
) -> ModelInfo:
    """params/MACs of a zoo name or checkpoint at its input size, with the paper's values and ratios. A zoo name
    is counted from its spec alone (instant, no torch); a checkpoint or --weights is loaded first, so that a
    file that does not fit the model is an error here too."""
    if weights is None and not looks_like_path(model):
        spec = get_spec(model)
        if num_classes is not None and num_classes < 1:
            raise DnxError(f"num_classes must be >= 1, got {num_classes}")
        size = spec.input_size if input_size is None else (spec.input_size[0], int(input_size), int(input_size))
        name, source, classes = spec.name, "zoo (random init)", num_classes or spec.num_classes
    else:
        loaded = load_model(model, weights=weights, num_classes=num_classes, input_size=input_size)
        size, name, source, classes = loaded.input_size, loaded.name, loaded.source, loaded.config["num_classes"]
        spec = get_spec(loaded.config["name"])
    counts = spec_counts(spec, classes, size[0], size)
    paper = paper_figures(name, counts.params, counts.macs, num_classes=classes, input_size=size)
    return ModelInfo("zoo", name, source, counts.params, counts.macs, list(size), classes, paper)


def describe_built_artifact(path: str) -> ModelInfo:
    """An OpenVINO IR, TensorRT plan or ONNX Runtime deployment, described from its sidecar; params and
    MACs are those of the PyTorch model its metadata names (these formats cannot be counted as the model
    without their runtime: fused, reordered or compiled weights)."""
    meta, doc = read_artifact_meta(path)
    if not meta.model_config:
        raise ArtifactError(f"{path}: its sidecar has no model config (dnx.model_config)")
    counts = _config_counts(meta, path)
    params, macs = counts.params, counts.macs
    return ModelInfo(
        "built",
        meta.model,
        path,
        params,
        macs,
        list(meta.input_size),
        meta.num_classes,
        paper_figures(meta.model, params, macs, num_classes=meta.num_classes, input_size=meta.input_size),
        precision=meta.precision,
        labels=meta.labels,
        counted_from="the PyTorch model its metadata describes",
        target=next(
            (k for k in ("tensorrt", "openvino", "onnxruntime") if k in doc),
            "onnxruntime" if format_of(path).name == "onnx" else None,
        ),
    )


def _config_counts(meta, path: str):
    try:
        return config_counts(meta.model_config, meta.input_size)
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"{path}: its model config (dnx.model_config) is incomplete ({exc})") from exc


def describe_onnx(path, model=None, compare_torch: bool = True) -> ModelInfo:
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
    result = ModelInfo(
        "onnx",
        meta.model if meta else (model.graph.name or os.path.basename(os.fspath(path))),
        os.fspath(path),
        counts["params"],
        macs,
        list(meta.input_size) if meta else graph_size,
        meta.num_classes if meta else None,
        bn_buffers=counts["buffers"],
        precision=meta.precision if meta else guess_precision(model),
        opset=opset,
        batch=meta.batch if meta else None,
        metadata=bool(meta),
        extra=dict(meta.extra) if meta else {},
    )
    if meta is None:
        return result
    result.paper = _paper(meta, counts["params"], macs)
    if compare_torch and meta.model_config:
        for key, value in _torch_counts(meta, counts["params"], macs).items():
            setattr(result, key, value)
    return result


def _paper(meta, params: int, macs: int) -> dict:
    try:
        get_spec(meta.model)
    except UnknownModelError:
        return {}
    return paper_figures(meta.model, params, macs, num_classes=meta.num_classes, input_size=meta.input_size)


def _torch_counts(meta, params: int, macs: int) -> dict:
    """The PyTorch model's counts (as count_params/count_macs give them) of the metadata's model config."""
    try:
        counts = config_counts(meta.model_config, meta.input_size)
    except (DnxError, KeyError, TypeError) as exc:
        log.warning("cannot rebuild %s from its metadata config (%s); no PyTorch comparison", meta.model, exc)
        return {}
    torch_params, torch_macs = counts.params, counts.macs
    return {
        "torch_params": torch_params,
        "torch_macs": torch_macs,
        "counts_match": torch_params == params and torch_macs == macs,
    }
