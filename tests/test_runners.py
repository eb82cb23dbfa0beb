"""Runners: selection from the artifact, torch vs ONNX Runtime parity, providers, metadata-less ONNX."""

from __future__ import annotations

import numpy as np
import pytest

from densenet_deploy.core.errors import ArtifactError, BackendUnavailableError, DataError, DnxError
from densenet_deploy.runners import backend_for, open_runner
from densenet_deploy.runners.onnxruntime_runner import check_ort_deployment, choose_providers


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def torch_logits(batch):
    with open_runner("densenet_bc22_k8") as runner:
        return runner.run(batch)


@pytest.mark.parametrize(
    "artifact, backend",
    [
        ("model.onnx", "onnxruntime"),
        ("m.ort.onnx", "onnxruntime"),
        ("ir/model.XML", "openvino"),
        ("model.plan", "tensorrt"),
        ("model.engine", "tensorrt"),
        ("densenet121", "torch"),
        ("ckpt/best.pt", "torch"),
    ],
)
def test_backend_is_picked_from_the_artifact(artifact, backend):
    assert backend_for(artifact) == backend


def test_open_runner_rejects_unknown_backend_and_missing_file(tmp_path):
    with pytest.raises(DnxError, match="unknown backend 'tflite'"):
        open_runner("model.onnx", backend="tflite")
    with pytest.raises(ArtifactError, match="no such file"):
        open_runner(str(tmp_path / "absent.onnx"))


def test_torch_runner_describes_itself(torch_logits):
    with open_runner("densenet_bc22_k8") as runner:
        info = runner.describe()
        assert (runner.backend, runner.precision, runner.device) == ("torch", "fp32", "cpu")
        assert info["input"]["shape"] == [3, 32, 32] and runner.meta.num_classes == 10
    assert torch_logits.shape == (3, 10) and torch_logits.dtype == np.float32


def test_channels_last_gives_the_same_logits(batch, torch_logits):
    with open_runner("densenet_bc22_k8", channels_last=True, threads=1) as runner:
        np.testing.assert_allclose(runner.run(batch), torch_logits, rtol=1e-4, atol=1e-5)


def test_onnxruntime_runner_matches_torch(tiny_onnx, batch, torch_logits):
    with open_runner(tiny_onnx, threads=1) as runner:
        assert runner.backend == "onnxruntime" and runner.device == "cpu"
        assert runner.meta.model == "densenet_bc22_k8" and runner.input.shape == (3, 32, 32)
        out = runner.run(batch)
    np.testing.assert_allclose(out, torch_logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("optimization", ["disable", "basic", "extended"])
def test_onnxruntime_options_and_io_binding(tiny_onnx, batch, torch_logits, optimization):
    with open_runner(tiny_onnx, providers="cpu", optimization=optimization, io_binding=True, threads=1) as runner:
        assert runner.describe()["providers"] == ["CPUExecutionProvider"] and runner.io_binding
        np.testing.assert_allclose(runner.run(batch), torch_logits, rtol=1e-4, atol=1e-5)


def test_onnxruntime_runner_reads_the_graph_when_metadata_is_missing(tiny_onnx, tmp_path, batch, torch_logits):
    import onnx

    model = onnx.load(tiny_onnx)
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with open_runner(str(bare)) as runner:
        assert runner.meta is None and runner.input.name == "input" and runner.input.shape == (3, 32, 32)
        assert runner.precision == "fp32"
        np.testing.assert_allclose(runner.run(batch), torch_logits, rtol=1e-4, atol=1e-5)


def test_runner_checks_the_input_shape(tiny_onnx):
    with open_runner(tiny_onnx) as runner:
        with pytest.raises(DataError, match=r"expects input of shape \(N, 3, 32, 32\), got \(2, 3, 28, 28\)"):
            runner.run(np.zeros((2, 3, 28, 28), np.float32))


def test_provider_choice():
    available = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"]
    assert choose_providers(None, available) == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert choose_providers("cpu", available) == ["CPUExecutionProvider"]
    assert choose_providers("cuda", available) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(None, ["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider is not available.*onnxruntime-gpu"):
        choose_providers("cuda", ["CPUExecutionProvider"])


def test_provider_not_installed_here_is_refused(tiny_onnx):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA EP")
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider"):
        open_runner(tiny_onnx, providers="cuda")


def test_ort_deployment_for_another_cpu_is_refused():
    built = {"optimization": "all", "cpu": {"model": "Xeon", "avx2": True, "avx512": True}}
    check_ort_deployment(built, {"avx2": True, "avx512": True})
    check_ort_deployment({**built, "optimization": "extended"}, {"avx2": True, "avx512": False})
    with pytest.raises(ArtifactError, match="AVX-512 .* but this CPU has AVX2; rebuild"):
        check_ort_deployment(built, {"avx2": True, "avx512": False})


def test_openvino_runner_refuses_a_checkpoint_with_a_pointer(digits_checkpoint):
    pytest.importorskip("openvino", reason="the openvino extra")
    from densenet_deploy.core.errors import DnxError
    from densenet_deploy.runners import open_runner

    with pytest.raises(DnxError, match="takes an .onnx model or OpenVINO IR"):
        open_runner(digits_checkpoint, backend="openvino")


@pytest.fixture(scope="module")
def fixed4_onnx(tmp_path_factory):
    """densenet_bc22_k8 exported with a fixed batch of 4 (`dnx export --fixed-batch 4`)."""
    from densenet_deploy.exporters.onnx import export_onnx

    path = tmp_path_factory.mktemp("fixed") / "fixed4.onnx"
    export_onnx("densenet_bc22_k8", str(path), batch=4, samples=4)
    return str(path)


def test_batch_range_on_every_runner(tiny_onnx, fixed4_onnx):
    with open_runner(tiny_onnx) as dynamic, open_runner(fixed4_onnx) as fixed, open_runner("densenet_bc22_k8") as eager:
        assert dynamic.batch_range == (1, None) and eager.batch_range == (1, None)
        assert fixed.batch_range == (4, 4) and fixed.batch_range_text() == "fixed batch 4"
        assert dynamic.describe()["batch_range"] == [1, None]
        # A runner with a range (what a TensorRT plan's profile gives) refuses batches outside it.
        dynamic.batch_range = (2, 5)
        assert dynamic.accepts_batch(2) and dynamic.accepts_batch(5) and not dynamic.accepts_batch(6)
        for size in (1, 6):
            with pytest.raises(DataError, match=r"batch sizes 2\.\.5, got a batch of " + str(size)):
                dynamic.run(np.zeros((size, 3, 32, 32), np.float32))
        assert dynamic.run(np.zeros((3, 3, 32, 32), np.float32)).shape == (3, 10)


def test_open_runner_passes_providers_to_onnxruntime_only(tiny_onnx):
    with open_runner(tiny_onnx, providers="cpu") as runner:
        assert runner.providers == ["CPUExecutionProvider"]
    with open_runner("densenet_bc22_k8", providers="cpu") as runner:  # torch: nothing to choose
        assert runner.backend == "torch"


def test_a_zoo_name_on_a_file_backend_says_to_export_it():
    from densenet_deploy.core.errors import ArtifactError
    from densenet_deploy.runners import open_runner

    with pytest.raises(ArtifactError, match="is a zoo model, which runs on torch; export it first"):
        open_runner("densenet_bc22_k8", backend="onnxruntime")
    with pytest.raises(ArtifactError, match="no such file"):
        open_runner("no_such_model.onnx", backend="onnxruntime")
