"""The README and docs/ cannot rot: the README's two commands exist and CI runs the test one; every `dnx` line
in a code block (and every inline `dnx ...` span) of README.md and docs/*.md names a real command with options
that command really has; the README stays short and repeats no paragraph of docs/; every command has a docs
page; relative links (and their #anchors) point to files and headings that exist."""

import re
import shlex
from pathlib import Path

import click
import pytest

from densenet_deploy.cli.main import COMMANDS, cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
README_MAX_LINES = 250
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
GLOBAL_OPTIONS = {"--debug", "--help", "-h"}
# Pages other engineers are writing right now: a link to one is accepted while the page does not exist yet
# (once it does, its link and anchors are checked like any other).
PENDING_PAGES = {"docs/cpp.md"}


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _scan(path: Path):
    """(code_lines, prose_lines) of a Markdown page: code_lines are (line number, text, fence language) for
    lines inside fenced blocks, prose_lines (line number, text) for the rest (headings included)."""
    code, prose = [], []
    fence = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = stripped[3:].strip().lower() if fence is None else None
            continue
        if fence is None:
            prose.append((number, line))
        else:
            code.append((number, line, fence))
    return code, prose


def _shell_commands(path: Path):
    """(line number, command) for every line of a shell code block, backslash continuations joined."""
    code, _ = _scan(path)
    out, pending, start = [], "", None
    for number, line, fence in code:
        if fence not in SHELL_FENCES:
            continue
        if pending:
            pending += " " + line.strip()
        else:
            pending, start = line.strip(), number
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        out.append((start, pending))
        pending = ""
    return out


def _dnx_code_lines(path: Path):
    lines = []
    for number, command in _shell_commands(path):
        command = command.split(" #", 1)[0].strip()
        if command.startswith("dnx "):
            lines.append((number, command))
    return lines


def _dnx_inline_spans(path: Path):
    _, prose = _scan(path)
    return [
        (number, span.strip())
        for number, line in prose
        for span in re.findall(r"`([^`]+)`", line)
        if span.strip().startswith("dnx ")
    ]


def _all_dnx_uses():
    uses = []
    for page in PAGES:
        for number, line in _dnx_code_lines(page) + _dnx_inline_spans(page):
            uses.append(pytest.param(line, id=f"{_rel(page)}:{number}"))
    return uses


def test_two_commands_exist_and_ci_runs_the_test_one():
    readme = README.read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "make demo" in readme and "make test" in readme
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "torch==2.13.0" in makefile
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_docs_show_many_dnx_commands():
    assert sum(len(_dnx_code_lines(page)) for page in PAGES) > 30


@pytest.mark.parametrize("line", _all_dnx_uses())
def test_every_dnx_line_uses_real_commands_and_options(line):
    words = shlex.split(line)[1:]
    while words and words[0] in GLOBAL_OPTIONS:
        words = words[1:]
    if not words or words[0].isupper():  # `dnx --help`, or a placeholder such as `dnx COMMAND --help`
        return
    ctx = click.Context(cli)
    command = cli.get_command(ctx, words[0])
    assert command is not None, f"uses unknown command {words[0]!r}: {line}"
    known = {
        opt for param in command.params for opt in getattr(param, "opts", []) + getattr(param, "secondary_opts", [])
    }
    known |= {"--help", "-h"}
    for word in words[1:]:
        if word.startswith("-") and not re.fullmatch(r"-?\d+(\.\d+)?", word):
            flag = word.split("=", 1)[0]
            assert flag in known, f"uses {flag}, which `dnx {words[0]}` does not have: {line}"


def test_readme_is_short():
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; the reference belongs in docs/"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_docs_page(name):
    pattern = re.compile(rf"\bdnx {re.escape(name)}(?![\w-])")
    pages = []
    for page in DOCS:
        _, prose = _scan(page)
        headings = [line for _, line in prose if line.startswith("#")]
        code = [command for _, command in _dnx_code_lines(page)]
        if any(pattern.search(text) for text in headings) or any(pattern.match(text) for text in code):
            pages.append(page)
    assert pages, f"`dnx {name}` has no heading or code line in any docs/*.md page"


def _paragraphs(text: str):
    """Blank-line separated blocks that are worth checking: two lines or more, or 120 characters or more."""
    for block in re.split(r"\n\s*\n", text):
        block = block.strip()
        if block.count("\n") >= 1 or len(block) >= 120:
            yield block


def _squash(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("page", DOCS, ids=_rel)
def test_no_docs_paragraph_is_repeated_in_the_readme(page):
    readme = _squash(README.read_text())
    repeated = [block for block in _paragraphs(page.read_text()) if _squash(block) in readme]
    assert not repeated, f"README.md repeats {len(repeated)} paragraph(s) of {_rel(page)}; link instead:\n" + (
        "\n---\n".join(block[:300] for block in repeated)
    )


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set:
    seen, anchors = {}, set()
    _, prose = _scan(path)
    for _, line in prose:
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            slug = _slug(match.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(path: Path):
    _, prose = _scan(path)
    for number, line in prose:
        line = re.sub(r"`[^`]*`", "", line)
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            yield number, target


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_point_to_files_and_headings_that_exist(page):
    broken = []
    for number, target in _links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        rel = dest.relative_to(ROOT).as_posix() if dest.is_relative_to(ROOT) else str(dest)
        if not dest.exists():
            if rel not in PENDING_PAGES:
                broken.append(f"{_rel(page)}:{number}: {target} (no such file)")
            continue
        if anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{_rel(page)}:{number}: {target} (no heading #{anchor} in {rel})")
    assert not broken, "\n".join(broken)
