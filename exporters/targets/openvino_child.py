"""Compile and run an OpenVINO artifact in a child process, so a native crash becomes a one-line error.

OpenVINO 2026.4 segfaults in compile_model on some Q/DQ models (measured: asymmetric uint8 activations,
static batch); a segfault kills the whole Python process and cannot be caught. The builder therefore
compiles and runs every artifact it is about to write in a child first, through the same
OpenVinoRunner users will run, and turns a signal into a DnxError (exit 2).

Child protocol: ``python -m densenet_deploy.exporters.targets.openvino_child ARTIFACT INPUTS.npy OUTPUTS.npy
[--precision-hint H] [--threads N]``;
exit 0 with OUTPUTS.npy written, 2 with "error: <one line>" on stderr for a reported failure.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

import numpy as np

from densenet_deploy.core.errors import DnxError
from densenet_deploy.runners.batches import run_batches
from densenet_deploy.runners.openvino import OpenVinoRunner, openvino_error_line

CHUNK = 8  # verification batch: also compiles a static batch > 1, the shape bench and deployments use


def run_in_child(
    artifact: str,
    inputs: np.ndarray,
    precision_hint: str | None = None,
    timeout: float = 900.0,
    threads: int | None = None,
    unchecked: bool = False,
) -> tuple[np.ndarray, str]:
    """(logits of `artifact` on `inputs`, the float precision OpenVINO executed), computed by OpenVinoRunner in
    a child process.

    Raises DnxError (one line) when the child crashes (signal), times out or reports an error.
    `unchecked` skips the runner's refusal of asymmetric Q/DQ ONNX (tests use it to provoke a real crash).
    """
    with tempfile.TemporaryDirectory(prefix="dnx-ov-child-") as tmp:
        src, dst = os.path.join(tmp, "inputs.npy"), os.path.join(tmp, "outputs.npy")
        np.save(src, np.ascontiguousarray(inputs, dtype=np.float32))
        cmd = [sys.executable, "-m", "densenet_deploy.exporters.targets.openvino_child", os.fspath(artifact), src, dst]
        if precision_hint:
            cmd += ["--precision-hint", precision_hint]
        if threads:
            cmd += ["--threads", str(threads)]
        if unchecked:
            cmd.append("--unchecked")
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise DnxError(
                f"OpenVINO did not finish compiling and running {artifact} within {timeout:.0f} s "
                "(checked in a child process)"
            ) from exc
        if proc.returncode < 0:
            try:
                name = signal.Signals(-proc.returncode).name
            except ValueError:
                name = f"signal {-proc.returncode}"
            raise DnxError(
                f"OpenVINO crashed ({name}) while compiling or running {artifact} (checked in a child "
                "process, nothing was written); this model triggers a bug in OpenVINO's CPU plugin: "
                "try the other --recipe, or report it with the model attached"
            )
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            reported = [ln[len("error: ") :] for ln in lines if ln.startswith("error: ")]
            reason = (reported or lines or [f"exit code {proc.returncode}"])[-1]
            raise DnxError(f"OpenVINO failed on {artifact} (in a child process): {reason}")
        with open(dst + ".precision") as fh:
            return np.load(dst), fh.read().strip()


def _main(argv: list[str]) -> int:
    import argparse
    import logging

    parser = argparse.ArgumentParser(prog="python -m densenet_deploy.exporters.targets.openvino_child")
    parser.add_argument("artifact")
    parser.add_argument("inputs")
    parser.add_argument("outputs")
    parser.add_argument("--precision-hint")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--unchecked", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        inputs = np.load(args.inputs)
        runner = OpenVinoRunner(
            args.artifact, precision_hint=args.precision_hint, threads=args.threads, check_qdq=not args.unchecked
        )

        # The smallest batch first: the compile that crashes on bad Q/DQ models. run_batches pads to a fixed
        # batch (an export with --batch N) and drops the padding.
        run_batches(runner, inputs[:1], 1)
        np.save(args.outputs, run_batches(runner, inputs, CHUNK))
        with open(args.outputs + ".precision", "w") as fh:
            fh.write(runner.executed_precision)
        return 0
    except DnxError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except Exception as exc:  # anything else OpenVINO raises: report its first informative line
        print(f"error: {type(exc).__name__}: {openvino_error_line(exc)}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
