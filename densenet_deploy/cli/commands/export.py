"""`dnx export MODEL -o OUT.onnx`: canonical fp32 ONNX with metadata, checked against PyTorch."""

import click

from densenet_deploy.cli.options import data_option, json_option, output_option, samples_option, seed_option
from densenet_deploy.cli.output import emit, emit_on_failure
from densenet_deploy.core.constants import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
from densenet_deploy.exporters.onnx import export_onnx


@click.command("export")
@click.argument("model")
@output_option(help="Output ONNX file (written atomically).")
@click.option("--weights", type=click.Path(), help="State dict (torchvision-style) to load into zoo model MODEL.")
@click.option(
    "--opset",
    type=int,
    default=DEFAULT_OPSET,
    show_default=True,
    help=f"ONNX opset ({MIN_OPSET}..{MAX_OPSET}: what ONNX Runtime and TensorRT 10/11 all parse).",
)
@click.option("--input-size", type=click.IntRange(8, 4096), help="Square input size (default: the model's).")
@click.option(
    "--fixed-batch",
    "batch",
    type=click.IntRange(1),
    help="Export with a fixed batch size N instead of a dynamic batch axis [default: dynamic].",
)
@click.option("--num-classes", type=click.IntRange(1), help="Classifier size (default: checkpoint or zoo).")
@click.option(
    "--exporter",
    type=click.Choice(["torchscript", "dynamo"]),
    default="torchscript",
    show_default=True,
    help="torch.onnx exporter (docs/export.md says why torchscript is the default).",
)
@click.option("--softmax", is_flag=True, help="Append Softmax: the output holds probabilities, not logits.")
@data_option("Real images for the parity check (SRC, as for verify) [default: seeded random normal inputs].")
@samples_option("Parity check inputs.", default=8)
@seed_option
@json_option
def command(
    model, output, weights, opset, input_size, batch, num_classes, exporter, softmax, data, samples, seed, as_json
):
    """Export MODEL (zoo name or dnx checkpoint) to ONNX and check it against PyTorch.

    The parity check runs ONNX Runtime (CPU) against the PyTorch model at batch 1 and 4 (or the fixed
    batch) by the policy's fp32 parity gate (docs/policy.md) and fails (exit 1, file kept) when it misses.
    """
    with emit_on_failure(as_json):
        result = export_onnx(
            model,
            output,
            weights=weights,
            opset=opset,
            input_size=input_size,
            batch=batch,
            num_classes=num_classes,
            exporter=exporter,
            softmax=softmax,
            data=data,
            samples=samples,
            seed=seed,
        )
    emit(result.as_dict(), as_json, str(result))
