"""ONNX -> ONNX Runtime deployment for the CPU EP: the graph optimised offline, plus a JSON sidecar.

ONNX Runtime applies its graph optimisations (constant folding, Conv+activation fusion, and at level
"all" the NCHWc layout transform) when a session is created and can save the result
(SessionOptions.optimized_model_filepath). Saving it once means deployments skip that work at load
time. Level "all" bakes in this CPU's vector width (ORT warns the model "should only be used in the
same environment"), so the sidecar records the CPU features it was built on.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from densenet_deploy.core.errors import DnxError, VerificationFailed
from densenet_deploy.core.host import cpu_info
from densenet_deploy.core.io import atomic_output, check_output_path, sha256_file
from densenet_deploy.core.metadata import read_onnx_meta
from densenet_deploy.core.policy import gate_for
from densenet_deploy.core.sidecars import write_sidecar
from densenet_deploy.exporters.targets.artifact import TargetBuild
from densenet_deploy.runners.batches import run_batches
from densenet_deploy.runners.onnxruntime_runner import OnnxRuntimeRunner, ort_optimization_level
from densenet_deploy.verify.compare import compare_outputs

log = logging.getLogger(__name__)

OFFLINE_LEVELS = ("basic", "extended", "all")


def build_ort_deployment(
    onnx_path, output, optimization: str = "all", threads: int | None = None, check_samples: int = 4
) -> TargetBuild:
    """Write `output` (an ORT-optimised ONNX for the CPU EP) and `output`.json.

    The optimised model is checked against the source model on `check_samples` seeded random inputs
    before anything is written (VerificationFailed when it differs beyond fp32 rounding).
    """
    import onnxruntime as ort

    if optimization not in OFFLINE_LEVELS:
        raise DnxError(
            f"--optimization must be one of {', '.join(OFFLINE_LEVELS)} for an offline build, got {optimization!r}"
        )
    output = check_output_path(output)
    meta = read_onnx_meta(onnx_path)
    start = time.perf_counter()
    with atomic_output(output, suffix=".onnx") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort_optimization_level(optimization)
        options.optimized_model_filepath = tmp
        options.log_severity_level = 3  # the "hardware specific optimizations" warning is why we record the CPU
        if threads:
            options.intra_op_num_threads = int(threads)
        ort.InferenceSession(os.fspath(onnx_path), options, providers=["CPUExecutionProvider"])
        seconds = time.perf_counter() - start

        # Compare the optimised graph with the source graph run unoptimised, on the same inputs.

        rng = np.random.default_rng(0)
        batch = rng.standard_normal((max(1, check_samples), *meta.input_size)).astype(np.float32)
        # run_batches pads to a fixed batch (an export with --batch N) and drops the padding again.
        ref = run_batches(
            OnnxRuntimeRunner(onnx_path, providers="cpu", optimization="disable", threads=threads), batch, len(batch)
        )
        cand = run_batches(
            OnnxRuntimeRunner(tmp, providers="cpu", optimization="disable", threads=threads), batch, len(batch)
        )
        parity = compare_outputs(ref, cand, gate=gate_for(meta.precision, "rewrite"), real_data=False)
        if not parity:
            raise VerificationFailed(
                f"ONNX Runtime's {optimization} optimisation changed the outputs of "
                f"{onnx_path}: {'; '.join(parity.failures)}",
                parity,
            )
        deployment = {
            "version": ort.__version__,
            "optimization": optimization,
            "providers": ["CPUExecutionProvider"],
            "optimized_offline": True,
            "cpu": _cpu_features() if optimization == "all" else None,
        }
        # the sidecar records the sha256 of the optimised model, still at `tmp` (the move keeps its bytes)
        sidecar = write_sidecar(
            output,
            meta,
            artifact_file=tmp,
            onnxruntime=deployment,
            precision=meta.precision,
            source_onnx_sha256=sha256_file(onnx_path),
        )
    return TargetBuild(
        output,
        sidecar,
        meta.precision,
        round(seconds, 2),
        details={"optimization": optimization, "parity": parity.as_dict(), "size_bytes": os.path.getsize(output)},
    )


def _cpu_features() -> dict:
    info = cpu_info()
    return {k: info[k] for k in ("model", "avx2", "avx512", "vnni", "amx") if k in info}
