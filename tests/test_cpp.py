"""cpp/: build dnx_runtime + dnx-infer with CMake, check them against Python ONNX Runtime; cpp-header."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "cpp"
MODEL = "densenet_bc100_k12"
FETCH = "bash cpp/scripts/fetch-onnxruntime-headers.sh"


# --- locating the toolchain and ONNX Runtime ------------------------------------------------------
def _skip_or_fail(reason: str):
    """Skip, unless DNX_REQUIRE_CPP=1 (CI) asks that a missing prerequisite fail the run instead."""
    if os.environ.get("DNX_REQUIRE_CPP") == "1":
        pytest.fail(f"DNX_REQUIRE_CPP=1 but {reason}")
    pytest.skip(reason)


def _ort_include_dir() -> Path | None:
    """DNX_ORT_INCLUDE_DIR, else the fetch script's default location, else the system's headers."""
    candidates = [
        os.environ.get("DNX_ORT_INCLUDE_DIR", ""),
        CPP / "build-deps/onnxruntime/include",
        "/usr/include/onnxruntime",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "onnxruntime_cxx_api.h").is_file():
            return Path(candidate)
    return None


def _ort_library() -> Path | None:
    """The libonnxruntime.so.* inside the installed `onnxruntime` wheel."""
    import onnxruntime

    libs = sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))
    return Path(libs[-1]) if libs else None


@pytest.fixture(scope="session")
def cpp_build(tmp_path_factory) -> Path:
    """Configure and build cpp/ (Release, -j2) once; returns the build directory."""
    for tool in ("cmake", "g++"):
        if shutil.which(tool) is None:
            _skip_or_fail(f"{tool} is not installed (apt-get install cmake g++)")
    include = _ort_include_dir()
    if include is None:
        _skip_or_fail(f"ONNX Runtime C++ headers not found: run `{FETCH}` or set DNX_ORT_INCLUDE_DIR")
    library = _ort_library()
    if library is None:
        _skip_or_fail("the onnxruntime wheel has no libonnxruntime.so* in onnxruntime/capi")
    build = tmp_path_factory.mktemp("cpp-build")
    steps = [
        [
            "cmake",
            "-S",
            str(CPP),
            "-B",
            str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DONNXRUNTIME_INCLUDE_DIR={include}",
            f"-DONNXRUNTIME_LIBRARY={library}",
        ],
        ["cmake", "--build", str(build), "-j2"],
    ]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(step)} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return build


@pytest.fixture(scope="session")
def dnx_infer(cpp_build) -> Path:
    return cpp_build / "dnx-infer"


def run_infer(dnx_infer, *args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(dnx_infer), *map(str, args)], capture_output=True, text=True, timeout=120, **kw)


# Address space for dnx-infer in the bad-input tests: ample for ONNX Runtime and a small model, far
# below what a lying .npy header claims, so a premature allocation fails (std::bad_alloc) instead of
# taking the machine's memory.
MEMORY_LIMIT = 4 << 30


def _limit_memory():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _npy_with_header(path: Path, shape_text: str, data: bytes = b"") -> Path:
    """A version-1 .npy whose header claims `shape_text` (a Python tuple literal), followed by `data`."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}".encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data)
    return path


