"""`dnx bench ARTIFACT...`: latency/throughput per artifact and batch, with parity against the first."""

import click

from densenet_deploy.bench.timing import BenchOptions, bench
from densenet_deploy.cli.options import (
    data_option,
    json_option,
    progress_enabled,
    progress_option,
    samples_option,
    threads_option,
)
from densenet_deploy.cli.output import emit
from densenet_deploy.core.errors import VerificationFailed


@click.command("bench")
@click.argument("artifacts", nargs=-1, required=True)
@click.option("--batch", default="1", show_default=True, help="Comma-separated batch sizes, e.g. 1,8,32.")
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True),
    help="Timed budget per artifact and batch [default: 3 s unless --iters].",
)
@click.option("--iters", type=click.IntRange(1), help="Timed runs per artifact and batch (instead of --seconds).")
@click.option(
    "--warmup",
    type=click.IntRange(0),
    default=3,
    show_default=True,
    help="Untimed runs per artifact and batch after the parity run.",
)
@threads_option
@click.option(
    "--backend",
    type=click.Choice(["torch", "onnxruntime", "openvino", "tensorrt"]),
    help="Backend for every artifact [default: from the file type]; ARTIFACT@BACKEND sets one.",
)
@click.option(
    "--provider",
    metavar="EP",
    help="ONNX Runtime execution providers for artifacts run on onnxruntime: "
    "cpu, cuda, tensorrt, or provider names, comma-separated (e.g. CUDAExecutionProvider) "
    "[default: TensorRT EP, CUDA EP, CPU EP, those installed, in that order].",
)
@click.option(
    "--mode",
    type=click.Choice(["latency", "throughput"]),
    default="latency",
    show_default=True,
    help="throughput: asynchronous, all streams busy, on runners that support it (OpenVINO).",
)
@click.option(
    "--passes",
    type=click.IntRange(1),
    help="Round-robin passes the budget is split into, so machine noise hits every artifact alike "
    "[default: 5, or --iters if smaller; each pass needs one timed run: more than --iters is a "
    "warning].",
)
@data_option(
    "Parity inputs: a data source (digits, cifar10:DIR, an image directory, .npy/.npz; held-out split where "
    "there is one), which also gives accuracy [default: seeded random inputs]."
)
@samples_option("Parity inputs per artifact and batch [default: 64 with --data, else 8].")
@click.option("--report", type=click.Path(file_okay=False), help="Write report.md, results.json and plots here.")
@progress_option
@json_option
def command(artifacts, progress, as_json, **options):
    """Time ARTIFACTs (zoo names, checkpoints, .onnx, .xml, .plan) side by side.

    The first ARTIFACT is the parity reference: every other artifact's logits are compared with it on the
    same inputs, and the relative L2 error, centered cosine and top-1 agreement are printed beside
    its speed, so a fast but wrong artifact is visible. Random inputs (the default) overstate the error
    of INT8/FP16 artifacts of trained models; --data measures parity (and accuracy) on real images.
    Exit 1 when a row's parity is POOR on real data (--data): it misses the gate `dnx verify` applies
    (docs/policy.md); on random inputs POOR rows are flagged but the exit code stays 0.
    """
    result = bench(list(artifacts), BenchOptions(**options), progress=progress_enabled(as_json, progress))
    emit(result.as_dict(), as_json, str(result))
    if not result:
        raise VerificationFailed(f"parity is POOR for {', '.join(result.poor)}", result)
