"""`dnx serve`: one artifact behind a real Triton server on this machine (dnx runner in the python backend)."""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import tempfile
import time
from typing import Callable

from densenet_deploy.core.errors import BackendUnavailableError, DnxError
from densenet_deploy.exporters.targets.tensorrt import check_tensorrt_usable
from densenet_deploy.serve.artifacts import artifact_format, inspect_artifact
from densenet_deploy.serve.repository import write_repository
from densenet_deploy.serve.server import DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT, TritonServer

log = logging.getLogger(__name__)


@contextlib.contextmanager
def serve_artifact(
    artifact: str,
    max_batch: int | None = None,
    http_port: int = DEFAULT_HTTP_PORT,
    grpc_port: int = DEFAULT_GRPC_PORT,
    host: str = "127.0.0.1",
    name: str | None = None,
    instances: int = 1,
    preferred_batch=(),
    max_queue_delay_us: int = 2000,
    startup_timeout: float = 120.0,
):
    """Serve `artifact` (any file a dnx runner opens: .onnx, .xml, .plan) with Triton's dynamic batcher.

    Writes a python-backend repository (`dnx triton --backend python`) into a temporary directory, starts
    the bundled tritonserver on it and yields ``(server, model)``: `server.url` is the HTTP host:port,
    `model` the repository entry (name, max_batch_size, ...). The server and the directory are removed on
    exit, also when the body raises.
    """
    repo = tempfile.mkdtemp(prefix="dnx-serve-repo-")
    try:
        result = write_repository(
            [artifact],
            repo,
            name=name,
            max_batch=max_batch,
            instances=instances,
            kind="cpu" if not artifact.lower().endswith((".plan", ".engine")) else None,
            preferred_batch=preferred_batch,
            max_queue_delay_us=max_queue_delay_us,
            backend="python",
        )
        model = result.models[0]
        with TritonServer(
            repo, host=host, http_port=http_port, grpc_port=grpc_port, startup_timeout=startup_timeout
        ) as server:
            yield server, model
    finally:
        shutil.rmtree(repo, ignore_errors=True)


def serve_until_stopped(
    artifact: str, *, duration: float | None = None, on_ready: Callable[[dict], None] | None = None, **options
) -> None:
    """`dnx serve`: serve `artifact` (serve_artifact's `options`) until Ctrl-C, SIGTERM or SIGHUP (or for
    `duration` seconds); `on_ready` gets {"url", "grpc", "model", "max_batch_size", "pid"} once the server
    answers. Everything that can be refused is refused before any directory, port or process exists; a stop
    signal is the normal way to end (no error), a server that dies is a DnxError."""
    fmt = artifact_format(artifact, command="dnx serve")
    inspect_artifact(artifact)
    if fmt == "plan":
        try:  # a plan runs only with TensorRT on a CUDA GPU: say what is missing, as `dnx build-engine` does
            check_tensorrt_usable()
        except BackendUnavailableError as exc:
            raise BackendUnavailableError(
                f"cannot serve the TensorRT plan {artifact} here: {exc}; serve the ONNX "
                "export it was built from instead (`dnx serve model.onnx`)"
            ) from exc
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

    with serve_artifact(artifact, **options) as (server, model):
        try:  # from here on a stop signal is the normal way to stop: return after the server stopped
            if on_ready is not None:
                on_ready(
                    {
                        "url": f"http://{server.url}",
                        "grpc": server.grpc_url,
                        "model": model["model"],
                        "max_batch_size": model["max_batch_size"],
                        "pid": server.process.pid,
                    }
                )
            deadline = time.monotonic() + duration if duration else None
            while deadline is None or time.monotonic() < deadline:
                if server.process.poll() is not None:
                    raise DnxError(f"tritonserver exited with code {server.process.returncode}: {server.log_tail()}")
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
