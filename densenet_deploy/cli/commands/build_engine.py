"""`dnx build-engine IN.onnx -o OUT`: precision step, then a TensorRT plan, ONNX Runtime or OpenVINO deployment."""

import click

from densenet_deploy.calibration.ranges import METHODS
from densenet_deploy.cli.output import emit, emit_on_failure, json_option, output_option
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
@click.option(
    "--fp16", is_flag=True, help="Convert to an FP16 graph (fp32 I/O) first (--calib-data picks layers kept fp32)."
)
@click.option(
    "--bf16",
    is_flag=True,
    help="BF16: a bf16 graph for tensorrt (--calib-data: parity data), the bf16 precision hint for openvino.",
)
@click.option("--int8", is_flag=True, help="Calibrate to an INT8 Q/DQ graph first (needs --calib-data).")
@click.option(
    "--calib-data",
    metavar="SRC",
    help="Calibration data for --int8 (parity data of the --fp16/--bf16 graphs; openvino's check uses "
    "--verify-data): image dir, .npy/.npz, digits, cifar10:DIR, ...",
)
@click.option("--method", type=click.Choice(METHODS), help="Calibration method for --int8 [default: calibration's].")
@click.option(
    "--samples",
    type=click.IntRange(1),
    help="Samples of the precision step: --int8 calibration, the --fp16/--bf16 graph's parity check "
    "[default: the step's own].",
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
    "[default: with --int8, --calib-data's val split; else seeded random inputs].",
)
@json_option
def command(
    onnx_path,
    output,
    target,
    fp16,
    bf16,
    int8,
    calib_data,
    method,
    samples,
    min_batch,
    opt_batch,
    max_batch,
    workspace_gb,
    opt_level,
    timing_cache,
    hardware_compatibility,
    version_compatible,
    optimization,
    threads,
    recipe,
    verify_data,
    as_json,
):
    """Build a deployable artifact from IN.onnx (the output of `dnx export`).

    The precision step runs first (FP16/BF16 conversion, or INT8 calibration to Q/DQ), then the target
    build. Without --fp16/--bf16/--int8 the input model's own precision is kept.
    """
    chosen = [name for name, flag in (("fp16", fp16), ("bf16", bf16), ("int8", int8)) if flag]
    if len(chosen) > 1:
        raise click.UsageError(f"choose one precision, not {' and '.join('--' + c for c in chosen)}")
    precision = chosen[0] if chosen else None
    # Only options given on the command line count: a default is not the user asking for anything.
    ctx = click.get_current_context()
    defaulted = (click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP)
    given = [p.name for p in ctx.command.params if ctx.get_parameter_source(p.name) not in defaulted]
    check_target_options(target, given)

    engine = EngineOptions(
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
        workspace_gb=workspace_gb,
        opt_level=opt_level,
        timing_cache=timing_cache,
        hardware_compatibility=hardware_compatibility,
        version_compatible=version_compatible,
    )
    options = BuildOptions(
        target=target,
        precision=precision,
        calib_data=calib_data,
        method=method,
        samples=samples,
        engine=engine,
        optimization=optimization,
        threads=threads,
        extra={
            "recipe": recipe if "recipe" in given else None,  # None: nncf
            "verify_data": verify_data,
        }
        if target == "openvino"
        else {},
    )
    with emit_on_failure(as_json):  # without --json the error line says it all
        result = build_deployment(onnx_path, output, options)
    text = f"wrote {result['output']} ({result['target']}, {result['precision']}) in {result['seconds']:.1f} s" + (
        f"\nsidecar {result['sidecar']}" if result.get("sidecar") else ""
    )
    emit(result, as_json, text)
