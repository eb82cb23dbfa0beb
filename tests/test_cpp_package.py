"""cpp/ as a CMake package: `cmake --install`, the classify example built against the installed prefix,
batch and thread-safety contract, and the TensorRT configure-time refusal."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CPP = ROOT / "cpp"
FETCH = "bash cpp/scripts/fetch-onnxruntime-headers.sh"
DNX = Path(sys.executable).with_name("dnx")
FIXED_BATCH = 4
THREADS, PER_THREAD = 4, 50


# --- toolchain and ONNX Runtime (as tests/test_cpp.py finds them) -------------------------------------
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


def _ort_cmake_args() -> list[str]:
    for tool in ("cmake", "g++"):
        if shutil.which(tool) is None:
            _skip_or_fail(f"{tool} is not installed (apt-get install cmake g++)")
    include = _ort_include_dir()
    if include is None:
        _skip_or_fail(f"ONNX Runtime C++ headers not found: run `{FETCH}` or set DNX_ORT_INCLUDE_DIR")
    library = _ort_library()
    if library is None:
        _skip_or_fail("the onnxruntime wheel has no libonnxruntime.so* in onnxruntime/capi")
    return [f"-DONNXRUNTIME_INCLUDE_DIR={include}", f"-DONNXRUNTIME_LIBRARY={library}"]


def _check(step: list, proc: subprocess.CompletedProcess | subprocess.Popen, output: str = ""):
    if proc.returncode != 0:
        text = output or (proc.stdout or "") + (proc.stderr or "")
        pytest.fail(f"{' '.join(map(str, step))} failed:\n{text[-4000:]}")


def _run(*step, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(s) for s in step], capture_output=True, text=True, timeout=300, **kw)
    _check(step, proc)
    return proc


# --- the package, the example and the artifacts, made once -------------------------------------------
@pytest.fixture(scope="session")
def package(tmp_path_factory) -> dict:
    """Train (dnx, in the background) while cpp/ builds and installs to a temp prefix; then build the
    example and the API check against that prefix only, export the model twice and write digits PNGs."""
    ort_args = _ort_cmake_args()
    work = tmp_path_factory.mktemp("cpp-package")
    train = [
        DNX,
        "train",
        "densenet_bc22_k8",
        "--dataset",
        "digits",
        "--epochs",
        "2",
        "--limit",
        "256",
        "--val-limit",
        "64",
        "-o",
        work / "m.pt",
    ]
    trainer = subprocess.Popen([str(s) for s in train], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        build, prefix = work / "build", work / "prefix"
        _run("cmake", "-S", CPP, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DDNX_BUILD_TESTS=OFF", *ort_args)
        _run("cmake", "--build", build, "-j2")
        _run("cmake", "--install", build, "--prefix", prefix)
        shutil.rmtree(build)  # the consumers below can only use the installed package
        apps = {}
        for name, source in {"classify": CPP / "examples/classify", "api_check": CPP / "tests/package"}.items():
            _run(
                "cmake", "-S", source, "-B", work / name, f"-DCMAKE_PREFIX_PATH={prefix}", "-DCMAKE_BUILD_TYPE=Release"
            )
            _run("cmake", "--build", work / name, "-j2")
            apps[name] = work / name / name
    except BaseException:
        trainer.kill()
        trainer.wait()
        raise
    _check(train, trainer, trainer.communicate(timeout=600)[0])

    exports = {"dynamic": [], "fixed": ["--fixed-batch", str(FIXED_BATCH)]}
    procs = {
        key: subprocess.Popen(
            [str(DNX), "export", str(work / "m.pt"), "-o", str(work / f"{key}.onnx"), "--samples", "4", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for key, extra in exports.items()
    }
    for key, proc in procs.items():
        _check(["dnx", "export", key], proc, proc.communicate(timeout=300)[0])
    return {
        "dir": work,
        "prefix": prefix,
        **apps,
        "model": work / "dynamic.onnx",
        "fixed": work / "fixed.onnx",
        "images": _digit_pngs(work / "images", THREADS * PER_THREAD),
    }


def _digit_pngs(folder: Path, count: int) -> list[Path]:
    """scikit-learn's handwritten digits as PNGs: gray and coloured, most at the model's 32x32 (no
    resizing on either side), every tenth at its own 8x8 (both sides enlarge it)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder.mkdir()
    paths = []
    for i, digit in enumerate(load_digits().images[:count]):
        image = Image.fromarray(np.round(digit * 255 / 16).astype(np.uint8), "L")
        if i % 10 != 9:
            image = image.resize((32, 32), Image.BILINEAR)
        if i % 3 == 1:  # RGB: the C++ side converts to gray with PIL's luma weights
            image = Image.merge("RGB", [image, image.point(lambda v: 255 - v), image.point(lambda v: v // 2)])
        paths.append(folder / f"digit{i:03d}_{'small' if i % 10 == 9 else 'full'}.png")
        image.save(paths[-1])
    return paths


def _python_logits(model: Path, images: list[Path], batch: int | None = None) -> np.ndarray:
    """ONNX Runtime on the preprocessing the C++ side applies, from the model's own dnx.* metadata:
    gray/RGB as C, bilinear resize to H x W, /255, (x - mean) / std, all in float32."""
    import onnxruntime as ort
    from PIL import Image

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    meta = {
        k: json.loads(v)
        for k, v in session.get_modelmeta().custom_metadata_map.items()
        if k in ("dnx.input_size", "dnx.mean", "dnx.std")
    }
    (c, h, w), mean, std = meta["dnx.input_size"], meta["dnx.mean"], meta["dnx.std"]
    rows = []
    for path in images:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR))
        x = pixels.reshape(h, w, c).transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        rows.append((x - np.float32(mean)[:, None, None]) / np.float32(std)[:, None, None])
    x = np.stack(rows)
    if batch is None:
        return session.run(None, {"input": x})[0]
    padded = np.concatenate([x, np.zeros((-len(x) % batch, *x.shape[1:]), np.float32)])
    return np.concatenate(
        [session.run(None, {"input": padded[i : i + batch]})[0] for i in range(0, len(padded), batch)]
    )[: len(x)]


def classify(package, *args, model=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(package["classify"]), str(model or package["model"]), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _parse(stdout: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """classify --logits lines: PATH, INDEX, LABEL, SCORE, LOGITS."""
    lines = [line.split("\t") for line in stdout.splitlines()]
    assert all(len(fields) == 5 for fields in lines), stdout[:500]
    top1 = np.array([int(fields[1]) for fields in lines])
    logits = np.array([[float(v) for v in fields[4].split()] for fields in lines], dtype=np.float32)
    return [fields[0] for fields in lines], top1, logits


# --- the installed package ----------------------------------------------------------------------------
def test_install_layout_and_private_dependencies(package):
    """Config + version file + exported namespaced target; stb/nlohmann stay out of the package."""
    cmake_dir = package["prefix"] / "lib/cmake/dnx_runtime"
    names = {p.name for p in cmake_dir.iterdir()}
    assert {"dnx_runtimeConfig.cmake", "dnx_runtimeConfigVersion.cmake", "dnx_runtimeTargets.cmake"} <= names
    targets = (cmake_dir / "dnx_runtimeTargets.cmake").read_text()
    assert "add_library(dnx::runtime " in targets and "cxx_std_17" in targets and "dnx::onnxruntime" in targets
    config = "".join(p.read_text() for p in cmake_dir.glob("*.cmake"))
    assert "nlohmann" not in config and "stb" not in config.lower()
    header = (package["prefix"] / "include/dnx/runtime.hpp").read_text()
    assert "#include <nlohmann" not in header and "#include <stb" not in header
    assert 'PACKAGE_VERSION "0.1.0"' in (cmake_dir / "dnx_runtimeConfigVersion.cmake").read_text()
    # The example's build names only the installed prefix, never the source or build tree.
    cache = (package["dir"] / "classify/CMakeCache.txt").read_text()
    assert f"dnx_runtime_DIR:PATH={cmake_dir}" in cache and str(CPP) not in cache.replace(
        str(CPP / "examples/classify"), ""
    )


def test_api_contract(package):
    """batch_range, refused batch sizes, errors naming the image index, classify == run + topk."""
    proc = subprocess.run(
        [str(package["api_check"]), str(package["model"]), str(package["fixed"]), str(package["images"][0])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "api_check: all passed"


# --- the example: predictions equal Python's --------------------------------------------------------------
def test_example_predictions_equal_python(package):
    images = package["images"]
    proc = classify(package, *images, "--batch", "8", "--logits")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    paths, top1, logits = _parse(proc.stdout)
    assert paths == [str(p) for p in images]
    ref = _python_logits(package["model"], images)
    full = np.array(["_full" in p.name for p in images])
    # Same size: the very same input tensor, so the same logits up to float summation order.
    assert np.abs(logits[full] - ref[full]).max() <= 1e-5
    np.testing.assert_array_equal(top1[full], ref[full].argmax(1))
    # Enlarged 8x8 images: stb and PIL may round a pixel by one 8-bit level; top-1 agrees except at
    # near-ties.
    assert np.abs(logits[~full] - ref[~full]).max() <= 5e-3
    margin = np.diff(np.sort(ref[~full], axis=1)[:, -2:], axis=1)[:, 0]
    np.testing.assert_array_equal(top1[~full][margin > 1e-2], ref[~full].argmax(1)[margin > 1e-2])
    assert len(set(top1.tolist())) > 1, "the trained model predicts a single class: the check proves little"
    labels = [line.split("\t")[2] for line in proc.stdout.splitlines()]
    assert labels == [str(i) for i in top1]  # dnx train writes the digit names as labels


def test_fixed_batch_model_pads_and_refuses_larger_batches(package):
    images = [p for p in package["images"] if "_full" in p.name][:10]  # 3 + 3 + 3 + 1, padded to 4 each
    proc = classify(package, *images, "--batch", "3", "--logits", model=package["fixed"])
    assert proc.returncode == 0, proc.stderr
    _, top1, logits = _parse(proc.stdout)
    ref = _python_logits(package["fixed"], images, batch=FIXED_BATCH)
    assert np.abs(logits - ref).max() <= 1e-5
    np.testing.assert_array_equal(top1, ref.argmax(1))

    proc = classify(package, *images, "--batch", str(FIXED_BATCH + 1), model=package["fixed"])
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        f"error: {package['fixed']}: a batch of {FIXED_BATCH + 1} images is outside its batch "
        f"range 1..{FIXED_BATCH} (fixed batch dnx.batch = {FIXED_BATCH}); pass fewer images per "
        "call, or use infer() to split\n"
    )


def test_threads_share_one_model_with_serial_results(package):
    """4 threads x 50 images, one image per run() call, on one dnx::Model: the serial results exactly."""
    images = package["images"][: THREADS * PER_THREAD]
    runs = {}
    for threads in (1, THREADS):
        proc = classify(package, *images, "--batch", "1", "--threads", threads, "--logits")
        assert proc.returncode == 0, proc.stderr
        runs[threads] = _parse(proc.stdout)
    (paths1, top1_serial, serial), (paths4, top1_threads, threaded) = runs[1], runs[THREADS]
    assert paths1 == paths4 == [str(p) for p in images]
    np.testing.assert_array_equal(top1_threads, top1_serial)
    assert np.abs(threaded - serial).max() <= 1e-6


@pytest.mark.parametrize("case", ["missing image", "corrupt image", "missing model", "bad option"])
def test_example_errors_name_the_input(package, case):
    work = package["dir"]
    (work / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    args, message = {
        "missing image": ([package["images"][0], work / "missing.png"], f"error: {work / 'missing.png'}: no such file"),
        "corrupt image": ([work / "corrupt.png"], f"error: {work / 'corrupt.png'} is not a readable image"),
        "missing model": ([package["images"][0]], f"error: {work / 'missing.onnx'}: no such file"),
        "bad option": ([package["images"][0], "--threads", "0"], "error: --threads needs a positive integer, got '0'"),
    }[case]
    proc = classify(package, *args, model=work / "missing.onnx" if case == "missing model" else None)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr


# --- TensorRT: refused at configure time when it is not there ---------------------------------------------
def _system_has_tensorrt() -> bool:
    roots = ["/usr/include", "/usr/include/x86_64-linux-gnu", "/usr/include/aarch64-linux-gnu", "/usr/local/include"]
    return any((Path(root) / "NvInfer.h").is_file() for root in roots) or bool(
        os.environ.get("TENSORRT_ROOT") or os.environ.get("TENSORRT_RTX_ROOT")
    )


@pytest.mark.parametrize("product", ["auto", "tensorrt-rtx"])
def test_tensorrt_option_without_tensorrt_fails_at_configure(tmp_path, product):
    ort_args = _ort_cmake_args()
    if _system_has_tensorrt():
        pytest.skip("TensorRT headers are installed here: the missing-TensorRT message cannot be provoked")
    empty = tmp_path / "no-tensorrt"
    empty.mkdir()
    step = [
        "cmake",
        "-S",
        str(CPP),
        "-B",
        str(tmp_path / "build"),
        "-DDNX_WITH_TENSORRT=ON",
        f"-DDNX_TENSORRT_PRODUCT={product}",
        f"-DTENSORRT_RTX_ROOT={empty}",
        *ort_args,
    ]
    proc = subprocess.run(step, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    message = " ".join(proc.stderr.split())  # CMake wraps long messages
    assert f"DNX_WITH_TENSORRT=ON (DNX_TENSORRT_PRODUCT={product}) but no TensorRT was found" in message
    assert (
        f"TensorRT-RTX: NvInfer.h and libtensorrt_rtx.so not found (TENSORRT_RTX_ROOT={empty}, then the "
        f"system paths); pass -DTENSORRT_RTX_ROOT=<dir with include/ and lib/>"
    ) in message
    assert ("TensorRT: NvInfer.h and libnvinfer.so not found (TENSORRT_ROOT=unset" in message) == (product == "auto")
    assert "Or configure without -DDNX_WITH_TENSORRT=ON" in message
    assert not (tmp_path / "build/Makefile").exists()
