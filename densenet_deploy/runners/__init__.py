"""Runners: one protocol (base.Runner), one module per backend, picked from the artifact by open_runner."""

from __future__ import annotations

import os

from ..errors import ArtifactError, DnxError
from .base import InputSpec, Runner

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")


def backend_for(artifact: str) -> str:
    """Which backend runs `artifact` by default: .onnx -> onnxruntime, .xml -> openvino,
    .plan/.engine -> tensorrt, anything else (zoo name, checkpoint) -> torch."""
    lower = artifact.lower()
    if lower.endswith(".onnx"):
        return "onnxruntime"
    if lower.endswith(".xml"):
        return "openvino"
    if lower.endswith((".plan", ".engine")):
        return "tensorrt"
    return "torch"


def _default_backend(artifact: str) -> str:
    backend = backend_for(artifact)
    if backend == "onnxruntime" and os.path.isfile(artifact):
        from .onnxruntime_runner import guess_precision

        if guess_precision(artifact) == "bf16":
            # ONNX Runtime's CPU provider has no bf16 Conv; OpenVINO runs bf16 graphs on the CPU.
            import importlib.util

            if importlib.util.find_spec("openvino"):
                return "openvino"
            raise ArtifactError(f"{artifact} is a bf16 graph (for TensorRT), which ONNX Runtime's CPU provider "
                                "cannot run; pip install 'densenet-deploy[openvino]' to run it on the CPU, or "
                                "build a TensorRT engine from it")
    return backend


def open_runner(artifact: str, backend: str | None = None, **options) -> Runner:
    """Open a Runner for `artifact` (zoo name, checkpoint, .onnx, .xml, .plan) on `backend` (or the default:
    by file type; a bf16 ONNX graph goes to OpenVINO, since ONNX Runtime's CPU provider cannot run it)."""
    backend = backend or _default_backend(artifact)
    if backend not in BACKENDS:
        raise DnxError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "torch" and not os.path.isfile(artifact):
        raise ArtifactError(f"{artifact}: no such file")
    if backend == "torch":
        from .torch_runner import TorchRunner

        return TorchRunner(artifact, **options)
    if backend == "onnxruntime":
        from .onnxruntime_runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(artifact, **options)
    if backend == "openvino":
        from .openvino import OpenVinoRunner

        return OpenVinoRunner(artifact, **options)
    from .tensorrt import open_tensorrt_runner

    return open_tensorrt_runner(artifact, **options)


__all__ = ["InputSpec", "Runner", "open_runner", "backend_for", "BACKENDS"]
