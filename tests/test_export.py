"""`dnx export` / exporters.onnx: clean graph, parity with PyTorch in ONNX Runtime, metadata, errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from densenet_deploy.cli.main import cli
from densenet_deploy.core.constants import BATCH_AXIS, INPUT_NAME, MAX_OPSET, MIN_OPSET, OUTPUT_NAME
from densenet_deploy.core.errors import DnxError, VerificationFailed
from densenet_deploy.core.io import sha256_file
from densenet_deploy.core.metadata import read_onnx_meta
from densenet_deploy.exporters.onnx import export_onnx
from densenet_deploy.exporters.onnx_graph import ALLOWED_OPS
from densenet_deploy.models import build_model

TINY = "densenet_bc22_k8"


def run_cli(*args):
    return CliRunner().invoke(cli, list(args))


def ort_run(path, x):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]


def torch_run(model, x):
    with torch.no_grad():
        return model.eval()(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def tiny_model(num_classes=None):
    torch.manual_seed(0)  # load_model seeds the same way: same weights as a default zoo export
    return build_model(TINY, num_classes=num_classes).eval()


def files_in(directory):
    return sorted(os.listdir(directory))


# --- the graph ---------------------------------------------------------------------------------------
def test_graph_holds_only_clean_ops_and_fixed_names(tiny_onnx):
    model = onnx.load(tiny_onnx)
    ops = {n.op_type for n in model.graph.node}
    assert ops <= ALLOWED_OPS - {"Softmax"}, ops - ALLOWED_OPS
    assert {"Conv", "Relu", "BatchNormalization", "Concat", "GlobalAveragePool", "Gemm"} <= ops
    assert not ops & {"Identity", "Dropout", "Constant", "ReduceMean"}
    assert [i.name for i in model.graph.input] == [INPUT_NAME]  # initializers are not inputs
    assert [o.name for o in model.graph.output] == [OUTPUT_NAME]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == BATCH_AXIS
    assert [d.dim_value for d in dims[1:]] == [3, 32, 32]  # H/W fixed
    assert model.opset_import[0].version == 20
    onnx.checker.check_model(model, full_check=True)


def test_two_exports_are_byte_identical(tiny_onnx, tmp_path):
    again = tmp_path / "again.onnx"
    export_onnx(TINY, str(again))
    assert again.read_bytes() == open(tiny_onnx, "rb").read()


def test_metadata_round_trip(tiny_onnx):
    import densenet_deploy

    meta = read_onnx_meta(tiny_onnx)
    assert meta.model == TINY and meta.num_classes == 10
    assert meta.input_size == (3, 32, 32) and meta.layout == "NCHW" and meta.input_name == INPUT_NAME
    assert meta.mean == pytest.approx((0.4914, 0.4822, 0.4465)) and len(meta.std) == 3
    assert meta.model_config["name"] == TINY and meta.batch is None and meta.precision == "fp32"
    assert meta.softmax is False and meta.weights_sha256 == ""  # random init: no source weights
    assert meta.versions["torch"] == torch.__version__ and meta.versions["onnx"] == onnx.__version__
    assert meta.versions["densenet_deploy"] == densenet_deploy.__version__
    assert meta.extra == {"exporter": "torchscript", "opset": 20}


# --- parity --------------------------------------------------------------------------------------------
def test_dynamic_batch_runs_at_batch_3(tiny_onnx):
    x = np.random.default_rng(3).standard_normal((3, 3, 32, 32)).astype(np.float32)
    got = ort_run(tiny_onnx, x)
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, torch_run(tiny_model(), x), atol=1e-4, rtol=0)


def test_fixed_batch_rejects_other_sizes(tmp_path):
    path = str(tmp_path / "b2.onnx")
    result = export_onnx(TINY, path, batch=2)
    assert result.batch == 2 and list(result.parity_by_batch) == [2]
    dims = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 2 and read_onnx_meta(path).batch == 2
    x = np.zeros((2, 3, 32, 32), np.float32)
    assert ort_run(path, x).shape == (2, 10)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        ort_run(path, np.zeros((3, 3, 32, 32), np.float32))


def test_densenet_bc100_k12_matches_pytorch_at_batch_1_and_4(tmp_path):
    path = str(tmp_path / "bc100.onnx")
    result = export_onnx("densenet_bc100_k12", path)
    assert result.params == result.torch_params == 769_162
    assert sorted(result.parity_by_batch) == [1, 4]
    for parity in result.parity_by_batch.values():
        assert parity.max_abs_diff <= 1e-4 and parity.top1_agreement == 1.0 and parity.passed
    # Independently of the exporter's own check: ORT vs the PyTorch model at batch 4.
    torch.manual_seed(0)
    model = build_model("densenet_bc100_k12").eval()
    x = np.random.default_rng(7).standard_normal((4, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(ort_run(path, x), torch_run(model, x), atol=1e-4, rtol=0)


def test_legacy_torchvision_checkpoint_exports_with_its_weights(tmp_path):
    model = tiny_model(num_classes=7)
    with torch.no_grad():  # non-trivial BN statistics, so a wrong mapping cannot go unnoticed
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    # Old torchvision spelling: `denselayer1.norm.1.weight` for `denselayer1.norm1.weight`, plus a
    # DataParallel `module.` prefix.
    legacy = {
        "module." + re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert "module.features.denseblock1.denselayer1.norm.1.weight" in legacy
    weights = tmp_path / "legacy.pth"
    torch.save(legacy, weights)

    out = tmp_path / "legacy.onnx"
    result = run_cli("export", TINY, "--weights", str(weights), "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["parity"]["passed"] and doc["parity"]["max_abs_diff"] <= 1e-4
    meta = read_onnx_meta(str(out))
    assert meta.num_classes == 7 and meta.weights_sha256 == sha256_file(weights)
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(ort_run(str(out), x), torch_run(model, x), atol=1e-4, rtol=0)


def test_softmax_output_holds_probabilities(tmp_path):
    path = str(tmp_path / "soft.onnx")
    result = export_onnx(TINY, path, softmax=True, samples=2)
    assert result.ops.get("Softmax") == 1 and read_onnx_meta(path).softmax is True
    names = {t.name for t in onnx.load(path).graph.initializer}
    assert "features.conv0.weight" in names and "classifier.weight" in names  # no wrapper prefix
    probs = ort_run(path, np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_parity_on_real_images_reports_accuracy(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for label in ("3", "7"):  # class folders named by class number: the model has no label names
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "imgs" / label / f"{i}.png")
    result = export_onnx(TINY, str(tmp_path / "real.onnx"), data=str(tmp_path / "imgs"), samples=6)
    assert result.data == str(tmp_path / "imgs") and result.parity.samples == 6
    assert result.parity.accuracy is not None and result.parity.passed
    # Folders that name no class of the model give no accuracy rather than a made-up one.
    (tmp_path / "imgs" / "3").rename(tmp_path / "imgs" / "cat")
    (tmp_path / "imgs" / "7").rename(tmp_path / "imgs" / "dog")
    result = export_onnx(TINY, str(tmp_path / "pets.onnx"), data=str(tmp_path / "imgs"), samples=6)
    assert result.parity.accuracy is None and result.parity.passed


def test_dynamo_exporter_passes_parity_with_the_same_op_set(tmp_path):
    out = tmp_path / "dyn.onnx"
    result = run_cli("export", TINY, "-o", str(out), "--exporter", "dynamo", "--samples", "4", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # the dynamo exporter's progress prints must not reach stdout
    assert doc["parity"]["passed"] and doc["parity"]["max_abs_diff"] <= 1e-4
    assert set(doc["ops"]) <= ALLOWED_OPS - {"Softmax"} and doc["opset"] == 20
    assert read_onnx_meta(str(out)).extra["exporter"] == "dynamo"


def test_failed_parity_keeps_the_file_and_raises(tmp_path):
    """A model whose traced graph differs from its eager run (Python state): the check must catch it."""
    from densenet_deploy.models.loading import load_model

    class Drifting(torch.nn.Module):
        def __init__(self, first, later):
            super().__init__()
            self.first, self.later, self.calls = first, later, 0

        def forward(self, x):
            self.calls += 1  # the eager reference runs first; the trace records a later call
            return (self.first if self.calls == 1 else self.later)(x)

    loaded = load_model(TINY)
    loaded.model = Drifting(loaded.model, load_model(TINY, seed=1).model).eval()
    path = tmp_path / "drift.onnx"
    with pytest.raises(VerificationFailed, match="parity check failed") as info:
        export_onnx(loaded, str(path), samples=2)
    assert path.is_file() and info.value.result is not None and not info.value.result.parity.passed
    assert files_in(tmp_path) == ["drift.onnx"]


# --- info ----------------------------------------------------------------------------------------------
def test_info_on_onnx_counts_equal_pytorch(tiny_onnx):
    from densenet_deploy.models.counting import count_macs, count_params

    result = run_cli("info", tiny_onnx, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    model = tiny_model()
    assert doc["params"] == count_params(model) == doc["torch_params"]
    assert doc["macs"] == count_macs(model, (3, 32, 32)) == doc["torch_macs"]
    assert doc["counts_match"] is True and doc["opset"] == 20 and doc["precision"] == "fp32"
    assert doc["input_size"] == [3, 32, 32] and doc["model"] == TINY
    text = run_cli("info", tiny_onnx)
    assert text.exit_code == 0 and "PyTorch" in text.output and "match" in text.output


# --- bad input -----------------------------------------------------------------------------------------
def assert_clean_failure(result, directory, pattern):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    assert re.search(pattern, lines[0]), lines[0]
    assert not [f for f in files_in(directory) if f.endswith(".onnx") or f.startswith(".dnx-")]


def test_unknown_model_exit_2(tmp_path):
    result = run_cli("export", "densenet122", "-o", str(tmp_path / "x.onnx"))
    assert_clean_failure(result, tmp_path, "unknown model 'densenet122'.*did you mean")


@pytest.mark.parametrize("opset", [MIN_OPSET - 1, MAX_OPSET + 1])
def test_opset_out_of_range_exit_2(tmp_path, opset):
    result = run_cli("export", TINY, "-o", str(tmp_path / "x.onnx"), "--opset", str(opset))
    assert_clean_failure(result, tmp_path, f"opset {opset} is out of range: choose {MIN_OPSET}..{MAX_OPSET}")


def test_weights_that_do_not_fit_exit_2(tmp_path):
    torch.manual_seed(0)
    torch.save(build_model("densenet_bc22_k12").state_dict(), tmp_path / "k12.pth")
    result = run_cli("export", TINY, "--weights", str(tmp_path / "k12.pth"), "-o", str(tmp_path / "x.onnx"))
    assert_clean_failure(result, tmp_path, r"does not fit densenet_bc22_k8: .*shape mismatch: features\.")


def test_truncated_checkpoint_exit_2(tmp_path):
    torch.save(tiny_model().state_dict(), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    result = run_cli("export", TINY, "--weights", str(tmp_path / "cut.pth"), "-o", str(tmp_path / "x.onnx"))
    assert_clean_failure(result, tmp_path, "not a readable PyTorch checkpoint")


def test_output_path_that_is_a_directory_exit_2(tmp_path):
    (tmp_path / "out.onnx").mkdir()
    result = run_cli("export", TINY, "-o", str(tmp_path / "out.onnx"))
    assert result.exit_code == 2 and "is a directory" in result.output and "Traceback" not in result.output


def test_output_in_missing_directory_exit_2(tmp_path):
    result = run_cli("export", TINY, "-o", str(tmp_path / "nope" / "x.onnx"))
    assert_clean_failure(result, tmp_path, "directory .* does not exist")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to read-only directories")
def test_unwritable_output_directory_exit_2(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = run_cli("export", TINY, "-o", str(locked / "x.onnx"))
        assert_clean_failure(result, locked, "not writable")
    finally:
        locked.chmod(0o700)


def test_bad_batch_and_exporter_values_are_usage_errors(tmp_path):
    for args in (["--fixed-batch", "0"], ["--fixed-batch", "many"], ["--exporter", "tracing"]):
        result = run_cli("export", TINY, "-o", str(tmp_path / "x.onnx"), *args)
        assert result.exit_code == 2 and "Traceback" not in result.output
    with pytest.raises(DnxError, match="batch must be 'dynamic' or a positive integer"):
        export_onnx(TINY, str(tmp_path / "x.onnx"), batch=-1)
    assert files_in(tmp_path) == []


def test_export_help_does_not_import_torch_or_onnx():
    code = (
        "import sys; from click.testing import CliRunner; from densenet_deploy.cli import cli; "
        "r = CliRunner().invoke(cli, ['export', '--help']); assert r.exit_code == 0, r.output; "
        "assert '--exporter' in r.output; print(sorted(m for m in ('torch', 'onnx', 'onnxruntime') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- the ImageNet model --------------------------------------------------------------------------------
def test_densenet121_exports_in_time_and_matches(tmp_path):
    out = tmp_path / "d.onnx"
    started = time.perf_counter()
    result = run_cli("export", "densenet121", "-o", str(out), "--json")
    wall = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # --json: one object, nothing else on stdout
    assert doc["params"] == 7_978_856 and doc["opset"] == 20 and doc["exporter"] == "torchscript"
    for parity in doc["parity"]["batches"].values():
        assert parity["max_abs_diff"] <= 1e-4 and parity["top1_agreement"] == 1.0
    assert sorted(doc["parity"]["batches"]) == ["1", "4"]
    assert wall < 60, f"densenet121 export took {wall:.1f} s"


def test_output_that_is_the_input_checkpoint_or_weights_is_refused(tmp_path):
    from densenet_deploy.models.checkpoint import save_checkpoint

    ckpt = tmp_path / "ckpt.pt"
    save_checkpoint(ckpt, tiny_model(), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), input_size=(3, 32, 32))
    weights = tmp_path / "cur.pth"
    torch.save(tiny_model().state_dict(), weights)
    link = tmp_path / "link.onnx"
    link.symlink_to(ckpt)
    before = {p: p.read_bytes() for p in (ckpt, weights)}
    for args, what in (
        ((str(ckpt), "-o", str(ckpt)), "the input checkpoint"),
        ((str(ckpt), "-o", str(tmp_path / "." / "ckpt.pt")), "the input checkpoint"),
        ((str(ckpt), "-o", str(link)), "the input checkpoint"),
        ((TINY, "--weights", str(weights), "-o", str(weights)), "the --weights file"),
    ):
        result = run_cli("export", *args)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and f"would overwrite {what}" in lines[0], lines
    assert all(p.read_bytes() == data for p, data in before.items()) and link.is_symlink()


def test_output_must_be_an_onnx_file(tmp_path):
    result = run_cli("export", TINY, "-o", str(tmp_path / "x.txt"))
    assert result.exit_code == 2 and "should end in .onnx" in result.output, result.output
    assert files_in(tmp_path) == []


def test_dnx_checkpoint_as_weights_keeps_its_metadata_or_is_refused(tmp_path):
    from densenet_deploy.models.checkpoint import save_checkpoint

    ckpt = tmp_path / "cf.pt"
    save_checkpoint(
        ckpt,
        build_model(TINY, num_classes=3, in_channels=1),
        mean=(0.3,),
        std=(0.2,),
        input_size=(1, 16, 16),
        labels=["a", "b", "c"],
    )
    out = tmp_path / "x.onnx"
    result = export_onnx(TINY, str(out), weights=str(ckpt), samples=2)
    meta = read_onnx_meta(onnx.load(str(out)))
    assert meta.mean == (0.3,) and meta.std == (0.2,) and meta.labels == ["a", "b", "c"], meta
    assert tuple(meta.input_size) == (1, 16, 16) and meta.num_classes == 3 and result.parity.passed
    other = run_cli("export", "densenet_bc10_k8", "--weights", str(ckpt), "-o", str(tmp_path / "y.onnx"))
    assert other.exit_code == 2 and f"dnx export {ckpt}" in other.output, other.output
    assert not (tmp_path / "y.onnx").exists()


def test_grayscale_state_dict_exports_with_one_input_channel(tmp_path):
    torch.manual_seed(0)
    gray = build_model("densenet_bc10_k8", num_classes=10, in_channels=1)
    torch.save(gray.state_dict(), tmp_path / "gray.pth")
    out = tmp_path / "gray.onnx"
    result = export_onnx("densenet_bc10_k8", str(out), weights=str(tmp_path / "gray.pth"), samples=2)
    meta = read_onnx_meta(onnx.load(str(out)))
    assert tuple(meta.input_size) == (1, 32, 32) and len(meta.mean) == len(meta.std) == 1
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(ort_run(str(out), x), torch_run(gray.eval(), x), rtol=1e-4, atol=1e-4)
    assert result.parity.passed


@pytest.mark.parametrize("opset", [13, 14])
def test_dynamo_below_its_minimum_opset_names_the_real_minimum(tmp_path, opset):
    result = run_cli("export", TINY, "--exporter", "dynamo", "--opset", str(opset), "-o", str(tmp_path / "x.onnx"))
    assert_clean_failure(result, tmp_path, f"dynamo exporter cannot write opset {opset}: use --opset 15\\.\\.")


def test_a_plain_onnx_written_over_a_deployment_drops_its_old_sidecar(tiny_onnx, tmp_path):
    """A sidecar left by an earlier artifact at the same path would be read as the new file's (and refused
    by its sha256): export, calibrate and fp16/bf16 remove it."""
    from click.testing import CliRunner

    from densenet_deploy.cli.main import cli
    from densenet_deploy.core.sidecars import read_artifact_meta

    out = tmp_path / "m.ort.onnx"
    built = CliRunner().invoke(cli, ["build-engine", tiny_onnx, "--target", "onnxruntime", "-o", str(out)])
    assert built.exit_code == 0, built.output
    assert (tmp_path / "m.ort.onnx.json").exists()
    exported = CliRunner().invoke(cli, ["export", "densenet_bc22_k8", "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    assert not (tmp_path / "m.ort.onnx.json").exists()
    meta, doc = read_artifact_meta(str(out))
    assert doc == {} and meta.model == "densenet_bc22_k8"
    info = CliRunner().invoke(cli, ["info", str(out)])
    assert info.exit_code == 0, info.output
