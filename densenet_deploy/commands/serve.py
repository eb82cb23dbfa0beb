"""`dnx serve ARTIFACT`: serve one artifact through a real Triton server on this machine (dynamic batching)."""

import click

from ..cli import emit, json_option


@click.command("serve")
@click.argument("artifact")
@click.option("--max-batch", type=click.IntRange(1), help="Largest batch Triton forms [default: 8; a plan: its profile's max].")
@click.option("--http-port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="HTTP port (0: any free port).")
@click.option("--grpc-port", type=click.IntRange(0, 65535), default=8001, show_default=True, help="gRPC port (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 exposes the server).")
@click.option("--name", help="Model name [default: the model name in the artifact's metadata].")
@click.option("--instances", type=click.IntRange(1), default=1, show_default=True, help="Model instances (each loads the runner).")
@click.option("--max-queue-delay-us", type=click.IntRange(0), default=2000, show_default=True,
              help="How long the dynamic batcher may hold a request to form a larger batch.")
@click.option("--duration", type=click.FloatRange(0, min_open=True), help="Stop after this many seconds [default: until Ctrl-C].")
@json_option
def command(artifact, max_batch, http_port, grpc_port, host, name, instances, max_queue_delay_us, duration, as_json):
    """Serve ARTIFACT (.onnx, OpenVINO .xml, .plan) with Triton until Ctrl-C.

    The dnx runner for the artifact runs inside Triton's python backend; Triton's dynamic batcher groups
    concurrent requests. Query it with `dnx triton-client` or any Triton client.
    """
    import signal
    import time

    from exporters.triton_serve import serve_artifact

    def _terminate(signum, frame):  # SIGTERM too must stop the server (it runs in its own session)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)

    with serve_artifact(artifact, max_batch=max_batch, http_port=http_port, grpc_port=grpc_port, host=host, name=name,
                        instances=instances, max_queue_delay_us=max_queue_delay_us) as (server, model):
        try:  # from here on Ctrl-C / SIGTERM is the normal way to stop: exit 0 after the server stopped
            info = {"url": f"http://{server.url}", "grpc": server.grpc_url, "model": model["model"],
                    "max_batch_size": model["max_batch_size"], "pid": server.process.pid}
            emit(info, as_json, f"serving {model['model']} (max batch {model['max_batch_size']}) at "
                 f"http://{server.url} and grpc {server.grpc_url}; Ctrl-C stops")
            deadline = time.monotonic() + duration if duration else None
            while deadline is None or time.monotonic() < deadline:
                if server.process.poll() is not None:
                    from ..errors import DnxError

                    raise DnxError(f"tritonserver exited with code {server.process.returncode}: {server.log_tail()}")
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
