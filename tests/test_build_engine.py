"""`dnx build-engine`: the onnxruntime target end to end on the CPU; TensorRT refused cleanly here."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from densenet_deploy.cli.main import cli
from densenet_deploy.core.errors import DnxError
from densenet_deploy.core.metadata import read_onnx_meta
from densenet_deploy.core.sidecars import read_sidecar


def dnx(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _tensorrt_usable() -> bool:
    from densenet_deploy.core.deps import available

    if not available("tensorrt"):
        return False
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def ort_fp32(tiny_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("ort") / "tiny.ort.onnx"
    result = dnx("build-engine", tiny_onnx, "--target", "onnxruntime", "-o", out, "--json")
    assert result.exit_code == 0, result.output
    return str(out), json.loads(result.stdout)


def test_onnxruntime_target_writes_model_and_sidecar(ort_fp32, tiny_onnx):
    out, doc = ort_fp32
    assert doc["output"] == out and doc["target"] == "onnxruntime" and doc["precision"] == "fp32"
    assert doc["sidecar"] == out + ".json" and doc["seconds"] >= 0
    assert doc["onnxruntime"]["parity"]["passed"]
    meta, sidecar = read_sidecar(out)
    # sidecar round trip: the same description as the source, plus how it was built
    assert meta == read_onnx_meta(tiny_onnx)
    assert sidecar["onnxruntime"]["optimization"] == "all" and sidecar["onnxruntime"]["optimized_offline"]
    assert sidecar["precision"] == "fp32" and len(sidecar["source_onnx_sha256"]) == 64
    assert read_onnx_meta(out) == meta  # ORT keeps metadata_props in the optimised model


def test_ort_deployment_opens_with_recorded_settings_and_matches_torch(ort_fp32):
    from densenet_deploy.runners import open_runner

    out, _ = ort_fp32
    x = np.random.default_rng(2).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with open_runner(out) as runner, open_runner("densenet_bc22_k8") as ref:
        assert runner.deployment["optimization"] == "all"
        assert runner.optimization == "disable"  # already applied offline
        assert runner.describe()["providers"] == ["CPUExecutionProvider"]
        np.testing.assert_allclose(runner.run(x), ref.run(x), rtol=1e-4, atol=1e-5)


def test_ort_deployment_verifies_against_torch(ort_fp32):
    out, _ = ort_fp32
    result = dnx("verify", "densenet_bc22_k8", out, "--samples", 16, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["passed"] is True


def test_optimization_level_is_recorded(tiny_onnx, tmp_path):
    out = tmp_path / "m.ort.onnx"
    result = dnx("build-engine", tiny_onnx, "--target", "onnxruntime", "--optimization", "extended", "-o", out)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout
    assert read_sidecar(out)[1]["onnxruntime"]["optimization"] == "extended"


@pytest.mark.parametrize("flag, precision", [("--fp16", "fp16"), ("--int8", "int8")])
def test_onnxruntime_target_reduced_precision_builds_runs_and_verifies(tiny_onnx, tmp_path, flag, precision):
    out = tmp_path / f"tiny.{precision}.ort.onnx"
    extra = ["--calib-data", "digits", "--samples", "64"] if precision == "int8" else []
    result = dnx("build-engine", tiny_onnx, "--target", "onnxruntime", flag, *extra, "-o", out, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["precision"] == precision and "precision_step" in doc
    meta = read_sidecar(out)[0]
    assert meta.precision == precision
    if precision == "int8":  # ORT-only variant: uint8 activations (ORT's fast x86 int8 kernels)
        assert meta.calibration["activation_type"] == "uint8"
    check = dnx("verify", "densenet_bc22_k8", out, "--samples", 16, "--json")
    assert check.exit_code == 0, check.output
    assert json.loads(check.stdout)["cand"]["precision"] == precision


def test_tensorrt_target_without_tensorrt_or_gpu_fails_before_any_work(tiny_onnx, tmp_path):
    if _tensorrt_usable():
        pytest.skip("TensorRT and a CUDA GPU are usable here; the GPU tests cover this target")
    out = tmp_path / "tiny.plan"
    result = dnx("build-engine", tiny_onnx, "-o", out, "--int8", "--calib-data", "random")
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert message.startswith("error: cannot build a TensorRT engine here:") and "\n" not in message
    assert "--target onnxruntime" in message and "Traceback" not in result.output
    assert ("TensorRT is not installed" in message) or ("no CUDA GPU" in message)
    assert os.listdir(tmp_path) == []  # no plan, no sidecar, no temporary file


@pytest.mark.parametrize(
    "args, message",
    [
        (["--calib-data", "digits"], "--calib-data is only used with --int8"),
        (["--bf16", "--fp16"], "choose one precision, not --fp16 and --bf16"),
        (["--int8"], "--int8 needs calibration data"),
        (["--bf16"], "target onnxruntime does not build bf16"),
        (["--samples", "8"], "--samples is the sample count of the precision step"),
        (["--fp16", "--method", "minmax"], "--method is the calibration method of --int8; drop it"),
    ],
)
def test_bad_option_combinations_exit_2_without_files(tiny_onnx, tmp_path, args, message):
    out = tmp_path / "x.ort.onnx"
    result = dnx("build-engine", tiny_onnx, "--target", "onnxruntime", *args, "-o", out)
    assert result.exit_code == 2 and message in result.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "target, args, message",
    [
        ("onnxruntime", ["--recipe", "qdq"], "--target onnxruntime does not use --recipe (openvino only)"),
        ("onnxruntime", ["--recipe", "nncf"], "--recipe (openvino only)"),  # explicit, even if the default value
        (
            "onnxruntime",
            ["--max-batch", "4", "--verify-data", "digits"],
            "does not use --max-batch (tensorrt only), --verify-data (openvino only); drop them",
        ),
        ("openvino", ["--min-batch", "2"], "--target openvino does not use --min-batch (tensorrt only)"),
        ("tensorrt", ["--recipe", "qdq"], "--target tensorrt does not use --recipe (openvino only)"),
        ("tensorrt", ["--optimization", "basic"], "--optimization (onnxruntime only)"),
        ("tensorrt", ["--threads", "1"], "--threads (onnxruntime, openvino only)"),
    ],
)
def test_options_of_other_targets_are_refused_not_ignored(tiny_onnx, tmp_path, target, args, message):
    out = tmp_path / "x.out"
    result = dnx("build-engine", tiny_onnx, "--target", target, *args, "-o", out)
    assert result.exit_code == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and os.listdir(tmp_path) == []


def test_target_options_given_for_their_own_target_are_accepted(tiny_onnx, tmp_path):
    from densenet_deploy.exporters.targets.build import check_target_options

    check_target_options("tensorrt", ["min_batch", "timing_cache", "version_compatible", "calib_data", "output"])
    check_target_options("openvino", ["recipe", "verify_data", "threads"])
    out = tmp_path / "m.ort.onnx"
    result = dnx(
        "build-engine", tiny_onnx, "--target", "onnxruntime", "--threads", 1, "--optimization", "basic", "-o", out
    )
    assert result.exit_code == 0, result.output


def test_unknown_target_and_missing_input_are_usage_errors(tiny_onnx, tmp_path):
    assert dnx("build-engine", tiny_onnx, "--target", "tflite", "-o", tmp_path / "x").exit_code == 2
    result = dnx("build-engine", tmp_path / "absent.onnx", "--target", "onnxruntime", "-o", tmp_path / "x.onnx")
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_output_may_not_overwrite_the_input(tiny_onnx):
    result = dnx("build-engine", tiny_onnx, "--target", "onnxruntime", "-o", tiny_onnx)
    assert result.exit_code == 2 and "would overwrite the input" in result.stderr


def test_onnx_without_dnx_metadata_is_refused(tiny_onnx, tmp_path):
    import onnx

    model = onnx.load(tiny_onnx)
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    result = dnx("build-engine", bare, "--target", "onnxruntime", "-o", tmp_path / "out.onnx")
    assert result.exit_code == 2 and "no dnx metadata" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["bare.onnx"]


def test_engine_options_are_validated_before_any_work():
    from densenet_deploy.exporters.targets.tensorrt import EngineOptions

    EngineOptions().validate()
    with pytest.raises(DnxError, match="1 <= min <= opt <= max"):
        EngineOptions(min_batch=8, opt_batch=4, max_batch=16).validate()
    with pytest.raises(DnxError, match="--opt-level must be 0..5"):
        EngineOptions(opt_level=7).validate()
    with pytest.raises(DnxError, match="--hardware-compatibility"):
        EngineOptions(hardware_compatibility="turing+").validate()


def test_build_engine_python_api_matches_the_cli(tiny_onnx, tmp_path):
    from densenet_deploy.exporters.targets.build import TARGETS, BuildOptions, build_deployment

    assert {"tensorrt", "onnxruntime"} <= set(TARGETS)
    result = build_deployment(
        tiny_onnx, str(tmp_path / "api.ort.onnx"), BuildOptions(target="onnxruntime", optimization="basic")
    ).as_dict()
    assert set(result) >= {"output", "target", "precision", "seconds", "sidecar"}
    with pytest.raises(DnxError, match="unknown target 'onnxruntim'.*did you mean 'onnxruntime'"):
        build_deployment(tiny_onnx, str(tmp_path / "y.onnx"), BuildOptions(target="onnxruntim"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bf16", "--recipe", "qdq"], "--recipe picks how --int8 quantizes"),
        (
            ["--int8", "--calib-data", "digits", "--method", "entropy"],
            "--method is the calibration method of --int8 --recipe qdq",
        ),
    ],
)
def test_openvino_options_that_the_chosen_precision_ignores_are_refused(tiny_onnx, tmp_path, args, message):
    out = tmp_path / "x.xml"
    result = dnx("build-engine", tiny_onnx, "--target", "openvino", *args, "-o", out)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert os.listdir(tmp_path) == []


def test_info_on_an_onnxruntime_deployment_counts_the_model_not_its_fused_graph(ort_fp32, tiny_onnx):
    """The ORT graph's fused/NCHWc weights are not the model's parameters: info counts the described model."""
    out, _ = ort_fp32
    deployed = json.loads(dnx("info", out, "--json").stdout)
    source = json.loads(dnx("info", tiny_onnx, "--json").stdout)
    assert deployed["target"] == "onnxruntime" and deployed["counted_from"]
    assert (deployed["params"], deployed["macs"]) == (source["params"], source["macs"]) != (0, 0)
    text = dnx("info", out).stdout
    assert "target      onnxruntime" in text and "DIFFER" not in text


def test_info_knows_an_onnxruntime_deployment_without_its_sidecar(ort_fp32, tiny_onnx, tmp_path):
    import shutil

    out, _ = ort_fp32
    bare = tmp_path / "bare.ORT.ONNX"  # no sidecar, upper-case extension: known by its com.microsoft ops
    shutil.copy(out, bare)
    described = json.loads(dnx("info", bare, "--json").stdout)
    source = json.loads(dnx("info", tiny_onnx, "--json").stdout)
    assert described["target"] == "onnxruntime" and described["params"] == source["params"]
    broken = tmp_path / "broken.ort.onnx"
    shutil.copy(out, broken)
    (tmp_path / "broken.ort.onnx.json").write_text("{bad")
    result = dnx("info", broken)
    assert result.exit_code == 2 and "not a readable JSON sidecar" in result.stderr


# --- inputs a target is not built from, refused before any work ---------------------------------------
@pytest.fixture(scope="module")
def bf16_onnx(tiny_onnx, tmp_path_factory):
    """exporters/bf16.py's output: a TensorRT bf16 graph (opset 22 bf16 Conv)."""
    from densenet_deploy.exporters.bf16 import convert_bf16

    path = str(tmp_path_factory.mktemp("bf16") / "tiny.bf16.onnx")
    convert_bf16(tiny_onnx, path, samples=4)
    assert read_onnx_meta(path).precision == "bf16"
    return path


