"""Run a real Triton Inference Server: the `tritonserver` binary (with its python backend) that ships in
the nvidia-pytriton wheel, on a model repository, bound to one address, bounded in time, always stopped.

PyTriton's own `Triton.bind` API is not used: its proxy model converts tensors with `as_numpy()`, which the
bundled python-backend stub (built against NumPy 1.x) gets wrong under NumPy 2 (zeros in, empty outputs
out), and PyTriton pins numpy<2 while the rest of dnx needs NumPy 2. dnx's own python model
(serve/python_model.py) passes tensors through DLPack instead and runs the dnx runner itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from densenet_deploy.core.errors import BackendUnavailableError, DnxError

log = logging.getLogger(__name__)

DEFAULT_HTTP_PORT = 8000
DEFAULT_GRPC_PORT = 8001


@dataclass(frozen=True)
class TritonDist:
    """Where the bundled server lives: binary, python backend directory, this Python's stub, shared libs."""

    binary: str
    python_backend: str
    stub: str
    libs: str


def find_tritonserver() -> TritonDist:
    """Locate the tritonserver that nvidia-pytriton bundles, without importing pytriton (it pins numpy<2)."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailableError(
            "a Triton server binary is needed; install it with: "
            "pip install 'densenet-deploy[triton]' (nvidia-pytriton bundles tritonserver)"
        )
    package = list(spec.submodule_search_locations)[0]
    root = os.path.join(package, "tritonserver")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    dist = TritonDist(
        binary=os.path.join(root, "bin", "tritonserver"),
        python_backend=os.path.join(root, "backends", "python"),
        stub=os.path.join(root, "python_backend_stubs", version, "triton_python_backend_stub"),
        libs=os.path.join(os.path.dirname(package), "nvidia_pytriton.libs"),
    )
    for what, path in (
        ("tritonserver binary", dist.binary),
        ("python backend", dist.python_backend),
        (f"python backend stub for Python {version}", dist.stub),
    ):
        if not os.path.exists(path):
            raise BackendUnavailableError(
                f"the nvidia-pytriton install has no {what} ({path}); reinstall nvidia-pytriton for this Python version"
            )
    return dist


def free_port(host: str = "127.0.0.1", port: int = 0) -> int:
    """`port` if it is free on `host` right now, or (port 0) a free one the OS picks; DnxError otherwise.

    Checked before the server starts: a server already listening there would answer the readiness
    probe for ours, and a host that is not an address of this machine would fail deep inside Triton.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, port))
            return sock.getsockname()[1]
    except socket.gaierror as exc:
        raise DnxError(f"--host {host!r} is not a known host name or address ({exc.strerror})") from exc
    except OSError as exc:
        what = f"port {port} on {host}" if port else f"a port on {host}"
        raise DnxError(
            f"cannot listen on {what}: {exc.strerror or exc}"
            + ("; is another server using it? pick another port or 0 for a free one" if port else "")
        ) from exc


