"""TensorRT runner: deserialise a plan, refuse one built for another TensorRT or GPU, run it on a CUDA stream.

TensorRT is imported only inside functions here (and in exporters/tensorrt.py), so this module imports on
any machine. I/O buffers are torch CUDA tensors and the stream is a torch CUDA stream: no pycuda.

API used (name-based I/O, TensorRT 10.x and 11.x alike; the 8.x binding API is gone since 10.0):
- IExecutionContext.set_input_shape / set_tensor_address / execute_async_v3(stream_handle):
  https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/ExecutionContext.html
- ICudaEngine.num_io_tensors / get_tensor_name / get_tensor_mode / get_tensor_dtype / get_tensor_profile_shape
  (migration from bindings: https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-8x-to-10x-python-api-reference.html)
- Runtime.engine_host_code_allowed, needed for version-compatible plans (they embed a lean runtime):
  https://docs.nvidia.com/deeplearning/tensorrt/10.16.1/inference-library/version-compatibility.html
"""

from __future__ import annotations

import logging
import os

import numpy as np

from densenet_deploy.core.errors import ArtifactError, BackendUnavailableError, DataError, DnxError
from densenet_deploy.core.sidecars import read_sidecar
from densenet_deploy.runners.base import InputSpec, Runner

log = logging.getLogger(__name__)


# --- environment and compatibility (pure where possible, so they are tested on the CPU) ------------
def tensorrt_version() -> str | None:
    """The installed TensorRT version, or None when it cannot be imported."""
    try:
        import tensorrt as trt
    except ImportError:
        return None
    return trt.__version__


def cuda_device(index: int = 0) -> dict:
    """{"name", "compute_capability": "9.0"} of CUDA device `index` (via torch); BackendUnavailableError if none."""
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailableError("no CUDA GPU is visible to torch (torch.cuda.is_available() is False)")
    if index >= torch.cuda.device_count():
        raise BackendUnavailableError(f"CUDA device {index} does not exist ({torch.cuda.device_count()} visible)")
    major, minor = torch.cuda.get_device_capability(index)
    return {"name": torch.cuda.get_device_name(index), "compute_capability": f"{major}.{minor}"}


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in str(version).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_plan_compatibility(
    sidecar: dict, tensorrt_version: str, gpu_name: str, compute_capability: str, plan: str = "plan"
) -> None:
    """Refuse (ArtifactError) a plan whose sidecar says it was built for another TensorRT or GPU.

    Rules (TensorRT's own): a plan runs only on the TensorRT version that built it, unless it was built
    version-compatible (then on that version or later); and only on the GPU model that built it, unless
    built with a hardware-compatibility level: "same-cc" needs the same compute capability, "ampere+"
    any GPU of compute capability 8.0 or newer.
    """
    built_trt = (sidecar.get("tensorrt") or {}).get("version")
    gpu = sidecar.get("gpu") or {}
    built_gpu, built_cc = gpu.get("name"), gpu.get("compute_capability")
    builder = sidecar.get("builder") or {}
    if not built_trt or not built_gpu or not built_cc:
        raise ArtifactError(
            f"{plan}: sidecar lacks tensorrt.version / gpu.name / gpu.compute_capability; "
            "rebuild it with `dnx build-engine`"
        )
    rebuild = (
        f"rebuild it here with `dnx build-engine` (source ONNX sha256 {sidecar.get('source_onnx_sha256', '?')[:12]})"
    )
    if builder.get("version_compatible"):
        if _version_tuple(tensorrt_version) < _version_tuple(built_trt):
            raise ArtifactError(
                f"{plan} was built by TensorRT {built_trt} (version-compatible), which runs on "
                f"{built_trt} or later, but this is TensorRT {tensorrt_version}; {rebuild}"
            )
    elif _version_tuple(tensorrt_version) != _version_tuple(built_trt):
        raise ArtifactError(
            f"{plan} was built by TensorRT {built_trt} but this is TensorRT {tensorrt_version}; "
            f"plans only run on the TensorRT version that built them; {rebuild} "
            "(or build with --version-compatible)"
        )
    level = builder.get("hardware_compatibility")
    here = f"{gpu_name} (compute capability {compute_capability})"
    there = f"{built_gpu} (compute capability {built_cc})"
    if level == "ampere+":
        if _version_tuple(compute_capability) < (8, 0):
            raise ArtifactError(
                f"{plan} was built for Ampere or newer GPUs (compute capability >= 8.0), "
                f"but this GPU is {here}; {rebuild}"
            )
    elif level == "same-cc":
        if _version_tuple(compute_capability) != _version_tuple(built_cc):
            raise ArtifactError(
                f"{plan} was built for compute capability {built_cc} on {there}, but this GPU is {here}; {rebuild}"
            )
    elif built_gpu != gpu_name or _version_tuple(built_cc) != _version_tuple(compute_capability):
        raise ArtifactError(
            f"{plan} was built on {there} but this GPU is {here}; plans are tied to the GPU "
            f"model that built them; {rebuild} (or build with --hardware-compatibility)"
        )


