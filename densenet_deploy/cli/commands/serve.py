"""`dnx serve ARTIFACT`: serve one artifact through a real Triton server on this machine (dynamic batching)."""

import click

from densenet_deploy.cli.options import json_option
from densenet_deploy.cli.output import emit
from densenet_deploy.serve.local import serve_until_stopped


@click.command("serve")
@click.argument("artifact")
@click.option(
    "--max-batch", type=click.IntRange(1), help="Largest batch Triton forms [default: 8; a plan: its profile's max]."
)
@click.option(
    "--http-port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="HTTP port (0: any free port)."
)
@click.option(
    "--grpc-port", type=click.IntRange(0, 65535), default=8001, show_default=True, help="gRPC port (0: any free port)."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 exposes the server).")
@click.option("--name", help="Model name [default: the model name in the artifact's metadata].")
@click.option(
    "--instances", type=click.IntRange(1), default=1, show_default=True, help="Model instances (each loads the runner)."
)
@click.option(
    "--max-queue-delay-us",
    type=click.IntRange(0),
    default=2000,
    show_default=True,
    help="How long the dynamic batcher may hold a request to form a larger batch.",
)
@click.option(
    "--duration", type=click.FloatRange(0, min_open=True), help="Stop after this many seconds [default: until Ctrl-C]."
)
@json_option
def command(artifact, max_batch, http_port, grpc_port, host, name, instances, max_queue_delay_us, duration, as_json):
    """Serve ARTIFACT (.onnx, OpenVINO .xml, .plan) with Triton until Ctrl-C.

    The dnx runner for the artifact runs inside Triton's python backend; Triton's dynamic batcher groups
    concurrent requests. Query it with `dnx triton-client` or any Triton client.
    """

    def ready(info: dict) -> None:
        emit(
            info,
            as_json,
            f"serving {info['model']} (max batch {info['max_batch_size']}) at {info['url']} and "
            f"grpc {info['grpc']}; Ctrl-C stops",
        )

    serve_until_stopped(
        artifact,
        duration=duration,
        on_ready=ready,
        max_batch=max_batch,
        http_port=http_port,
        grpc_port=grpc_port,
        host=host,
        name=name,
        instances=instances,
        max_queue_delay_us=max_queue_delay_us,
    )
