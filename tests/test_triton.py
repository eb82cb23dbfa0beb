"""`dnx triton`: every generated config.pbtxt is parsed back into tritonclient's ModelConfig and checked."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient (extra 'triton') is not installed")

from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2 as mc  # noqa: E402

from densenet_deploy.cli.main import cli  # noqa: E402
from densenet_deploy.core.metadata import ArtifactMeta, read_onnx_meta, write_onnx_meta
from densenet_deploy.core.sidecars import write_sidecar

LABELS = [f"class_{i}" for i in range(10)]


def dnx(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def parse(path) -> mc.ModelConfig:
    with open(path) as fh:
        return text_format.Parse(fh.read(), mc.ModelConfig())


def one_line_error(result, code=2, match=""):
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert match in lines[0], lines[0]
    return lines[0]


def tree(path) -> dict:
    """{relative path: bytes} of every file under `path` (to prove nothing else changed)."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            full = os.path.join(root, f)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, path)] = fh.read()
    return out


def tiny_graph(path, *, dtype="float32", batch=None, classes=3, labels=None, name="handmade"):
    """A small real ONNX graph (mean over H, W of an NCHW input) with dnx metadata; fp16 or fixed batch on request."""
    import onnx
    from onnx import TensorProto, helper

    elem = {"float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16}[dtype]
    n = batch if batch else "batch"
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["pooled"], axes=[2, 3], keepdims=0),
            helper.make_node("Identity", ["pooled"], ["logits"]),
        ],
        "g",
        [helper.make_tensor_value_info("input", elem, [n, classes, 8, 8])],
        [helper.make_tensor_value_info("logits", elem, [n, classes])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    meta = ArtifactMeta(
        model=name,
        num_classes=classes,
        input_size=(classes, 8, 8),
        mean=(0.5,) * classes,
        std=(0.25,) * classes,
        labels=labels,
        batch=batch,
        precision="fp16" if dtype == "float16" else "fp32",
    )
    write_onnx_meta(model, meta)
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture
def labelled_onnx(tiny_onnx, tmp_path):
    """tiny_onnx with class labels in its metadata (the metadata is the only thing changed)."""
    import onnx

    proto = onnx.load(tiny_onnx)
    write_onnx_meta(proto, read_onnx_meta(proto).replace(labels=LABELS))
    path = tmp_path / "labelled.onnx"
    onnx.save(proto, str(path))
    return str(path)


@pytest.fixture
def fake_plan(tmp_path):
    """A placeholder .plan plus an honest sidecar as `dnx build-engine` writes it (profile max 16).

    A real plan cannot be built here (no TensorRT, no GPU); config generation reads only the sidecar,
    never the plan's bytes, so the placeholder is enough to test the tensorrt_plan path.
    """
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"placeholder: config generation never reads the engine")
    meta = ArtifactMeta(
        model="densenet_bc22_k8",
        num_classes=10,
        input_size=(3, 32, 32),
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        precision="int8",
        labels=LABELS,
    )
    write_sidecar(
        plan,
        meta,
        tensorrt={"version": "11.0.0"},
        gpu={"name": "test", "compute_capability": "9.0"},
        profile={"input": "input", "min": 1, "opt": 8, "max": 16},
        precision="int8",
    )
    return str(plan)


