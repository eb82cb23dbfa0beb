"""`dnx serve`: one artifact behind a real Triton server on this machine (dnx runner in the python backend)."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile

from densenet_deploy.serve import DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT, TritonServer

from .triton import write_repository

log = logging.getLogger(__name__)


@contextlib.contextmanager
def serve_artifact(artifact: str, max_batch: int | None = None, http_port: int = DEFAULT_HTTP_PORT,
                   grpc_port: int = DEFAULT_GRPC_PORT, host: str = "127.0.0.1", name: str | None = None,
                   instances: int = 1, preferred_batch=(), max_queue_delay_us: int = 2000,
                   startup_timeout: float = 120.0):
    """Serve `artifact` (any file a dnx runner opens: .onnx, .xml, .plan) with Triton's dynamic batcher.

    Writes a python-backend repository (`dnx triton --backend python`) into a temporary directory, starts
    the bundled tritonserver on it and yields ``(server, model)``: `server.url` is the HTTP host:port,
    `model` the repository entry (name, max_batch_size, ...). The server and the directory are removed on
    exit, also when the body raises.
    """
    repo = tempfile.mkdtemp(prefix="dnx-serve-repo-")
    try:
        result = write_repository([artifact], repo, name=name, max_batch=max_batch, instances=instances,
                                  kind="cpu" if not artifact.lower().endswith((".plan", ".engine")) else None,
                                  preferred_batch=preferred_batch, max_queue_delay_us=max_queue_delay_us,
                                  backend="python")
        model = result["models"][0]
        with TritonServer(repo, host=host, http_port=http_port, grpc_port=grpc_port,
                          startup_timeout=startup_timeout) as server:
            yield server, model
    finally:
        shutil.rmtree(repo, ignore_errors=True)
