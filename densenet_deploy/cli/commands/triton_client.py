"""`dnx triton-client URL MODEL IMAGE...`: top-k classes from a Triton server, with dnx's preprocessing."""

import click

from densenet_deploy.cli.options import json_option
from densenet_deploy.cli.output import emit
from densenet_deploy.serve.client import classify


@click.command("triton-client")
@click.argument("url")
@click.argument("model")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("--topk", type=click.IntRange(1), default=5, show_default=True, help="Classes to show per image.")
@click.option(
    "--artifact",
    type=click.Path(),
    help="Where the preprocessing comes from: the artifact, its sidecar, "
    "or the model's directory in the repository (dnx.json) [default: the served config's dnx.metadata].",
)
@click.option("--version", "version", default="", help="Model version [default: the server's policy].")
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the server.",
)
@json_option
def command(url, model, images, topk, artifact, version, timeout, as_json):
    """Send IMAGE files to MODEL on the Triton server at URL (e.g. http://127.0.0.1:8000); print top-k."""
    result = classify(url, model, list(images), topk=topk, artifact=artifact, version=version, timeout=timeout)
    emit(result.as_dict(), as_json, str(result))
