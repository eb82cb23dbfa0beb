"""`dnx doctor`: which backends and devices are usable here."""

import click

from densenet_deploy.cli.options import json_option
from densenet_deploy.cli.output import emit
from densenet_deploy.reports.doctor import diagnose


@click.command("doctor")
@json_option
def command(as_json):
    """Report torch/onnx/onnxruntime/TensorRT/OpenVINO/NNCF versions, ORT providers, CUDA GPUs and CPU features."""
    report = diagnose()
    emit(report.as_dict(), as_json, str(report))
