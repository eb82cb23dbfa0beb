"""`dnx paper`: the paper's models measured (params, MACs, latency) against its figures and claims."""

import click

from ..cli import emit, json_option


@click.command("paper")
@click.option("--backend", type=click.Choice(["onnxruntime", "torch"]), default="onnxruntime", show_default=True,
              help="Backend for the latency column (onnxruntime exports each model to a temporary ONNX file).")
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True, help="Batch size for latency.")
@click.option("--iters", type=click.IntRange(1), default=5, show_default=True, help="Timed runs per model.")
@click.option("--latency/--no-latency", default=True, show_default=True,
              help="Measure latency (exports and runs every model: minutes) or only count params/MACs.")
@click.option("--report", type=click.Path(file_okay=False), help="Write report.md, results.json and plots here.")
@json_option
def command(backend, batch, iters, latency, report, as_json):
    """Check DenseNet's parameter-efficiency claims with measured params, MACs and latency.

    Models: DenseNet-121/169/201/264 and ResNet-50/101/152 (ImageNet), Table 2's CIFAR DenseNets and the
    pre-activation ResNet-164/1001. Error rates are the reported ones; MACs are the paper's "FLOPs".
    """
    from ..cli import progress_enabled
    from ..paper_report import check_paper, format_paper

    result = check_paper(report=report, backend=backend, batch=batch, latency=latency, iters=iters,
                         progress=progress_enabled(as_json))
    text = format_paper(result)
    if result.get("report"):
        text += "\nreport: " + ", ".join(result["report"].values())
    emit(result, as_json, text)
