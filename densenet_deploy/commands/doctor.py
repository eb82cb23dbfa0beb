"""`dnx doctor`: which backends and devices are usable here."""

import click

from ..cli import emit, json_option


@click.command("doctor")
@json_option
def command(as_json):
    """Report torch/onnx/onnxruntime/TensorRT/OpenVINO/NNCF versions, ORT providers, CUDA GPUs and CPU features."""
    from ..doctor import diagnose, format_report

    report = diagnose()
    emit(report, as_json, format_report(report))
