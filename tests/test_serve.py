"""`dnx serve` / `dnx triton-client` against a real Triton server (the tritonserver bundled in nvidia-pytriton).

The server binds 127.0.0.1 on free ports only, every wait is bounded, and the server is stopped (process
group killed after a grace period) also when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from densenet_deploy.core import deps

pytestmark = pytest.mark.skipif(
    not deps.available("tritonclient.http") or not deps.available("pytriton"),
    reason="tritonclient[http] and nvidia-pytriton (extra 'triton') are not installed",
)

CLIENTS = 4
REQUESTS_PER_CLIENT = 12


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


@pytest.fixture(scope="module")
def digits(digits_onnx):
    from densenet_deploy.core.metadata import read_onnx_meta
    from densenet_deploy.data.loading import load_data_for

    return load_data_for("digits", read_onnx_meta(digits_onnx), split="val", limit=CLIENTS * REQUESTS_PER_CLIENT * 2)


def test_serve_batches_concurrent_clients_and_matches_the_runner(digits_onnx, digits, tmp_path):
    import tritonclient.http as http

    from densenet_deploy.runners import open_runner
    from densenet_deploy.serve.local import serve_artifact

    with open_runner(digits_onnx) as runner:
        expected = runner.run(digits.images)
        meta = runner.meta
    answers: dict[int, np.ndarray] = {}
    failures: list[str] = []

    # A long queue delay lets Triton's dynamic batcher gather the concurrent single requests.
    with serve_artifact(
        digits_onnx, max_batch=8, http_port=0, grpc_port=0, max_queue_delay_us=50_000, startup_timeout=90
    ) as (server, model):
        assert server.host == "127.0.0.1"
        pid, port = server.process.pid, server.http_port

        def client(worker: int):
            conn = http.InferenceServerClient(server.url, connection_timeout=30, network_timeout=30)
            try:
                for j in range(REQUESTS_PER_CLIENT):
                    # Mix 1- and 2-image requests: Triton must batch across requests and split back.
                    start = (worker * REQUESTS_PER_CLIENT + j) * 2
                    size = 1 + (j % 2)
                    x = digits.images[start : start + size]
                    tensor = http.InferInput(meta.input_name, list(x.shape), "FP32")
                    tensor.set_data_from_numpy(x)
                    out = conn.infer(model["model"], [tensor]).as_numpy(meta.output_name)
                    for k in range(size):
                        answers[start + k] = out[k]
            except Exception as exc:  # reported below: an exception in a thread would be lost
                failures.append(f"client {worker}: {type(exc).__name__}: {exc}")
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "clients did not finish within 60 s"
        assert not failures, failures

        stats_client = http.InferenceServerClient(server.url, network_timeout=30)
        stats = stats_client.get_inference_statistics(model["model"])["model_stats"][0]
        stats_client.close()

        # The same PNG files through `dnx triton-client`, its top-1 against the runner on the same files.
        from PIL import Image

        from densenet_deploy.data.loading import load_raw, preprocess_image

        raw = load_raw("digits", meta.input_size, split="val", limit=3)
        paths = []
        for i, img in enumerate(raw.images):
            path = tmp_path / f"digit{i}.png"
            Image.fromarray(np.round(img[0] * 255).astype(np.uint8), mode="L").save(path)
            paths.append(str(path))
        from densenet_deploy.cli.main import cli

        result = CliRunner().invoke(
            cli, ["triton-client", f"http://{server.url}", model["model"], *paths, "--topk", "3", "--json"]
        )
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        with open_runner(digits_onnx) as runner:
            files_logits = runner.run(
                np.stack([preprocess_image(p, meta.input_size, meta.mean, meta.std) for p in paths])
            )
        for row, logits in zip(doc["results"], files_logits):
            assert [t["index"] for t in row["top"]] == list(np.argsort(-logits)[:3])
            assert row["top"][0]["logit"] == pytest.approx(float(logits.max()), abs=1e-4)
            if meta.labels:
                assert row["top"][0]["label"] == meta.labels[int(np.argmax(logits))]

    # Stopped: the process is gone and the port is closed.
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not port_open("127.0.0.1", port)

    assert len(answers) == CLIENTS * (REQUESTS_PER_CLIENT // 2) * 3  # half 1-image, half 2-image requests
    idx = sorted(answers)
    got = np.stack([answers[i] for i in idx])
    np.testing.assert_allclose(got, expected[idx], rtol=1e-5, atol=1e-5)
    batch_sizes = {int(b["batch_size"]) for b in stats["batch_stats"]}
    assert stats["inference_count"] == len(answers)
    assert max(batch_sizes) > 2, f"no batch was formed across requests: {stats['batch_stats']}"
    assert stats["execution_count"] < CLIENTS * REQUESTS_PER_CLIENT


def test_serve_bf16_onnx_on_the_openvino_runner(tiny_onnx, tmp_path):
    """`dnx serve` of a bf16 graph used to be refused (ONNX Runtime cannot run it); dnx's runner runs it on
    OpenVINO, so the python backend does too, and the server answers exactly as that runner does."""
    pytest.importorskip("openvino", reason="openvino (extra 'openvino') runs bf16 ONNX graphs on the CPU")
    import tritonclient.http as http

    from densenet_deploy.exporters.bf16 import convert_bf16
    from densenet_deploy.runners import open_runner
    from densenet_deploy.serve.local import serve_artifact

    bf16 = str(tmp_path / "tiny.bf16.onnx")
    convert_bf16(tiny_onnx, bf16)
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with open_runner(bf16) as runner:
        assert runner.backend == "openvino"
        expected = runner.run(x)
    with serve_artifact(bf16, http_port=0, grpc_port=0, startup_timeout=90) as (server, model):
        client = http.InferenceServerClient(server.url, network_timeout=30)
        try:
            config = client.get_model_config(model["model"])
            assert config["parameters"]["dnx.backend"]["string_value"] == "openvino"
            tensor = http.InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            got = client.infer(model["model"], [tensor]).as_numpy("logits")
        finally:
            client.close()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_dnx_serve_cli_starts_answers_and_stops_on_sigterm(digits_onnx):
    import tritonclient.http as http

    proc, info = start_dnx_serve(digits_onnx)
    try:
        host, port = info["url"].removeprefix("http://").split(":")
        assert host == "127.0.0.1"
        client = http.InferenceServerClient(f"{host}:{port}", network_timeout=30)
        assert client.is_model_ready(info["model"])
        client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0, proc.stderr.read()
        assert not port_open(host, int(port))
        with pytest.raises(ProcessLookupError):
            os.kill(info["pid"], 0)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_busy_port_and_unknown_host_are_refused_before_starting(tmp_path):
    """A server already on the port would answer our readiness probe: refuse before starting."""
    import socket

    from densenet_deploy.core.errors import DnxError
    from densenet_deploy.serve.server import TritonServer

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DnxError, match="Address already in use"):
            TritonServer(str(tmp_path), http_port=port, grpc_port=0)
    with pytest.raises(DnxError, match="not a known host"):
        TritonServer(str(tmp_path), host="notahost.invalid", http_port=0, grpc_port=0)


def process_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped by its new parent, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False


def group_alive(pgid: int) -> list[int]:
    """Live processes in process group `pgid` (the server and the python-backend stubs it forked)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                found.append(int(entry))
    return found


