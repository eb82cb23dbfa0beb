"""`dnx demo`: the main job end to end on built-in digits: train, export, FP16, INT8, deploy, verify, bench."""

import click

from densenet_deploy.cli.options import json_option, progress_enabled, progress_option
from densenet_deploy.cli.output import emit
from densenet_deploy.core.errors import VerificationFailed
from densenet_deploy.demo.pipeline import (
    DEFAULT_BENCH_SECONDS,
    DEFAULT_CALIB_SAMPLES,
    DEFAULT_VERIFY_SAMPLES,
    DEFAULT_WORKDIR,
    run_demo,
)


@click.command("demo")
@click.option(
    "--workdir",
    type=click.Path(),
    default=DEFAULT_WORKDIR,
    show_default=True,
    help="Directory for every artifact and the report (created if missing).",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    help="Start from this digits checkpoint (from `dnx train --dataset digits`) instead of training.",
)
@click.option("--epochs", type=click.IntRange(1), help="Training epochs [default: the digits preset's].")
@click.option(
    "--bench-seconds",
    type=click.FloatRange(0, min_open=True),
    default=DEFAULT_BENCH_SECONDS,
    show_default=True,
    help="Timing budget per artifact and batch size.",
)
@click.option(
    "--calib-samples",
    type=click.IntRange(1),
    default=DEFAULT_CALIB_SAMPLES,
    show_default=True,
    help="Training digits used for INT8 calibration.",
)
@click.option(
    "--verify-samples",
    type=click.IntRange(1),
    default=DEFAULT_VERIFY_SAMPLES,
    show_default=True,
    help="Held-out digits each artifact is verified on (at most the whole val split, 359).",
)
@click.option(
    "--openvino/--no-openvino", default=None, help="Build OpenVINO IRs [default: when openvino is installed]."
)
@click.option(
    "--tensorrt/--no-tensorrt",
    default=None,
    help="Build TensorRT plans [default: when TensorRT and a CUDA GPU are usable].",
)
@click.option("--threads", type=click.IntRange(1), help="CPU threads for training, builds and runners.")
@progress_option
@json_option
def command(
    workdir,
    checkpoint,
    epochs,
    bench_seconds,
    calib_samples,
    verify_samples,
    openvino,
    tensorrt,
    threads,
    progress,
    as_json,
):
    """Run the whole pipeline on scikit-learn's digits and print one summary table.

    Trains a small DenseNet-BC (or takes --checkpoint), exports it to ONNX, makes FP16 and INT8
    (calibrated with `dnx calibrate`'s default method) models, builds the ONNX Runtime deployment (and
    OpenVINO IRs / TensorRT plans where usable), verifies every artifact against PyTorch on the held-out
    digits, benchmarks them at batch 1 and 32, and writes report.md, results.json and demo.png into WORKDIR.
    Exit 1 when a check fails (after the table).
    """
    result = run_demo(
        workdir,
        checkpoint=checkpoint,
        epochs=epochs,
        bench_seconds=bench_seconds,
        calib_samples=calib_samples,
        verify_samples=verify_samples,
        openvino=openvino,
        tensorrt=tensorrt,
        threads=threads,
        progress=progress_enabled(as_json, progress),
        notify=lambda line: click.echo(line, err=True),
    )
    emit(result.as_dict(), as_json, str(result))
    if not result:
        raise VerificationFailed("demo: " + "; ".join(result.failures), result)
