"""ONNX (fp32 / fp16 / bf16 / Q/DQ int8) -> TensorRT plan + JSON sidecar, one code path for TensorRT 10.x and 11.x.

Precision is already decided by the ONNX graph, so the build is mechanical: a strongly typed network,
one optimisation profile, workspace limit, optimisation level, timing cache, optional hardware/version
compatibility. What changed between 10 and 11 (and why the code looks the way it does):
- TensorRT 11 removed the weak-typing flags BuilderFlag.FP16/INT8/BF16 and the INT8 calibrator API
  (IBuilderConfig.int8_calibrator); strong typing is always on. Neither is used here, on any version.
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-patterns.html
- NetworkDefinitionCreationFlag.STRONGLY_TYPED must be passed on 10.x; on 11.x it is deprecated and
  ignored (strong typing is always on). EXPLICIT_BATCH is ignored since 10.0 and not used. We pass
  STRONGLY_TYPED only when the enum still has it (hasattr), so 11.x builds cannot trip on its removal.
  https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Builder.html
- IBuilderConfig: set_memory_pool_limit(MemoryPoolType.WORKSPACE), builder_optimization_level,
  hardware_compatibility_level (HardwareCompatibilityLevel.AMPERE_PLUS / SAME_COMPUTE_CAPABILITY),
  BuilderFlag.VERSION_COMPATIBLE, create_timing_cache / set_timing_cache, ITimingCache.serialize:
  https://docs.nvidia.com/deeplearning/tensorrt/api/python_api/infer/Core/TimingCache.html
  https://docs.nvidia.com/deeplearning/tensorrt/10.16.1/inference-library/version-compatibility.html
- HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY exists only since TensorRT 10.9 (AMPERE_PLUS since 8.6):
  https://docs.nvidia.com/deeplearning/tensorrt/latest/getting-started/release-notes-10/10.9.0.html
- OnnxParser.parse_from_file (handles external weights); errors via get_error(i) -> ParserError with desc(),
  node() (index, -1 if none), node_name(), node_operator() (python/src/parsers/pyOnnx.cpp in NVIDIA/TensorRT;
  the last two are bound since TensorRT 10, older bindings only have node(), hence the hasattr).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from densenet_deploy.core.errors import ArtifactError, DnxError
from densenet_deploy.core.io import atomic_output, atomic_write_bytes, check_output_path, sha256_file
from densenet_deploy.core.metadata import read_onnx_meta
from densenet_deploy.core.results import Result
from densenet_deploy.core.sidecars import write_sidecar
from densenet_deploy.runners.tensorrt import require_tensorrt_gpu

log = logging.getLogger(__name__)

HARDWARE_COMPATIBILITY = {"ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}


@dataclass(frozen=True)
class EngineOptions:
    """Builder settings; recorded in the sidecar under "builder" (profile under "profile")."""

    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    workspace_gb: float = 4.0
    opt_level: int = 3
    timing_cache: str | None = None
    hardware_compatibility: str | None = None  # None | "ampere+" | "same-cc"
    version_compatible: bool = False

    def validate(self) -> "EngineOptions":
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise DnxError(
                f"batch profile must satisfy 1 <= min <= opt <= max, got --min-batch {self.min_batch} "
                f"--opt-batch {self.opt_batch} --max-batch {self.max_batch}"
            )
        if not 0 <= self.opt_level <= 5:
            raise DnxError(f"--opt-level must be 0..5 (TensorRT builder optimisation level), got {self.opt_level}")
        if self.workspace_gb <= 0:
            raise DnxError(f"--workspace-gb must be > 0, got {self.workspace_gb}")
        if self.hardware_compatibility not in (None, *HARDWARE_COMPATIBILITY):
            raise DnxError(
                f"--hardware-compatibility must be one of {', '.join(HARDWARE_COMPATIBILITY)}, "
                f"got {self.hardware_compatibility!r}"
            )
        return self


@dataclass
class EngineResult(Result):
    """A TensorRT plan and its sidecar, with the build's version, GPU, profile and size."""

    output: str
    sidecar: str
    precision: str
    seconds: float
    tensorrt: dict
    gpu: dict
    profile: dict
    size_bytes: int

    def __str__(self) -> str:
        return (
            f"wrote {self.output} (TensorRT {self.tensorrt.get('version')}, {self.precision}, "
            f"{self.gpu.get('name')}) in {self.seconds:.1f} s; sidecar {self.sidecar}"
        )


def check_tensorrt_usable(device: int = 0) -> tuple[str, dict]:
    """(TensorRT version, {"name", "compute_capability"}) or BackendUnavailableError naming what is missing."""
    trt, gpu = require_tensorrt_gpu(device)
    return trt.__version__, gpu


def parser_errors(parser) -> list[str]:
    """One line per ONNX parser error: node name, op type, description."""
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        name = err.node_name() if hasattr(err, "node_name") else f"#{err.node()}"
        op = err.node_operator() if hasattr(err, "node_operator") else "?"
        lines.append(f"node {name or '?'} ({op or '?'}): {err.desc()}")
    return lines


