"""OpenVINO runner and target: parity with ONNX Runtime/torch, IR round trip, INT8 recipes, and the safety nets."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("openvino", reason="openvino (extra 'openvino') is not installed")

from densenet_deploy.core.errors import DnxError, VerificationFailed  # noqa: E402


def _ort(path, x):
    from densenet_deploy.runners.onnxruntime_runner import OnnxRuntimeRunner

    with OnnxRuntimeRunner(path, providers="cpu") as runner:
        return runner.run(x)


def _rel_l2(ref, cand):
    return float(np.linalg.norm(cand - ref) / np.linalg.norm(ref))


@pytest.fixture(scope="module")
def val_digits(digits_onnx):
    from densenet_deploy.core.metadata import read_onnx_meta
    from densenet_deploy.data.loading import load_data_for

    return load_data_for("digits", read_onnx_meta(digits_onnx), split="val")


@pytest.fixture(scope="module")
def torch_digits(digits_checkpoint, val_digits):
    from densenet_deploy.runners import open_runner

    with open_runner(digits_checkpoint) as runner:
        return runner.run(val_digits.images)


@pytest.fixture(scope="module")
def asym_onnx(tiny_onnx, tmp_path_factory):
    """ONNX Runtime's quantize_static defaults: asymmetric uint8 activations (crashes OpenVINO 2026.4)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.items = iter([{"input": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.items, None)

    path = str(tmp_path_factory.mktemp("asym") / "asym.onnx")
    quantize_static(
        tiny_onnx,
        path,
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return path


# --- runner ------------------------------------------------------------------------------------------
def test_runner_fp32_matches_onnxruntime(tiny_onnx):
    from densenet_deploy.runners import open_runner

    x = np.random.default_rng(1).standard_normal((5, 3, 32, 32)).astype(np.float32)
    with open_runner(tiny_onnx, backend="openvino") as runner:
        out = runner.run(x)
        assert runner.inference_precision == "f32"  # not OpenVINO's bf16 default on AMX CPUs
        one = runner.run(x[:1])  # a second static batch size
        info = runner.describe()
    ref = _ort(tiny_onnx, x)
    assert out.shape == (5, 10)
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
    assert np.abs(one - ref[:1]).max() <= 1e-4 * np.abs(ref).max()
    assert info["backend"] == "openvino" and info["inference_precision"] == "f32" and info["hint"] == "latency"


def test_runner_fp32_matches_torch_on_digits(digits_onnx, val_digits, torch_digits):
    from densenet_deploy.runners.openvino import OpenVinoRunner

    with OpenVinoRunner(digits_onnx, threads=1) as runner:
        out = runner.run(val_digits.images)
    assert _rel_l2(torch_digits, out) < 1e-4
    assert (out.argmax(1) == torch_digits.argmax(1)).all()


def test_runner_rejects_bad_options_and_input(tiny_onnx):
    from densenet_deploy.runners.openvino import OpenVinoRunner

    with pytest.raises(DnxError, match="performance hint"):
        OpenVinoRunner(tiny_onnx, hint="fastest")
    with pytest.raises(DnxError, match="inference precision"):
        OpenVinoRunner(tiny_onnx, precision_hint="int4")
    with OpenVinoRunner(tiny_onnx) as runner, pytest.raises(DnxError, match=r"expects input of shape \(N, 3, 32, 32\)"):
        runner.run(np.zeros((1, 3, 16, 16), np.float32))


def test_throughput_mode_uses_an_async_queue(tiny_onnx):
    from densenet_deploy.runners.openvino import OpenVinoRunner

    with OpenVinoRunner(tiny_onnx, threads=1) as runner:
        result = runner.throughput(np.zeros((2, 3, 32, 32), np.float32), seconds=0.3, warmup=0.1)
    assert result["images_per_s"] > 0 and result["requests"] >= 1 and result["batches"] >= 1


# --- IR build -----------------------------------------------------------------------------------------
def test_fp32_ir_round_trip_with_sidecar(tiny_onnx, tmp_path):
    from densenet_deploy.core.metadata import read_onnx_meta
    from densenet_deploy.core.sidecars import read_sidecar
    from densenet_deploy.exporters.targets.openvino import build_openvino
    from densenet_deploy.runners import open_runner

    out = str(tmp_path / "tiny.xml")
    result = build_openvino(tiny_onnx, out, precision="fp32", verify_samples=16).as_dict()
    assert sorted(os.listdir(tmp_path)) == ["tiny.bin", "tiny.xml", "tiny.xml.json"]
    meta, doc = read_sidecar(out)
    assert meta == read_onnx_meta(tiny_onnx).replace(precision="fp32")
    assert doc["openvino"]["inference_precision"] == "f32" and doc["verification"]["passed"]
    assert result["parity"]["rel_l2"] < 1e-4
    x = np.random.default_rng(2).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with open_runner(out) as runner:  # .xml -> openvino
        assert runner.backend == "openvino" and runner.precision == "fp32"
        assert _rel_l2(_ort(tiny_onnx, x), runner.run(x)) < 1e-4
    from densenet_deploy.reports.info import describe, describe_onnx

    info, onnx_info = (
        describe(out).as_dict(),
        describe_onnx(tiny_onnx).as_dict(),
    )  # `dnx info model.xml` reads the sidecar
    assert (info["model"], info["params"], info["macs"], info["target"]) == (
        onnx_info["model"],
        onnx_info["params"],
        onnx_info["macs"],
        "openvino",
    )


def test_bf16_digits_agrees_with_torch(digits_onnx, val_digits, torch_digits, tmp_path):
    from densenet_deploy.exporters.targets.openvino import build_openvino
    from densenet_deploy.runners import open_runner

    out = str(tmp_path / "digits.bf16.xml")
    build_openvino(digits_onnx, out, precision="bf16", verify_data="digits", verify_samples=64)
    with open_runner(out) as runner:
        assert runner.precision == "bf16" and runner.inference_precision == "bf16"  # read from the sidecar
        cand = runner.run(val_digits.images)
    _check_close_to_fp32(torch_digits, cand, val_digits.labels)


def test_int8_nncf_digits_within_one_point(digits_onnx, val_digits, torch_digits, tmp_path):
    from densenet_deploy.exporters.targets.openvino import build_openvino
    from densenet_deploy.runners import open_runner

    out = str(tmp_path / "digits.int8.xml")
    result = build_openvino(
        digits_onnx, out, precision="int8", recipe="nncf", calib_data="digits", samples=128, verify_samples=64
    ).as_dict()
    assert result["fake_quantize_nodes"] > 0 and result["recipe"] == "nncf"
    meta, doc = json.load(open(out + ".json"))["metadata"], json.load(open(out + ".json"))
    assert (
        json.loads(meta["dnx.calibration"])["method"] == "nncf" and doc["openvino"]["nncf"]["preset"] == "performance"
    )
    with open_runner(out) as runner:
        assert runner.precision == "int8"
        cand = runner.run(val_digits.images)
    _check_close_to_fp32(torch_digits, cand, val_digits.labels)


def test_int8_qdq_recipe_digits(digits_onnx, val_digits, torch_digits, tmp_path):
    from densenet_deploy.exporters.targets.openvino import build_openvino
    from densenet_deploy.runners import open_runner

    out = str(tmp_path / "digits.qdq.xml")
    result = build_openvino(
        digits_onnx, out, precision="int8", recipe="qdq", calib_data="digits", samples=128, verify_samples=64
    ).as_dict()
    assert result["fake_quantize_nodes"] > 0 and result["recipe"] == "qdq"
    with open_runner(out) as runner:
        cand = runner.run(val_digits.images)
    _check_close_to_fp32(torch_digits, cand, val_digits.labels)


def _check_close_to_fp32(ref, cand, labels):
    agreement = float((ref.argmax(1) == cand.argmax(1)).mean())
    acc_ref = float((ref.argmax(1) == labels).mean())
    acc_cand = float((cand.argmax(1) == labels).mean())
    assert agreement >= 0.98, agreement
    assert acc_ref - acc_cand <= 0.01, (acc_ref, acc_cand)


# --- safety nets ------------------------------------------------------------------------------------
def test_verification_failure_writes_nothing(tiny_onnx, tmp_path):
    from densenet_deploy.core.policy import GateOptions
    from densenet_deploy.exporters.targets.openvino import build_openvino

    out = tmp_path / "strict.xml"
    with pytest.raises(VerificationFailed, match="disagrees with ONNX Runtime.*nothing was written"):
        # bf16 cannot meet fp32's 1e-9 gate: the check must refuse before the move into place
        build_openvino(
            tiny_onnx,
            str(out),
            precision="bf16",
            verify_samples=8,
            gate=GateOptions(max_rel_l2=1e-9, min_agreement=1.0),
        )
    assert os.listdir(tmp_path) == []


def test_verify_ir_catches_wrong_logits(tiny_onnx, tmp_path):
    """An IR whose logits differ from the reference (here: the classifier weights negated in the IR's
    source, standing in for OpenVINO computing the wrong thing) is refused on random data too."""
    import onnx
    import openvino as ov
    from onnx import numpy_helper

    from densenet_deploy.core.metadata import read_onnx_meta
    from densenet_deploy.core.sidecars import write_sidecar
    from densenet_deploy.exporters.targets.openvino import verify_ir

    proto = onnx.load(tiny_onnx)
    gemm = next(n for n in proto.graph.node if n.op_type in ("Gemm", "MatMul"))
    weight = next(t for t in proto.graph.initializer if t.name == gemm.input[1])
    weight.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(weight), weight.name))
    wrong = str(tmp_path / "wrong.onnx")
    onnx.save(proto, wrong)
    xml = str(tmp_path / "wrong.xml")
    ov.save_model(ov.convert_model(wrong), xml, compress_to_fp16=False)
    meta = read_onnx_meta(tiny_onnx)
    write_sidecar(xml, meta)
    with pytest.raises(VerificationFailed, match="rel L2"):
        verify_ir(xml, tiny_onnx, meta, data="random", samples=8)


