"""`dnx calibrate IN.onnx --data SRC -o OUT.onnx`: INT8 with explicit Q/DQ, checked on held-out data."""

import click

from densenet_deploy.calibration import CONCAT_MODES, METHODS
from densenet_deploy.calibration.quantize import (
    DEFAULT_CONCAT_SCALES,
    DEFAULT_EVAL_SAMPLES,
    DEFAULT_METHOD,
    DEFAULT_SAMPLES,
    CalibrationOptions,
    quantize_int8,
)
from densenet_deploy.calibration.ranges import DEFAULT_PERCENTILE
from densenet_deploy.cli.options import (
    data_option,
    gate_from,
    gate_options,
    json_option,
    output_option,
    progress_enabled,
    progress_option,
    samples_option,
    seed_option,
)
from densenet_deploy.cli.output import emit, emit_on_failure


@click.command("calibrate")
@click.argument("model", type=click.Path(dir_okay=False))
@data_option(
    "Calibration data SRC (image dir, .npy/.npz, digits, cifar10:DIR, ...); its train split calibrates, its "
    "val split checks.",
    required=True,
)
@output_option(help="Output INT8 ONNX (written only after the held-out check passes).")
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default=DEFAULT_METHOD,
    show_default=True,
    help="Activation range method (percentile of |x|; entropy = KL, TensorRT's classic; minmax).",
)
@samples_option("Calibration samples (train split).", default=DEFAULT_SAMPLES)
@click.option(
    "--eval-samples",
    type=click.IntRange(1),
    default=DEFAULT_EVAL_SAMPLES,
    show_default=True,
    help="Held-out samples for the INT8 vs fp32 check.",
)
@click.option("--cache", type=click.Path(dir_okay=False), help="JSON range cache: reused when model and data match.")
@click.option(
    "--concat-scales",
    type=click.Choice(CONCAT_MODES),
    default=DEFAULT_CONCAT_SCALES,
    show_default=True,
    help="One scale for all tensors joined by a Concat, each its own, or Concat left in float.",
)
@click.option("--exclude-nodes", default="", help="Comma-separated node names to keep in float.")
@click.option("--keep-ends-float", is_flag=True, help="Keep the first conv and the classifier in float.")
@click.option(
    "--auto-exclude", is_flag=True, help="If the check fails, keep the most sensitive layers float until it passes."
)
@click.option(
    "--from-trt-cache", type=click.Path(dir_okay=False), help="Take scales from a TensorRT calibration cache."
)
@click.option("--write-trt-cache", type=click.Path(dir_okay=False), help="Also write a TensorRT calibration cache.")
@click.option(
    "--activations",
    "activation_type",
    type=click.Choice(["int8", "uint8"]),
    default="int8",
    show_default=True,
    help="uint8: ONNX Runtime-only variant (TensorRT needs int8).",
)
@click.option(
    "--percentile",
    type=click.FloatRange(50, 100),
    default=DEFAULT_PERCENTILE,
    show_default=True,
    help="Percentile for --method percentile.",
)
@gate_options
@seed_option
@progress_option
@json_option
def command(model, data, output, exclude_nodes, progress, as_json, **options):
    """Calibrate MODEL (fp32 ONNX from `dnx export`) and write an INT8 Q/DQ model for TensorRT.

    Exit 1 (no file written) when the INT8 model misses the policy's int8 gate on held-out data (top-1
    agreement, accuracy drop, rel L2; docs/policy.md; the gate flags change it); exit 2 for unusable data
    or options.
    """
    gate = gate_from(options)
    nodes = tuple(n.strip() for n in exclude_nodes.split(",") if n.strip())
    calibration = CalibrationOptions(exclude_nodes=nodes, gate=gate, **options)
    with emit_on_failure(as_json):
        result = quantize_int8(model, output, data, calibration, progress=progress_enabled(as_json, progress))
    emit(result.as_dict(), as_json, str(result))