def require_tensorrt_gpu(device: int = 0):
    """Import tensorrt and check a CUDA GPU is visible; returns (trt module, {"name", "compute_capability"})."""
    missing = []
    try:
        import tensorrt as trt
    except ImportError as exc:
        trt = None
        missing.append(f"TensorRT is not installed ({exc}; pip install 'densenet-deploy[trt]')")
    try:
        gpu = cuda_device(device)
    except BackendUnavailableError as exc:
        missing.append(str(exc))
    if missing:
        raise BackendUnavailableError(" and ".join(missing))
    return trt, gpu


# --- the runner ----------------------------------------------------------------------------------
def _torch_dtype(trt_dtype):
    import torch

    table = {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "BF16": torch.bfloat16,
        "INT8": torch.int8,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "BOOL": torch.bool,
        "UINT8": torch.uint8,
    }
    name = getattr(trt_dtype, "name", str(trt_dtype).split(".")[-1])
    if name not in table:
        raise ArtifactError(f"plan has an I/O tensor of type {name}, which dnx cannot feed")
    return table[name]


def open_tensorrt_runner(
    path: str, device: int = 0, check_compatibility: bool = True, threads: int | None = None
) -> Runner:
    """Open a TensorRT plan built by `dnx build-engine` (its `.json` sidecar beside it) on CUDA device `device`.

    `threads` is accepted so callers can pass the same options to every runner; a GPU engine ignores it.
    """
    trt, gpu = require_tensorrt_gpu(device)
    meta, doc = read_sidecar(path)
    if check_compatibility:
        check_plan_compatibility(doc, trt.__version__, gpu["name"], gpu["compute_capability"], plan=path)
    return TensorRtRunner(path, meta, doc, device)


class TensorRtRunner(Runner):
    """One engine, one execution context, one torch CUDA stream; I/O as torch CUDA tensors."""

    backend = "tensorrt"
    batch_range_hint = " (--min-batch/--max-batch)"  # Runner.check_input refuses batches outside batch_range

    def __init__(self, path: str, meta, sidecar: dict, device: int = 0):
        import tensorrt as trt
        import torch

        self._torch = torch
        self.name = os.fspath(path)
        self.meta = meta
        self.sidecar = sidecar
        self.precision = sidecar.get("precision", meta.precision)
        self.device = f"cuda:{device}"
        torch.cuda.set_device(device)  # TensorRT deserialises onto, and runs on, the current CUDA device
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if (sidecar.get("builder") or {}).get("version_compatible"):
            # A version-compatible plan carries a lean runtime (host code); only deserialise trusted plans.
            self._runtime.engine_host_code_allowed = True
        with open(self.name, "rb") as fh:
            data = fh.read()
        self.engine = self._runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise ArtifactError(f"TensorRT could not deserialise {self.name} (see the TensorRT log above)")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise DnxError(f"TensorRT could not create an execution context for {self.name} (out of GPU memory?)")
        self.stream = torch.cuda.Stream(device=self.device)

        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ArtifactError(f"{self.name}: expected one input and one output, got {inputs} and {outputs}")
        self._in, self._out = inputs[0], outputs[0]
        self._in_dtype = _torch_dtype(self.engine.get_tensor_dtype(self._in))
        self._out_dtype = _torch_dtype(self.engine.get_tensor_dtype(self._out))
        batch = int(self.engine.get_tensor_shape(self._in)[0])  # -1 when the batch axis is dynamic
        if batch > 0:
            self.batch_range = (batch, batch)
        else:  # dynamic batch: the range of optimisation profile 0 (the one a fresh context uses)
            lo, _, hi = self.engine.get_tensor_profile_shape(self._in, 0)
            self.batch_range = (int(lo[0]), int(hi[0]))
        fixed = self.batch_range[0] if self.batch_range[0] == self.batch_range[1] else None
        self.input = InputSpec(self._in, tuple(int(d) for d in meta.input_size), fixed)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.cuda.stream(self.stream):
            x = torch.from_numpy(batch).to(self.device, non_blocking=True).to(self._in_dtype).contiguous()
            if not self.context.set_input_shape(self._in, tuple(x.shape)):
                raise DataError(f"{self.name} rejected input shape {tuple(x.shape)}")
            out = torch.empty(
                tuple(self.context.get_tensor_shape(self._out)), dtype=self._out_dtype, device=self.device
            )
            self.context.set_tensor_address(self._in, x.data_ptr())
            self.context.set_tensor_address(self._out, out.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise DnxError(f"TensorRT execution of {self.name} failed (see the TensorRT log above)")
            result = out.float().cpu()  # the copy waits on self.stream: it is the current stream here
        self.stream.synchronize()
        return result.numpy()

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self.context = None
        self.engine = None

    def describe(self) -> dict:
        info = super().describe()
        info.update(
            batch_range=list(self.batch_range), tensorrt=self.sidecar.get("tensorrt"), gpu=self.sidecar.get("gpu")
        )
        return info
