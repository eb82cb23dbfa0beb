"""`dnx demo` as a function: train, export, FP16, INT8, deploy, verify and bench on built-in digits data.

Every stage is a call of the public function the matching command wraps (train, export_onnx,
convert_fp16, quantize_int8, build_deployment, verify, bench); the demo only chooses the arguments and
collects the results into one table. A stage that fails its own check is recorded (and the stages that
need its artifact are skipped), so the table always shows how far the pipeline got; `DemoResult` is
falsy when any check failed (the CLI then exits 1).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from densenet_deploy.bench.timing import BenchOptions, bench
from densenet_deploy.calibration.quantize import DEFAULT_METHOD, CalibrationOptions, quantize_int8
from densenet_deploy.core.deps import available, require
from densenet_deploy.core.errors import BackendUnavailableError, DnxError, VerificationFailed
from densenet_deploy.core.formats import SIDECAR_SUFFIX
from densenet_deploy.core.io import check_output_dir
from densenet_deploy.core.results import Result
from densenet_deploy.demo.report import format_table, write_demo_report
from densenet_deploy.exporters.fp16 import convert_fp16
from densenet_deploy.exporters.onnx import export_onnx
from densenet_deploy.exporters.targets.build import BuildOptions, build_deployment
from densenet_deploy.exporters.targets.tensorrt import check_tensorrt_usable
from densenet_deploy.models.checkpoint import is_dnx_checkpoint, read_checkpoint
from densenet_deploy.train.loop import digits_preset, train
from densenet_deploy.verify.parity import VerifyOptions, verify

log = logging.getLogger(__name__)

DATA = "digits"  # built in (scikit-learn); its "val" split is held out of training and calibration
BATCHES = (1, 32)
DEFAULT_WORKDIR = "dnx-demo"
DEFAULT_BENCH_SECONDS = 1.0
DEFAULT_CALIB_SAMPLES = 512  # from the train split (1,438 digits)
DEFAULT_VERIFY_SAMPLES = 2000  # more than the val split holds (359 digits): the whole held-out split
MIN_VAL_ACCURACY = 0.95


@dataclass
class Stage:
    """One row of the summary: an artifact, how it was made, and its verification and latency."""

    stage: str
    artifact: str | None
    backend: str
    precision: str
    label: str | None = None  # the runner's backend-device precision, e.g. "openvino-cpu int8/bf16"
    status: str = "ok"  # ok | failed (a check missed its threshold) | error (the step raised) | skipped
    size_bytes: int | None = None
    seconds: float | None = None  # time to make the artifact
    accuracy: float | None = None  # top-1 on the held-out split
    agreement: float | None = None  # top-1 agreement with PyTorch on the same images
    rel_l2: float | None = None
    latency_ms: dict = field(default_factory=dict)  # str(batch) -> p50 ms
    message: str | None = None  # why it failed / was skipped
    details: dict = field(default_factory=dict)  # the stage function's own result (as_dict)
    verify: dict | None = None  # verify(...).as_dict()

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped")


@dataclass
class DemoResult(Result):
    """All stages plus bench and report; truthy when every check passed."""

    workdir: str
    checkpoint: str
    stages: list[Stage]
    train: dict
    bench: dict | None
    report: dict
    seconds: float
    settings: dict

    def __bool__(self) -> bool:
        return all(s.ok for s in self.stages)

    @property
    def failures(self) -> list[str]:
        return [f"{s.stage}: {s.message}" for s in self.stages if not s.ok]

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.stage == name), None)

    def as_dict(self) -> dict:
        return {
            "workdir": self.workdir,
            "checkpoint": self.checkpoint,
            "passed": bool(self),
            "failures": self.failures,
            "stages": [asdict(s) for s in self.stages],
            "train": self.train,
            "bench": self.bench,
            "report": self.report,
            "seconds": round(self.seconds, 2),
            "settings": self.settings,
        }

    def __str__(self) -> str:
        return format_table(self)


def check_workdir(workdir: str) -> str:
    """Create WORKDIR if needed; DnxError (before any work) when it is a file or not writable."""
    return check_output_dir(workdir, "--workdir")


def run_demo(
    workdir: str = DEFAULT_WORKDIR,
    *,
    checkpoint: str | None = None,
    epochs: int | None = None,
    bench_seconds: float = DEFAULT_BENCH_SECONDS,
    calib_samples: int = DEFAULT_CALIB_SAMPLES,
    verify_samples: int = DEFAULT_VERIFY_SAMPLES,
    openvino: bool | None = None,
    tensorrt: bool | None = None,
    threads: int | None = None,
    progress: bool = False,
    notify: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the whole pipeline on `digits` in `workdir` and write report.md, results.json (and a plot).

    checkpoint: a digits checkpoint (from `dnx train --dataset digits`) to start from instead of
    training; epochs: training epochs (default: the digits preset's). openvino/tensorrt: None builds
    those deployments when the backend is usable here, False skips them, True insists (DnxError if
    unusable). `notify` receives one line per stage (the CLI prints them on stderr).
    """
    started = time.perf_counter()
    say = notify or (lambda message: log.info("%s", message))
    if epochs is not None and epochs < 1:
        raise DnxError(f"--epochs must be >= 1, got {epochs}")
    if bench_seconds <= 0:
        raise DnxError(f"--bench-seconds must be > 0, got {bench_seconds}")
    if calib_samples < 1 or verify_samples < 1:
        raise DnxError("calibration and verification samples must be >= 1")
    if checkpoint is not None and epochs is not None:
        raise DnxError("--epochs trains a new model; with --checkpoint nothing is trained, drop one of them")
    given = _checkpoint_info(checkpoint) if checkpoint is not None else None
    use_openvino, use_tensorrt = _backends(openvino, tensorrt)  # before WORKDIR exists: a refusal leaves nothing
    with _removed_on_failure(workdir) as workdir:
        return _run_stages(
            workdir,
            given,
            checkpoint,
            epochs,
            bench_seconds,
            calib_samples,
            verify_samples,
            use_openvino,
            use_tensorrt,
            threads,
            progress,
            say,
            started,
        )


