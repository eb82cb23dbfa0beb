"""`dnx demo`: every stage runs for real on digits, the JSON and report agree, failures exit 1 or 2."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from densenet_deploy.calibration.quantize import DEFAULT_METHOD
from densenet_deploy.cli.main import cli

pytest.importorskip("sklearn", reason="scikit-learn (extra 'demo') provides the digits data")

# Small budgets: the pipeline is the same as `make demo`, only the timing and sample counts shrink.
QUICK = ["--bench-seconds", "0.05", "--calib-samples", "128"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _openvino_installed() -> bool:
    from densenet_deploy.core.deps import available

    return available("openvino")


@pytest.mark.slow
def test_demo_runs_every_stage_and_writes_the_report(digits_checkpoint, tmp_path):
    from densenet_deploy.core.metadata import read_onnx_meta

    workdir = tmp_path / "demo"
    r = invoke("demo", "--workdir", workdir, "--checkpoint", digits_checkpoint, *QUICK, "--json")
    assert r.exit_code == 0, r.stderr + r.stdout
    doc = json.loads(r.stdout)  # stdout holds the one JSON object and nothing else
    assert doc["passed"] is True and doc["failures"] == []
    stages = {s["stage"]: s for s in doc["stages"]}

    expected = ["train", "export", "fp16", "int8", "onnxruntime"]
    expected += ["openvino", "openvino-int8"] if _openvino_installed() else []
    for name in expected:
        s = stages[name]
        assert s["status"] == "ok", (name, s["message"])
        assert os.path.isfile(s["artifact"]) and s["size_bytes"] > 0, name
        assert 0.95 <= s["accuracy"] <= 1.0, (name, s["accuracy"])
        assert set(s["latency_ms"]) == {"1", "32"} and all(v > 0 for v in s["latency_ms"].values()), name
        if name != "train":  # verified against PyTorch on the held-out split, by `verify`
            assert s["verify"]["passed"] and s["verify"]["data"] == "digits (val split)", name
            assert s["verify"]["ref"]["backend"] == "torch"
            assert s["agreement"] >= 0.9, name
    assert stages["export"]["precision"] == "fp32" and stages["fp16"]["precision"] == "fp16"
    assert stages["int8"]["precision"] == "int8"
    # The acceptance: INT8 within 1 point of fp32 on the held-out digits.
    assert abs(stages["int8"]["accuracy"] - stages["export"]["accuracy"]) <= 0.01
    assert stages["export"]["agreement"] == 1.0  # fp32 ONNX == PyTorch
    # The demo calibrates with the method `dnx calibrate` recommends by default: it shows what a user gets.
    assert read_onnx_meta(stages["int8"]["artifact"]).calibration["method"] == DEFAULT_METHOD
    # TensorRT shows up as a row either way: built where usable, else skipped with the reason.
    assert "tensorrt" in stages
    if stages["tensorrt"]["status"] == "skipped":
        assert "TensorRT" in stages["tensorrt"]["message"] or "GPU" in stages["tensorrt"]["message"]

    assert stages["train"]["artifact"] == digits_checkpoint  # --checkpoint: nothing trained
    assert not (workdir / "model.pt").exists()
    assert doc["bench"]["settings"]["batches"] == [1, 32]
    report = doc["report"]
    assert os.path.isfile(report["markdown"]) and os.path.isfile(report["json"])
    from densenet_deploy.core.deps import available

    assert os.path.isfile(report["plot"]) if available("matplotlib") else "plot" not in report
    saved = json.loads((workdir / "results.json").read_text())
    assert [s["stage"] for s in saved["stages"]] == [s["stage"] for s in doc["stages"]]
    text = (workdir / "report.md").read_text()
    for name in expected:
        assert f"| {name} |" in text
    assert f"int8: {DEFAULT_METHOD} calibration" in r.stderr  # stage lines go to stderr, never into the JSON


@pytest.mark.slow
def test_failed_check_prints_the_table_then_exits_1(tmp_path):
    """An untrained digits model: training accuracy is missing, so the demo must not report success."""
    from densenet_deploy.models import build_model
    from densenet_deploy.models.checkpoint import save_checkpoint

    ckpt = tmp_path / "untrained.pt"
    model = build_model("densenet_bc10_k4", num_classes=10, in_channels=1)
    save_checkpoint(ckpt, model, mean=[0.3], std=[0.3], input_size=[1, 16, 16], labels=[str(i) for i in range(10)])
    r = invoke(
        "demo",
        "--workdir",
        tmp_path / "w",
        "--checkpoint",
        ckpt,
        "--no-openvino",
        "--bench-seconds",
        "0.02",
        "--calib-samples",
        "32",
        "--verify-samples",
        "64",
    )
    assert r.exit_code == 1, r.stderr + r.stdout
    assert "stage" in r.stdout and "FAIL" in r.stdout  # the table comes first ...
    assert r.stderr.strip().splitlines()[-1].startswith("error: demo: train: held-out accuracy ")
    assert "Traceback" not in r.stderr
    saved = json.loads((tmp_path / "w" / "results.json").read_text())
    assert saved["passed"] is False and saved["stages"][0]["status"] == "failed"


def test_workdir_that_is_a_file_is_refused_before_any_work(tmp_path):
    path = tmp_path / "not-a-dir"
    path.write_text("x")
    r = invoke("demo", "--workdir", path)
    assert r.exit_code == 2
    assert r.stderr.strip() == f"error: --workdir {path} is a file; give a directory (it is created if missing)"
    assert r.stdout == ""


def test_bad_checkpoints_exit_2(tmp_path):
    from densenet_deploy.models import build_model
    from densenet_deploy.models.checkpoint import save_checkpoint

    r = invoke("demo", "--workdir", tmp_path / "w", "--checkpoint", tmp_path / "missing.pt")
    assert r.exit_code == 2 and "no such file" in r.stderr
    cifar = tmp_path / "cifar.pt"
    save_checkpoint(cifar, build_model("densenet_bc10_k4", num_classes=100), input_size=[3, 32, 32])
    r = invoke("demo", "--workdir", tmp_path / "w", "--checkpoint", cifar)
    assert r.exit_code == 2 and "is not a digits model (100 classes" in r.stderr
    r = invoke("demo", "--workdir", tmp_path / "w", "--checkpoint", cifar, "--epochs", "2")
    assert r.exit_code == 2 and "drop one of them" in r.stderr
    assert not (tmp_path / "w" / "results.json").exists()


def test_insisting_on_a_missing_backend_exits_2(tmp_path):
    from densenet_deploy.core.errors import BackendUnavailableError
    from densenet_deploy.exporters.targets.tensorrt import check_tensorrt_usable

    try:
        check_tensorrt_usable()
    except BackendUnavailableError:
        pass
    else:
        pytest.skip("TensorRT and a GPU are usable here")
    r = invoke("demo", "--workdir", tmp_path / "w" / "sub", "--tensorrt")
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and "TensorRT" in r.stderr
    assert not (tmp_path / "w").exists()  # refused before training, and before creating the work directory
    (tmp_path / "mine").mkdir()
    r = invoke("demo", "--workdir", tmp_path / "mine", "--tensorrt")
    assert r.exit_code == 2 and os.listdir(tmp_path / "mine") == []  # the user's own directory stays


def test_a_failed_demo_removes_the_work_directory_it_created(tmp_path):
    from densenet_deploy.core.errors import DnxError
    from densenet_deploy.demo.pipeline import run_demo
    from densenet_deploy.models import build_model
    from densenet_deploy.models.checkpoint import save_checkpoint

    ckpt = tmp_path / "untrained.pt"
    save_checkpoint(
        ckpt,
        build_model("densenet_bc10_k4", num_classes=10, in_channels=1),
        mean=[0.3],
        std=[0.3],
        input_size=[1, 16, 16],
        labels=[str(i) for i in range(10)],
    )

    def stop(line):  # the caller gives up at the first stage
        raise DnxError("stopped by the caller")

    for workdir, kept in ((tmp_path / "new" / "w", False), (tmp_path / "existing", True)):
        if kept:
            workdir.mkdir()
        with pytest.raises(DnxError, match="stopped by the caller"):
            run_demo(str(workdir), checkpoint=str(ckpt), openvino=False, tensorrt=False, notify=stop)
        assert workdir.exists() is kept
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_rerun_without_openvino_removes_the_earlier_runs_ir(digits_checkpoint, tmp_path):
    """A rerun in the same workdir leaves only what this run made: no model.xml beside 'openvino skipped'."""
    workdir = tmp_path / "demo"
    workdir.mkdir()
    earlier = ["model.xml", "model.xml.json", "model.bin", "model.int8.xml", "model.int8.bin", "model.plan", "model.pt"]
    for name in earlier:  # what an earlier run with OpenVINO and TensorRT (and training) left behind
        (workdir / name).write_text("earlier run")
    r = invoke(
        "demo",
        "--workdir",
        workdir,
        "--checkpoint",
        digits_checkpoint,
        *QUICK,
        "--verify-samples",
        32,
        "--no-openvino",
        "--no-tensorrt",
        "--threads",
        1,
        "--json",
    )
    assert r.exit_code == 0, r.stderr + r.stdout
    stages = {s["stage"]: s for s in json.loads(r.stdout)["stages"]}
    assert stages["openvino"]["status"] == "skipped" and stages["tensorrt"]["status"] == "skipped"
    for name in earlier:
        assert not (workdir / name).exists(), name
    assert "removed 7 artifact(s) of an earlier run" in r.stderr
    assert (workdir / "model.onnx").is_file() and (workdir / "report.md").is_file()
