"""Runners: one protocol (base.Runner), one module per backend, picked from the artifact by open_runner."""

from __future__ import annotations

import os

from densenet_deploy.core.deps import available
from densenet_deploy.core.errors import ArtifactError, DnxError, UnknownModelError
from densenet_deploy.core.formats import format_of, guess_precision
from densenet_deploy.core.metadata import load_onnx
from densenet_deploy.models import get_spec
from densenet_deploy.runners.base import InputSpec, Runner
from densenet_deploy.runners.batches import run_batches
from densenet_deploy.runners.onnxruntime_runner import OnnxRuntimeRunner, choose_providers
from densenet_deploy.runners.openvino import OpenVinoRunner
from densenet_deploy.runners.tensorrt import open_tensorrt_runner
from densenet_deploy.runners.torch_runner import TorchRunner

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")


def backend_for(artifact: str) -> str:
    """Which backend runs `artifact` by default: .onnx -> onnxruntime, .xml -> openvino,
    .plan/.engine -> tensorrt, anything else (zoo name, checkpoint) -> torch."""
    fmt = format_of(artifact)
    return fmt.backend if fmt else "torch"


def _bf16_fallback(artifact: str) -> str | None:
    """ "openvino" for a bf16 ONNX graph when OpenVINO is installed (ONNX Runtime's CPU provider has no bf16
    Conv; OpenVINO runs bf16 graphs on the CPU), ArtifactError without it, None for any other graph."""
    if guess_precision(load_onnx(artifact, load_weights=False)) != "bf16":
        return None
    if available("openvino"):
        return "openvino"
    raise ArtifactError(
        f"{artifact} is a bf16 graph (for TensorRT), which ONNX Runtime's CPU provider "
        "cannot run; pip install 'densenet-deploy[openvino]' to run it on the CPU, or "
        "build a TensorRT engine from it"
    )


def _default_backend(artifact: str) -> str:
    backend = backend_for(artifact)
    if backend == "onnxruntime" and os.path.isfile(artifact):
        return _bf16_fallback(artifact) or backend
    return backend


def resolve_backend(artifact: str, backend: str | None = None) -> str:
    """The backend open_runner(artifact, backend) uses."""
    return backend or _default_backend(artifact)


def check_provider_option(providers, artifacts_backends) -> list[str] | None:
    """Validate `--provider` before any work: the ONNX Runtime execution providers it names (see
    onnxruntime_runner.choose_providers: cpu, cuda, tensorrt, provider names, comma-separated) must be
    installed, and at least one of the (artifact, backend) pairs must run on onnxruntime.
    Returns the list to pass to open_runner(providers=...), or None when no provider was asked for."""
    if providers is None:
        return None
    names = [p.strip() for p in providers.split(",")] if isinstance(providers, str) else list(providers)
    names = [p for p in names if p]
    if not names or names == ["auto"]:
        return None
    pairs = list(artifacts_backends)
    if not any(resolve_backend(a, b) == "onnxruntime" for a, b in pairs):
        raise DnxError(
            f"--provider {','.join(names)} picks ONNX Runtime execution providers, but none of "
            f"{', '.join(a for a, _ in pairs)} runs on the onnxruntime backend"
        )
    choose_providers(names)  # BackendUnavailableError naming the installed ones
    return names


def open_runner(artifact: str, backend: str | None = None, providers=None, **options) -> Runner:
    """Open a Runner for `artifact` (zoo name, checkpoint, .onnx, .xml, .plan) on `backend` (or the default:
    by file type; a bf16 ONNX graph goes to OpenVINO, since ONNX Runtime's CPU provider cannot run it).
    `providers` (ONNX Runtime execution providers, see onnxruntime_runner.choose_providers) applies to the
    onnxruntime backend only; other backends ignore it."""
    chosen, backend = backend, backend or backend_for(artifact)
    if backend not in BACKENDS:
        raise DnxError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "torch" and not os.path.isfile(artifact):
        try:
            get_spec(artifact)
        except (UnknownModelError, DnxError):
            raise ArtifactError(f"{artifact}: no such file") from None
        raise ArtifactError(
            f"{artifact} is a zoo model, which runs on torch; export it first "
            f"(`dnx export {artifact} -o {artifact}.onnx`) to run it on {backend}"
        )
    if backend == "torch":
        return TorchRunner(artifact, **options)
    if backend == "onnxruntime":
        ort_options = options if providers is None else {**options, "providers": providers}
        try:
            return OnnxRuntimeRunner(artifact, **ort_options)
        except ArtifactError:
            # Only when ONNX Runtime refuses the file is the graph read again: a bf16 one goes to OpenVINO.
            if chosen is not None or _bf16_fallback(artifact) is None:
                raise
        backend = "openvino"
    if backend == "openvino":
        return OpenVinoRunner(artifact, **options)
    return open_tensorrt_runner(artifact, **options)


__all__ = [
    "InputSpec",
    "Runner",
    "open_runner",
    "run_batches",
    "backend_for",
    "resolve_backend",
    "check_provider_option",
    "BACKENDS",
]
