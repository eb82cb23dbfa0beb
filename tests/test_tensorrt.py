"""TensorRT: plan compatibility rules (pure, run everywhere) and real builds/runs (GPU + tensorrt only).

The GPU tests import tensorrt inside the test (pytest.importorskip) and skip with the reason when it or a
CUDA GPU is missing, so this file is collected on any machine. Nothing here fakes TensorRT.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from densenet_deploy.core.errors import ArtifactError, BackendUnavailableError
from densenet_deploy.runners.tensorrt import check_plan_compatibility

H100 = {"name": "NVIDIA H100 80GB HBM3", "cc": "9.0"}


def sidecar(version="10.13.0.35", gpu=H100["name"], cc=H100["cc"], **builder):
    return {
        "tensorrt": {"version": version},
        "gpu": {"name": gpu, "compute_capability": cc},
        "builder": builder,
        "source_onnx_sha256": "ab" * 32,
    }


def test_plan_from_the_same_tensorrt_and_gpu_is_accepted():
    check_plan_compatibility(sidecar(), "10.13.0.35", H100["name"], "9.0")


def test_plan_from_another_tensorrt_version_is_refused():
    with pytest.raises(ArtifactError, match=r"built by TensorRT 10\.13\.0\.35 but this is TensorRT 11\.0\.0.*rebuild"):
        check_plan_compatibility(sidecar(), "11.0.0", H100["name"], "9.0")


def test_plan_from_another_gpu_is_refused():
    with pytest.raises(
        ArtifactError,
        match=r"built on NVIDIA H100.*\(compute capability 9\.0\) but this GPU is "
        r"NVIDIA A100-SXM4-40GB \(compute capability 8\.0\)",
    ):
        check_plan_compatibility(sidecar(), "10.13.0.35", "NVIDIA A100-SXM4-40GB", "8.0")
    # same compute capability, other model: still another GPU unless built hardware-compatible
    with pytest.raises(ArtifactError, match="tied to the GPU model"):
        check_plan_compatibility(sidecar(), "10.13.0.35", "NVIDIA H200", "9.0")


def test_hardware_compatibility_levels():
    check_plan_compatibility(sidecar(hardware_compatibility="same-cc"), "10.13.0.35", "NVIDIA H200", "9.0")
    with pytest.raises(ArtifactError, match="compute capability 9.0"):
        check_plan_compatibility(sidecar(hardware_compatibility="same-cc"), "10.13.0.35", "NVIDIA L4", "8.9")
    check_plan_compatibility(sidecar(hardware_compatibility="ampere+"), "10.13.0.35", "NVIDIA L4", "8.9")
    with pytest.raises(ArtifactError, match="Ampere or newer"):
        check_plan_compatibility(sidecar(hardware_compatibility="ampere+"), "10.13.0.35", "Tesla T4", "7.5")


def test_version_compatible_plans_run_on_later_tensorrt_only():
    check_plan_compatibility(sidecar(version_compatible=True), "11.2.0", H100["name"], "9.0")
    with pytest.raises(ArtifactError, match="runs on 10.13.0.35 or later"):
        check_plan_compatibility(sidecar(version_compatible=True), "10.8.0", H100["name"], "9.0")


def test_sidecar_without_the_build_environment_is_refused():
    doc = sidecar()
    del doc["gpu"]
    with pytest.raises(ArtifactError, match="sidecar lacks"):
        check_plan_compatibility(doc, "10.13.0.35", H100["name"], "9.0")


def test_opening_a_plan_without_tensorrt_or_gpu_is_a_clear_error(tmp_path):
    from densenet_deploy.core.deps import available
    from densenet_deploy.runners import open_runner

    if available("tensorrt"):
        import torch

        if torch.cuda.is_available():
            pytest.skip("TensorRT and a GPU are usable here")
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not a plan")
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed|no CUDA GPU"):
        open_runner(str(plan))


# --- real TensorRT (GPU machine) -----------------------------------------------------------------
def _need_tensorrt_gpu():
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install 'densenet-deploy[trt]')")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")
    return trt


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16", "int8"])
def test_tensorrt_engine_builds_runs_and_verifies(tiny_onnx, tmp_path, precision):
    trt = _need_tensorrt_gpu()
    from click.testing import CliRunner

    from densenet_deploy.cli.main import cli
    from densenet_deploy.runners import open_runner

    plan, cache = tmp_path / f"tiny.{precision}.plan", tmp_path / "timing.cache"
    flags = {
        "fp32": [],
        "fp16": ["--fp16"],
        "bf16": ["--bf16"],
        "int8": ["--int8", "--calib-data", "digits", "--samples", "64"],
    }[precision]
    result = CliRunner().invoke(
        cli,
        [
            "build-engine",
            tiny_onnx,
            *flags,
            "-o",
            str(plan),
            "--max-batch",
            "8",
            "--timing-cache",
            str(cache),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["target"] == "tensorrt" and doc["precision"] == precision and os.path.getsize(plan) > 0
    assert os.path.getsize(cache) > 0
    side = json.loads((tmp_path / f"tiny.{precision}.plan.json").read_text())
    assert side["tensorrt"]["version"] == trt.__version__
    assert side["gpu"]["name"] and side["gpu"]["compute_capability"].count(".") == 1
    assert side["profile"]["min"] == 1 and side["profile"]["max"] == 8

    x = np.random.default_rng(0).standard_normal((5, 3, 32, 32)).astype(np.float32)
    with open_runner(str(plan)) as runner:
        assert runner.backend == "tensorrt" and runner.device == "cuda:0" and runner.batch_range == (1, 8)
        assert runner.run(x).shape == (5, 10)
    check = CliRunner().invoke(cli, ["verify", "densenet_bc22_k8", str(plan), "--samples", "16", "--batch", "8"])
    assert check.exit_code == 0, check.output


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_plan_sidecar_from_another_gpu_is_refused_on_open(tiny_onnx, tmp_path):
    _need_tensorrt_gpu()
    from densenet_deploy.exporters.targets.tensorrt import build_engine
    from densenet_deploy.runners import open_runner

    plan = tmp_path / "tiny.plan"
    build_engine(tiny_onnx, str(plan), opt_batch=4, max_batch=4)  # default opt_batch 8 > 4 would be refused
    side = tmp_path / "tiny.plan.json"
    doc = json.loads(side.read_text())
    doc["gpu"]["name"] = "Some Other GPU"
    side.write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match="Some Other GPU"):
        open_runner(str(plan))
