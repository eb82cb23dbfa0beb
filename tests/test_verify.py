"""`dnx verify`: metrics contract, exit codes (0 pass, 1 below thresholds, 2 bad input), thresholds."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from densenet_deploy.cli.main import cli

CONTRACT = {
    "samples",
    "max_abs_diff",
    "mean_abs_diff",
    "rel_l2",
    "cosine_min",
    "centered_cosine_min",
    "top1_agreement",
    "accuracy",
    "passed",
}


def dnx(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_torch_vs_onnx_passes_with_the_contract_keys(tiny_onnx):
    result = dnx("verify", "densenet_bc22_k8", tiny_onnx, "--samples", 24, "--batch", 5, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # one JSON object, nothing else on stdout
    assert CONTRACT <= set(doc) and doc["passed"] is True and doc["samples"] == 24
    assert doc["rel_l2"] < 1e-4 and doc["centered_cosine_min"] > 0.9999
    assert doc["ref"]["backend"] == "torch" and doc["cand"]["backend"] == "onnxruntime"
    assert doc["precision"] == "fp32" and doc["data"] == "random"
    assert any("proves little" in w for w in doc["warnings"])


def test_labelled_data_reports_accuracy(tiny_onnx):
    result = dnx("verify", tiny_onnx, "densenet_bc22_k8", "--data", "digits", "--samples", 16, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc["accuracy"]) == {"ref", "cand"} and doc["data"] == "digits (val split)"
    assert doc["accuracy"]["ref"] == doc["accuracy"]["cand"]


def test_a_different_model_fails_with_exit_1_after_printing_results(tiny_onnx):
    # Same input and classes, other architecture: logits differ, verify must say so.
    result = dnx("verify", tiny_onnx, "densenet_bc10_k4", "--samples", 8, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["passed"] is False and doc["failures"]
    assert "does not match" in result.stderr


def test_text_output_is_a_table(tiny_onnx):
    result = dnx("verify", "densenet_bc22_k8", tiny_onnx, "--samples", 4)
    assert result.exit_code == 0
    assert "centered cos min" in result.stdout and "PASS" in result.stdout


def test_threshold_options_are_applied(tiny_onnx):
    # An impossible bound turns the same pair into a failure (exit 1): the option reaches the check.
    result = dnx("verify", "densenet_bc22_k8", tiny_onnx, "--samples", 4, "--atol", 0, "--json")
    assert result.exit_code == 1 and "max |diff|" in json.loads(result.stdout)["failures"][0]


def test_mismatched_inputs_are_a_usage_error(tiny_onnx):
    result = dnx("verify", "densenet121", tiny_onnx, "--samples", 2)
    assert result.exit_code == 2 and "not the same model" in result.stderr


def test_verify_python_api_raises_on_failure(tiny_onnx):
    from densenet_deploy.core.errors import VerificationFailed
    from densenet_deploy.verify.parity import VerifyOptions, verify

    result = verify("densenet_bc22_k8", tiny_onnx, VerifyOptions(samples=4))
    assert result and result.as_dict()["passed"]
    with pytest.raises(VerificationFailed) as info:
        verify(tiny_onnx, "densenet_bc10_k4", VerifyOptions(samples=4), raise_on_failure=True)
    assert info.value.exit_code == 1 and not info.value.result


# --- --provider --------------------------------------------------------------------------------------
def test_verify_provider_cpu_runs_and_an_uninstalled_one_is_refused(tiny_onnx):
    import onnxruntime as ort

    result = dnx("verify", "densenet_bc22_k8", tiny_onnx, "--samples", 4, "--provider", "cpu", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cand"]["providers"] == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA EP")
    refused = dnx("verify", "densenet_bc22_k8", tiny_onnx, "--provider", "cuda")
    assert refused.exit_code == 2 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "CUDAExecutionProvider is not available" in refused.stderr
    assert "installed: " in refused.stderr and "CPUExecutionProvider" in refused.stderr
    # --provider where nothing runs on ONNX Runtime is a usage error too, not silently ignored.
    torch_only = dnx("verify", "densenet_bc22_k8", "densenet_bc22_k8", "--provider", "cpu")
    assert torch_only.exit_code == 2 and "onnxruntime backend" in torch_only.stderr


# --- batch ranges ------------------------------------------------------------------------------------
def test_run_all_chunks_and_pads_inside_the_runner_batch_range(tiny_onnx):
    import numpy as np

    from densenet_deploy.runners import open_runner
    from densenet_deploy.runners.batches import run_batches

    images = np.random.default_rng(0).standard_normal((11, 3, 32, 32)).astype(np.float32)
    with open_runner(tiny_onnx) as runner:
        expected = runner.run(images)
        runner.batch_range = (3, 5)  # a plan built with --min-batch 3 --max-batch 5; it refuses 1, 2, 6, 16
        seen = []
        run = runner.run
        runner.run = lambda batch: seen.append(len(batch)) or run(batch)  # records the chunk sizes
        out = run_batches(runner, images, batch_size=16)  # 16 > max: chunks of 5, and the last one (1) padded to 3
        assert seen == [5, 5, 3] and out.shape == (11, 10)
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
        seen.clear()
        np.testing.assert_allclose(run_batches(runner, images[:2], batch_size=1), expected[:2], rtol=1e-4, atol=1e-4)
        assert seen == [3]  # batch size 1 < min: chunks of 3, padded


def test_verify_fixed_batch_export_above_and_below_batch_size(tiny_onnx, tmp_path):
    from densenet_deploy.exporters.onnx import export_onnx

    fixed = str(tmp_path / "fixed4.onnx")
    export_onnx("densenet_bc22_k8", fixed, batch=4, samples=4)
    for batch_size in (16, 3):  # (`dnx export --fixed-batch 4`, verified with --batch 16 and 3; 10 samples)
        result = dnx("verify", tiny_onnx, fixed, "--samples", 10, "--batch", batch_size, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["cand"]["batch_range"] == [4, 4]


# --- different models, mismatched sidecars -----------------------------------------------------------
def test_different_models_get_a_warning_naming_both(tiny_onnx):
    result = dnx("verify", "densenet40_k12", tiny_onnx, "--samples", 4, "--json")
    assert result.exit_code == 1  # still compared (a fine-tune may be checked against its base), and it differs
    warnings = json.loads(result.stdout)["warnings"]
    assert any("densenet40_k12" in w and "densenet_bc22_k8" in w for w in warnings), warnings
    same = dnx("verify", "densenet_bc22_k8", tiny_onnx, "--samples", 4, "--json")
    assert not any("fine-tune" in w for w in json.loads(same.stdout)["warnings"])


@pytest.fixture(scope="module")
def ort_deployment(tiny_onnx, tmp_path_factory):
    from densenet_deploy.exporters.targets.onnxruntime import build_ort_deployment

    out = tmp_path_factory.mktemp("ortdep") / "tiny.ort.onnx"
    build_ort_deployment(tiny_onnx, str(out), optimization="extended", threads=1)
    return str(out)


def test_sidecar_records_the_artifact_hash(ort_deployment):
    from densenet_deploy.core.io import sha256_file

    with open(ort_deployment + ".json") as fh:
        doc = json.load(fh)
    assert doc["artifact_sha256"] == sha256_file(ort_deployment)


def test_a_sidecar_copied_beside_another_file_is_refused(tiny_onnx, ort_deployment, tmp_path):
    import shutil

    from densenet_deploy.core.errors import ArtifactError
    from densenet_deploy.core.sidecars import read_artifact_meta

    # `cp d.int8.ort.onnx.json d.ort.onnx.json`: here a deployment's sidecar beside the plain fp32 export.
    other = tmp_path / "plain.ort.onnx"
    shutil.copy(tiny_onnx, other)
    shutil.copy(ort_deployment + ".json", str(other) + ".json")
    result = dnx("verify", "densenet_bc22_k8", other, "--samples", 2)
    assert result.exit_code == 2 and result.stdout == "" and result.stderr.count("\n") == 1
    assert f"sidecar {other}.json describes another file" in result.stderr
    assert "rebuild, or restore the right sidecar" in result.stderr
    with pytest.raises(ArtifactError, match="describes another file"):
        read_artifact_meta(str(other) + ".json")
    # A sidecar from before the hash was recorded is read as it is.
    with open(str(other) + ".json") as fh:
        doc = json.load(fh)
    del doc["artifact_sha256"]
    with open(str(other) + ".json", "w") as fh:
        json.dump(doc, fh)
    assert dnx("verify", "densenet_bc22_k8", other, "--samples", 2).exit_code == 0
    # And the right sidecar is accepted.
    assert dnx("verify", "densenet_bc22_k8", ort_deployment, "--samples", 2).exit_code == 0


def test_random_data_warning_is_said_once_per_command(tiny_onnx, tmp_path, caplog):
    def noise_warnings():
        count = sum("seeded noise proves little" in r.getMessage() for r in caplog.records)
        caplog.clear()
        return count

    with caplog.at_level("WARNING"):
        # calibration and the parity check after it both read `random`: one warning, not two
        out = dnx(
            "build-engine",
            tiny_onnx,
            "--target",
            "onnxruntime",
            "--int8",
            "--calib-data",
            "random",
            "--samples",
            16,
            "-o",
            tmp_path / "t.int8.ort.onnx",
        )
        assert out.exit_code == 0, out.output
        assert noise_warnings() == 1
        # the next command (same process) says it again
        assert dnx("verify", "densenet_bc22_k8", tiny_onnx, "--data", "random", "--samples", 2).exit_code == 0
        assert noise_warnings() == 1
