"""The layout's contracts: layers and no cycles (import-linter), imports at module top, no private names
across modules, and an installed wheel that claims no generic top-level names."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "densenet_deploy", ROOT / "exporters", ROOT / "calibration"]
# Modules that import torch at their top: importing them inside the function that needs them keeps the CLI
# start-up (and every --help) free of torch. Everything else is imported at module top.
LAZY_INTERNAL = {"densenet_deploy.models.densenet", "densenet_deploy.models.resnet"}


def _python_files():
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            if "__pycache__" not in path.parts and not (
                root.name == "densenet_deploy" and path.parts[len(root.parts)] in ("exporters", "calibration")
            ):  # links to the root folders
                yield path


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] in ("exporters", "calibration"):
        parts.insert(0, "densenet_deploy")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_import_linter_contracts_hold():
    exe = Path(sys.executable).parent / "lint-imports"
    assert exe.exists(), "import-linter is a dev dependency: pip install 'densenet-deploy[dev]'"
    proc = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and proc.stdout.count("KEPT") >= 3


def test_internal_imports_sit_at_module_top():
    inside = []
    for path in _python_files():
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("densenet_deploy"):
                    if node.module not in LAZY_INTERNAL and path.name != "python_model.py":
                        inside.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module}")
    assert not inside, "internal imports inside functions (move them to the module top):\n" + "\n".join(inside)


def test_no_private_name_is_imported_across_modules():
    crossing = []
    for path in _python_files():
        here = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("densenet_deploy"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private and node.module != here:
                    crossing.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module}: {', '.join(private)}")
    assert not crossing, "private names imported from another module:\n" + "\n".join(crossing)


def test_relative_imports_are_not_used():
    # Absolute imports say where a name comes from wherever a file moves; the layout test reads them.
    relative = [
        f"{p.relative_to(ROOT)}:{n.lineno}"
        for p in _python_files()
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, ast.ImportFrom) and n.level
    ]
    assert not relative, relative


@pytest.mark.slow
def test_installed_wheel_claims_no_generic_top_level_names(tmp_path):
    wheels = tmp_path / "wheels"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = wheels.glob("densenet_deploy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"densenet_deploy"}, tops
    assert "densenet_deploy/exporters/onnx.py" in names and "densenet_deploy/calibration/quantize.py" in names
    assert "densenet_deploy/exporters/targets/openvino.py" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    probe = (
        "import importlib.util, json, site, os; "
        "print(json.dumps({n: importlib.util.find_spec(n) is not None for n in "
        "('exporters', 'calibration', 'densenet_deploy', 'densenet_deploy.exporters', "
        "'densenet_deploy.calibration', 'densenet_deploy.exporters.targets')}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found == {
        "exporters": False,
        "calibration": False,
        "densenet_deploy": True,
        "densenet_deploy.exporters": True,
        "densenet_deploy.calibration": True,
        "densenet_deploy.exporters.targets": True,
    }, found
    site_packages = next(venv.glob("lib/python*/site-packages"))
    assert not (site_packages / "exporters").exists() and not (site_packages / "calibration").exists()
    shutil.rmtree(venv, ignore_errors=True)


def test_public_functions_return_results_that_format_themselves():
    """Results format themselves: as_dict() for --json, str() for the text; no plain-dict returns."""
    import typing

    from densenet_deploy.bench.timing import bench
    from densenet_deploy.calibration.quantize import quantize_int8
    from densenet_deploy.core.results import Result
    from densenet_deploy.demo.pipeline import run_demo
    from densenet_deploy.exporters.bf16 import convert_bf16
    from densenet_deploy.exporters.cpp_header import write_cpp_header
    from densenet_deploy.exporters.fp16 import convert_fp16
    from densenet_deploy.exporters.onnx import export_onnx
    from densenet_deploy.exporters.targets.build import build_deployment
    from densenet_deploy.exporters.targets.onnxruntime import build_ort_deployment
    from densenet_deploy.exporters.targets.openvino import build_openvino
    from densenet_deploy.exporters.targets.tensorrt import build_engine
    from densenet_deploy.reports.doctor import diagnose
    from densenet_deploy.reports.info import describe
    from densenet_deploy.reports.paper import check_paper
    from densenet_deploy.reports.zoo_listing import list_models
    from densenet_deploy.serve.client import classify
    from densenet_deploy.serve.repository import write_repository
    from densenet_deploy.verify.parity import verify

    functions = [
        bench,
        quantize_int8,
        run_demo,
        convert_bf16,
        write_cpp_header,
        convert_fp16,
        export_onnx,
        build_deployment,
        build_ort_deployment,
        build_openvino,
        build_engine,
        diagnose,
        describe,
        check_paper,
        list_models,
        classify,
        write_repository,
        verify,
    ]
    plain = []
    for fn in functions:
        returned = typing.get_type_hints(fn).get("return")
        if not (isinstance(returned, type) and issubclass(returned, Result) and returned.__str__ is not object.__str__):
            plain.append(f"{fn.__module__}.{fn.__name__} -> {returned}")
    assert not plain, plain