def test_onnx_repository_config_fields(tiny_onnx, tmp_path):
    repo = tmp_path / "repo"
    result = dnx(
        "triton",
        tiny_onnx,
        "--repo",
        repo,
        "--max-batch",
        8,
        "--preferred-batch",
        "2,4",
        "--instances",
        2,
        "--kind",
        "cpu",
        "--max-queue-delay-us",
        500,
        "--json",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["model"] == "densenet_bc22_k8" and doc["platform"] == "onnxruntime_onnx"
    assert doc["repo"] == str(repo.resolve())

    model_dir = repo / "densenet_bc22_k8"
    config = parse(model_dir / "config.pbtxt")
    assert config.name == "densenet_bc22_k8" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    (inp,), (out,) = config.input, config.output
    assert (inp.name, list(inp.dims), inp.data_type, inp.format) == (
        "input",
        [3, 32, 32],
        mc.TYPE_FP32,
        mc.ModelInput.FORMAT_NCHW,
    )
    assert (out.name, list(out.dims), out.data_type, out.label_filename) == ("logits", [10], mc.TYPE_FP32, "")
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    (group,) = config.instance_group
    assert (group.count, group.kind) == (2, mc.ModelInstanceGroup.KIND_CPU)
    with open(tiny_onnx, "rb") as fh:
        assert (model_dir / "1" / "model.onnx").read_bytes() == fh.read()
    assert not (model_dir / "labels.txt").exists()
    saved = json.loads((model_dir / "dnx.json").read_text())
    assert ArtifactMeta.from_props(saved["metadata"]) == read_onnx_meta(tiny_onnx)
    # Triton in a container often runs as another user: the repository must be world-readable.
    assert oct((model_dir / "1" / "model.onnx").stat().st_mode & 0o777) == "0o644"


def test_labels_file_and_default_kind(labelled_onnx, tmp_path):
    repo = tmp_path / "repo"
    assert dnx("triton", labelled_onnx, "--repo", repo, "--name", "digits").exit_code == 0
    config = parse(repo / "digits" / "config.pbtxt")
    assert config.output[0].label_filename == "labels.txt"
    assert (repo / "digits" / "labels.txt").read_text().splitlines() == LABELS
    assert config.max_batch_size == 8  # the default for a dynamic batch axis
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_AUTO  # ONNX Runtime: GPU if present


def test_fp16_io_types_come_from_the_graph(tmp_path):
    art = tiny_graph(tmp_path / "half.onnx", dtype="float16")
    assert dnx("triton", art, "--repo", tmp_path / "repo").exit_code == 0
    config = parse(tmp_path / "repo" / "handmade" / "config.pbtxt")
    assert config.input[0].data_type == mc.TYPE_FP16 and config.output[0].data_type == mc.TYPE_FP16
    assert list(config.input[0].dims) == [3, 8, 8] and list(config.output[0].dims) == [3]


def test_fixed_batch_artifact_gets_full_dims_and_no_batching(tmp_path):
    art = tiny_graph(tmp_path / "fixed.onnx", batch=2)
    assert dnx("triton", art, "--repo", tmp_path / "repo").exit_code == 0
    config = parse(tmp_path / "repo" / "handmade" / "config.pbtxt")
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [2, 3, 8, 8] and list(config.output[0].dims) == [2, 3]
    # Triton allows FORMAT_NCHW only with 3 dims, and no dynamic batcher without a batch axis.
    assert config.input[0].format == mc.ModelInput.FORMAT_NONE
    assert not config.HasField("dynamic_batching")
    one_line_error(dnx("triton", art, "--repo", tmp_path / "repo2", "--max-batch", 4), match="fixed batch of 2")
    assert not (tmp_path / "repo2").exists()


def test_plan_config_from_sidecar_and_profile_refusal(fake_plan, tmp_path):
    repo = tmp_path / "repo"
    result = dnx("triton", fake_plan, "--repo", repo, "--json")
    assert result.exit_code == 0, result.output
    config = parse(repo / "densenet_bc22_k8" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 16  # the profile's max
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert config.input[0].data_type == mc.TYPE_FP32 and list(config.input[0].dims) == [3, 32, 32]
    assert config.output[0].label_filename == "labels.txt"
    assert (repo / "densenet_bc22_k8" / "1" / "model.plan").is_file()
    assert (repo / "densenet_bc22_k8" / "1" / "model.plan.json").is_file()
    assert parse(repo / "densenet_bc22_k8" / "config.pbtxt").max_batch_size == 16

    before = tree(repo)
    line = one_line_error(dnx("triton", fake_plan, "--repo", repo, "--max-batch", 32), match="--max-batch 32")
    assert "profile" in line and "16" in line
    one_line_error(dnx("triton", fake_plan, "--repo", repo, "--kind", "cpu"), match="only on a GPU")
    assert tree(repo) == before
    assert dnx("triton", fake_plan, "--repo", tmp_path / "r8", "--max-batch", 8).exit_code == 0
    assert parse(tmp_path / "r8" / "densenet_bc22_k8" / "config.pbtxt").max_batch_size == 8


def test_versions_models_and_updates_keep_other_models(tiny_onnx, labelled_onnx, fake_plan, tmp_path):
    repo = tmp_path / "repo"
    assert dnx("triton", fake_plan, "--repo", repo, "--name", "other").exit_code == 0
    other = tree(repo / "other")

    result = dnx("triton", tiny_onnx, labelled_onnx, "--repo", repo, "--name", "dn", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["models"][0]["versions"] == [1, 2]
    config = parse(repo / "dn" / "config.pbtxt")
    assert config.version_policy.HasField("all")  # every version is served, clients pick one
    assert sorted(os.listdir(repo / "dn")) == ["1", "2", "config.pbtxt", "dnx.json", "labels.txt"]

    # Updating adds the next version; an explicit --version of an existing one is refused (M5) unless
    # --replace, which replaces that one only.
    assert dnx("triton", tiny_onnx, "--repo", repo, "--name", "dn").exit_code == 0
    assert (repo / "dn" / "3" / "model.onnx").is_file()
    before = tree(repo)
    line = one_line_error(
        dnx("triton", tiny_onnx, "--repo", repo, "--name", "dn", "--version", 2), match="already has version 2"
    )
    assert "--replace" in line and "version 4" in line
    one_line_error(
        dnx("triton", tiny_onnx, labelled_onnx, "--repo", repo, "--name", "dn", "--version", 3),
        match="already has version 3",
    )
    assert tree(repo) == before
    assert dnx("triton", tiny_onnx, "--repo", repo, "--name", "dn", "--version", 2, "--replace").exit_code == 0
    with open(tiny_onnx, "rb") as fh:
        assert (repo / "dn" / "2" / "model.onnx").read_bytes() == fh.read()
    versions = json.loads((repo / "dn" / "dnx.json").read_text())["versions"]
    assert versions == {"1": "tiny.onnx", "2": "tiny.onnx", "3": "tiny.onnx"}  # every served version, not the last
    assert sorted(d for d in os.listdir(repo / "dn") if d.isdigit()) == ["1", "2", "3"]
    assert tree(repo / "other") == other
    assert not [d for d in os.listdir(repo) if d.startswith(".dnx-staging")]

    # A different signature under an existing name is refused and changes nothing.
    before = tree(repo)
    handmade = tiny_graph(tmp_path / "h.onnx")
    one_line_error(dnx("triton", handmade, "--repo", repo, "--name", "dn"), match="signature")
    # An ONNX model and a plan cannot be versions of one Triton model...
    one_line_error(dnx("triton", tiny_onnx, fake_plan, "--repo", repo, "--name", "mixed"), match="--as models")
    assert tree(repo) == before
    # ...but they can be separate models.
    result = dnx("triton", tiny_onnx, fake_plan, "--repo", repo, "--name", "pair", "--as", "models", "--json")
    assert result.exit_code == 0, result.output
    models = {m["model"]: m["platform"] for m in json.loads(result.stdout)["models"]}
    assert models == {"pair_onnx_fp32": "onnxruntime_onnx", "pair_plan_int8": "tensorrt_plan"}
    for name in models:
        assert parse(repo / name / "config.pbtxt").name == name
    assert tree(repo / "other") == other


def test_new_version_keeps_existing_serving_options(tiny_onnx, labelled_onnx, tmp_path):
    repo = tmp_path / "repo"
    config_path = repo / "dn" / "config.pbtxt"
    assert (
        dnx(
            "triton",
            tiny_onnx,
            "--repo",
            repo,
            "--name",
            "dn",
            "--max-batch",
            16,
            "--instances",
            2,
            "--preferred-batch",
            "4,8",
            "--kind",
            "cpu",
            "--max-queue-delay-us",
            300,
        ).exit_code
        == 0
    )

    # A new version without flags: the config keeps every serving option (it used to reset them).
    result = dnx("triton", labelled_onnx, "--repo", repo, "--name", "dn", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["models"][0]["versions"] == [2]
    config = parse(config_path)
    assert config.max_batch_size == 16
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, mc.ModelInstanceGroup.KIND_CPU)]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 300
    assert config.version_policy.HasField("all")

    # Explicit options override; preferred sizes above the new max batch are dropped, not refused.
    result = dnx("triton", tiny_onnx, "--repo", repo, "--name", "dn", "--max-batch", 4, "--instances", 1)
    assert result.exit_code == 0, result.output
    config = parse(config_path)
    assert config.max_batch_size == 4 and config.instance_group[0].count == 1
    assert list(config.dynamic_batching.preferred_batch_size) == [4]
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert config.dynamic_batching.max_queue_delay_microseconds == 300

    # A new model with no flags still gets the defaults.
    assert dnx("triton", tiny_onnx, "--repo", repo, "--name", "fresh").exit_code == 0
    config = parse(repo / "fresh" / "config.pbtxt")
    assert config.max_batch_size == 8 and config.instance_group[0].count == 1
    assert list(config.dynamic_batching.preferred_batch_size) == []
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_AUTO


def test_python_backend_repository(labelled_onnx, tmp_path):
    repo = tmp_path / "repo"
    assert dnx("triton", labelled_onnx, "--repo", repo, "--name", "py", "--backend", "python").exit_code == 0
    config = parse(repo / "py" / "config.pbtxt")
    assert config.backend == "python" and config.platform == ""
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["dnx.artifact"] == "model.onnx" and params["dnx.backend"] == "onnxruntime"
    assert ArtifactMeta.from_props(json.loads(params["dnx.metadata"])).labels == LABELS
    version_dir = repo / "py" / "1"
    assert sorted(os.listdir(version_dir)) == ["model.onnx", "model.py"]
    source = (version_dir / "model.py").read_text()
    assert "class TritonPythonModel" in source and "open_runner" in source


def test_openvino_ir_repository(tiny_onnx, tmp_path):
    ov = pytest.importorskip("openvino", reason="openvino (extra 'openvino') is not installed")
    xml = str(tmp_path / "ir" / "model.xml")
    os.makedirs(os.path.dirname(xml))
    ov.save_model(ov.convert_model(tiny_onnx), xml)
    write_sidecar(xml, read_onnx_meta(tiny_onnx), target="openvino")
    assert dnx("triton", xml, "--repo", tmp_path / "repo", "--name", "ir").exit_code == 0
    config = parse(tmp_path / "repo" / "ir" / "config.pbtxt")
    assert config.backend == "openvino" and config.max_batch_size == 8
    assert config.input[0].data_type == mc.TYPE_FP32 and list(config.input[0].dims) == [3, 32, 32]
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert sorted(os.listdir(tmp_path / "repo" / "ir" / "1")) == ["model.bin", "model.xml", "model.xml.json"]
    one_line_error(dnx("triton", xml, "--repo", tmp_path / "r2", "--kind", "gpu"), match="CPU")


# Every key Triton's openvino backend reads from `parameters` (openvino_backend src/openvino.cc
# ModelState::ParseParameters): anything else is ignored by it, so a misspelt key would silently do nothing.
OPENVINO_BACKEND_KEYS = {
    "PERFORMANCE_HINT",
    "NUM_STREAMS",
    "INFERENCE_NUM_THREADS",
    "COMPILATION_NUM_THREADS",
    "HINT_BF16",
    "SKIP_OV_DYNAMIC_BATCHSIZE",
    "ENABLE_BATCH_PADDING",
    "RESHAPE_IO_LAYERS",
    "CPU_EXTENSION_PATH",
}


@pytest.fixture(scope="module")
def built_irs(tiny_onnx, tmp_path_factory):
    """tiny_onnx built by `dnx build-engine --target openvino` as fp32 and as bf16 IR (sidecars included)."""
    pytest.importorskip("openvino", reason="openvino (extra 'openvino') is not installed")
    out = tmp_path_factory.mktemp("irs")
    irs = {}
    for precision, flags in (("fp32", []), ("bf16", ["--bf16"])):
        xml = str(out / f"tiny.{precision}.xml")
        result = dnx("build-engine", tiny_onnx, "--target", "openvino", *flags, "-o", xml)
        assert result.exit_code == 0, result.output
        irs[precision] = xml
    return irs


def params_of(path) -> dict:
    return {k: v.string_value for k, v in parse(path).parameters.items()}


def test_openvino_config_keeps_the_irs_inference_precision(built_irs, tmp_path, caplog):
    repo = tmp_path / "repo"
    # bf16 build (sidecar openvino.inference_precision "bf16"): the backend's HINT_BF16 asks OpenVINO for bf16.
    assert dnx("triton", built_irs["bf16"], "--repo", repo, "--name", "bf").exit_code == 0
    assert params_of(repo / "bf" / "config.pbtxt") == {"HINT_BF16": "YES", "PERFORMANCE_HINT": "LATENCY"}

    # fp32 build ("f32"): the backend has no key that forces f32, so none is written, and the user is told
    # (on AMX CPUs OpenVINO would run it in bf16) and pointed to the python backend, which keeps f32.
    with caplog.at_level("WARNING", logger="densenet_deploy.serve.repository"):
        assert dnx("triton", built_irs["fp32"], "--repo", repo, "--name", "fp").exit_code == 0
    params = params_of(repo / "fp" / "config.pbtxt")
    assert params == {"PERFORMANCE_HINT": "LATENCY"}
    assert any("cannot ask OpenVINO" in r.getMessage() and "--backend python" in r.getMessage() for r in caplog.records)
    py = dnx("triton", built_irs["fp32"], "--repo", repo, "--name", "fp_py", "--backend", "python")
    assert py.exit_code == 0, py.output
    assert params_of(repo / "fp_py" / "config.pbtxt")["dnx.backend"] == "openvino"
    with open_runner_for(repo / "fp_py" / "1" / "model.xml") as runner:  # what model.py opens: f32 from the sidecar
        assert runner.inference_precision == "f32"

    # Several instances share the backend's one compiled model: one stream each, as the backend's README pairs them.
    assert dnx("triton", built_irs["bf16"], "--repo", repo, "--name", "many", "--instances", 3).exit_code == 0
    assert params_of(repo / "many" / "config.pbtxt") == {
        "HINT_BF16": "YES",
        "PERFORMANCE_HINT": "THROUGHPUT",
        "NUM_STREAMS": "3",
    }
    for name in ("bf", "fp", "many"):
        assert set(params_of(repo / name / "config.pbtxt")) <= OPENVINO_BACKEND_KEYS

    # One config serves every version: an fp32 and a bf16 IR cannot share it, in one call or by an update.
    before = tree(repo)
    one_line_error(
        dnx("triton", built_irs["fp32"], built_irs["bf16"], "--repo", repo, "--name", "mix"), match="--as models"
    )
    one_line_error(dnx("triton", built_irs["fp32"], "--repo", repo, "--name", "bf"), match="HINT_BF16")
    assert tree(repo) == before
    # The same precision again is a plain new version; its config keeps the hint.
    assert dnx("triton", built_irs["bf16"], "--repo", repo, "--name", "bf").exit_code == 0
    assert params_of(repo / "bf" / "config.pbtxt")["HINT_BF16"] == "YES"


def open_runner_for(path):
    from densenet_deploy.runners import open_runner

    return open_runner(str(path))


@pytest.fixture(scope="module")
def bf16_onnx(tiny_onnx, tmp_path_factory):
    pytest.importorskip("openvino", reason="openvino (extra 'openvino') runs bf16 ONNX graphs on the CPU")
    from densenet_deploy.exporters.bf16 import convert_bf16

    path = str(tmp_path_factory.mktemp("bf16") / "tiny.bf16.onnx")
    convert_bf16(tiny_onnx, path)
    return path


def test_bf16_onnx_runs_on_the_openvino_runner_in_the_python_backend(bf16_onnx, tiny_onnx, tmp_path):
    from densenet_deploy.runners import open_runner

    repo = tmp_path / "repo"
    # Triton's onnxruntime platform cannot run it: refused, pointing at the python backend.
    one_line_error(dnx("triton", bf16_onnx, "--repo", repo), match="--backend python")
    assert not repo.exists()

    result = dnx("triton", bf16_onnx, "--repo", repo, "--name", "bf", "--backend", "python")
    assert result.exit_code == 0, result.output
    params = params_of(repo / "bf" / "config.pbtxt")
    assert params["dnx.artifact"] == "model.onnx" and params["dnx.backend"] == "openvino"
    # What model.py does with those parameters: the copied graph on the named runner, as dnx runs the source.
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with (
        open_runner(str(repo / "bf" / "1" / "model.onnx"), backend=params["dnx.backend"]) as served,
        open_runner(bf16_onnx) as source,
    ):
        assert served.backend == source.backend == "openvino" and served.inference_precision == "bf16"
        np.testing.assert_array_equal(served.run(x), source.run(x))

    # The runner backend is one config parameter for every version: an fp32 graph (ONNX Runtime) cannot join.
    before = tree(repo)
    one_line_error(dnx("triton", tiny_onnx, "--repo", repo, "--name", "bf", "--backend", "python"), match="dnx.backend")
    one_line_error(
        dnx("triton", bf16_onnx, tiny_onnx, "--repo", repo, "--name", "mixed", "--backend", "python"),
        match="--as models",
    )
    assert tree(repo) == before


@pytest.mark.parametrize(
    "args, match",
    [
        (["model.txt"], "unknown artifact type"),
        (["@tiny", "--name", "bad/name"], "not usable"),
        (["@tiny", "--name", "has space"], "not usable"),
        (["@tiny", "--name", ".hidden"], "not usable"),
        (["@tiny", "--preferred-batch", "4,16"], "1..8"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, match, tiny_onnx, tmp_path):
    (tmp_path / "model.txt").write_text("not a model")
    args = [tiny_onnx if a == "@tiny" else str(tmp_path / a) if a.endswith(".txt") else a for a in args]
    one_line_error(dnx("triton", *args, "--repo", tmp_path / "repo"), match=match)
    assert not (tmp_path / "repo").exists()


def test_repo_path_that_is_a_file(tiny_onnx, tmp_path):
    target = tmp_path / "repo"
    target.write_text("I am a file")
    one_line_error(dnx("triton", tiny_onnx, "--repo", target), match="is a file")
    assert target.read_text() == "I am a file"


def test_written_model_file_is_the_artifact(tiny_onnx, tmp_path):
    """The copied model still runs and gives the source artifact's logits (no re-serialisation)."""
    from densenet_deploy.runners import open_runner

    assert dnx("triton", tiny_onnx, "--repo", tmp_path / "repo").exit_code == 0
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    copied = str(tmp_path / "repo" / "densenet_bc22_k8" / "1" / "model.onnx")
    with open_runner(tiny_onnx) as a, open_runner(copied) as b:
        np.testing.assert_array_equal(a.run(x), b.run(x))
    shutil.rmtree(tmp_path / "repo")


def test_client_metadata_from_repository_and_unreachable_server(labelled_onnx, tmp_path):
    pytest.importorskip("tritonclient.http", reason="tritonclient[http] (extra 'triton') is not installed")
    from densenet_deploy.serve.client import load_client_meta, top_k
    from densenet_deploy.serve.server import free_port

    assert dnx("triton", labelled_onnx, "--repo", tmp_path / "repo", "--name", "m").exit_code == 0
    meta = load_client_meta(str(tmp_path / "repo" / "m"))  # reads the model directory's dnx.json
    assert meta == read_onnx_meta(labelled_onnx)
    top = top_k(np.arange(10, dtype=np.float32), meta, 3)
    assert [t["label"] for t in top] == ["class_9", "class_8", "class_7"]
    assert sum(t["probability"] for t in top_k(np.zeros(10), meta, 10)) == pytest.approx(1.0)

    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    port = free_port()  # nothing listens there
    one_line_error(
        dnx("triton-client", f"http://127.0.0.1:{port}", "m", tmp_path / "x.png", "--timeout", 5),
        match="cannot reach Triton",
    )


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("missing.png", None, "missing.png: no such image file"),
        ("empty.png", b"", "empty.png is not a readable image"),
        ("text.png", b"not a png", "text.png is not a readable image"),
        ("pictures", "dir", "pictures is a directory, not an image"),
        ("--artifact", "missing.onnx", "--artifact {tmp}/missing.onnx: no such file or directory"),
    ],
)
def test_client_checks_local_images_before_contacting_the_server(tmp_path, name, content, match):
    pytest.importorskip("tritonclient.http", reason="tritonclient[http] (extra 'triton') is not installed")
    import socket

    from PIL import Image

    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(good)
    if name == "--artifact":  # a good image, but local metadata that is not there
        args = [good, "--artifact", tmp_path / content]
    else:
        if content == "dir":
            (tmp_path / name).mkdir()
        elif content is not None:
            (tmp_path / name).write_bytes(content)
        args = [good, tmp_path / name]
    with socket.socket() as server:  # a listener that records whether the client tried to connect
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.setblocking(False)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        one_line_error(dnx("triton-client", url, "m", *args, "--timeout", 1), match=match.format(tmp=tmp_path))
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected


def plan_with_profile(tmp_path, lo, opt, hi, batch=None, name="model.plan"):
    """A placeholder plan with the sidecar `dnx build-engine` writes for profile lo/opt/hi (metadata batch
    `batch`: what it records when the profile is a single size). Config generation reads only the sidecar."""
    plan = tmp_path / name
    plan.write_bytes(b"placeholder: config generation never reads the engine")
    meta = ArtifactMeta(
        model="densenet_bc22_k8",
        num_classes=10,
        input_size=(3, 32, 32),
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        precision="fp16",
        batch=batch,
    )
    write_sidecar(
        plan,
        meta,
        tensorrt={"version": "11.0.0"},
        gpu={"name": "test", "compute_capability": "9.0"},
        profile={"input": "input", "min": lo, "opt": opt, "max": hi},
        precision="fp16",
    )
    return str(plan)


def test_fixed_batch_plan_gets_full_dims_and_no_batching(tmp_path):
    """build-engine of a fixed-batch export writes metadata batch 4 and profile 4/4/4: Triton's TensorRT backend
    refuses max_batch_size > 0 for such an engine, so it is configured like a fixed-batch ONNX graph."""
    plan = plan_with_profile(tmp_path, 4, 4, 4, batch=4)
    for backend in ((), ("--backend", "python")):
        repo = tmp_path / f"repo{len(backend)}"
        result = dnx("triton", plan, "--repo", repo, "--name", "fixed", *backend)
        assert result.exit_code == 0, result.output
        config = parse(repo / "fixed" / "config.pbtxt")
        assert config.max_batch_size == 0
        assert list(config.input[0].dims) == [4, 3, 32, 32] and list(config.output[0].dims) == [4, 10]
        assert config.input[0].format == mc.ModelInput.FORMAT_NONE
        assert not config.HasField("dynamic_batching")
    line = one_line_error(dnx("triton", plan, "--repo", tmp_path / "r2", "--max-batch", 4), match="fixed batch of 4")
    assert "--min-batch 1" in line
    assert not (tmp_path / "r2").exists()


def test_plan_profile_above_batch_1_is_refused(tmp_path):
    """The dynamic batcher hands the engine single requests; a profile from batch 2 up cannot run them."""
    plan = plan_with_profile(tmp_path, 2, 8, 16)
    for backend in ((), ("--backend", "python")):
        line = one_line_error(dnx("triton", plan, "--repo", tmp_path / "repo", *backend), match="batch sizes 2..16")
        assert "--min-batch 1" in line
    assert not (tmp_path / "repo").exists()
    # A sidecar whose fixed batch disagrees with its profile describes no engine dnx built.
    bad = plan_with_profile(tmp_path, 1, 4, 8, batch=4, name="bad.plan")
    one_line_error(dnx("triton", bad, "--repo", tmp_path / "repo"), match="fixed batch of 4")


def test_model_path_that_is_a_file_is_refused_before_staging(tiny_onnx, tmp_path):
    repo = tmp_path / "r3"
    repo.mkdir()
    (repo / "m4").write_text("a file")
    one_line_error(dnx("triton", tiny_onnx, "--repo", repo, "--name", "m4"), match="m4 exists and is not a directory")
    assert sorted(os.listdir(repo)) == ["m4"]  # no staging directory left behind
    # A version path or a file dnx writes that has the wrong type is refused the same way.
    assert dnx("triton", tiny_onnx, "--repo", repo, "--name", "m").exit_code == 0
    (repo / "m" / "2").write_text("a file")
    one_line_error(
        dnx("triton", tiny_onnx, "--repo", repo, "--name", "m", "--version", 2, "--replace"), match="is not a directory"
    )
    (repo / "m" / "2").unlink()
    (repo / "m" / "labels.txt").mkdir()
    before = tree(repo)
    one_line_error(
        dnx("triton", tiny_onnx, "--repo", repo, "--name", "m"), match="labels.txt exists and is a directory"
    )
    assert tree(repo) == before and sorted(os.listdir(repo)) == ["m", "m4"]


def test_repo_that_cannot_be_created(tiny_onnx, tmp_path):
    (tmp_path / "afile").write_text("I am a file")
    for repo in (tmp_path / "afile" / "sub", tmp_path / "afile" / "sub" / "deeper"):
        one_line_error(dnx("triton", tiny_onnx, "--repo", repo), match=f"{tmp_path / 'afile'} is a file")
    one_line_error(dnx("triton", tiny_onnx, "--repo", tmp_path / "missing" / "repo"), match="does not exist")
    if os.path.isdir("/proc/self"):  # a directory that refuses new entries, even to root
        one_line_error(dnx("triton", tiny_onnx, "--repo", "/proc/dnx-repo"), match="cannot create repository /proc")


def test_update_keeps_fields_dnx_does_not_write(tiny_onnx, labelled_onnx, tmp_path):
    repo = tmp_path / "repo"
    config_path = repo / "dn" / "config.pbtxt"
    assert dnx("triton", tiny_onnx, "--repo", repo, "--name", "dn", "--instances", 2).exit_code == 0
    config = parse(config_path)
    # What a user adds by hand: a parameter, a warmup request, a version policy, a batcher option, GPU ids.
    config.parameters["user_key"].string_value = "user value"
    warmup = config.model_warmup.add(name="zeros", batch_size=1)
    warmup.inputs["input"].data_type = mc.TYPE_FP32
    warmup.inputs["input"].dims.extend([3, 32, 32])
    warmup.inputs["input"].zero_data = True
    config.version_policy.specific.versions.append(1)
    config.dynamic_batching.preserve_ordering = True
    config.instance_group[0].kind = mc.ModelInstanceGroup.KIND_GPU
    config.instance_group[0].gpus.append(0)
    config_path.write_text(text_format.MessageToString(config))

    result = dnx("triton", labelled_onnx, "--repo", repo, "--name", "dn", "--json")
    assert result.exit_code == 0, result.output
    merged = parse(config_path)
    assert merged.parameters["user_key"].string_value == "user value"
    assert list(merged.model_warmup) == list(config.model_warmup)
    assert list(merged.version_policy.specific.versions) == [1, 2]  # the new version is served too
    assert merged.dynamic_batching.preserve_ordering
    assert (merged.instance_group[0].count, list(merged.instance_group[0].gpus)) == (2, [0])
    # dnx's own fields follow the new artifact: it has labels.
    assert merged.output[0].label_filename == "labels.txt"

    # Explicit options still win; a CPU instance group cannot keep GPU ids.
    assert dnx("triton", tiny_onnx, "--repo", repo, "--name", "dn", "--kind", "cpu", "--max-batch", 4).exit_code == 0
    merged = parse(config_path)
    assert merged.max_batch_size == 4 and merged.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    assert list(merged.instance_group[0].gpus) == []
    assert merged.parameters["user_key"].string_value == "user value"
    assert list(merged.version_policy.specific.versions) == [1, 2, 3]


def test_python_backend_update_merges_parameters(tiny_onnx, tmp_path):
    repo = tmp_path / "repo"
    config_path = repo / "py" / "config.pbtxt"
    assert dnx("triton", tiny_onnx, "--repo", repo, "--name", "py", "--backend", "python").exit_code == 0
    config = parse(config_path)
    config.parameters["user_key"].string_value = "kept"
    config.parameters["dnx.metadata"].string_value = "{}"  # a dnx key: the new version's value wins
    config_path.write_text(text_format.MessageToString(config))
    assert dnx("triton", tiny_onnx, "--repo", repo, "--name", "py", "--backend", "python").exit_code == 0
    params = params_of(config_path)
    assert params["user_key"] == "kept" and params["dnx.backend"] == "onnxruntime"
    assert ArtifactMeta.from_props(json.loads(params["dnx.metadata"])) == read_onnx_meta(tiny_onnx)


def test_backend_mismatch_names_the_backend(tiny_onnx, tmp_path):
    repo = tmp_path / "repo"
    assert dnx("triton", tiny_onnx, "--repo", repo, "--name", "native").exit_code == 0
    assert dnx("triton", tiny_onnx, "--repo", repo, "--name", "py", "--backend", "python").exit_code == 0
    before = tree(repo)
    line = one_line_error(
        dnx("triton", tiny_onnx, "--repo", repo, "--name", "native", "--backend", "python"),
        match="platform onnxruntime_onnx",
    )
    assert "backend python" in line and "drop --backend python" in line and "signature" not in line
    line = one_line_error(dnx("triton", tiny_onnx, "--repo", repo, "--name", "py"), match="backend python")
    assert "add --backend python" in line and "signature" not in line
    assert tree(repo) == before


def test_label_with_a_line_break_is_refused(tmp_path):
    art = tiny_graph(tmp_path / "nl.onnx", labels=["cat", "sea\nlion", "dog"])
    line = one_line_error(dnx("triton", art, "--repo", tmp_path / "repo"), match="class label 1")
    assert "'sea\\nlion'" in line and "line break" in line
    assert not (tmp_path / "repo").exists()
    ok = tiny_graph(tmp_path / "ok.onnx", labels=["cat", "sea lion", "dog"])
    assert dnx("triton", ok, "--repo", tmp_path / "repo").exit_code == 0
    assert (tmp_path / "repo" / "handmade" / "labels.txt").read_text().splitlines() == ["cat", "sea lion", "dog"]


@pytest.fixture(scope="module")
def ort_deployment(tiny_onnx, tmp_path_factory):
    """tiny_onnx built by `dnx build-engine --target onnxruntime` (com.microsoft ops, CPU recorded in the sidecar)."""
    out = str(tmp_path_factory.mktemp("ort") / "tiny.ort.onnx")
    result = dnx("build-engine", tiny_onnx, "--target", "onnxruntime", "-o", out)
    assert result.exit_code == 0, result.output
    return out


def test_ort_deployment_only_through_the_python_backend(ort_deployment, tmp_path):
    from densenet_deploy.runners import open_runner

    repo = tmp_path / "repo"
    line = one_line_error(dnx("triton", ort_deployment, "--repo", repo), match="ONNX Runtime deployment")
    assert "--backend python" in line and "plain export" in line
    assert not repo.exists()
    result = dnx("triton", ort_deployment, "--repo", repo, "--name", "ort", "--backend", "python")
    assert result.exit_code == 0, result.output
    version_dir = repo / "ort" / "1"
    assert sorted(os.listdir(version_dir)) == ["model.onnx", "model.onnx.json", "model.py"]
    # What model.py opens: the deployment with its sidecar, so dnx's runner checks this CPU.
    with open_runner(
        str(version_dir / "model.onnx"), backend=params_of(repo / "ort" / "config.pbtxt")["dnx.backend"]
    ) as runner:
        assert runner.deployment and runner.deployment["optimized_offline"]
