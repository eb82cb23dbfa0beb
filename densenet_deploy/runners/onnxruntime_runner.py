"""ONNX Runtime runner: any .onnx (fp32, fp16, Q/DQ int8) or an ORT deployment built by `--target onnxruntime`."""

from __future__ import annotations

import logging
import os

import numpy as np

from densenet_deploy.core.errors import ArtifactError, BackendUnavailableError, DnxError, did_you_mean
from densenet_deploy.core.formats import guess_precision, sidecar_path
from densenet_deploy.core.host import cpu_info
from densenet_deploy.core.metadata import load_onnx, read_onnx_meta
from densenet_deploy.core.sidecars import read_sidecar
from densenet_deploy.runners.base import InputSpec, Runner

log = logging.getLogger(__name__)

# Preference order when the caller does not choose: GPU engines first, the CPU EP always last.
PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
PROVIDER_ALIASES = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
}
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "layout", "all")
_GPU_PROVIDERS = {"TensorrtExecutionProvider", "CUDAExecutionProvider"}
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def choose_providers(requested=None, available=None) -> list[str]:
    """The execution providers to ask for, best first.

    `requested`: None (every installed one of TensorRT EP, CUDA EP, CPU EP, in that order), an alias
    ("cpu", "cuda", "tensorrt"), a provider name, or a list of names. Raises BackendUnavailableError when
    a requested provider is not installed.
    """
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    available = list(available)
    if requested is None or requested == "auto":
        chosen = [p for p in PROVIDER_ORDER if p in available]
        return chosen or ["CPUExecutionProvider"]
    names = [requested] if isinstance(requested, str) else list(requested)
    expanded: list[str] = []
    for name in names:
        for provider in PROVIDER_ALIASES.get(name.lower(), (name,)):
            if provider not in expanded:
                expanded.append(provider)
    missing = [p for p in expanded if p not in available]
    # The CPU EP behind a GPU EP is only a fallback: a missing GPU EP is what matters.
    if missing:
        known = list(PROVIDER_ALIASES) + available
        hint = did_you_mean(missing[0], known) if missing[0] not in PROVIDER_ORDER else ""
        raise BackendUnavailableError(
            f"ONNX Runtime provider {missing[0]} is not available{hint}; installed: {', '.join(available)}"
            + ("; install onnxruntime-gpu for CUDA/TensorRT EPs" if missing[0] in _GPU_PROVIDERS else "")
        )
    return expanded


