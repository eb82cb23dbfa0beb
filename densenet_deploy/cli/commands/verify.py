"""`dnx verify REF CAND`: parity between any two artifacts, through their runners; exit 1 below the gate."""

import click

from densenet_deploy.cli.options import data_option, gate_from, gate_options, json_option, samples_option, seed_option
from densenet_deploy.cli.output import emit
from densenet_deploy.core.errors import VerificationFailed
from densenet_deploy.runners import BACKENDS
from densenet_deploy.verify.parity import DEFAULT_SAMPLES, VerifyOptions, verify

PROVIDER_HELP = (
    "ONNX Runtime execution providers for an artifact run on onnxruntime: cpu, cuda, tensorrt, or provider "
    "names, comma-separated (e.g. CUDAExecutionProvider) [default: TensorRT EP, CUDA EP, CPU EP, those "
    "installed, in that order]."
)


@click.command("verify")
@click.argument("ref")
@click.argument("cand")
@data_option(
    "Inputs: image dir, .npy/.npz, digits, cifar10:DIR, ..., random; its held-out split where it has one "
    "[default: the calibration source the artifacts record if built in, else random]."
)
@samples_option("Number of inputs.", default=DEFAULT_SAMPLES)
@click.option("--batch", type=click.IntRange(1), default=16, show_default=True, help="Batch size for both runners.")
@gate_options
@click.option("--backend-ref", type=click.Choice(BACKENDS), help="Backend for REF (default: from the artifact).")
@click.option("--backend-cand", type=click.Choice(BACKENDS), help="Backend for CAND (default: from the artifact).")
@click.option("--provider", metavar="EP", help=PROVIDER_HELP)
@seed_option
@json_option
def command(ref, cand, data, samples, batch, backend_ref, backend_cand, provider, seed, as_json, **gate):
    """Compare CAND's logits with REF's on the same inputs.

    REF and CAND are zoo names, checkpoints, .onnx, .xml (OpenVINO) or .plan (TensorRT) files. The gate is
    the policy's parity gate at the lower precision of the two (docs/policy.md), the same one every build
    step applies before writing. Exit 1 when it is missed.
    """
    options = VerifyOptions(
        data=data,
        samples=samples,
        batch_size=batch,
        gate=gate_from(gate),
        backend_ref=backend_ref,
        backend_cand=backend_cand,
        provider=provider,
        seed=seed,
    )
    result = verify(ref, cand, options)
    emit(result.as_dict(), as_json, str(result))
    if not result:
        raise VerificationFailed(f"{cand} does not match {ref}: {'; '.join(result.parity.failures)}", result)