# --- artifacts --------------------------------------------------------------------------------------
def _export(path: Path) -> str:
    """densenet_bc100_k12, 10 classes, 3x32x32, dynamic batch; returns which exporter made it."""
    if importlib.util.find_spec("densenet_deploy.exporters.onnx") is not None:
        from densenet_deploy.exporters.onnx import export_onnx

        export_onnx(MODEL, str(path), num_classes=10)
        return "densenet_deploy.exporters.onnx.export_onnx"
    # Fallback while exporters/onnx.py does not exist: the same graph and metadata by hand.
    import onnx
    import torch

    from densenet_deploy.core.metadata import ArtifactMeta, write_onnx_meta
    from densenet_deploy.models import build_model, get_spec

    spec = get_spec(MODEL)
    torch.manual_seed(0)
    model = build_model(MODEL, num_classes=10).eval()
    torch.onnx.export(
        model,
        torch.zeros(1, *spec.input_size),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    proto = onnx.load(str(path))
    write_onnx_meta(
        proto, ArtifactMeta(model=MODEL, num_classes=10, input_size=spec.input_size, mean=spec.mean, std=spec.std)
    )
    onnx.save(proto, str(path))
    return "torch.onnx.export fallback"


@pytest.fixture(scope="session")
def cpp_artifacts(tmp_path_factory) -> dict:
    """The ONNX model (with labels added to its metadata), an .npy batch and digits images."""
    import onnx
    from PIL import Image

    from densenet_deploy.core.metadata import read_onnx_meta, write_onnx_meta

    pytest.importorskip("sklearn", reason="scikit-learn provides the digits images")
    from sklearn.datasets import load_digits

    work = tmp_path_factory.mktemp("cpp-artifacts")
    model_path = work / "model.onnx"
    exporter = _export(model_path)
    proto = onnx.load(str(model_path))
    labels = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    write_onnx_meta(proto, read_onnx_meta(proto).replace(labels=labels))
    onnx.save(proto, str(model_path))

    rng = np.random.default_rng(0)
    np.save(work / "batch.npy", rng.standard_normal((3, 3, 32, 32)).astype(np.float32))
    np.save(work / "single.npy", rng.standard_normal((3, 32, 32)).astype(np.float32))

    digits = load_digits()
    images = []
    for i in (0, 7):  # 8x8 gray PNG: enlarged to 32x32, gray -> RGB
        pixels = np.round(digits.images[i] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels, "L").save(work / f"digit{i}.png")
        images.append(work / f"digit{i}.png")
    big = Image.fromarray(np.round(digits.images[3] * 255 / 16).astype(np.uint8), "L").resize((45, 37))
    Image.merge("RGB", [big, big.point(lambda v: 255 - v), big]).save(work / "digit3_rgb.png")  # shrunk
    images.append(work / "digit3_rgb.png")
    return {"dir": work, "model": model_path, "exporter": exporter, "labels": labels, "images": images}


def _ort_logits(model_path, batch: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": batch})[0]


# --- parity with Python ------------------------------------------------------------------------------
def test_runtime_unit_checks(cpp_build):
    """Metadata parsing and the TensorRT plan compatibility rule (no model, no GPU needed)."""
    proc = subprocess.run([str(cpp_build / "runtime_test")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_npy_logits_match_python_onnxruntime(dnx_infer, cpp_artifacts):
    art = cpp_artifacts
    proc = run_infer(
        dnx_infer, art["model"], art["dir"] / "batch.npy", art["dir"] / "single.npy", "--json", "--topk", "3"
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["model"] == MODEL and doc["backend"] == "onnxruntime"

    batch = np.concatenate([np.load(art["dir"] / "batch.npy"), np.load(art["dir"] / "single.npy")[None]])
    ref = _ort_logits(art["model"], batch)
    got = np.array([r["logits"] for r in doc["results"]], dtype=np.float32)
    assert [(Path(r["input"]).name, r["row"]) for r in doc["results"]] == [
        ("batch.npy", 0),
        ("batch.npy", 1),
        ("batch.npy", 2),
        ("single.npy", 0),
    ]
    assert got.shape == ref.shape == (4, 10)
    assert np.abs(got - ref).max() <= 1e-5
    for result, row in zip(doc["results"], ref):
        best = np.argsort(-row, kind="stable")[:3]
        assert [t["index"] for t in result["topk"]] == best.tolist()
        assert [t["label"] for t in result["topk"]] == [art["labels"][i] for i in best]
        assert result["topk"][0]["score"] == pytest.approx(float(row.max()), abs=1e-5)


def test_image_top1_matches_python_preprocessing(dnx_infer, cpp_artifacts):
    """Images: C++ (stb decode + resize) against densenet_deploy.data.preprocess_image + ONNX Runtime."""
    from densenet_deploy.core.metadata import read_onnx_meta
    from densenet_deploy.data.loading import preprocess_image

    art = cpp_artifacts
    meta = read_onnx_meta(art["model"])
    proc = run_infer(dnx_infer, art["model"], *art["images"], "--json")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert len(results) == len(art["images"])
    batch = np.stack([preprocess_image(p, meta.input_size, meta.mean, meta.std) for p in art["images"]])
    ref = _ort_logits(art["model"], batch)
    for result, row in zip(results, ref):
        got = np.array(result["logits"], dtype=np.float32)
        assert result["topk"][0]["index"] == int(row.argmax())
        # Resizing may round differently from PIL by one 8-bit level at a few pixels.
        assert np.abs(got - row).max() <= 5e-3


def test_16bit_png_logits_match_python(dnx_infer, cpp_artifacts, tmp_path):
    """A 16-bit gray PNG: stb keeps the high byte (value >> 8) and so must Python (PIL's convert("L")
    saturated it at 255, logits then differed by up to 3). X * 256 + low bits gives X's 8-bit logits."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from densenet_deploy.core.metadata import read_onnx_meta
    from densenet_deploy.data.loading import preprocess_image

    art = cpp_artifacts
    meta = read_onnx_meta(art["model"])
    x = np.round(load_digits().images[4] * 255 / 16).astype(np.uint16)
    low_bits = np.random.default_rng(1).integers(0, 256, size=x.shape, dtype=np.uint16)
    Image.fromarray(x.astype(np.uint8)).save(tmp_path / "digit8.png")
    Image.fromarray(x * 256 + low_bits).save(tmp_path / "digit16.png")
    with Image.open(tmp_path / "digit16.png") as image:
        assert image.mode == "I;16"
    paths = [tmp_path / "digit16.png", tmp_path / "digit8.png"]
    proc = run_infer(dnx_infer, art["model"], *paths, "--json")
    assert proc.returncode == 0, proc.stderr
    got = np.array([r["logits"] for r in json.loads(proc.stdout)["results"]], dtype=np.float32)
    np.testing.assert_array_equal(got[0], got[1])  # C++: the 16-bit file is the 8-bit one
    ref = _ort_logits(
        art["model"], np.stack([preprocess_image(p, meta.input_size, meta.mean, meta.std) for p in paths])
    )
    np.testing.assert_array_equal(ref[0], ref[1])  # Python: likewise
    assert np.abs(got - ref).max() <= 5e-3


def test_text_output(dnx_infer, cpp_artifacts):
    art = cpp_artifacts
    proc = run_infer(dnx_infer, art["model"], art["images"][0], "--topk", "2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{MODEL} (onnxruntime, fp32)")
    assert lines[1].startswith(f"{art['images'][0]}:") and lines[1].count("(") == 2


# --- bad input: exit 2, nothing on stdout, one line on stderr ------------------------------------------
def _bad_files(work: Path, model: Path) -> dict:
    import onnx

    np.save(work / "wrong_shape.npy", np.zeros((2, 3, 28, 28), np.float32))
    np.save(work / "float64.npy", np.zeros((1, 3, 32, 32)))
    (work / "corrupt.onnx").write_bytes(b"this is not a protobuf" * 50)
    (work / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    proto = onnx.load(str(model))
    del proto.metadata_props[:]
    onnx.save(proto, str(work / "no_meta.onnx"))
    (work / "engine.plan").write_bytes(b"\0" * 16)
    # ~150 bytes whose header claims 16 GiB of float32 (the most the reader's 1 << 32 cap lets through).
    _npy_with_header(work / "claims_16gib.npy", "(1, 1, 65536, 65536)", b"\0" * 8)
    _npy_with_header(work / "claims_1_6gb.npy", "(1, 1, 20000, 20000)")
    _npy_with_header(work / "huge_dim.npy", "(99999999999999999999999, 3, 32, 32)")
    return {
        "missing model": (["missing.onnx", "batch.npy"], "missing.onnx: no such file"),
        "missing input": ([model, "missing.png"], "missing.png: no such file"),
        "wrong tensor shape": ([model, "wrong_shape.npy"], "expects (N, 3, 32, 32)"),
        "wrong dtype": ([model, "float64.npy"], "not a float32 .npy"),
        "corrupt model": (["corrupt.onnx", "batch.npy"], "not a readable ONNX model"),
        "corrupt image": ([model, "corrupt.png"], "not a readable image"),
        "no metadata": (["no_meta.onnx", "batch.npy"], "has no dnx metadata"),
        "plan without sidecar": (["engine.plan", "batch.npy"], "has no sidecar"),
        "unknown extension": (["batch.npy", "batch.npy"], "unknown model type"),
        "npy header claims 16 GiB": (
            [model, "claims_16gib.npy"],
            "file holds fewer values than its shape (1, 1, 65536, 65536) needs (8 bytes of data after the header)",
        ),
        "npy header claims 1.6 GB": ([model, "claims_1_6gb.npy"], "fewer values than its shape"),
        "npy dimension overflows": (
            [model, "huge_dim.npy"],
            "dimension 99999999999999999999999 in header is too large",
        ),
        "no input": ([model], "need a MODEL and at least one INPUT (see 'dnx-infer --help')"),
        "bad topk": ([model, "batch.npy", "--topk", "0"], "--topk must be a positive integer"),
        "topk not a number": ([model, "batch.npy", "--topk=x"], "--topk must be a positive integer, got 'x'"),
        "unknown option": ([model, "batch.npy", "--fast"], "unknown option --fast (see 'dnx-infer --help')"),
    }


BAD_CASES = [
    "missing model",
    "missing input",
    "wrong tensor shape",
    "wrong dtype",
    "corrupt model",
    "corrupt image",
    "no metadata",
    "plan without sidecar",
    "unknown extension",
    "npy header claims 16 GiB",
    "npy header claims 1.6 GB",
    "npy dimension overflows",
    "no input",
    "bad topk",
    "topk not a number",
    "unknown option",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_fails_with_one_line(dnx_infer, cpp_artifacts, case):
    """Exit 2 and one `error: ...` line, usage errors included; under a 4 GiB address-space limit, so an
    .npy header's size is checked against the file before anything is allocated for it."""
    work = cpp_artifacts["dir"]
    args, message = _bad_files(work, cpp_artifacts["model"])[case]
    proc = subprocess.run(
        [str(dnx_infer), *map(str, args), "--json"],
        capture_output=True,
        text=True,
        cwd=work,
        timeout=120,
        preexec_fn=_limit_memory,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr)  # not a signal (abort/segfault)
    assert proc.stdout == ""
    assert proc.stderr.endswith("\n") and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and "usage:" not in proc.stderr, proc.stderr
    assert message in proc.stderr


def test_help_prints_usage(dnx_infer):
    proc = run_infer(dnx_infer, "--help")
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("usage: dnx-infer MODEL INPUT...")


def test_bf16_graph_is_refused_naming_the_reason(dnx_infer, cpp_artifacts, tmp_path):
    """A bf16 graph (for TensorRT) parses but ONNX Runtime's CPU provider has no bfloat16 Conv: say so,
    not "not a readable ONNX model"."""
    pytest.importorskip("ml_dtypes", reason="ml_dtypes writes bfloat16 weights")
    from densenet_deploy.exporters.bf16 import convert_bf16
    from densenet_deploy.exporters.onnx import export_onnx

    export_onnx("densenet_bc22_k8", str(tmp_path / "tiny.onnx"), num_classes=10, samples=2)
    convert_bf16(str(tmp_path / "tiny.onnx"), str(tmp_path / "tiny.bf16.onnx"), samples=2)
    proc = run_infer(dnx_infer, tmp_path / "tiny.bf16.onnx", cpp_artifacts["dir"] / "batch.npy")
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "not a readable ONNX model" not in proc.stderr
    assert "is a bf16 graph, made for TensorRT" in proc.stderr and "no bfloat16 kernels" in proc.stderr
    assert "run the fp32 export" in proc.stderr and "dnx build-engine" in proc.stderr
    # The fp32 export it came from runs.
    assert run_infer(dnx_infer, tmp_path / "tiny.onnx", cpp_artifacts["dir"] / "batch.npy").returncode == 0


def test_plan_needs_tensorrt_build(dnx_infer, cpp_artifacts, tmp_path):
    """A .plan with a valid sidecar is refused by a build without TensorRT, naming the CMake option."""
    from densenet_deploy.core.metadata import read_onnx_meta
    from densenet_deploy.core.sidecars import write_sidecar

    plan = tmp_path / "model.plan"
    plan.write_bytes(b"\0" * 16)
    write_sidecar(
        plan,
        read_onnx_meta(cpp_artifacts["model"]),
        tensorrt={"version": "11.0.0"},
        gpu={"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"},
    )
    proc = run_infer(dnx_infer, plan, cpp_artifacts["dir"] / "batch.npy")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "-DDNX_WITH_TENSORRT=ON" in proc.stderr and proc.stderr.count("\n") == 1


# --- cpp-header ------------------------------------------------------------------------------------------
def test_cpp_header_compiles_and_matches_metadata(cpp_artifacts, tmp_path):
    from densenet_deploy.core.metadata import read_onnx_meta
    from densenet_deploy.exporters.cpp_header import write_cpp_header

    if shutil.which("g++") is None:
        _skip_or_fail("g++ is not installed")
    header = write_cpp_header(cpp_artifacts["model"], tmp_path / "model.h", namespace="app::model").output
    source = tmp_path / "main.cpp"
    source.write_text(
        '#include "model.h"\n#include <cstdio>\n'
        "static_assert(app::model::kInputShape[1] == 3 && app::model::kOutputShape[1] == 10);\n"
        "int main() {\n"
        '  std::printf("%s %s %s %lld %lld %lld %lld %.6f %.6f %s %zu\\n", app::model::kModelName,\n'
        "              app::model::kInputName, app::model::kOutputName, (long long)app::model::kBatch,\n"
        "              (long long)app::model::kChannels, (long long)app::model::kHeight,\n"
        "              (long long)app::model::kWidth, app::model::kMean[0], app::model::kStd[2],\n"
        "              app::model::kLabels[9], app::model::kLabels.size());\n}\n"
    )
    exe = tmp_path / "main"
    build = subprocess.run(
        ["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic", str(source), "-o", str(exe)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    meta = read_onnx_meta(cpp_artifacts["model"])
    assert out[:7] == [MODEL, "input", "logits", "-1", "3", "32", "32"]
    assert float(out[7]) == pytest.approx(meta.mean[0], abs=1e-6)
    assert float(out[8]) == pytest.approx(meta.std[2], abs=1e-6)
    assert out[9:] == ["nine", "10"]
    assert Path(header).read_text().startswith("// Generated by `dnx cpp-header` from model.onnx")


def test_cpp_header_escapes_and_refuses(tmp_path):
    from densenet_deploy.core.errors import ArtifactError
    from densenet_deploy.core.metadata import ArtifactMeta
    from densenet_deploy.exporters.cpp_header import render_cpp_header, write_cpp_header

    meta = ArtifactMeta(
        model="m", num_classes=2, input_size=(1, 8, 8), mean=(0.5,), std=(0.25,), labels=['say "hi"\\', "caf\u00e9??="]
    )
    text = render_cpp_header(meta, "m.onnx")
    assert '"say \\"hi\\"\\\\"' in text and '"caf\\303\\251\\?\\?="' in text
    with pytest.raises(ArtifactError, match="no such file"):
        write_cpp_header(tmp_path / "missing.onnx", tmp_path / "out.h")
    with pytest.raises(ArtifactError, match="has no sidecar"):
        write_cpp_header(tmp_path / "missing.plan", tmp_path / "out.h")
    with pytest.raises(ArtifactError, match="not a C\\+\\+ identifier"):
        write_cpp_header(tmp_path / "missing.onnx", tmp_path / "out.h", namespace="1bad")
    assert not (tmp_path / "out.h").exists()
