"""`dnx verify REF CAND`: parity between any two artifacts, through their runners; exit 1 below thresholds."""

import click

from densenet_deploy.cli.output import emit, json_option
from densenet_deploy.core.errors import VerificationFailed
from densenet_deploy.runners import BACKENDS
from densenet_deploy.verify.parity import verify


@click.command("verify")
@click.argument("ref")
@click.argument("cand")
@click.option(
    "--data",
    metavar="SRC",
    help="Inputs: image dir, .npy/.npz, digits, cifar10:DIR, ..., random "
    "[default: the calibration source the artifacts record if built in, else random].",
)
@click.option("--samples", type=click.IntRange(1), default=64, show_default=True, help="Number of inputs.")
@click.option(
    "--batch-size", type=click.IntRange(1), default=16, show_default=True, help="Batch size for both runners."
)
@click.option(
    "--atol",
    type=click.FloatRange(min=0),
    help="Bound on max |diff| (default: rel-atol x logit range; off for fp16/bf16/int8).",
)
@click.option(
    "--rel-atol", type=click.FloatRange(min=0), help="Bound on max |diff| relative to the reference logit range."
)
@click.option("--max-rel-l2", type=click.FloatRange(min=0), help="Bound on ||cand - ref|| / ||ref||.")
@click.option("--min-agreement", type=click.FloatRange(0, 1), help="Least top-1 agreement (0..1).")
@click.option("--min-centered-cosine", type=click.FloatRange(-1, 1), help="Least cosine of the centered logits.")
@click.option("--backend-ref", type=click.Choice(BACKENDS), help="Backend for REF (default: from the artifact).")
@click.option("--backend-cand", type=click.Choice(BACKENDS), help="Backend for CAND (default: from the artifact).")
@click.option(
    "--provider",
    metavar="EP",
    help="ONNX Runtime execution providers for an artifact run on onnxruntime: "
    "cpu, cuda, tensorrt, or provider names, comma-separated (e.g. CUDAExecutionProvider) "
    "[default: TensorRT EP, CUDA EP, CPU EP, those installed, in that order].",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sample selection / random data.")
@json_option
def command(
    ref,
    cand,
    data,
    samples,
    batch_size,
    atol,
    rel_atol,
    max_rel_l2,
    min_agreement,
    min_centered_cosine,
    backend_ref,
    backend_cand,
    provider,
    seed,
    as_json,
):
    """Compare CAND's logits with REF's on the same inputs.

    REF and CAND are zoo names, checkpoints, .onnx, .xml (OpenVINO) or .plan (TensorRT) files.
    Default thresholds depend on the lower precision of the two: strict for fp32, agreement-based
    for fp16/bf16/int8 (see `dnx build-engine` docs). Exit 1 when a threshold is missed.
    """
    result = verify(
        ref,
        cand,
        data=data,
        samples=samples,
        batch_size=batch_size,
        atol=atol,
        rel_atol=rel_atol,
        max_rel_l2=max_rel_l2,
        min_agreement=min_agreement,
        min_centered_cosine=min_centered_cosine,
        backend_ref=backend_ref,
        backend_cand=backend_cand,
        seed=seed,
        provider=provider,
    )
    emit(result.as_dict(), as_json, str(result))
    if not result:
        raise VerificationFailed(f"{cand} does not match {ref}: {'; '.join(result.parity.failures)}", result)