def test_child_process_crash_is_a_one_line_error(asym_onnx):
    from densenet_deploy.exporters.targets.openvino_child import run_in_child

    # Really crashes: OpenVINO 2026.4 segfaults compiling this model at a static batch.
    with pytest.raises(DnxError, match=r"OpenVINO crashed \(SIG\w+\)") as info:
        run_in_child(asym_onnx, np.zeros((1, 3, 32, 32), np.float32), unchecked=True)
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


def test_child_process_compile_error_is_reported(tiny_onnx, tmp_path):
    import openvino as ov

    from densenet_deploy.core.metadata import read_onnx_meta
    from densenet_deploy.core.sidecars import write_sidecar
    from densenet_deploy.exporters.targets.openvino_child import run_in_child

    xml = str(tmp_path / "broken.xml")
    ov.save_model(ov.convert_model(tiny_onnx), xml, compress_to_fp16=False)
    write_sidecar(xml, read_onnx_meta(tiny_onnx))
    with open(tmp_path / "broken.bin", "r+b") as fh:
        fh.truncate(100)  # weights cut short: OpenVINO refuses to read the IR
    with pytest.raises(DnxError, match="OpenVINO failed on .*broken.xml") as info:
        run_in_child(xml, np.zeros((1, 3, 32, 32), np.float32))
    assert info.value.exit_code == 2 and "\n" not in str(info.value)


