"""`dnx`: a thin click layer over the Python API.

Commands live in densenet_deploy/cli/commands/<name>.py and are imported only when run (or listed by
--help), so start-up never imports torch or onnx. DnxError becomes a one-line message and exit 2;
VerificationFailed exit 1; --debug (or DNX_DEBUG=1) shows the traceback instead. Click's usage errors
(bad option values, missing arguments, unknown commands/options) are one line too:
`error: MESSAGE (see 'dnx CMD --help')`, exit 2.
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings

import click

from densenet_deploy import __version__
from densenet_deploy.core.errors import DnxError, OptionError
from densenet_deploy.core.log import CliFormatter, OncePerCommand, StderrHandler, reset_warnings

# command name -> module under densenet_deploy.cli.commands (attribute `command`)
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
        return importlib.import_module(f"densenet_deploy.cli.commands.{module}").command

    def invoke(self, ctx):
        reset_warnings()  # once-per-command warnings, also when one process runs several commands
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:  # a subcommand's parse (or its callback) refused the arguments
            raise _one_line(exc) from None
        except DnxError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if isinstance(exc, OptionError):
                message = exc.for_flag(_flag_of(self.get_command(ctx, ctx.invoked_subcommand or ""), exc.parameter))
            else:
                message = str(exc)
            message = " ".join(message.split()) or type(exc).__name__
            click.echo(f"error: {message}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def _flag_of(command, parameter: str) -> str:
    """The flag a library parameter name came from in `command` (--batch-size for batch_size)."""
    for param in getattr(command, "params", []):
        if param.name == parameter and getattr(param, "opts", None):
            return max(param.opts, key=len)
    return "--" + parameter.replace("_", "-")


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
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
    root = logging.getLogger()
    if not any(getattr(h, "dnx", False) for h in root.handlers):  # once per process (tests invoke many commands)
        handler = StderrHandler()
        handler.dnx = True
        handler.setFormatter(CliFormatter())
        handler.addFilter(OncePerCommand())
        root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.WARNING:
        root.setLevel(logging.WARNING)


def main():  # console_scripts entry point
    cli(prog_name="dnx")


if __name__ == "__main__":
    main()