@pytest.fixture(scope="module")
def int8_onnx(tiny_onnx, tmp_path_factory):
    path = tmp_path_factory.mktemp("int8") / "tiny.int8.onnx"
    result = dnx("calibrate", tiny_onnx, "--data", "digits", "--samples", 32, "--eval-samples", 32, "-o", path)
    assert result.exit_code == 0, result.output
    return str(path)


@pytest.fixture(scope="module")
def fp16_onnx(tiny_onnx, tmp_path_factory):
    from densenet_deploy.exporters.fp16 import convert_fp16

    path = str(tmp_path_factory.mktemp("fp16") / "tiny.fp16.onnx")
    convert_fp16(tiny_onnx, path, samples=4)
    return path


def _refused(result, tmp_path, *fragments, keep=()):
    message = result.stderr.strip()
    assert result.exit_code == 2, result.output
    assert message.startswith("error: ") and "\n" not in message and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in message, message
    assert sorted(os.listdir(tmp_path)) == sorted(keep)  # nothing written, no temporary file
    return message


@pytest.mark.parametrize("args", [[], ["--bf16"]])
def test_openvino_refuses_a_bf16_graph_up_front(bf16_onnx, tmp_path, args):
    """OpenVINO applies bf16 as its inference precision to the fp32 export; a bf16 graph used to convert,
    then fail late in the check ("ONNX Runtime cannot load ... Conv(22)")."""
    result = dnx("build-engine", bf16_onnx, "--target", "openvino", *args, "-o", tmp_path / "x.xml")
    message = _refused(result, tmp_path, "is a bf16 graph", "needs the fp32 export", "--target openvino --bf16")
    assert "cannot load" not in message