def test_asymmetric_qdq_is_refused(asym_onnx, tmp_path):
    from click.testing import CliRunner

    from densenet_deploy.cli.main import cli
    from densenet_deploy.runners.openvino import OpenVinoRunner

    with pytest.raises(DnxError, match="asymmetrically.*OpenVINO 2026.4 crashes"):
        OpenVinoRunner(asym_onnx)
    out = tmp_path / "asym.xml"
    result = CliRunner().invoke(cli, ["build-engine", asym_onnx, "--target", "openvino", "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "asymmetrically" in result.output and "Traceback" not in result.output
    assert os.listdir(tmp_path) == []


def test_cli_build_engine_openvino(tiny_onnx, tmp_path):
    from click.testing import CliRunner

    from densenet_deploy.cli.main import cli

    out = tmp_path / "tiny.bf16.xml"
    result = CliRunner().invoke(
        cli, ["build-engine", tiny_onnx, "--target", "openvino", "--bf16", "-o", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["target"] == "openvino" and doc["precision"] == "bf16" and doc["output"] == str(out)
    assert doc["openvino"]["inference_precision"] == "bf16" and doc["openvino"]["parity"]["passed"]
    assert (tmp_path / "tiny.bf16.bin").is_file() and (tmp_path / "tiny.bf16.xml.json").is_file()
    # Truthful labels: what OpenVINO executes on this CPU, as its own compiled model reports it (bf16 where
    # the CPU has bf16, f32 where it has not), in the build's JSON, the sidecar and the runner's label.
    import openvino as ov

    from densenet_deploy.runners.openvino import OpenVinoRunner

    compiled = ov.Core().compile_model(str(out), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    executed = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    assert doc["openvino"]["executed_precision"] == executed
    assert json.loads((tmp_path / "tiny.bf16.xml.json").read_text())["openvino"]["executed_precision"] == executed
    with OpenVinoRunner(str(out)) as runner:
        assert runner.executed_precision == executed and runner.describe()["executed_precision"] == executed
    with OpenVinoRunner(tiny_onnx) as runner:  # an fp32 model asks for f32 and runs f32 everywhere
        assert runner.executed_precision == "f32"


# --- which data the pre-write check uses -----------------------------------------------------------
@pytest.fixture(scope="module")
def digit_arrays(tiny_onnx, tmp_path_factory):
    """Real digits, preprocessed for the tiny model, saved as .npz files of 1, 3 and 10 images."""
    from densenet_deploy.core.metadata import read_onnx_meta
    from densenet_deploy.data.loading import load_data_for

    pytest.importorskip("sklearn", reason="scikit-learn provides the digits")
    data = load_data_for("digits", read_onnx_meta(tiny_onnx), split="val", limit=10)
    root = tmp_path_factory.mktemp("arrays")
    paths = {}
    for n in (1, 3, 10):
        paths[n] = str(root / f"digits{n}.npz")
        np.savez(paths[n], images=data.images[:n], labels=data.labels[:n])
    return paths


def test_verify_data_uses_all_of_a_source_without_a_held_out_split(tiny_onnx, digit_arrays, tmp_path):
    """As `dnx verify --data FILE.npz`: all of an .npz (it has no train/val split of its own), not its 20 %."""
    from densenet_deploy.data.loading import held_out_split
    from densenet_deploy.exporters.targets.openvino import build_openvino

    result = build_openvino(tiny_onnx, str(tmp_path / "a.xml"), verify_data=digit_arrays[10]).as_dict()
    assert result["parity"]["samples"] == 10 and result["parity"]["data"] == digit_arrays[10]
    result = build_openvino(tiny_onnx, str(tmp_path / "b.xml"), verify_data="digits", verify_samples=32).as_dict()
    assert result["parity"]["data"] == "digits (val split)"  # a source with its own held-out split
    assert (held_out_split("digits"), held_out_split("cifar10:/x"), held_out_split(digit_arrays[1])) == (
        "val",
        "val",
        "all",
    )
    split_dir = tmp_path / "folders"
    for part in ("train", "val"):
        (split_dir / part).mkdir(parents=True)
    assert held_out_split(str(split_dir)) == "val" and held_out_split(str(tmp_path)) == "all"


def test_a_one_image_verify_source_is_checked_and_an_empty_held_out_split_names_the_source(
    tiny_onnx, digit_arrays, tmp_path, caplog
):
    from densenet_deploy.exporters.targets.openvino import build_openvino

    with caplog.at_level("WARNING", logger="densenet_deploy.exporters.targets.openvino"):
        result = build_openvino(tiny_onnx, str(tmp_path / "one.xml"), verify_data=digit_arrays[1]).as_dict()
    assert result["parity"]["samples"] == 1
    assert any("only 1 sample of" in r.getMessage() and digit_arrays[1] in r.getMessage() for r in caplog.records)
    # The calibration source's held-out (val) split is empty for one image: the error names it.
    out = tmp_path / "int8.xml"
    with pytest.raises(DnxError, match=r"verification data .*digits1\.npz \(val split\).*holds no images") as info:
        build_openvino(tiny_onnx, str(out), precision="int8", recipe="nncf", calib_data=digit_arrays[1])
    assert info.value.exit_code == 2 and "\n" not in str(info.value)
    assert not out.exists() and not (tmp_path / "int8.bin").exists()


def test_fewer_samples_than_asked_and_a_tiny_check_are_warned_about(tiny_onnx, digit_arrays, tmp_path, caplog):
    """3 images: NNCF calibrates on the 2 of the train split and the check runs on 1 (val): both said."""
    from densenet_deploy.core.policy import GateOptions
    from densenet_deploy.exporters.targets.openvino import build_openvino

    loose = GateOptions(max_rel_l2=1.0, min_agreement=0.0, max_accuracy_drop=100.0)  # 1 sample: the warning's point
    with caplog.at_level("WARNING", logger="densenet_deploy.exporters.targets.openvino"):
        result = build_openvino(
            tiny_onnx,
            str(tmp_path / "q.xml"),
            precision="int8",
            recipe="nncf",
            calib_data=digit_arrays[3],
            samples=5000,
            gate=loose,
        ).as_dict()
    messages = [r.getMessage() for r in caplog.records]
    assert result["calibration"]["samples"] == 2 and result["parity"]["samples"] == 1
    assert any("only 2 calibration samples" in m and "fewer than --samples 5000" in m for m in messages), messages
    assert any("only 1 sample of" in m and "(val split)" in m for m in messages), messages
    assert all("\n" not in m for m in messages)


# --- inputs OpenVINO is not built from --------------------------------------------------------------
def test_build_openvino_refuses_a_bf16_graph_and_an_ort_deployment_before_converting(tiny_onnx, tmp_path):
    from click.testing import CliRunner

    from densenet_deploy.cli.main import cli
    from densenet_deploy.exporters.bf16 import convert_bf16
    from densenet_deploy.exporters.targets.openvino import build_openvino

    bf16 = str(tmp_path / "t.bf16.onnx")
    convert_bf16(tiny_onnx, bf16, samples=4)
    deployment = tmp_path / "t.ort.onnx"
    assert (
        CliRunner().invoke(cli, ["build-engine", tiny_onnx, "--target", "onnxruntime", "-o", str(deployment)]).exit_code
        == 0
    )
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(DnxError, match="is a bf16 graph.*needs the fp32 export"):
        build_openvino(bf16, str(tmp_path / "a.xml"), precision="bf16")
    with pytest.raises(DnxError, match="is an ONNX Runtime deployment .*com.microsoft"):
        build_openvino(str(deployment), str(tmp_path / "b.xml"))
    assert sorted(os.listdir(tmp_path)) == before


def test_a_bad_data_source_stops_the_build_before_any_work(tiny_onnx, tmp_path):
    from densenet_deploy.core.errors import DataError
    from densenet_deploy.exporters.targets.openvino import build_openvino

    missing = str(tmp_path / "missing.npz")
    with pytest.raises(DataError, match="^--verify-data: .*missing.npz"):
        build_openvino(tiny_onnx, str(tmp_path / "v.xml"), verify_data=missing)
    with pytest.raises(DataError, match="^--calib-data: .*missing.npz"):
        build_openvino(tiny_onnx, str(tmp_path / "q.xml"), precision="int8", calib_data=missing)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
