"""Every `dnx` command's --help works without importing torch or onnx (heavy imports stay inside functions)."""

from __future__ import annotations

import json
import subprocess
import sys

from densenet_deploy.cli.main import COMMANDS, _command_exists

HEAVY = ("torch", "onnx", "onnxruntime", "tensorrt", "openvino")

# One fresh interpreter runs every --help and reports, per command, which heavy modules it imported.
SCRIPT = r"""
import json, sys
from click.testing import CliRunner
from densenet_deploy.cli.main import cli, COMMANDS, _command_exists
heavy = %r
report = {}
for args in [[]] + [[name] for name, module in COMMANDS.items() if _command_exists(module)]:
    before = {m for m in heavy if m in sys.modules}
    result = CliRunner().invoke(cli, args + ["--help"])
    report[" ".join(args) or "dnx"] = {"exit_code": result.exit_code, "usage": "Usage:" in result.output,
                                      "imported": sorted({m for m in heavy if m in sys.modules} - before),
                                      "error": repr(result.exception) if result.exception else None}
print(json.dumps(report))
"""


def test_every_help_works_without_heavy_imports():
    proc = subprocess.run([sys.executable, "-c", SCRIPT % (HEAVY,)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = {name for name, module in COMMANDS.items() if _command_exists(module)}
    assert expected <= set(report) and "build-engine" in report and "verify" in report and "doctor" in report
    broken = {cmd: r for cmd, r in report.items() if r["exit_code"] != 0 or not r["usage"] or r["imported"]}
    assert not broken, f"--help failed or imported heavy modules: {broken}"