_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP} if hasattr(signal, "SIGHUP") else set()


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT/SIGTERM/SIGHUP in this thread for the block (delivered when it ends); no-op off POSIX."""
    if not _HELD_SIGNALS or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _child_setup(parent: int):
    """A Popen preexec_fn for the server: stop signals unblocked again (the child inherits the held mask)
    and, on Linux, SIGTERM to the server when the process that started it dies, even by SIGKILL, so no
    server outlives dnx holding its ports. Strictly it fires when the forking *thread* ends: start servers
    from a thread that lives as long as they should (the main thread, for `dnx serve`)."""
    prctl = None
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
        except (OSError, AttributeError):
            prctl = None

    def setup():
        if _HELD_SIGNALS and hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD_SIGNALS)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl: nobody would stop this server
                os._exit(1)

    return setup


class TritonServer:
    """`tritonserver` on `repo`, HTTP and gRPC bound to `host`; a context manager that always stops it.

    Port 0 means "pick a free one". Metrics are off (the server opens only the two ports asked for).
    `start()` waits until every model is ready or raises DnxError with the end of the server's log.
    """

    def __init__(
        self,
        repo: str,
        host: str = "127.0.0.1",
        http_port: int = DEFAULT_HTTP_PORT,
        grpc_port: int = DEFAULT_GRPC_PORT,
        startup_timeout: float = 60.0,
        stop_timeout: float = 15.0,
        log_verbose: int = 0,
    ):
        self.repo = os.path.abspath(repo)
        self.host = host
        self.http_port = free_port(host, http_port or 0)
        self.grpc_port = free_port(host, grpc_port or 0)
        if self.http_port == self.grpc_port:
            raise DnxError(f"HTTP and gRPC need two ports, both were given as {self.http_port}")
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.log_verbose = log_verbose
        self.process: subprocess.Popen | None = None
        self.workdir: str | None = None
        self.log_path: str | None = None

    @property
    def url(self) -> str:
        """host:port of the HTTP endpoint, as tritonclient.http wants it."""
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def _prepare(self, dist: TritonDist) -> tuple[list[str], dict]:
        # The python backend runs the stub found beside libtriton_python.so, so the backend directory is
        # assembled per server with the stub that matches this interpreter (as PyTriton does).
        self.workdir = tempfile.mkdtemp(prefix="dnx-triton-")
        backend_dir = os.path.join(self.workdir, "backends", "python")
        os.makedirs(backend_dir)
        for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
            shutil.copy2(os.path.join(dist.python_backend, name), backend_dir)
        shutil.copy2(dist.stub, os.path.join(backend_dir, "triton_python_backend_stub"))
        env = dict(os.environ)
        # The stub links libpython3.X.so.1.0; this interpreter's own copy must come before the system's, or
        # the stub runs an older libpython against this interpreter's standard library and fails to start.
        libdirs = [d for d in (sysconfig.get_config_var("LIBDIR"),) if d and os.path.isdir(d)]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            libdirs + [dist.libs] + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
        )
        # The stub's embedded Python finds its environment (site-packages, dnx) from `python3` on PATH.
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        cmd = [
            dist.binary,
            "--model-repository",
            self.repo,
            "--backend-directory",
            os.path.dirname(backend_dir),
            "--http-address",
            self.host,
            "--http-port",
            str(self.http_port),
            "--grpc-address",
            self.host,
            "--grpc-port",
            str(self.grpc_port),
            "--allow-metrics",
            "false",
            "--allow-sagemaker",
            "false",
            "--allow-vertex-ai",
            "false",
            "--exit-timeout-secs",
            str(max(1, int(self.stop_timeout) - 2)),
            "--log-verbose",
            str(self.log_verbose),
        ]
        return cmd, env

    def start(self) -> "TritonServer":
        dist = find_tritonserver()
        try:  # whatever interrupts the start (an error, Ctrl-C, a signal turned into one) stops and cleans up
            cmd, env = self._prepare(dist)
            self.log_path = os.path.join(self.workdir, "tritonserver.log")
            log.info("starting %s", " ".join(cmd))
            with open(self.log_path, "wb") as log_file, _signals_held():
                # Own session: stop() can signal the server and the stubs it forked, and nothing else.
                # The stop signals are held until self.process is set, so a signal handler that raises
                # cannot leave a started server that stop() does not know about.
                self.process = subprocess.Popen(
                    cmd,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_child_setup(os.getpid()),
                )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        ready = f"http://{self.url}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DnxError(
                    f"tritonserver exited with code {self.process.returncode} while starting: {self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(ready, timeout=2) as response:
                    if response.status == 200 and self.process.poll() is None:
                        log.info("Triton ready at %s (gRPC %s)", self.url, self.grpc_url)
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.25)
        raise DnxError(f"tritonserver was not ready after {self.startup_timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 6) -> str:
        """The last error-looking lines of the server log, joined into one line."""
        if not self.log_path or not os.path.isfile(self.log_path):
            return "(no log)"
        with open(self.log_path, errors="replace") as fh:
            text = fh.read().splitlines()
        errors = [t for t in text if t[:1] == "E" or "error" in t.lower() or "Error" in t]
        return " | ".join((errors or text)[-lines:]).strip() or "(empty log)"

    def stop(self) -> int | None:
        """SIGINT (graceful), then SIGKILL of the whole process group after stop_timeout; returns the exit code."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self._signal(signal.SIGINT)
                try:
                    self.process.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    log.warning("tritonserver did not stop within %.0f s; killing it", self.stop_timeout)
            # Stubs left behind by a server that died or hung go too (they share its process group).
            self._signal(signal.SIGKILL)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            code = self.process.returncode
            self.process = None
        if self.workdir:
            keep = os.environ.get("DNX_KEEP_TRITON_LOG") == "1"
            if not keep:
                shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None if not keep else self.workdir
        return code

    def _signal(self, sig) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
