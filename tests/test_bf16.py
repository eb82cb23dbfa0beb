"""BF16 ONNX graphs (for TensorRT's strongly typed networks): structure, parity on real digits, the gate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from densenet_deploy.core.policy import GateOptions


@pytest.fixture(scope="module")
def digits_bf16(digits_onnx, tmp_path_factory):
    pytest.importorskip("openvino", reason="the openvino extra runs the bf16 check at full sample count")
    from densenet_deploy.exporters.bf16 import convert_bf16

    out = tmp_path_factory.mktemp("bf16") / "digits.bf16.onnx"
    result = convert_bf16(digits_onnx, str(out), data="digits", samples=200)
    return str(out), result


def test_bf16_graph_is_bf16_inside_with_fp32_io(digits_bf16):
    import onnx

    path, result = digits_bf16
    model = onnx.load(path)
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {22}
    float_types = {i.data_type for i in model.graph.initializer} - {onnx.TensorProto.INT64}
    assert float_types == {onnx.TensorProto.BFLOAT16}
    assert [v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)] == [
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT,
    ]
    conv_inputs = {n.input[0] for n in model.graph.node if n.op_type == "Conv"}
    typed = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    assert conv_inputs and all(
        typed.get(name, onnx.TensorProto.BFLOAT16) == onnx.TensorProto.BFLOAT16 for name in conv_inputs
    )
    props = {p.key: p.value for p in model.metadata_props}
    assert props["dnx.precision"] == "bf16"
    assert json.loads(props["dnx.extra"])["bf16"]["opset"] == 22
    assert "openvino" in result.converter


def test_bf16_matches_fp32_on_held_out_digits(digits_bf16, digits_checkpoint):
    from densenet_deploy.verify.parity import VerifyOptions, verify

    path, result = digits_bf16
    parity = result.parity
    print(
        f"bf16 check: rel L2 {parity['rel_l2']:.3g}, agreement {parity['top1_agreement']:.4f}, "
        f"accuracy {parity['accuracy']}"
    )
    assert result.passed and parity["samples"] >= 100
    assert 0 < parity["rel_l2"] < 0.06  # bf16 rounding is visible but small
    assert parity["top1_agreement"] >= 0.98
    assert parity["accuracy"]["ref"] - parity["accuracy"]["cand"] <= 0.01

    # The written file, opened the default way, runs on OpenVINO (ONNX Runtime has no bf16 Conv) and
    # passes `dnx verify`'s bf16 gates against the PyTorch checkpoint.
    checked = verify(digits_checkpoint, path, VerifyOptions(data="digits", samples=128))
    assert checked, checked.parity.failures
    assert checked.precision == "bf16"
    assert checked.as_dict()["cand"]["backend"] == "openvino"


def test_reference_evaluator_runs_the_same_file(digits_bf16):
    """Without OpenVINO the check runs on onnx's reference evaluator; both engines must agree."""
    from densenet_deploy.core.metadata import read_onnx_meta
    from densenet_deploy.data.loading import load_data_for
    from densenet_deploy.exporters.bf16 import run_bf16_graph

    path, _ = digits_bf16
    images = load_data_for("digits", read_onnx_meta(path), split="val", limit=8).images
    by_openvino, _ = run_bf16_graph(path, images, engine="openvino")
    by_reference, name = run_bf16_graph(path, images, engine="reference")
    assert "reference" in name
    rel = np.linalg.norm(by_openvino - by_reference) / np.linalg.norm(by_reference)
    assert rel < 0.05, rel
    assert (by_openvino.argmax(1) == by_reference.argmax(1)).all()


def test_reference_engine_check_passes_on_a_random_model(tiny_onnx, tmp_path):
    from densenet_deploy.exporters.bf16 import REFERENCE_MAX_SAMPLES, convert_bf16

    out = tmp_path / "tiny.bf16.onnx"
    result = convert_bf16(tiny_onnx, str(out), engine="reference", samples=64)
    assert result.passed and result.samples == REFERENCE_MAX_SAMPLES and out.exists()
    assert "reference evaluator" in result.converter