def test_onnxruntime_says_a_bf16_graph_is_for_tensorrt(bf16_onnx, tiny_onnx, tmp_path):
    result = dnx("build-engine", bf16_onnx, "--target", "onnxruntime", "-o", tmp_path / "x.onnx")
    message = _refused(
        result,
        tmp_path,
        "is a bf16 graph, which only TensorRT builds",
        "--target tensorrt",
        "build the fp32 export (`dnx export`) with --target openvino --bf16",
    )
    assert "use --target openvino --bf16" not in message  # that advice is for an fp32 model:
    result = dnx("build-engine", tiny_onnx, "--target", "onnxruntime", "--bf16", "-o", tmp_path / "y.onnx")
    _refused(result, tmp_path, "does not build bf16", "for bf16 on the CPU use --target openvino --bf16")


@pytest.mark.parametrize("target, out", [("openvino", "x.xml"), ("onnxruntime", "x.ort.onnx")])
def test_an_onnxruntime_deployment_is_not_built_from(ort_fp32, tmp_path, target, out):
    deployment, _ = ort_fp32
    result = dnx("build-engine", deployment, "--target", target, "-o", tmp_path / out)
    message = _refused(
        result, tmp_path, "is an ONNX Runtime deployment", "com.microsoft", "from the plain `dnx export` output"
    )
    assert "OpConversionFailure" not in message