def build_engine(
    onnx_path,
    output,
    *,
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 32,
    workspace_gb: float = 4.0,
    opt_level: int = 3,
    timing_cache: str | None = None,
    hardware_compatibility: str | None = None,
    version_compatible: bool = False,
    device: int = 0,
) -> EngineResult:
    """Build a TensorRT plan from `onnx_path` and write `output` plus `output`.json atomically."""
    options = EngineOptions(
        min_batch,
        opt_batch,
        max_batch,
        workspace_gb,
        opt_level,
        timing_cache,
        hardware_compatibility,
        version_compatible,
    ).validate()
    output = check_output_path(output)
    if options.timing_cache:
        check_output_path(options.timing_cache)  # fail now, not after a long build
    meta = read_onnx_meta(onnx_path)
    trt_version, gpu = check_tensorrt_usable(device)
    import tensorrt as trt

    start = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):  # required on 10.x, a no-op on 11.x
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.fspath(onnx_path)):
        errors = parser_errors(parser) or ["unknown parser error"]
        raise ArtifactError(
            f"TensorRT's ONNX parser rejected {onnx_path}: "
            + "; ".join(errors[:3])
            + (f" (+{len(errors) - 3} more)" if len(errors) > 3 else "")
        )
    if network.num_inputs != 1:
        raise ArtifactError(f"{onnx_path}: expected one input, the network has {network.num_inputs}")
    tensor = network.get_input(0)
    # A dynamic C/H/W (-1) would make set_shape fail: take the size the metadata records.
    chw = tuple(int(d) if d >= 0 else int(m) for d, m in zip(tuple(tensor.shape)[1:], meta.input_size))
    lo, opt, hi = options.min_batch, options.opt_batch, options.max_batch
    if tensor.shape[0] != -1:  # exported with a fixed batch: the profile can only be that batch
        lo = opt = hi = int(tensor.shape[0])
        log.warning("%s has a fixed batch of %d; ignoring --min/--opt/--max-batch", onnx_path, lo)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gb * (1 << 30)))
    config.builder_optimization_level = options.opt_level
    profile = builder.create_optimization_profile()
    profile.set_shape(tensor.name, (lo, *chw), (opt, *chw), (hi, *chw))
    config.add_optimization_profile(profile)
    if options.hardware_compatibility:
        level = getattr(trt.HardwareCompatibilityLevel, HARDWARE_COMPATIBILITY[options.hardware_compatibility], None)
        if level is None:  # SAME_COMPUTE_CAPABILITY: TensorRT >= 10.9 only
            raise DnxError(
                f"--hardware-compatibility {options.hardware_compatibility} needs TensorRT 10.9 or later, "
                f"this is TensorRT {trt_version}"
            )
        config.hardware_compatibility_level = level
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    cache = None
    if options.timing_cache:
        blob = b""
        if os.path.isfile(options.timing_cache):
            with open(options.timing_cache, "rb") as fh:
                blob = fh.read()
        cache = config.create_timing_cache(blob)
        # ignore_mismatch=False: never reuse another GPU's timings; a mismatched cache is refused (False).
        if cache is None or not config.set_timing_cache(cache, False):
            log.warning("timing cache %s is from another GPU or TensorRT; starting a new one", options.timing_cache)
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, False)

    log.info("building TensorRT %s engine for %s (batch %d/%d/%d)", meta.precision, onnx_path, lo, opt, hi)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise DnxError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    seconds = time.perf_counter() - start

    profile_doc = {"input": tensor.name, "min": lo, "opt": opt, "max": hi}
    builder_doc = {
        "workspace_gb": options.workspace_gb,
        "opt_level": options.opt_level,
        "hardware_compatibility": options.hardware_compatibility,
        "version_compatible": options.version_compatible,
        "strongly_typed": True,
        "build_seconds": round(seconds, 2),
    }
    with atomic_output(output) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(bytes(plan))
        plan_meta = meta.replace(batch=lo if lo == hi else None)
        # the sidecar records the sha256 of the plan, still at `tmp` (the move keeps its bytes)
        sidecar = write_sidecar(
            output,
            plan_meta,
            artifact_file=tmp,
            tensorrt={"version": trt_version},
            gpu=gpu,
            profile=profile_doc,
            precision=meta.precision,
            source_onnx_sha256=sha256_file(onnx_path),
            builder=builder_doc,
        )
    if cache is not None:  # the builder added its new timings to the config's cache (read it back, as trtexec does)
        atomic_write_bytes(options.timing_cache, bytes(config.get_timing_cache().serialize()))
    return EngineResult(
        output=output,
        sidecar=sidecar,
        precision=meta.precision,
        seconds=round(seconds, 2),
        tensorrt={"version": trt_version},
        gpu=gpu,
        profile=profile_doc,
        size_bytes=os.path.getsize(output),
    )
