"""`dnx triton ARTIFACT... --repo DIR`: write or update a Triton Inference Server model repository."""

import click

from densenet_deploy.cli.options import json_option
from densenet_deploy.cli.output import emit
from densenet_deploy.serve.repository import write_repository


def _batch_list(ctx, param, value):
    if value is None:
        return None  # not given: an existing model keeps its sizes
    if not value.strip():
        return ()  # given empty: no preferred sizes
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers (e.g. 4,8)") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r}: batch sizes must be positive integers")
    return sizes


@click.command("triton")
@click.argument("artifacts", nargs=-1, required=True, metavar="ARTIFACT...")
@click.option("--repo", required=True, type=click.Path(), help="Model repository directory (created or updated).")
@click.option("--name", help="Model name [default: the model name in the artifact's metadata].")
# Serving options have no click default: when the model already exists, an option not given keeps the
# value in its config.pbtxt (write_repository resolves the defaults), so adding a version resets nothing.
@click.option(
    "--max-batch",
    type=click.IntRange(1),
    help="max_batch_size [default: existing model's; else 8, a plan: its profile's max].",
)
@click.option(
    "--instances",
    type=click.IntRange(1),
    help="Model instances (instance_group count) [default: existing model's; else 1].",
)
@click.option(
    "--kind",
    type=click.Choice(["gpu", "cpu"]),
    help="Instance kind [default: existing model's; else plan gpu, OpenVINO/python cpu, ONNX auto].",
)
@click.option(
    "--preferred-batch",
    callback=_batch_list,
    metavar="N,N",
    help="Dynamic batcher's preferred batch sizes, e.g. 4,8; '' for none [default: existing model's; else none].",
)
@click.option(
    "--max-queue-delay-us",
    type=click.IntRange(0),
    help="How long the dynamic batcher may hold a request to form a larger batch "
    "[default: existing model's; else 100].",
)
@click.option("--version", type=click.IntRange(1), help="Version number of the (first) artifact [default: next free].")
@click.option(
    "--replace",
    is_flag=True,
    help="Overwrite versions that --version names and the model already has [default: refuse].",
)
@click.option(
    "--as",
    "as_",
    type=click.Choice(["versions", "models"]),
    default="versions",
    show_default=True,
    help="Several artifacts: versions of one model, or separate models.",
)
@click.option(
    "--backend",
    type=click.Choice(["python"]),
    help="python: a model.py that runs a dnx runner [default: Triton's native backend for the format].",
)
@json_option
def command(
    artifacts,
    repo,
    name,
    max_batch,
    instances,
    kind,
    preferred_batch,
    max_queue_delay_us,
    version,
    replace,
    as_,
    backend,
    as_json,
):
    """Write ARTIFACT(s) (.onnx, .plan, OpenVINO .xml) into the Triton model repository --repo.

    Each model gets config.pbtxt (from the artifact's metadata), labels.txt when the metadata has class
    labels, dnx.json (preprocessing for clients) and VERSION/ with the model files. Other models in the
    repository are left alone. Adding a version to an existing model keeps its serving options (max batch,
    instances, kind, preferred batch sizes, queue delay) unless they are given again, and every config
    field dnx does not write (parameters, model_warmup, version_policy, ...). An existing version is
    overwritten only with --replace.
    """
    result = write_repository(
        list(artifacts),
        repo,
        name=name,
        max_batch=max_batch,
        instances=instances,
        kind=kind,
        preferred_batch=preferred_batch,
        max_queue_delay_us=max_queue_delay_us,
        version=version,
        as_=as_,
        backend=backend,
        replace=replace,
    )
    emit(result.as_dict(), as_json, str(result))