def test_a_portable_onnxruntime_deployment_is_recognised_by_its_sidecar(tiny_onnx, tmp_path):
    """--optimization basic leaves only standard ops: the sidecar still says what the file is."""
    deployment = tmp_path / "basic.ort.onnx"
    assert (
        dnx("build-engine", tiny_onnx, "--target", "onnxruntime", "--optimization", "basic", "-o", deployment).exit_code
        == 0
    )
    result = dnx("build-engine", deployment, "--target", "onnxruntime", "-o", tmp_path / "again.onnx")
    _refused(
        result,
        tmp_path,
        "is an ONNX Runtime deployment",
        "records an onnxruntime build",
        keep=["basic.ort.onnx", "basic.ort.onnx.json"],
    )


@pytest.mark.parametrize(
    "target, out, message",
    [
        ("onnxruntime", "x.plan", "--target onnxruntime writes an ONNX model: -o must end in .onnx"),
        ("openvino", "x.onnx", "-o must end in .xml"),
        ("tensorrt", "x.onnx", "ends in .onnx, but --target tensorrt writes a TensorRT plan"),
        ("tensorrt", "x.ort.onnx", "would then open as an ONNX model; name it model.plan"),
        ("tensorrt", "x.xml", "would then open as an OpenVINO IR"),
    ],
)
def test_output_named_like_another_format_is_refused(tiny_onnx, tmp_path, target, out, message):
    result = dnx("build-engine", tiny_onnx, "--target", target, "-o", tmp_path / out)
    _refused(result, tmp_path, message)