def dnx_temp(tmpdir) -> list[str]:
    """The temporary directories dnx made under `tmpdir` (dnx-serve-repo-*, dnx-triton-*)."""
    return [d for d in os.listdir(tmpdir) if d.startswith("dnx-")]


def start_dnx_serve(artifact, tmpdir=None, preexec_fn=None):
    """`dnx serve ARTIFACT --json` as a separate process (temporary files under `tmpdir`, if given) in its
    own session; (process, info) once it reports a ready server."""
    env = dict(os.environ, TMPDIR=str(tmpdir)) if tmpdir else None
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "densenet_deploy.cli",
            "serve",
            str(artifact),
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--json",
            "--duration",
            "120",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )
    lines = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # the JSON object comes once the server is ready
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("}"):
            break
    if not lines or not lines[-1].startswith("}"):
        proc.kill()
        pytest.fail(f"dnx serve did not report a ready server: {proc.stderr.read()}")
    return proc, json.loads("".join(lines))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux-only")
@pytest.mark.parametrize("sig", ["SIGHUP", "SIGINT", "SIGKILL"])
def test_dnx_serve_leaves_no_server_or_temp_dirs_behind(digits_onnx, tmp_path, sig):
    """A closed terminal (SIGHUP), Ctrl-C (SIGINT, also when started with `&`, which ignores it) and SIGKILL:
    tritonserver and its stubs must not outlive dnx holding the ports; a handled signal also removes the
    temporary repository and backend directories."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    # A shell's `cmd &` starts the job with SIGINT ignored, which Python then leaves ignored.
    ignore_sigint = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sig == "SIGINT" else None
    proc, info = start_dnx_serve(digits_onnx, tmpdir, preexec_fn=ignore_sigint)
    server = info["pid"]
    host, port = info["url"].removeprefix("http://").split(":")
    try:
        assert process_alive(server) and port_open(host, int(port))
        assert sorted(d.split("-")[1] for d in dnx_temp(tmpdir)) == ["serve", "triton"]
        proc.send_signal(getattr(signal, sig))
        code = proc.wait(timeout=40)
        deadline = time.monotonic() + 40  # after SIGKILL the server gets SIGTERM and shuts down gracefully
        while group_alive(server) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not group_alive(server), f"left running after {sig}: {group_alive(server)}"
        assert not port_open(host, int(port))
        if sig != "SIGKILL":  # a handled signal: a clean stop, exit 0, nothing left in the temp directory
            assert code == 0, proc.stderr.read()
            assert dnx_temp(tmpdir) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if group_alive(server):
            os.killpg(server, signal.SIGKILL)


def test_dnx_serve_names_what_it_serves(tmp_path):
    from densenet_deploy.cli.main import cli

    checkpoint = tmp_path / "digits.pt"
    checkpoint.write_bytes(b"not read: the name alone is refused")
    result = CliRunner().invoke(cli, ["serve", str(checkpoint)])
    assert result.exit_code == 2, result.output
    (line,) = [x for x in result.output.splitlines() if x.strip()]
    assert line.startswith("error: ") and "`dnx serve` takes .onnx" in line and "dnx triton" not in line
    assert f"dnx export {checkpoint}" in line


def test_dnx_serve_plan_needs_tensorrt_and_a_gpu_before_starting(tmp_path):
    """Without TensorRT or a CUDA GPU a plan cannot run: refused with build-engine's reason, before any
    temporary directory, port or tritonserver exists (it used to start Triton and fail on KIND_GPU)."""
    from densenet_deploy.core.errors import BackendUnavailableError
    from densenet_deploy.core.metadata import ArtifactMeta
    from densenet_deploy.core.sidecars import write_sidecar
    from densenet_deploy.exporters.targets.tensorrt import check_tensorrt_usable

    try:
        check_tensorrt_usable()
        pytest.skip("TensorRT and a CUDA GPU are usable here")
    except BackendUnavailableError as exc:
        reason = str(exc)
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"placeholder: refused before the engine is read")
    meta = ArtifactMeta(
        model="densenet_bc22_k8",
        num_classes=10,
        input_size=(3, 32, 32),
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        precision="fp16",
    )
    write_sidecar(
        plan,
        meta,
        tensorrt={"version": "11.0.0"},
        gpu={"name": "test", "compute_capability": "9.0"},
        profile={"input": "input", "min": 1, "opt": 8, "max": 16},
        precision="fp16",
    )
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "densenet_deploy.cli", "serve", str(plan), "--http-port", "0", "--grpc-port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, TMPDIR=str(tmpdir)),
    )
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = [x for x in (result.stdout + result.stderr).splitlines() if x.strip()]
    assert line.startswith("error: cannot serve the TensorRT plan") and reason in line
    assert dnx_temp(tmpdir) == []