@contextlib.contextmanager
def _removed_on_failure(workdir: str):
    """Create WORKDIR (check_workdir) and yield it; if the demo then fails, remove the directories it
    created (the topmost one that did not exist), never one the user had before."""
    created, probe = None, os.path.abspath(workdir)
    while not os.path.lexists(probe):
        created, parent = probe, os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    workdir = check_workdir(workdir)
    try:
        yield workdir
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


def _run_stages(
    workdir,
    given,
    checkpoint,
    epochs,
    bench_seconds,
    calib_samples,
    verify_samples,
    use_openvino,
    use_tensorrt,
    threads,
    progress,
    say,
    started,
) -> DemoResult:
    path = lambda name: os.path.join(workdir, name)  # noqa: E731

    removed = _remove_stale(workdir, keep=checkpoint)
    if removed:
        say(f"removed {len(removed)} artifact(s) of an earlier run: {', '.join(removed)}")
    stages: list[Stage] = []
    ckpt, train_doc, torch_stage = _train_stage(workdir, given, epochs, threads, progress, say)
    stages.append(torch_stage)

    say("export: PyTorch -> ONNX (parity checked with ONNX Runtime)")
    onnx = _attempt(stages, "export", path("model.onnx"), "onnxruntime", "fp32", _export(ckpt, path("model.onnx")))
    say("fp16: FP16 ONNX graph (fp32 I/O)")
    fp16 = _attempt(
        stages,
        "fp16",
        path("model.fp16.onnx"),
        "onnxruntime",
        "fp16",
        _fp16(onnx, path("model.fp16.onnx")),
        requires=(onnx,),
    )
    say(f"int8: {DEFAULT_METHOD} calibration on {calib_samples} training digits -> Q/DQ ONNX")
    int8 = _attempt(
        stages,
        "int8",
        path("model.int8.onnx"),
        "onnxruntime",
        "int8",
        _int8(onnx, path("model.int8.onnx"), calib_samples),
        requires=(onnx,),
    )

    say("deploy: ONNX Runtime (graph optimised offline)")
    _attempt(
        stages,
        "onnxruntime",
        path("model.ort.onnx"),
        "onnxruntime",
        "fp32",
        _deploy(onnx, path("model.ort.onnx"), "onnxruntime", threads=threads),
        requires=(onnx,),
    )
    if use_openvino:
        say("deploy: OpenVINO IR fp32 and int8 (NNCF)")
        _attempt(
            stages,
            "openvino",
            path("model.xml"),
            "openvino",
            "fp32",
            _deploy(onnx, path("model.xml"), "openvino", threads=threads, extra={"verify_data": DATA}),
            requires=(onnx,),
        )
        _attempt(
            stages,
            "openvino-int8",
            path("model.int8.xml"),
            "openvino",
            "int8",
            _openvino_int8(onnx, int8, path("model.int8.xml"), calib_samples, threads),
            requires=(onnx,),
        )
    else:
        stages.append(Stage("openvino", None, "openvino", "fp32/int8", status="skipped", message=use_openvino.why))
    if use_tensorrt:
        say("deploy: TensorRT plans fp32, fp16, int8")
        for name, source, precision in (
            ("tensorrt", onnx, "fp32"),
            ("tensorrt-fp16", fp16, "fp16"),
            ("tensorrt-int8", int8, "int8"),
        ):
            out = path(f"model.{precision}.plan" if precision != "fp32" else "model.plan")
            _attempt(stages, name, out, "tensorrt", precision, _deploy(source, out, "tensorrt"), requires=(source,))
    else:
        stages.append(Stage("tensorrt", None, "tensorrt", "fp32/fp16/int8", status="skipped", message=use_tensorrt.why))

    made = [s for s in stages if s.artifact and s.status == "ok"]
    say(f"verify: {len(made) - 1} artifact(s) against PyTorch on the held-out digits")
    for stage in made:
        if stage is not torch_stage:
            _verify_stage(stage, ckpt, verify_samples)
    reference = next((s.verify for s in made if s.verify), None)
    if reference and reference["accuracy"]:
        torch_stage.accuracy = reference["accuracy"]["ref"]  # measured on the same images as every other row
    _check_accuracy(torch_stage, hint="use a better checkpoint" if checkpoint else "train longer: --epochs")

    say(f"bench: p50 latency at batch {', '.join(map(str, BATCHES))} ({bench_seconds:g} s per artifact and batch)")
    bench_result = _bench_stage(stages, bench_seconds, threads, progress)

    result = DemoResult(
        workdir=workdir,
        checkpoint=ckpt,
        stages=stages,
        train=train_doc,
        bench=bench_result,
        report={},
        seconds=0.0,
        settings={
            "data": DATA,
            "batches": list(BATCHES),
            "bench_seconds": bench_seconds,
            "calib_samples": calib_samples,
            "verify_samples": verify_samples,
            "threads": threads,
            "min_val_accuracy": MIN_VAL_ACCURACY,
            "method": DEFAULT_METHOD,
        },
    )
    result.seconds = time.perf_counter() - started

    result.report = write_demo_report(result, workdir)
    return result


