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

    from exporters.triton_inspect import artifact_format, inspect_artifact

    # Everything that can be refused is refused before any directory, port or process exists.
    fmt = artifact_format(artifact, command="dnx serve")
    inspect_artifact(artifact)
    if fmt == "plan":
        _check_tensorrt(artifact)

    from exporters.triton_serve import serve_artifact

    stopping = []

    def _terminate(signum, frame):
        # Ctrl-C, SIGTERM and SIGHUP (a closed terminal) all stop the server and remove its temporary
        # directories; the server runs in its own session, so it sees none of them itself. A second signal
        # while stopping is ignored: the stop is bounded (grace period, then SIGKILL) and must finish.
        if stopping:
            return
        stopping.append(signum)
        raise KeyboardInterrupt

    for sig in ("SIGTERM", "SIGINT", "SIGHUP"):
        if hasattr(signal, sig):
            signal.signal(getattr(signal, sig), _terminate)

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


def _check_tensorrt(artifact: str) -> None:
    """A plan runs only with TensorRT on a CUDA GPU: say what is missing, as `dnx build-engine` does."""
    from exporters.tensorrt import check_tensorrt_usable

    from ..errors import BackendUnavailableError

    try:
        check_tensorrt_usable()
    except BackendUnavailableError as exc:
        raise BackendUnavailableError(f"cannot serve the TensorRT plan {artifact} here: {exc}; serve the ONNX "
                                      "export it was built from instead (`dnx serve model.onnx`)") from exc
