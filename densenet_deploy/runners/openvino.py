"""OpenVINO runner (CPU): ONNX (fp32 or Q/DQ INT8) or OpenVINO IR (.xml + sidecar), latency or throughput.

Two OpenVINO defaults matter here and are set explicitly:
- INFERENCE_PRECISION_HINT: on CPUs with AMX/AVX512_BF16 the CPU plugin runs float layers in bf16
  unless asked for f32 ("Precision Control", docs.openvino.ai/2025/openvino-workflow/running-inference/
  optimize-inference/precision-control.html), so an fp32 artifact asks for "f32"; a bf16 build records
  "bf16" in its sidecar and the runner reads it from there.
- PERFORMANCE_HINT: LATENCY (one stream, all threads on one request) or THROUGHPUT (several streams,
  fed by an AsyncInferQueue; "High-level Performance Hints", docs.openvino.ai/2025/.../high-level-
  performance-hints.html).
The batch axis is made static per batch size (reshape + compile, cached): the CPU plugin's static-shape
kernels are faster than its dynamic-shape path.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from densenet_deploy.core.deps import require
from densenet_deploy.core.errors import ArtifactError, DnxError
from densenet_deploy.core.metadata import load_onnx
from densenet_deploy.core.sidecars import read_artifact_meta as read_meta
from densenet_deploy.runners.base import InputSpec, Runner

log = logging.getLogger(__name__)

HINTS = ("latency", "throughput")
# dnx precision names -> OpenVINO inference precision element types
# "default" leaves the choice to OpenVINO (bf16 on AMX CPUs): how a plain OpenVINO user runs a model.
INFERENCE_PRECISIONS = {"fp32": "f32", "f32": "f32", "bf16": "bf16", "fp16": "f16", "f16": "f16", "default": None}
# ov.Type names of the inference precisions -> the short names INFERENCE_PRECISION_HINT takes.
_OV_TYPE_NAMES = {"f32": "f32", "bf16": "bf16", "f16": "f16", "float32": "f32", "bfloat16": "bf16", "float16": "f16"}
_MAX_COMPILED = 4  # batch sizes kept compiled at once (each costs a compile, ~1 s for densenet121)


def _openvino():
    return require("openvino", purpose="the OpenVINO runner")


def default_inference_precision(precision: str) -> str:
    """The float precision OpenVINO should use for an artifact of `precision` when nothing says otherwise.

    fp32 artifacts must be f32 (OpenVINO's bf16 default would silently change the numbers). INT8 models
    keep their quantized layers in int8 either way; their float remainder runs in f32 by default here
    (accuracy first); a build may record "bf16" in its sidecar when it measured that to be faster.
    """
    return "bf16" if precision == "bf16" else "f32"


class OpenVinoRunner(Runner):
    """Run an ONNX model or OpenVINO IR with OpenVINO on the CPU.

    `threads`: INFERENCE_NUM_THREADS (None: OpenVINO's choice, all cores). `hint`: "latency" or
    "throughput". `precision_hint`: OpenVINO inference precision ("f32", "bf16"; dnx names fp32/bf16
    accepted); None reads it from the IR sidecar, else f32 (see default_inference_precision).
    `streams`: NUM_STREAMS override for throughput mode. `device`: OpenVINO device name.
    `check_qdq=False` skips the refusal of asymmetric Q/DQ ONNX (only for provoking the crash in a child).
    """

    backend = "openvino"

    def __init__(
        self,
        path,
        threads: int | None = None,
        hint: str = "latency",
        precision_hint: str | None = None,
        streams: int | None = None,
        device: str = "CPU",
        check_qdq: bool = True,
        **unused,
    ):
        if unused:
            log.debug("OpenVinoRunner ignores options %s", sorted(unused))
        if hint not in HINTS:
            raise DnxError(f"unknown OpenVINO performance hint {hint!r}; choose one of {', '.join(HINTS)}")
        if threads is not None and int(threads) < 1:
            raise DnxError(f"threads must be >= 1, got {threads}")
        if not os.fspath(path).lower().endswith((".onnx", ".xml")):
            raise DnxError(
                f"{os.fspath(path)}: the OpenVINO runner takes an .onnx model or OpenVINO IR (.xml); "
                "export a checkpoint first (`dnx export`)"
            )
        ov = _openvino()
        self.name = os.fspath(path)
        self.hint = hint
        self.threads = int(threads) if threads is not None else None
        self.streams = streams
        self.ov_device = device.upper()
        self.device = "cpu" if self.ov_device == "CPU" else self.ov_device.lower()
        self.meta, self.sidecar = read_artifact_meta(self.name)
        self.precision = self.meta.precision
        chosen = (
            precision_hint
            or self.sidecar.get("openvino", {}).get("inference_precision")
            or default_inference_precision(self.precision)
        )
        if chosen not in INFERENCE_PRECISIONS:
            raise DnxError(f"unknown inference precision {chosen!r}; choose one of f32, bf16, f16, default")
        self.inference_precision = INFERENCE_PRECISIONS[chosen]
        if check_qdq and self.name.lower().endswith(".onnx"):
            check_qdq_supported(self.name)  # refuse what crashes OpenVINO before it can take the process down
        self._core = ov.Core()
        try:
            self._model = self._core.read_model(self.name)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line messages
            raise ArtifactError(f"OpenVINO cannot read {self.name}: {openvino_error_line(exc)}") from exc
        self.input = InputSpec(self.meta.input_name, tuple(self.meta.input_size), self.meta.batch)
        self._input_name = self._model.inputs[0].get_any_name()
        self._compiled: dict[int, object] = {}
        self._requests: dict[int, object] = {}

    # --- compile ------------------------------------------------------------------------------
    def config(self, hint: str | None = None) -> dict:
        """The compile_model properties this runner uses (for `hint`, default: the runner's own)."""
        hint = hint or self.hint
        cfg = {"PERFORMANCE_HINT": hint.upper()}
        if self.inference_precision:
            cfg["INFERENCE_PRECISION_HINT"] = self.inference_precision
        if self.threads is not None:
            cfg["INFERENCE_NUM_THREADS"] = self.threads
        if self.streams is not None and hint == "throughput":
            cfg["NUM_STREAMS"] = int(self.streams)
        return cfg

    def compiled(self, batch: int, hint: str | None = None):
        """The model compiled for a static batch of `batch` (compiled once per batch size and hint)."""
        key = (batch, hint or self.hint)
        if key not in self._compiled:
            if len(self._compiled) >= _MAX_COMPILED:
                oldest = next(iter(self._compiled))
                self._compiled.pop(oldest)
                self._requests.pop(oldest, None)
            model = self._model.clone()
            shape = [batch, *self.input.shape]
            try:
                model.reshape({self._input_name: shape})
                t0 = time.perf_counter()
                self._compiled[key] = self._core.compile_model(model, self.ov_device, self.config(key[1]))
            except Exception as exc:
                raise ArtifactError(
                    f"OpenVINO cannot compile {self.name} for input {shape}: {openvino_error_line(exc)}"
                ) from exc
            log.info(
                "compiled %s for batch %d in %.2f s (%s)",
                self.name,
                batch,
                time.perf_counter() - t0,
                self.config(key[1]),
            )
        return self._compiled[key]

    # --- latency ------------------------------------------------------------------------------
    def _run(self, batch: np.ndarray) -> np.ndarray:
        key = (batch.shape[0], self.hint)
        compiled = self.compiled(*key)
        request = self._requests.get(key)
        if request is None:
            request = self._requests[key] = compiled.create_infer_request()
        # share_inputs avoids a copy of the (contiguous float32) batch; the output is copied out because
        # the request reuses its buffer on the next call.
        result = request.infer({0: batch}, share_inputs=True)
        return np.array(result[0], dtype=np.float32, copy=True)

    # --- throughput ---------------------------------------------------------------------------
    def throughput(
        self, batch: np.ndarray, seconds: float = 5.0, warmup: float = 1.0, requests: int | None = None
    ) -> dict:
        """Images/s with an AsyncInferQueue keeping every stream busy (compiled with the THROUGHPUT hint,
        whatever the runner's own hint, which also sizes the queue).

        Returns {"images_per_s", "batches", "seconds", "requests", "streams"}; every request gets the
        same input (throughput, not parity, is measured here).
        """
        ov = _openvino()
        batch = self.check_input(batch)
        compiled = self.compiled(batch.shape[0], "throughput")
        jobs = int(requests or compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        queue = ov.AsyncInferQueue(compiled, jobs)
        for request in queue:  # bind the input once per request; start_async() then reuses it
            request.set_input_tensor(ov.Tensor(batch, shared_memory=False))

        def drive(duration: float) -> tuple[int, float]:
            count, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < duration:
                queue.start_async()
                count += 1
            queue.wait_all()
            return count, time.perf_counter() - t0

        drive(warmup)
        count, elapsed = drive(seconds)
        return {
            "images_per_s": count * batch.shape[0] / elapsed,
            "batches": count,
            "seconds": elapsed,
            "requests": jobs,
            "streams": int(compiled.get_property("NUM_STREAMS")),
        }

    def close(self) -> None:
        self._requests.clear()
        self._compiled.clear()

    @property
    def executed_precision(self) -> str:
        """The float precision OpenVINO actually runs (f32, bf16, f16), as the compiled model reports it: a bf16
        request runs in f32 on a CPU without bf16 support, and the "default" request is whatever OpenVINO picks
        here. Labels, sidecars and JSON say this, not what was asked for."""
        compiled = next(iter(self._compiled.values()), None) or self.compiled(self.batch_range[0])
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
        name = getattr(value, "get_type_name", lambda: str(value))()
        return _OV_TYPE_NAMES.get(name, name)

    def describe(self) -> dict:
        ov = _openvino()
        info = super().describe()
        info.update(
            {
                "inference_precision": self.inference_precision,
                "executed_precision": self.executed_precision,
                "hint": self.hint,
                "threads": self.threads,
                "openvino_version": ov.get_version().split("-")[0],
            }
        )
        return info

    @property
    def label(self) -> str:
        extra = f"/{self.executed_precision}" if self.precision == "int8" else ""
        return f"openvino-{self.device} {self.precision}{extra}"


def read_artifact_meta(path: str):
    """(ArtifactMeta, sidecar dict) for an ONNX file (metadata inside) or an IR .xml (sidecar)."""
    if path.lower().endswith(".xml"):
        if not os.path.isfile(os.path.splitext(path)[0] + ".bin"):
            raise ArtifactError(f"{path}: its weights file {os.path.splitext(path)[0] + '.bin'} is missing")
    return read_meta(path)


def check_qdq_supported(onnx_path_or_proto) -> int:
    """Refuse Q/DQ models with asymmetric activations (non-zero zero points); return the Q/DQ node count.

    Measured: OpenVINO 2026.4.1 segfaults in compile_model (static batch) on a Q/DQ model made by ONNX
    Runtime's quantize_static defaults (asymmetric uint8 activations); a segfault cannot be caught, so
    such models are refused here, before OpenVINO sees them. Symmetric int8 (TensorRT format, zero point
    0) and unsigned activations with zero point 0 are accepted.
    """
    from onnx import numpy_helper

    proto = load_onnx(onnx_path_or_proto) if isinstance(onnx_path_or_proto, (str, os.PathLike)) else onnx_path_or_proto
    inits = {t.name: t for t in proto.graph.initializer}
    consts = {
        n.output[0]: n.attribute[0].t
        for n in proto.graph.node
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"
    }
    count, bad = 0, []
    for node in proto.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        count += 1
        if node.op_type != "QuantizeLinear" or node.input[0] in inits or len(node.input) < 3 or not node.input[2]:
            continue  # weights and zero-point-less (int8, zp 0) quantizers are symmetric by construction
        zp = inits.get(node.input[2]) or consts.get(node.input[2])
        if zp is None or np.any(numpy_helper.to_array(zp) != 0):
            bad.append(node.name or node.output[0])
    if bad:
        source = onnx_path_or_proto if isinstance(onnx_path_or_proto, (str, os.PathLike)) else "the model"
        raise DnxError(
            f"{source} quantizes {len(bad)} activation(s) asymmetrically (non-zero zero point, e.g. {bad[0]}); "
            "OpenVINO 2026.4 crashes on such Q/DQ models. Re-quantize with symmetric activations "
            "(`dnx calibrate`, TensorRT format) or build from the fp32 model with "
            "`dnx build-engine --target openvino --int8 --recipe nncf`"
        )
    return count


def openvino_error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    # OpenVINO prefixes messages with "Exception from src/...cpp:NN:" lines; keep the informative one.
    informative = [line for line in text if line.strip() and not line.startswith(("Exception from", "Check "))]
    return (informative or text or [type(exc).__name__])[0].strip()
