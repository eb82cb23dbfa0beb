"""`dnx calibrate IN.onnx --data SRC -o OUT.onnx`: INT8 with explicit Q/DQ, checked on held-out data."""

import click

from densenet_deploy.calibration import CONCAT_MODES, METHODS
from densenet_deploy.calibration.quantize import quantize_int8
from densenet_deploy.cli.output import emit, emit_on_failure, json_option, output_option, progress_enabled


@click.command("calibrate")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--data",
    required=True,
    help="Calibration data SRC (image dir, .npy/.npz, digits, cifar10:DIR, ...); "
    "its train split calibrates, its val split checks.",
)
@output_option(help="Output INT8 ONNX (written only after the held-out check passes).")
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="percentile",
    show_default=True,
    help="Activation range method (percentile of |x|; entropy = KL, TensorRT's classic; minmax).",
)
@click.option("--samples", type=click.IntRange(1), default=512, show_default=True, help="Calibration samples.")
@click.option(
    "--eval-samples",
    type=click.IntRange(1),
    default=500,
    show_default=True,
    help="Held-out samples for the INT8 vs fp32 check.",
)
@click.option("--cache", type=click.Path(dir_okay=False), help="JSON range cache: reused when model and data match.")
@click.option(
    "--concat-scales",
    type=click.Choice(CONCAT_MODES),
    default="shared",
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
    default=99.99,
    show_default=True,
    help="Percentile for --method percentile.",
)
@click.option(
    "--max-accuracy-drop",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Gate, in accuracy points.",
)
@click.option(
    "--min-agreement",
    type=click.FloatRange(0, 1),
    default=0.98,
    show_default=True,
    help="Gate: top-1 agreement with fp32.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling the calibration set.")
@json_option
def command(
    model,
    data,
    output,
    method,
    samples,
    eval_samples,
    cache,
    concat_scales,
    exclude_nodes,
    keep_ends_float,
    auto_exclude,
    from_trt_cache,
    write_trt_cache,
    activation_type,
    percentile,
    max_accuracy_drop,
    min_agreement,
    seed,
    as_json,
):
    """Calibrate MODEL (fp32 ONNX from `dnx export`) and write an INT8 Q/DQ model for TensorRT.

    Exit 1 (no file written) when the INT8 model's top-1 agreement or accuracy on held-out data misses
    the gate; exit 2 for unusable data or options.
    """
    with emit_on_failure(as_json, format_result):
        result = quantize_int8(
            model,
            output,
            data,
            method=method,
            samples=samples,
            eval_samples=eval_samples,
            cache=cache,
            concat_scales=concat_scales,
            exclude_nodes=[n.strip() for n in exclude_nodes.split(",") if n.strip()],
            keep_ends_float=keep_ends_float,
            auto_exclude=auto_exclude,
            from_trt_cache=from_trt_cache,
            write_trt_cache=write_trt_cache,
            activation_type=activation_type,
            percentile=percentile,
            max_accuracy_drop=max_accuracy_drop,
            min_agreement=min_agreement,
            seed=seed,
            progress=progress_enabled(as_json),
        )
    emit(result.as_dict(), as_json, format_result(result))


def format_result(r) -> str:
    p = r.parity
    lines = [
        f"{'wrote' if r.passed else 'NOT written:'} {r.output} ({r.activation_type} Q/DQ, method {r.method}, "
        f"{r.samples} samples, ranges from {r.ranges_from}, concat scales {r.concat_scales}) in {r.seconds:.1f} s",
        f"quantized {r.quantized_nodes} weighted nodes; {r.qdq.get('quantize_linear')} Q / "
        f"{r.qdq.get('dequantize_linear')} DQ; {r.qdq.get('quantized_concats')} concats in int8",
    ]
    if r.excluded:
        lines.append(
            f"float     {', '.join(r.excluded)}" + (f" (auto: {', '.join(r.auto_excluded)})" if r.auto_excluded else "")
        )
    lines.append(
        f"held-out  {p['samples']} samples: top-1 agreement {p['top1_agreement'] * 100:.2f} %, "
        f"rel L2 {p['rel_l2']:.4f}, cosine min {p['cosine_min']:.4f}"
    )
    if p.get("accuracy"):
        lines.append(f"accuracy  fp32 {p['accuracy']['ref'] * 100:.2f} %  int8 {p['accuracy']['cand'] * 100:.2f} %")
    if r.trt_cache:
        lines.append(f"TensorRT calibration cache: {r.trt_cache}")
    if r.failures:
        lines.append("FAIL: " + "; ".join(r.failures))
    return "\n".join(lines)
