"""How commands print: one JSON object on stdout with --json, else the result's text; a failed check's result
before its error line."""

from __future__ import annotations

import contextlib
import json

import click

from densenet_deploy.core.errors import VerificationFailed
from densenet_deploy.core.results import json_default


def emit(result: dict, as_json: bool, text: str | None = None) -> None:
    """Print the result: JSON (and nothing else on stdout) or human text."""
    if as_json:
        click.echo(json.dumps(result, indent=2, default=json_default))
    elif text is not None:
        click.echo(text)


@contextlib.contextmanager
def emit_on_failure(as_json: bool, formatter=None):
    """Around a command's work: a VerificationFailed that carries its result (nothing written) prints it,
    as JSON or through `formatter`, before the error line; exit 1 follows."""
    try:
        yield
    except VerificationFailed as exc:
        if exc.result is not None:
            doc = exc.result.as_dict()
            emit(doc, as_json, formatter(exc.result) if formatter else None)
        raise
