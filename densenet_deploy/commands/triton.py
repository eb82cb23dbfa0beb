"""`dnx triton ARTIFACT... --repo DIR`: write or update a Triton Inference Server model repository."""

import click

from ..cli import emit, json_option


def _batch_list(ctx, param, value):
    if not value:
        return ()
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
@click.option("--max-batch", type=click.IntRange(1), help="max_batch_size [default: 8; a plan: its profile's max].")
@click.option("--instances", type=click.IntRange(1), default=1, show_default=True, help="Model instances (instance_group count).")
@click.option("--kind", type=click.Choice(["gpu", "cpu"]), help="Instance kind [default: plan gpu, OpenVINO/python cpu, ONNX auto].")
@click.option("--preferred-batch", callback=_batch_list, metavar="N,N", help="Dynamic batcher's preferred batch sizes, e.g. 4,8.")
@click.option("--max-queue-delay-us", type=click.IntRange(0), default=100, show_default=True,
              help="How long the dynamic batcher may hold a request to form a larger batch.")
@click.option("--version", type=click.IntRange(1), help="Version number of the (first) artifact [default: next free].")
@click.option("--as", "as_", type=click.Choice(["versions", "models"]), default="versions", show_default=True,
              help="Several artifacts: versions of one model, or separate models.")
@click.option("--backend", type=click.Choice(["python"]), help="python: a model.py that runs a dnx runner "
              "[default: Triton's native backend for the format].")
@json_option
def command(artifacts, repo, name, max_batch, instances, kind, preferred_batch, max_queue_delay_us, version, as_,
            backend, as_json):
    """Write ARTIFACT(s) (.onnx, .plan, OpenVINO .xml) into the Triton model repository --repo.

    Each model gets config.pbtxt (from the artifact's metadata), labels.txt when the metadata has class
    labels, dnx.json (preprocessing for clients) and VERSION/ with the model files. Other models in the
    repository are left alone.
    """
    from exporters.triton import write_repository

    result = write_repository(list(artifacts), repo, name=name, max_batch=max_batch, instances=instances, kind=kind,
                              preferred_batch=preferred_batch, max_queue_delay_us=max_queue_delay_us,
                              version=version, as_=as_, backend=backend)
    lines = [f"repository {result['repo']}"]
    for m in result["models"]:
        lines.append(f"  {m['model']:<28} {m['platform']:<18} versions {','.join(map(str, m['versions']))}  "
                     f"max_batch_size {m['max_batch_size']}" + ("  labels" if m["labels"] else ""))
    emit(result, as_json, "\n".join(lines))