# Every file a demo run may write into WORKDIR besides its report (which each run rewrites).
ARTIFACTS = (
    "model.pt",
    "model.onnx",
    "model.fp16.onnx",
    "model.int8.onnx",
    "model.ort.onnx",
    "model.xml",
    "model.bin",
    "model.int8.xml",
    "model.int8.bin",
    "model.plan",
    "model.fp16.plan",
    "model.int8.plan",
    "demo.png",
)


def _remove_stale(workdir: str, keep: str | None = None) -> list[str]:
    """Remove the artifacts an earlier run left in WORKDIR, so that what is there afterwards is exactly
    what this run made: a rerun with --no-openvino must not leave the old model.xml beside a report that
    says OpenVINO was skipped (nor a failed stage point at the last run's file). `keep`: the --checkpoint,
    which may be an earlier run's model.pt. Returns the names removed."""
    keep_path = os.path.abspath(keep) if keep else None
    removed = []

    for name in [n for a in ARTIFACTS for n in (a, a + SIDECAR_SUFFIX)]:  # each with its JSON sidecar
        path = os.path.join(workdir, name)
        if os.path.isfile(path) and os.path.abspath(path) not in (keep_path, (keep_path or "") + SIDECAR_SUFFIX):
            os.remove(path)
            removed.append(name)
    return removed


# --- availability ----------------------------------------------------------------------------------
class _Use:
    """A yes/no with the reason for no."""

    def __init__(self, yes: bool, why: str = ""):
        self.yes, self.why = yes, why

    def __bool__(self) -> bool:
        return self.yes


