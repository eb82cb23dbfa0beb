"""`dnx info MODEL`: params, MACs, the paper's figures and ratios (zoo name, checkpoint or artifact)."""

import click

from densenet_deploy.cli.options import json_option
from densenet_deploy.cli.output import emit
from densenet_deploy.reports.info import describe


@click.command("info")
@click.argument("model")
@click.option("--weights", type=click.Path(), help="State dict to load into a zoo model.")
@click.option("--input-size", type=click.IntRange(8, 4096), help="Square input size (default: the model's).")
@click.option("--num-classes", type=click.IntRange(1), help="Classifier size (default: zoo or checkpoint).")
@json_option
def command(model, weights, input_size, num_classes, as_json):
    """Show params, MACs and the paper's reported figures for MODEL.

    MODEL is a zoo name (see `dnx models`), a dnx checkpoint, an exported .onnx (counted from its graph)
    or a built artifact (.plan, .xml, .ort.onnx: counted from the model its sidecar describes).
    """
    result = describe(model, weights=weights, input_size=input_size, num_classes=num_classes)
    emit(result.as_dict(), as_json, str(result))