def graph_input_spec(path_or_proto) -> InputSpec:
    """Input name and (C, H, W) from the graph itself, for ONNX files without dnx metadata."""
    proto = (
        load_onnx(path_or_proto, load_weights=False) if isinstance(path_or_proto, (str, os.PathLike)) else path_or_proto
    )
    initializers = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ArtifactError(f"expected one image input, the graph has {len(inputs)}: {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4 or any(not d.HasField("dim_value") for d in dims[1:]):
        shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
        raise ArtifactError(f"input {inputs[0].name!r} has shape {shape}; expected (N, C, H, W) with fixed C, H, W")
    batch = dims[0].dim_value if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None
    return InputSpec(inputs[0].name, tuple(int(d.dim_value) for d in dims[1:]), batch)


def check_ort_deployment(deployment: dict, cpu: dict, path: str = "model") -> None:
    """Refuse an ORT deployment optimised at level "all" for a CPU with another vector width.

    Level "all" rewrites convolutions into ORT's NCHWc layout, whose block size follows the SIMD width
    of the CPU that built it (AVX-512: 16 floats, AVX2: 8); ORT says such a model "should only be used
    in the same environment the model was optimized in".
    """
    built = deployment.get("cpu") if deployment.get("optimization") == "all" else None
    if not built:
        return
    simd = lambda c: "AVX-512" if c.get("avx512") else "AVX2" if c.get("avx2") else "no AVX2"  # noqa: E731
    if simd(built) != simd(cpu):
        raise ArtifactError(
            f"{path} was optimised (level all) on a CPU with {simd(built)} ({built.get('model', '?')}) "
            f"but this CPU has {simd(cpu)}; rebuild it here with `dnx build-engine --target "
            "onnxruntime`, or build with --optimization extended for a portable model"
        )


class OnnxRuntimeRunner(Runner):
    """An InferenceSession on `path`.

    `providers`: see choose_providers; `threads`: intra-op threads (None: ORT's default, one per core);
    `optimization`: graph optimisation level (disable | basic | extended | layout | all; None: "all",
    or for an ORT deployment the level it was built with, already applied offline, so "disable");
    `io_binding`: bind inputs/outputs to device buffers (None: only on a GPU provider, where it saves copies).
    """

    backend = "onnxruntime"

    def __init__(
        self,
        path: str,
        providers=None,
        threads: int | None = None,
        optimization: str | None = None,
        io_binding: bool | None = None,
    ):
        import onnxruntime as ort

        self.name = os.fspath(path)
        self.deployment = None
        if os.path.isfile(sidecar_path(self.name)):  # built by `dnx build-engine --target onnxruntime`
            self.meta, doc = read_sidecar(self.name)
            self.deployment = doc.get("onnxruntime") or {}

            check_ort_deployment(self.deployment, cpu_info(), self.name)
            if providers is None:
                providers = self.deployment.get("providers")
            if optimization is None and self.deployment.get("optimization"):
                optimization = "disable"  # already applied offline; re-running it only costs load time
        else:
            self.meta = self._read_meta()
        if optimization is None:
            optimization = "all"
        if optimization not in OPTIMIZATION_LEVELS:
            raise DnxError(
                f"unknown optimization level {optimization!r}; choose one of {', '.join(OPTIMIZATION_LEVELS)}"
            )
        self.optimization = optimization
        self.providers = choose_providers(providers)

        options = ort.SessionOptions()
        options.graph_optimization_level = ort_optimization_level(optimization)
        if threads:
            options.intra_op_num_threads = int(threads)
        self.threads = threads
        try:
            self.session = ort.InferenceSession(self.name, options, providers=self.providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"ONNX Runtime cannot load {self.name}: {first[:300]}") from exc
        used = self.session.get_providers()
        self.device = "cuda:0" if used and used[0] in _GPU_PROVIDERS else "cpu"
        self.io_binding = self.device != "cpu" if io_binding is None else bool(io_binding)

        spec = graph_input_spec(self.name)
        session_input = self.session.get_inputs()[0]
        self._input_dtype = _ORT_DTYPES.get(session_input.type, np.float32)
        self._output_name = self.session.get_outputs()[0].name
        self.input = spec
        if self.meta is not None:
            self.precision = self.meta.precision
            if tuple(self.meta.input_size) != tuple(spec.shape):
                raise ArtifactError(f"{self.name}: metadata says input {self.meta.input_size}, graph says {spec.shape}")
        else:
            self.precision = guess_precision(load_onnx(self.name, load_weights=False))
        log.debug("onnxruntime runner: %s providers=%s optimization=%s", self.name, used, optimization)

    def _read_meta(self):
        try:
            return read_onnx_meta(self.name)
        except ArtifactError as exc:
            if "no dnx metadata" not in str(exc):
                raise
            log.info("%s has no dnx metadata; reading the input shape from the graph", self.name)
            return None

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self._input_dtype is not np.float32:
            batch = batch.astype(self._input_dtype)
        if not self.io_binding:
            return self.session.run([self._output_name], {self.input.name: batch})[0]
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input.name, batch)
        binding.bind_output(self._output_name, self.device.split(":")[0])
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def close(self) -> None:
        self.session = None

    def describe(self) -> dict:
        info = super().describe()
        info.update(
            providers=self.session.get_providers() if self.session else self.providers,
            optimization=self.optimization,
            threads=self.threads,
            io_binding=self.io_binding,
        )
        if self.deployment is not None:
            info["deployment"] = self.deployment
        return info


def ort_optimization_level(name: str):
    import onnxruntime as ort

    levels = {
        "disable": "ORT_DISABLE_ALL",
        "basic": "ORT_ENABLE_BASIC",
        "extended": "ORT_ENABLE_EXTENDED",
        "layout": "ORT_ENABLE_LAYOUT",
        "all": "ORT_ENABLE_ALL",
    }
    level = getattr(ort.GraphOptimizationLevel, levels[name], None)
    if level is None:  # ORT_ENABLE_LAYOUT only exists in newer ONNX Runtime releases
        raise DnxError(f"optimization level {name!r} is not supported by onnxruntime {ort.__version__}")
    return level