def _backends(openvino: bool | None, tensorrt: bool | None) -> tuple[_Use, _Use]:
    if openvino is False:
        ov = _Use(False, "not asked for")
    elif available("openvino"):
        ov = _Use(True)
    elif openvino:
        require("openvino", purpose="the OpenVINO stages of the demo")
    else:
        ov = _Use(False, "openvino is not installed (pip install 'densenet-deploy[openvino]')")
    if tensorrt is False:
        return ov, _Use(False, "not asked for")

    try:
        check_tensorrt_usable()
    except BackendUnavailableError as exc:
        if tensorrt:
            raise
        return ov, _Use(False, str(exc))
    return ov, _Use(True)


# --- the stages ------------------------------------------------------------------------------------
def _train_stage(workdir, given, epochs, threads, progress, say) -> tuple[str, dict, Stage]:
    """The PyTorch reference: train the digits preset, or take the --checkpoint (`given`: its info)."""
    if given is not None:
        say(f"train: skipped, using {given['output']} ({given['model']}, val accuracy {_pct(given['val_accuracy'])})")
        stage = Stage(
            "train",
            given["output"],
            "torch",
            "fp32",
            size_bytes=os.path.getsize(given["output"]),
            accuracy=given["val_accuracy"],
            details=given,
        )
        return given["output"], given, stage

    output = os.path.join(workdir, "model.pt")
    options = digits_preset(output, **({"threads": threads} if threads else {}))  # else the preset's threads
    if epochs is not None:  # keep the preset's lr steps at the same fractions of the run
        options.milestones = tuple(max(1, round(m * epochs / options.epochs)) for m in options.milestones)
        options.epochs = epochs
    say(f"train: {options.model} on {DATA}, {options.epochs} epochs")
    result = train(options, progress=progress)
    doc = result.to_dict()
    stage = Stage(
        "train",
        result.output,
        "torch",
        "fp32",
        size_bytes=os.path.getsize(result.output),
        seconds=result.seconds,
        accuracy=result.val_accuracy,
        details=doc,
    )
    return result.output, doc, stage


def _checkpoint_info(checkpoint: str) -> dict:
    """Model, history and preprocessing of a digits checkpoint; DnxError for anything else."""
    if not os.path.isfile(checkpoint):
        raise DnxError(f"--checkpoint {checkpoint}: no such file")
    obj = read_checkpoint(checkpoint)
    if not is_dnx_checkpoint(obj):
        raise DnxError(
            f"--checkpoint {checkpoint} is not a dnx checkpoint; train one with "
            "`dnx train densenet_bc22_k8 --dataset digits -o model.pt` or omit --checkpoint"
        )
    config = obj["model_config"]
    size = tuple(obj.get("input_size") or ())
    if int(config.get("num_classes", 0)) != 10 or (size and size[0] != 1):
        raise DnxError(
            f"--checkpoint {checkpoint} is not a digits model ({config.get('num_classes')} classes, "
            f"input {size or '?'}; digits need 10 classes, 1 channel); "
            "use a `dnx train ... --dataset digits` checkpoint"
        )
    history = obj.get("history") or []
    return {
        "output": checkpoint,
        "model": config.get("name") or obj.get("model") or "?",
        "epochs": obj.get("epoch"),
        "val_accuracy": history[-1].get("val_accuracy") if history else None,
        "history": history,
        "seconds": None,
    }


def _check_accuracy(stage: Stage, hint: str) -> None:
    """The demo's promise: the PyTorch model reaches MIN_VAL_ACCURACY on the held-out digits."""
    if stage.status == "ok" and (stage.accuracy is None or stage.accuracy < MIN_VAL_ACCURACY):
        stage.status = "failed"
        stage.message = f"held-out accuracy {_pct(stage.accuracy)} < {MIN_VAL_ACCURACY * 100:.0f} % ({hint})"


def _export(ckpt, output):
    def run():
        return export_onnx(ckpt, output, data=DATA)

    return run


def _fp16(onnx, output):
    def run():
        return convert_fp16(onnx, output, data=DATA)

    return run