# --- options the build would ignore: refused with the actual reason ----------------------------------
@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--bf16", "--samples", "8"], ["--target openvino --bf16 has no precision step", "--samples is unused"]),
        (
            ["--bf16", "--calib-data", "digits"],
            ["--target openvino --bf16 converts nothing", "the pre-write check's data is --verify-data"],
        ),
        (
            ["--calib-data", "digits"],
            ["--target openvino uses --calib-data only with --int8", "the pre-write check's data is --verify-data"],
        ),
    ],
)
def test_openvino_names_why_an_option_is_unused(tiny_onnx, tmp_path, args, fragments):
    result = dnx("build-engine", tiny_onnx, "--target", "openvino", *args, "-o", tmp_path / "x.xml")
    message = _refused(result, tmp_path, *fragments)
    assert "(the parity check's data)" not in message


@pytest.mark.parametrize(
    "model, target, args, fragment",
    [
        ("int8", "onnxruntime", ["--int8"], "is already int8, so nothing is calibrated"),
        ("int8", "onnxruntime", [], "is already int8, so nothing is calibrated"),
        ("int8", "openvino", ["--int8"], "is already int8, so nothing is calibrated"),
        ("fp16", "onnxruntime", ["--fp16"], "is already fp16, so nothing is converted"),
    ],
)
def test_calib_data_for_a_model_already_at_its_precision_says_so(request, tmp_path, model, target, args, fragment):
    path = request.getfixturevalue(f"{model}_onnx")
    out = tmp_path / ("x.xml" if target == "openvino" else "x.onnx")
    result = dnx("build-engine", path, "--target", target, *args, "--calib-data", "digits", "-o", out)
    message = _refused(result, tmp_path, fragment)
    assert "only used with" not in message


def test_verify_data_help_states_its_real_default():
    text = dnx("build-engine", "--help").stdout
    flat = " ".join(text.split())
    assert "--calib-data's val split, else random inputs" not in flat
    assert "with int8, --data's val split; else seeded random inputs" in flat


# --- a failed check still prints its result with --json ---------------------------------------------
@pytest.fixture(scope="module")
def mismatched_calibration_dir(tmp_path_factory):
    """An image folder with train/ and val/: train holds digits at a tenth of their brightness (wrong
    activation ranges), val the real digits, so INT8 calibrated on train really fails the val check."""
    pytest.importorskip("sklearn", reason="scikit-learn provides the digits")
    from PIL import Image
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("mismatched")
    digits = load_digits()
    for split, indices, scale in (("train", range(0, 40), 0.1), ("val", range(1000, 1100), 1.0)):
        for i in indices:
            folder = root / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((digits.images[i] / 16 * 255 * scale).astype(np.uint8)).save(folder / f"{i}.png")
    return str(root)


def test_json_prints_the_failing_result_on_exit_1(digits_onnx, mismatched_calibration_dir, tmp_path):
    out = tmp_path / "d.int8.ort.onnx"
    result = dnx(
        "build-engine",
        digits_onnx,
        "--target",
        "onnxruntime",
        "--int8",
        "--calib-data",
        mismatched_calibration_dir,
        "-o",
        out,
        "--json",
    )
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["passed"] is False and doc["written"] is False and doc["failed_step"] == "precision step"
    assert doc["output"] == str(out) and doc["target"] == "onnxruntime" and doc["precision"] == "int8"
    assert doc["precision_step"]["parity"]["top1_agreement"] < 0.98 and doc["precision_step"]["failures"]
    assert "held-out check" in doc["error"] and "held-out check" in result.stderr
    # The advice fits build-engine: no temporary path, and --auto-exclude is `dnx calibrate`'s option.
    assert "nothing written" in doc["error"] and "dnx calibrate --auto-exclude" in doc["error"]
    assert "/tmp" not in doc["error"] and "dnx-build-" not in doc["error"]
    assert os.listdir(tmp_path) == []
    # Without --json stdout stays empty: the error line says it all.
    plain = dnx(
        "build-engine",
        digits_onnx,
        "--target",
        "onnxruntime",
        "--int8",
        "--calib-data",
        mismatched_calibration_dir,
        "-o",
        out,
    )
    assert plain.exit_code == 1 and plain.stdout == ""