def test_failed_parity_writes_nothing(tiny_onnx, tmp_path):
    from densenet_deploy.core.errors import VerificationFailed
    from densenet_deploy.exporters.bf16 import convert_bf16

    out = tmp_path / "strict.bf16.onnx"
    with pytest.raises(VerificationFailed, match="bf16 model failed parity") as info:
        convert_bf16(tiny_onnx, str(out), engine="reference", samples=8, gate=GateOptions(max_rel_l2=1e-7))
    assert not out.exists() and not list(tmp_path.iterdir())
    assert info.value.result.parity["rel_l2"] > 1e-7


def test_bf16_needs_the_fp32_export(digits_bf16, tmp_path):
    from densenet_deploy.core.errors import DnxError
    from densenet_deploy.exporters.bf16 import convert_bf16

    with pytest.raises(DnxError, match="already bf16"):
        convert_bf16(digits_bf16[0], str(tmp_path / "again.onnx"))


def test_build_engine_bf16_is_a_tensorrt_precision(tiny_onnx, tmp_path):
    """--bf16 --target tensorrt is accepted; without TensorRT it stops before converting, exit 2, no file."""
    import importlib.util

    from click.testing import CliRunner

    from densenet_deploy.cli.main import cli

    plan = tmp_path / "tiny.bf16.plan"
    result = CliRunner().invoke(cli, ["build-engine", tiny_onnx, "--bf16", "-o", str(plan)])
    if importlib.util.find_spec("tensorrt") is None:
        assert result.exit_code == 2, result.output
        assert "does not build bf16" not in result.output and "TensorRT is not installed" in result.output
        assert len(result.output.strip().splitlines()) == 1 and not plan.exists()
    else:
        pytest.skip("TensorRT is installed: tests/test_tensorrt.py builds the bf16 engine")


def test_onnxruntime_cannot_run_bf16_and_says_so(digits_bf16):
    from densenet_deploy.core.errors import ArtifactError
    from densenet_deploy.runners import open_runner

    with pytest.raises(ArtifactError, match="ONNX Runtime cannot load"):
        open_runner(digits_bf16[0], backend="onnxruntime")


def test_triton_refuses_a_bf16_onnx_model(digits_bf16, tmp_path):
    """Triton would load it with ONNX Runtime, which has no bf16 Conv: refused before anything is written."""
    from densenet_deploy.core.errors import DnxError
    from densenet_deploy.serve.repository import write_repository

    repo = tmp_path / "repo"
    with pytest.raises(DnxError, match="bf16 graph, which ONNX Runtime"):
        write_repository([digits_bf16[0]], str(repo))
    assert not repo.exists() or not any(repo.iterdir())


def test_bad_arguments_are_one_line_errors(tiny_onnx, tmp_path):
    import shutil

    from densenet_deploy.core.errors import DnxError
    from densenet_deploy.exporters.bf16 import convert_bf16
    from densenet_deploy.exporters.fp16 import convert_fp16

    own = tmp_path / "own.onnx"
    shutil.copy(tiny_onnx, own)
    before = own.read_bytes()
    for convert in (convert_bf16, convert_fp16):
        with pytest.raises(DnxError, match="would overwrite the fp32 model"):
            convert(str(own), str(own))
    assert own.read_bytes() == before
    with pytest.raises(DnxError, match="samples must be >= 1"):
        convert_bf16(tiny_onnx, str(tmp_path / "x.onnx"), samples=0)


def test_labelled_data_gates_agreement_and_accuracy(digits_onnx, tmp_path):
    """On real digits the calibration gates apply: an impossible agreement bound fails the check."""
    from densenet_deploy.core.errors import VerificationFailed
    from densenet_deploy.exporters.bf16 import convert_bf16

    out = tmp_path / "d.bf16.onnx"
    with pytest.raises(VerificationFailed, match="agreement"):
        convert_bf16(
            digits_onnx, str(out), data="digits", samples=16, engine="reference", gate=GateOptions(min_agreement=1.01)
        )
    assert not out.exists()