def _int8(onnx, output, samples):
    def run():
        # The method `dnx calibrate` recommends by default, so the demo shows what a user gets.
        return quantize_int8(onnx, output, DATA, CalibrationOptions(samples=samples))

    return run


def _deploy(source, output, target, **options):
    def run():
        return build_deployment(source, output, BuildOptions(target=target, **options))

    return run


def _openvino_int8(onnx, int8, output, samples, threads):
    """NNCF on the fp32 model (build-engine's default recipe); without nncf, the calibrated Q/DQ model."""
    if available("nncf"):
        return _deploy(
            onnx,
            output,
            "openvino",
            precision="int8",
            data=DATA,
            samples=samples,
            threads=threads,
            extra={"recipe": "nncf"},
        )
    return _deploy(int8, output, "openvino", threads=threads) if int8 else None


def _attempt(
    stages: list[Stage], name: str, output: str, backend: str, precision: str, make, requires: tuple = ()
) -> str | None:
    """Run one stage's `make()` and record it; the artifact path, or None when it was not made.

    `requires`: the artifacts it is made from; when one of them is None (its stage failed), skip.
    """
    stage = Stage(name, output, backend, precision)
    stages.append(stage)
    if any(r is None for r in requires) or make is None:
        stage.status, stage.artifact, stage.message = "skipped", None, "an earlier stage it needs failed"
        return None
    t0 = time.perf_counter()
    try:
        stage.details = make().as_dict()
    except VerificationFailed as exc:
        stage.status, stage.message = "failed", _one_line(exc)
        stage.details = exc.result.as_dict() if exc.result is not None else {}
    except DnxError as exc:
        stage.status, stage.message = "error", _one_line(exc)
    stage.seconds = round(time.perf_counter() - t0, 2)
    if stage.status != "ok":
        log.warning("%s: %s", name, stage.message)
        stage.artifact = output if os.path.exists(output) else None
        return None
    stage.size_bytes = _size(output)
    return output


def _verify_stage(stage: Stage, ckpt: str, samples: int) -> None:
    try:
        result = verify(ckpt, stage.artifact, VerifyOptions(data=DATA, samples=samples, batch_size=32))
    except DnxError as exc:
        stage.status, stage.message = "error", f"verify: {_one_line(exc)}"
        return
    doc = result.as_dict()
    stage.verify = doc
    stage.agreement, stage.rel_l2 = result.parity.top1_agreement, result.parity.rel_l2
    if result.parity.accuracy:
        stage.accuracy = result.parity.accuracy["cand"]
    stage.backend, stage.precision = result.cand["backend"], result.cand["precision"]
    if not result:
        stage.status, stage.message = "failed", "verify: " + "; ".join(result.parity.failures)


def _bench_stage(stages: list[Stage], seconds: float, threads, progress) -> dict | None:
    # Artifacts that failed a check are timed too: a fast but wrong artifact should show as such.
    rows = [s for s in stages if s.artifact and s.status in ("ok", "failed") and os.path.exists(s.artifact)]
    if not rows:
        return None
    try:
        options = BenchOptions(batch=",".join(map(str, BATCHES)), seconds=seconds, threads=threads, passes=3)
        result = bench([s.artifact for s in rows], options, progress=progress)
    except DnxError as exc:
        stage = Stage("bench", None, "-", "-", status="error", message=_one_line(exc))
        stages.append(stage)
        return None
    by_path = {os.path.abspath(s.artifact): s for s in rows}
    for r in result.results:
        stage = by_path.get(os.path.abspath(r["artifact"]))
        if stage is not None and r.get("latency_ms"):
            stage.latency_ms[str(r["batch"])] = r["latency_ms"]["p50"]
            stage.label = r["label"]
    return result.as_dict()


# --- helpers ---------------------------------------------------------------------------------------
def _size(path: str) -> int | None:
    if path.lower().endswith(".xml"):  # OpenVINO IR: the .xml graph plus its .bin weights
        stem = os.path.splitext(path)[0]
        return sum(os.path.getsize(p) for p in (path, stem + ".bin") if os.path.exists(p))
    return os.path.getsize(path) if os.path.exists(path) else None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _pct(value) -> str:
    return "n/a" if value is None else f"{value * 100:.2f} %"


__all__ = ["run_demo", "DemoResult", "Stage", "check_workdir", "DATA", "BATCHES"]
