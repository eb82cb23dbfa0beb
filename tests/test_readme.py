"""The README cannot rot: its two commands exist, CI runs the test one, and every `dnx` line in its code
blocks names a real command with options that command really has."""

import re
import shlex
from pathlib import Path

import click
import pytest

from densenet_deploy.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _dnx_lines():
    lines = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", README, flags=re.S):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line.startswith("dnx "):
                lines.append(line)
    return lines


def test_two_commands_exist_and_ci_runs_the_test_one():
    makefile = (ROOT / "Makefile").read_text()
    assert "make demo" in README and "make test" in README
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "torch==2.13.0" in makefile
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_readme_shows_many_dnx_commands():
    assert len(_dnx_lines()) > 30


@pytest.mark.parametrize("line", _dnx_lines())
def test_every_readme_dnx_line_uses_real_commands_and_options(line):
    words = shlex.split(line)[1:]
    ctx = click.Context(cli)
    command = cli.get_command(ctx, words[0])
    assert command is not None, f"README uses unknown command: {line}"
    known = {
        opt for param in command.params for opt in getattr(param, "opts", []) + getattr(param, "secondary_opts", [])
    }
    known |= {"--help", "-h"}
    for word in words[1:]:
        if word.startswith("-") and not re.fullmatch(r"-?\d+(\.\d+)?", word):
            flag = word.split("=", 1)[0]
            assert flag in known, f"README line uses {flag}, which `dnx {words[0]}` does not have: {line}"
