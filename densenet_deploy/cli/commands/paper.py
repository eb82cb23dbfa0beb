"""`dnx paper`: the paper's models measured (params, MACs, latency) against its figures and claims."""

import click

from densenet_deploy.cli.options import json_option, progress_enabled, progress_option
from densenet_deploy.cli.output import emit
from densenet_deploy.core.errors import DnxError
from densenet_deploy.reports.paper import check_paper


@click.command("paper")
@click.option(
    "--backend",
    type=click.Choice(["onnxruntime", "torch"]),
    default="onnxruntime",
    show_default=True,
    help="Backend for the latency column (onnxruntime exports each model to a temporary ONNX file).",
)
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="Batch size for latency.")
@click.option(
    "--iters",
    type=click.IntRange(1),
    default=5,
    show_default=True,
    help="Timed runs per model, in up to 3 interleaved passes (fewer than 5: latency verdicts are inconclusive).",
)
@click.option(
    "--latency/--no-latency",
    default=True,
    show_default=True,
    help="Measure latency (exports and runs every model: minutes) or only count params/MACs.",
)
@click.option("--report", type=click.Path(file_okay=False), help="Write report.md, results.json and plots here.")
@progress_option
@json_option
@click.pass_context
def command(ctx, backend, batch, iters, latency, report, progress, as_json):
    """Check DenseNet's parameter-efficiency claims with measured params, MACs and latency.

    Models: DenseNet-121/169/201/264 and ResNet-50/101/152 (ImageNet), Table 2's CIFAR DenseNets and the
    pre-activation ResNet-164/1001. Error rates are the reported ones; MACs are the paper's "FLOPs".
    """
    if not latency:  # options for a measurement that --no-latency skips: refuse instead of ignoring them
        given = [
            f"--{name}"
            for name in ("backend", "batch", "iters")
            if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)
        ]
        if given:
            raise DnxError(
                f"{', '.join(given)} set{'s' if len(given) == 1 else ''} up the latency measurement, "
                f"which --no-latency skips; drop {'it' if len(given) == 1 else 'them'} or --no-latency"
            )

    result = check_paper(
        report=report,
        backend=backend,
        batch=batch,
        latency=latency,
        iters=iters,
        progress=progress_enabled(as_json, progress),
    )
    emit(result.as_dict(), as_json, str(result))
