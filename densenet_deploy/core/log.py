"""Warnings as dnx says them: one style (`warning: MESSAGE` on stderr from the CLI), each said once per command.

Library code logs with `logging` as usual; `warn_once` adds a key for warnings that several steps of one
command would otherwise repeat (two checks reading the same data). The CLI installs `CliFormatter` and the
`OncePerCommand` filter on its stderr handler and calls `reset_warnings` when a command starts.
"""

from __future__ import annotations

import logging
import sys

_said: set = set()  # keys (and, through OncePerCommand, messages) already said in this command

PREFIXES = {logging.WARNING: "warning", logging.ERROR: "error", logging.CRITICAL: "error"}


def reset_warnings() -> None:
    """Let once-per-command warnings be said again (the CLI calls this when a command starts)."""
    _said.clear()


def warn_once(key, msg: str, *args, logger: str = "densenet_deploy.data") -> None:
    """logging.getLogger(logger).warning(msg, *args) unless a warning with this key was already said in this
    command (a command that loads the same data twice, e.g. for two checks, says it once)."""
    if key in _said:
        return
    _said.add(key)
    logging.getLogger(logger).warning(msg, *args)


class OncePerCommand(logging.Filter):
    """Drops a record whose level and message were already shown in this command."""

    def filter(self, record: logging.LogRecord) -> bool:
        key = ("message", record.levelno, record.getMessage())
        if key in _said:
            return False
        _said.add(key)
        return True


class CliFormatter(logging.Formatter):
    """`warning: MESSAGE` / `error: MESSAGE` on one line, like the CLI's own error lines; other levels (shown
    with --debug) keep the logger name."""

    def format(self, record: logging.LogRecord) -> str:
        message = " ".join(record.getMessage().split())
        prefix = PREFIXES.get(record.levelno)
        text = f"{prefix}: {message}" if prefix else f"{record.levelname.lower()} {record.name}: {message}"
        if record.exc_info and record.levelno < logging.WARNING:
            text += "\n" + self.formatException(record.exc_info)
        return text


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted (click's test runner swaps it per command)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # logging.StreamHandler assigns it in __init__ and setStream
        pass
