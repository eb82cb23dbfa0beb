"""`dnx`: a thin click layer over the Python API.

Commands live in densenet_deploy/commands/<name>.py and are imported only when run (or listed by
--help), so start-up never imports torch or onnx. DnxError becomes a one-line message and exit 2;
VerificationFailed exit 1; --debug (or DNX_DEBUG=1) shows the traceback instead. Click's usage errors
(bad option values, missing arguments, unknown commands/options) are one line too:
`error: MESSAGE (see 'dnx CMD --help')`, exit 2.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys

import click

from . import __version__
from .errors import DnxError

# command name -> module under densenet_deploy.commands (attribute `command`)
COMMANDS = {
    "models": "models",
    "info": "info",
    "export": "export",
    "calibrate": "calibrate",
    "build-engine": "build_engine",
    "verify": "verify",
    "bench": "bench",
    "paper": "paper",
    "train": "train",
    "demo": "demo",
    "doctor": "doctor",
    "triton": "triton",
    "triton-client": "triton_client",
    "serve": "serve",
    "cpp-header": "cpp_header",
}


class OneLineUsageError(click.UsageError):
    """A click usage error shown as one line, `error: MESSAGE (see 'dnx CMD --help')`, exit 2."""

    def __init__(self, original: click.UsageError):
        super().__init__(original.format_message(), original.ctx)
        self.exit_code = original.exit_code

    def show(self, file=None) -> None:
        message = " ".join(self.format_message().split()).rstrip(".") or "invalid usage"
        where = self.ctx.command_path if self.ctx is not None else "dnx"
        click.echo(f"error: {message} (see '{where} --help')", err=True, file=file)


def _one_line(exc: click.UsageError) -> click.UsageError:
    # `dnx` alone prints the help (NoArgsIsHelpError is a UsageError whose show() is the help text).
    if isinstance(exc, OneLineUsageError) or type(exc).__name__ == "NoArgsIsHelpError":
        return exc
    return OneLineUsageError(exc)


class DnxGroup(click.Group):
    """Lazy commands, and one-line errors: DnxError -> `error: ...` (exit 2, 1 for a failed check);
    click usage errors (bad option values, missing arguments, unknown commands) -> `error: ... (see
    'dnx CMD --help')`, exit 2, instead of click's four lines."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:  # the group's own options: `dnx --bogus`
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def list_commands(self, ctx):
        return [name for name, module in COMMANDS.items() if _command_exists(module)]

    def get_command(self, ctx, name):
        module = COMMANDS.get(name)
        if module is None or not _command_exists(module):
            return None
        return importlib.import_module(f"densenet_deploy.commands.{module}").command

    def invoke(self, ctx):
        formats = sys.modules.get("densenet_deploy.data_formats")  # imported only by commands that read data
        if formats is not None:
            formats.reset_warnings()  # once-per-command warnings, also when one process runs several commands
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a subcommand's parse (or its callback) refused the arguments
            raise _one_line(exc) from None
        except DnxError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            message = " ".join(str(exc).split()) or type(exc).__name__
            click.echo(f"error: {message}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def _command_exists(module: str) -> bool:
    here = os.path.join(os.path.dirname(__file__), "commands", f"{module}.py")
    return os.path.isfile(here)


@click.group(cls=DnxGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dnx")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx, debug):
    """DenseNet from PyTorch to ONNX, INT8/FP16, TensorRT, OpenVINO, C++ and Triton."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug or os.environ.get("DNX_DEBUG") == "1"
    _quiet_libraries()


def _quiet_libraries() -> None:
    # Library warnings (torch.onnx deprecations, ORT graph notices) would interleave with our output.
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


# --- shared option helpers for command modules -----------------------------------------------
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")


def output_option(required: bool = True, help: str = "Output file."):
    return click.option("-o", "--output", type=click.Path(dir_okay=False), required=required, help=help)


def emit(result: dict, as_json: bool, text: str | None = None) -> None:
    """Print the result: JSON (and nothing else on stdout) or human text."""
    if as_json:
        click.echo(json.dumps(result, indent=2, default=_json_default))
    elif text is not None:
        click.echo(text)


@contextlib.contextmanager
def emit_on_failure(as_json: bool, formatter=None):
    """Around a command's work: a VerificationFailed that carries its result (nothing written) prints it,
    as JSON or through `formatter`, before the error line; exit 1 follows."""
    from .errors import VerificationFailed

    try:
        yield
    except VerificationFailed as exc:
        if exc.result is not None:
            doc = exc.result if isinstance(exc.result, dict) else exc.result.as_dict()
            emit(doc, as_json, formatter(exc.result) if formatter else None)
        raise


def _json_default(value):
    import dataclasses

    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def progress_enabled(as_json: bool) -> bool:
    """Progress bars go to stderr; hide them for --json or when stderr is not a terminal... unless asked."""
    return not as_json and sys.stderr.isatty()


def main():  # console_scripts entry point
    cli(prog_name="dnx")


if __name__ == "__main__":
    main()
