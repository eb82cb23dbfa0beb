"""The one table of file formats: which suffix is which artifact, which runner opens it, which files belong to it.

Every place that asks "what is this file" (the runner picker, build-engine's output check, `dnx info`, the
Triton repository, sizes in reports) reads FORMATS instead of testing suffixes of its own.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

SIDECAR_SUFFIX = ".json"  # <artifact>.json: the description of a non-ONNX artifact (and of an ORT deployment)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
ARRAY_SUFFIXES = (".npy", ".npz")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm")


@dataclass(frozen=True)
class Format:
    """One artifact format: its suffixes (the first is canonical), the backend that runs it by default, what to
    call it in messages, an example name, and the suffixes of the files that travel with it."""

    name: str
    suffixes: tuple[str, ...]
    backend: str
    description: str
    example: str
    companions: tuple[str, ...] = ()


FORMATS: dict[str, Format] = {
    "onnx": Format("onnx", (".onnx",), "onnxruntime", "an ONNX model", "model.onnx"),
    "openvino": Format(
        "openvino",
        (".xml",),
        "openvino",
        "an OpenVINO IR (.xml, its weights next to it as .bin)",
        "model.xml",
        companions=(".bin",),
    ),
    "plan": Format("plan", (".plan", ".engine"), "tensorrt", "a TensorRT plan", "model.plan"),
}


def format_of(path) -> Format | None:
    """The Format a file name says it is (case-insensitive suffix), None for anything else (a zoo name,
    a checkpoint)."""
    lower = os.fspath(path).lower()
    return next((f for f in FORMATS.values() if lower.endswith(f.suffixes)), None)


def sidecar_path(artifact_path) -> str:
    return os.fspath(artifact_path) + SIDECAR_SUFFIX


def artifact_files(path) -> list[str]:
    """The files that make up the artifact at `path` (an OpenVINO IR is the .xml and its .bin)."""
    path = os.fspath(path)
    fmt = format_of(path)
    stem = path[: -len(next(s for s in fmt.suffixes if path.lower().endswith(s)))] if fmt else path
    return [path] + [stem + c for c in (fmt.companions if fmt else ())]


def artifact_size(path) -> int | None:
    """Bytes of every file of the artifact that exists; None when the artifact itself does not."""
    if not os.path.exists(path):
        return None
    return sum(os.path.getsize(p) for p in artifact_files(path) if os.path.exists(p))


def ort_deployment_reason(model_proto, onnx_path: str) -> str | None:
    """Why `onnx_path` is an ONNX Runtime deployment (`build-engine --target onnxruntime` output), or None.

    Such a graph holds com.microsoft fused/NCHWc ops that neither OpenVINO nor TensorRT converts, and
    re-optimising it would stack one deployment's CPU-specific layout on another's."""
    custom = sorted({n.domain for n in model_proto.graph.node if n.domain not in ("", "ai.onnx")})
    if custom:
        return f"it contains {', '.join(custom)} ops"
    try:
        with open(sidecar_path(onnx_path)) as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    if isinstance(doc, dict) and doc.get("onnxruntime"):
        return f"its sidecar {sidecar_path(onnx_path)} records an onnxruntime build"
    return None


# TensorProto data types (onnx.TensorProto.FLOAT16, .BFLOAT16), named here so this module needs no onnx import.
_FLOAT16, _BFLOAT16 = 10, 16


def guess_precision(model_proto) -> str:
    """fp32 / fp16 / bf16 / int8 of an ONNX graph without dnx metadata, from its Q/DQ nodes and initializer
    types."""
    ops = {n.op_type for n in model_proto.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv"}:
        return "int8"
    types = {t.data_type for t in model_proto.graph.initializer}
    if _FLOAT16 in types:
        return "fp16"
    if _BFLOAT16 in types:
        return "bf16"
    return "fp32"
