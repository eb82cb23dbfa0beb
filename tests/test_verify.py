"""`dnx verify`: metrics contract, exit codes (0 pass, 1 below thresholds, 2 bad input), thresholds."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from densenet_deploy.cli import cli

CONTRACT = {"samples", "max_abs_diff", "mean_abs_diff", "rel_l2", "cosine_min", "centered_cosine_min",
            "top1_agreement", "accuracy", "passed"}


def dnx(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_torch_vs_onnx_passes_with_the_contract_keys(tiny_onnx):
    result = dnx("verify", "densenet_bc22_k8", tiny_onnx, "--samples", 24, "--batch-size", 5, "--json")
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


def test_precision_aware_default_thresholds():
    from densenet_deploy.verify import default_thresholds

    fp32, fp16, int8 = (default_thresholds(p) for p in ("fp32", "fp16", "int8"))
    assert fp32.rel_atol == 1e-3 and fp32.max_rel_l2 == 1e-3 and fp32.min_agreement >= 0.99
    assert math.isinf(fp16.rel_atol) and fp16.max_rel_l2 > fp32.max_rel_l2
    assert int8.min_agreement < fp16.min_agreement and int8.max_rel_l2 > fp16.max_rel_l2
    fp16.min_agreement = 0.0  # a copy: the table itself is not changed
    assert default_thresholds("fp16").min_agreement == 0.98


def test_verify_python_api_raises_on_failure(tiny_onnx):
    from densenet_deploy.errors import VerificationFailed
    from densenet_deploy.verify import verify

    result = verify("densenet_bc22_k8", tiny_onnx, samples=4)
    assert result and result.as_dict()["passed"]
    with pytest.raises(VerificationFailed) as info:
        verify(tiny_onnx, "densenet_bc10_k4", samples=4, raise_on_failure=True)
    assert info.value.exit_code == 1 and not info.value.result
