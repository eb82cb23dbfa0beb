"""What `dnx triton` needs from an artifact (names, data types, shape, batch mode), read from the ONNX graph,
the OpenVINO IR's XML or a plan's sidecar, without loading weights or any inference backend."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from densenet_deploy.core.errors import ArtifactError
from densenet_deploy.core.formats import ort_deployment_reason, sidecar_path
from densenet_deploy.core.metadata import load_onnx, read_onnx_meta
from densenet_deploy.core.sidecars import read_sidecar
from densenet_deploy.runners.openvino import INFERENCE_PRECISIONS, default_inference_precision

_ONNX_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 16: "TYPE_BF16", 11: "TYPE_FP64"}
_IR_TYPES = {
    "f32": "TYPE_FP32",
    "fp32": "TYPE_FP32",
    "f16": "TYPE_FP16",
    "fp16": "TYPE_FP16",
    "bf16": "TYPE_BF16",
    "f64": "TYPE_FP64",
    "fp64": "TYPE_FP64",
}


@dataclass
class ArtifactInfo:
    """What a repository entry needs to know about one artifact (read from its graph / IR / sidecar)."""

    path: str
    format: str  # onnx | plan | openvino
    meta: object  # ArtifactMeta
    input_name: str
    output_name: str
    input_type: str  # TYPE_FP32 | TYPE_FP16 | ...
    output_type: str
    chw: tuple[int, int, int]
    num_classes: int
    batch: int | None  # None: dynamic batch axis; else the fixed batch
    profile_max: int | None = None  # plan: the optimisation profile's max batch
    profile_min: int | None = None  # plan: the optimisation profile's min batch
    # ONNX: why this graph is an ONNX Runtime deployment (`dnx build-engine --target onnxruntime`), else None.
    ort_deployment: str | None = None
    # OpenVINO IR: the float precision OpenVINO should infer in ("f32", "bf16", "f16"; None: OpenVINO's own
    # choice), from the sidecar's openvino.inference_precision, else what the dnx runner would use.
    inference_precision: str | None = None
    files: list[tuple[str, str]] = field(default_factory=list)  # (source path, name in the version dir)


def artifact_format(path: str, command: str = "dnx triton") -> str:
    """onnx | plan | openvino from the file name; ArtifactError naming what `command` accepts otherwise."""
    lower = path.lower()
    if lower.endswith(".onnx"):
        return "onnx"
    if lower.endswith((".plan", ".engine")):
        return "plan"
    if lower.endswith(".xml"):
        return "openvino"
    hint = ""
    if lower.endswith((".pt", ".pth")):
        hint = (
            f"; {os.path.basename(path)} looks like a checkpoint: export it first (`dnx export {path} -o model.onnx`)"
        )
    raise ArtifactError(
        f"{path}: unknown artifact type; `{command}` takes .onnx, .plan/.engine (TensorRT) "
        f"or .xml (OpenVINO IR) files{hint}"
    )


def inspect_artifact(path) -> ArtifactInfo:
    """Read names, data types, shape and batch mode of `path` without loading weights or a backend."""
    path = os.fspath(path)
    fmt = artifact_format(path)
    if not os.path.isfile(path):
        raise ArtifactError(f"{path}: no such file")
    return {"onnx": _inspect_onnx, "plan": _inspect_plan, "openvino": _inspect_ir}[fmt](path)


def _inspect_onnx(path: str) -> ArtifactInfo:
    proto = load_onnx(path, load_weights=False)
    meta = read_onnx_meta(proto)
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(proto.graph.output) != 1:
        raise ArtifactError(
            f"{path}: expected one input and one output, the graph has {len(inputs)} and {len(proto.graph.output)}"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ArtifactError(f"{path}: input {inputs[0].name!r} has {len(dims)} dims, expected NCHW")
    batch = dims[0].dim_value if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None
    out_dims = proto.graph.output[0].type.tensor_type.shape.dim
    classes = out_dims[-1].dim_value if out_dims and out_dims[-1].HasField("dim_value") else meta.num_classes
    files = [(path, "model.onnx")]
    # Weights stored outside the .onnx (models over 2 GB) travel with it, under the same relative names.
    locations = {e.value for t in proto.graph.initializer for e in t.external_data if e.key == "location"}
    files += [(os.path.join(os.path.dirname(path), loc), loc) for loc in sorted(locations)]

    deployment = ort_deployment_reason(proto, path)
    if deployment and os.path.isfile(sidecar_path(path)):
        # The sidecar records the CPU the deployment was optimised for: dnx's runner checks it at load time.
        files.append((sidecar_path(path), "model.onnx.json"))
    return ArtifactInfo(
        path,
        "onnx",
        meta,
        inputs[0].name,
        proto.graph.output[0].name,
        _onnx_type(path, inputs[0]),
        _onnx_type(path, proto.graph.output[0]),
        tuple(int(d.dim_value) for d in dims[1:]),
        int(classes),
        batch,
        ort_deployment=deployment,
        files=files,
    )


def _onnx_type(path, value_info) -> str:
    elem = value_info.type.tensor_type.elem_type
    if elem not in _ONNX_TYPES:
        raise ArtifactError(
            f"{path}: tensor {value_info.name!r} has ONNX element type {elem}; "
            "Triton configs are written for float32/float16/bfloat16 I/O"
        )
    return _ONNX_TYPES[elem]


def _inspect_plan(path: str) -> ArtifactInfo:
    """A plan is opaque without TensorRT: everything comes from the sidecar that `dnx build-engine` wrote."""
    meta, doc = read_sidecar(path)
    profile = doc.get("profile") or {}
    try:
        profile_max = int(profile["max"])
        profile_min = int(profile.get("min", 1))
    except (KeyError, TypeError, ValueError):
        raise ArtifactError(
            f"{sidecar_path(path)} has no optimisation profile (profile.min/max); rebuild the plan "
            "with `dnx build-engine`"
        ) from None
    if not 1 <= profile_min <= profile_max:
        raise ArtifactError(
            f"{sidecar_path(path)}: optimisation profile min {profile_min} / max {profile_max} is "
            "not a batch range; rebuild the plan with `dnx build-engine`"
        )
    # `dnx build-engine` records a fixed batch (a fixed-batch export, or --min-batch = --max-batch) as the
    # metadata's batch with a one-size profile: such an engine takes exactly that batch, like a fixed ONNX.
    batch = meta.batch if meta.batch is not None else (profile_max if profile_min == profile_max else None)
    if batch is not None and not profile_min == profile_max == batch:
        raise ArtifactError(
            f"{sidecar_path(path)} records a fixed batch of {batch} but an optimisation profile of "
            f"{profile_min}..{profile_max}; rebuild the plan with `dnx build-engine`"
        )
    # Strongly typed plans keep the ONNX graph's I/O types; dnx's fp16/int8 graphs keep float32 I/O.
    io = doc.get("io") or {}
    in_type = _IR_TYPES.get(str(io.get("input_dtype", "fp32")).lower(), "TYPE_FP32")
    out_type = _IR_TYPES.get(str(io.get("output_dtype", "fp32")).lower(), "TYPE_FP32")
    return ArtifactInfo(
        path,
        "plan",
        meta,
        profile.get("input") or meta.input_name,
        meta.output_name,
        in_type,
        out_type,
        tuple(meta.input_size),
        meta.num_classes,
        batch,
        profile_max,
        profile_min=profile_min,
        files=[(path, "model.plan"), (sidecar_path(path), "model.plan.json")],
    )


def _inspect_ir(path: str) -> ArtifactInfo:
    """Parse the IR's XML for the Parameter/Result types and the batch dim (no OpenVINO import needed)."""
    import xml.etree.ElementTree as ET

    meta, doc = read_sidecar(path)
    weights = os.path.splitext(path)[0] + ".bin"
    if not os.path.isfile(weights):
        raise ArtifactError(f"{path}: its weights file {weights} is missing")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ArtifactError(f"{path} is not a readable OpenVINO IR ({exc})") from exc
    params = root.findall("./layers/layer[@type='Parameter']")
    results = root.findall("./layers/layer[@type='Result']")
    if len(params) != 1 or len(results) != 1:
        raise ArtifactError(f"{path}: expected one Parameter and one Result, found {len(params)} and {len(results)}")
    data = params[0].find("data")
    shape = [s.strip() for s in (data.get("shape", "") if data is not None else "").split(",") if s.strip()]
    if len(shape) != 4:
        raise ArtifactError(f"{path}: input shape {shape} is not NCHW")
    batch = int(shape[0]) if shape[0].lstrip("-").isdigit() and int(shape[0]) > 0 else None
    in_type = _IR_TYPES.get((data.get("element_type") or "f32").lower())
    port = results[0].find("./input/port")
    out_type = _IR_TYPES.get((port.get("precision") if port is not None else "FP32").lower())
    if in_type is None or out_type is None:
        raise ArtifactError(f"{path}: unsupported I/O element types for a Triton config")
    return ArtifactInfo(
        path,
        "openvino",
        meta,
        meta.input_name,
        meta.output_name,
        in_type,
        out_type,
        tuple(meta.input_size),
        meta.num_classes,
        batch,
        inference_precision=_ir_inference_precision(path, meta, doc),
        files=[(path, "model.xml"), (weights, "model.bin"), (sidecar_path(path), "model.xml.json")],
    )


def _ir_inference_precision(path: str, meta, doc: dict) -> str | None:
    """The inference precision the IR was built and verified for, as the dnx OpenVINO runner picks it."""
    recorded = (doc.get("openvino") or {}).get("inference_precision") or default_inference_precision(meta.precision)
    if recorded not in INFERENCE_PRECISIONS:
        raise ArtifactError(
            f"{sidecar_path(path)}: unknown openvino.inference_precision {recorded!r}; "
            "rebuild the IR with `dnx build-engine --target openvino`"
        )
    return INFERENCE_PRECISIONS[recorded]
