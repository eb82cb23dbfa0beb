"""`dnx models` / `dnx info` and the error contract: exit 2, one line, no traceback."""

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from densenet_deploy.cli.main import cli


def run(*args):
    return CliRunner().invoke(cli, list(args), prog_name="dnx")


def test_info_json_has_params_macs_paper():
    result = run("info", "densenet121", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["params"] == 7_978_856
    assert abs(doc["macs"] / 2.834e9 - 1) < 0.02
    assert doc["paper"]["top1_error"] == 25.02 and doc["paper"]["params_match"] is True


def test_info_cifar_model_text():
    result = run("info", "densenet_bc100_k12")
    assert result.exit_code == 0
    assert "769,162" in result.stdout and "C10+" in result.stdout and "matches" in result.stdout


def test_models_lists_imagenet_and_table2():
    result = run("models", "--json", "--no-macs")
    names = [m["name"] for m in json.loads(result.stdout)["models"]]
    assert {"densenet121", "densenet264", "densenet_bc100_k12", "densenet40_k12"} <= set(names)


@pytest.mark.parametrize(
    "args", [["info", "densenet122"], ["info", "densenet_bc101_k12"], ["info", "densenet41_k12", "--json"]]
)
def test_bad_model_names_exit_2_one_line(args):
    result = run(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_truncated_checkpoint_exit_2_without_traceback(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"a": torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:50])
    proc = subprocess.run(
        [sys.executable, "-m", "densenet_deploy.cli", "info", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_zoo_name_wins_over_a_same_named_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "densenet121").write_text("not a checkpoint")
    result = run("info", "densenet_bc22_k8", "--json")
    assert result.exit_code == 0
    (tmp_path / "densenet_bc22_k8").write_text("not a checkpoint")
    assert run("info", "densenet_bc22_k8", "--json").exit_code == 0
    bad = run("info", "./densenet_bc22_k8")  # an explicit path means the file
    assert bad.exit_code == 2 and "not a PyTorch checkpoint" in bad.stderr


@pytest.mark.parametrize(
    "args, command, words",
    [
        (["bench", "x", "--seconds", "0"], "dnx bench", "'--seconds'"),
        (["verify", "a"], "dnx verify", "Missing argument 'CAND'"),
        (["build-engine", "m.onnx", "--target", "bogus"], "dnx build-engine", "'bogus' is not one of"),
        (["triton", "x", "--instances", "0"], "dnx triton", "'--instances'"),
        (["export", "densenet121", "-o", "x.onnx", "--opset", "nope"], "dnx export", "'--opset'"),
        (["verify", "a", "b", "--sed", "1"], "dnx verify", "No such option '--sed'"),
        (["bogus"], "dnx", "No such command 'bogus'"),
        (["--bogus"], "dnx", "No such option '--bogus'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args, command, words):
    result = run(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Usage:" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and words in result.stderr
    assert result.stderr.rstrip().endswith(f"(see '{command} --help')")


def test_help_version_and_bare_dnx_keep_clicks_behaviour():
    assert run("--help").exit_code == 0 and "Usage: dnx" in run("--help").stdout
    assert run("verify", "--help").exit_code == 0
    version = run("--version")
    assert version.exit_code == 0 and "dnx, version" in version.stdout
    bare = run()  # no arguments: the group's help (click exits 2 there), not an error line
    assert "Commands:" in bare.output and "error:" not in bare.output


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("densenet40_k99999999999", r"growth rate k must be in 1\.\.256"),
        ("densenet40_k100000", r"growth rate k must be in 1\.\.256"),
        ("densenet_bc100000_k12", r"depths for DenseNet-BC are 10\.\.1000"),
        ("densenet_bc994_k256", r"G parameters, over the 1 G"),
    ],
)
def test_huge_grammar_names_are_one_line_errors(name, pattern):
    import re

    result = run("info", name)
    assert result.exit_code == 2 and result.stdout == "", result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert re.search(pattern, result.stderr), result.stderr


def test_leading_zeros_name_the_canonical_model():
    result = run("info", "densenet040_k012", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == "densenet40_k12"


def test_info_marks_macs_ratio_na_at_another_input_size():
    doc = json.loads(run("info", "densenet121", "--input-size", "32", "--json").stdout)
    assert doc["paper"]["macs_ratio"] is None and "224x224" in doc["paper"]["macs_note"]
    text = run("info", "densenet121", "--input-size", "32").stdout
    assert "ratio n/a: counted at 32x32" in text and "ratio 0.0" not in text
    assert json.loads(run("info", "densenet121", "--json").stdout)["paper"]["macs_ratio"] > 0.99


def test_empty_onnx_file_is_not_a_readable_model(tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    result = run("info", str(empty))
    assert result.exit_code == 2 and "is not a readable ONNX model (the file is empty)" in result.stderr, result.output
    assert "dnx metadata" not in result.stderr
