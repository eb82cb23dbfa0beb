"""`dnx build-engine IN.onnx -o OUT`: precision step, then a TensorRT plan, ONNX Runtime or OpenVINO deployment."""

import click

from densenet_deploy.calibration.ranges import METHODS
from densenet_deploy.cli.options import (
    chosen_precision,
    data_option,
    gate_from,
    gate_options,
    given_options,
    json_option,
    output_option,
    precision_options,
    progress_enabled,
    progress_option,
    samples_option,
)
from densenet_deploy.cli.output import emit, emit_on_failure
from densenet_deploy.exporters.targets.build import TARGETS, BuildOptions, build_deployment, check_target_options
from densenet_deploy.exporters.targets.tensorrt import EngineOptions


@click.command("build-engine")
@click.argument("onnx_path", metavar="IN.onnx", type=click.Path(dir_okay=False))
@output_option(help="Output artifact: model.plan (tensorrt), model.ort.onnx (onnxruntime), model.xml (openvino).")
@click.option(
    "--target",
    type=click.Choice(list(TARGETS)),
    default="tensorrt",
    show_default=True,
    help="What to build: " + "; ".join(f"{t.name}: {t.summary}" for t in TARGETS.values() if t.summary),
)
@precision_options(
    "Precision of the artifact [default: the input model's]: fp16 converts to an FP16 graph (fp32 I/O; --data "
    "picks the layers kept fp32), bf16 a bf16 graph for tensorrt (the bf16 precision hint for openvino), int8 "
    "calibrates to an INT8 Q/DQ graph first (needs --data)."
)
@data_option(
    "The precision step's data: calibration data for int8 (its train split; its val split checks), parity "
    "data of the fp16/bf16 graphs (openvino's check uses --verify-data): image dir, .npy/.npz, digits, "
    "cifar10:DIR, ...",
    aliases=("--calib-data",),
)
@click.option("--method", type=click.Choice(METHODS), help="Calibration method for --int8 [default: calibration's].")
@samples_option(
    "Samples of the precision step: int8 calibration, the fp16/bf16 graph's parity check [default: the step's own]."
)
@click.option(
    "--min-batch", type=click.IntRange(1), default=1, show_default=True, help="TensorRT profile: smallest batch."
)
@click.option(
    "--opt-batch", type=click.IntRange(1), default=8, show_default=True, help="TensorRT profile: batch to tune for."
)
@click.option(
    "--max-batch", type=click.IntRange(1), default=32, show_default=True, help="TensorRT profile: largest batch."
)
@click.option(
    "--workspace-gb",
    type=click.FloatRange(min=0, min_open=True),
    default=4.0,
    show_default=True,
    help="TensorRT workspace memory limit.",
)
@click.option(
    "--opt-level",
    type=click.IntRange(0, 5),
    default=3,
    show_default=True,
    help="TensorRT builder optimisation level (higher: longer build, maybe faster engine).",
)
@click.option("--timing-cache", type=click.Path(dir_okay=False), help="TensorRT timing cache file (read and updated).")
@click.option(
    "--hardware-compatibility",
    type=click.Choice(["ampere+", "same-cc"]),
    help="TensorRT: let the plan run on other GPUs (ampere+: any cc >= 8.0; same-cc: same compute capability).",
)
@click.option("--version-compatible", is_flag=True, help="TensorRT: let the plan run on later TensorRT versions.")
@click.option(
    "--optimization",
    type=click.Choice(["basic", "extended", "all"]),
    default="all",
    show_default=True,
    help="onnxruntime target: offline graph optimisation level ('all' ties the model to this CPU type).",
)
@click.option("--threads", type=click.IntRange(1), help="CPU threads for the build and its checks.")
@click.option(
    "--recipe",
    type=click.Choice(["nncf", "qdq"]),
    default="nncf",
    show_default=True,
    help="openvino target, --int8: nncf (NNCF on the OpenVINO model) or qdq (the TensorRT-format Q/DQ model).",
)
@click.option(
    "--verify-data",
    metavar="SRC",
    help="openvino target: data the converted model is checked on against ONNX Runtime before it is "
    "written; the held-out split of sources that have one (digits, cifar10:DIR, svhn:DIR, a DIR "
    "with train/ and val/), else all of it (.npy/.npz, a plain DIR) "
    "[default: with int8, --data's val split; else seeded random inputs].",
)
@gate_options
@progress_option
@json_option
def command(
    onnx_path,
    output,
    target,
    precision,
    data,
    method,
    samples,
    threads,
    recipe,
    verify_data,
    progress,
    as_json,
    **options,
):
    """Build a deployable artifact from IN.onnx (the output of `dnx export`).

    The precision step runs first (FP16/BF16 conversion, or INT8 calibration to Q/DQ), then the target
    build; each checks its result with the policy's gate (docs/policy.md; the gate flags change it) before
    anything is written. Without --precision the input model's own precision is kept.
    """
    precision = chosen_precision(precision)
    ctx = click.get_current_context()
    given = given_options(ctx)
    check_target_options(target, given)
    gate = gate_from(options)
    optimization = options.pop("optimization")
    engine = EngineOptions(**options)  # the TensorRT options left
    build = BuildOptions(
        target=target,
        precision=precision,
        data=data,
        method=method,
        samples=samples,
        engine=engine,
        optimization=optimization,
        threads=threads,
        gate=gate,
        extra={"recipe": recipe if "recipe" in given else None, "verify_data": verify_data}  # recipe None: nncf
        if target == "openvino"
        else {},
    )
    with emit_on_failure(as_json):  # without --json the error line says it all
        result = build_deployment(onnx_path, output, build, progress=progress_enabled(as_json, progress))
    emit(result.as_dict(), as_json, str(result))
