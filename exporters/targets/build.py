"""`dnx build-engine` as a function: precision step (ONNX -> FP16/BF16/INT8 ONNX), then one target's build.

Targets live in one small table (TARGETS); a new backend adds one `Target` entry: the precisions it
builds, a `preflight` that fails before any work when the backend is unusable here, and `build`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

from densenet_deploy.core.deps import available, require
from densenet_deploy.core.errors import (
    ArtifactError,
    BackendUnavailableError,
    DnxError,
    VerificationFailed,
    did_you_mean,
)
from densenet_deploy.core.formats import ort_deployment_reason
from densenet_deploy.core.io import check_output_path
from densenet_deploy.core.metadata import ArtifactMeta, load_onnx
from densenet_deploy.core.policy import GateOptions
from densenet_deploy.core.results import CheckedResult
from densenet_deploy.exporters.precision import convert_precision
from densenet_deploy.exporters.targets.onnxruntime import OFFLINE_LEVELS, build_ort_deployment
from densenet_deploy.exporters.targets.openvino import RECIPES, build_openvino
from densenet_deploy.exporters.targets.tensorrt import EngineOptions, build_engine, check_tensorrt_usable

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass
class BuildOptions:
    """Everything build-engine needs besides input and output."""

    target: str = "tensorrt"
    precision: str | None = None  # None: keep the input model's precision
    data: str | None = None  # the precision step's data (calibration for int8, parity for fp16/bf16)
    method: str | None = None  # calibration method (None: the calibration package's default)
    samples: int | None = None  # calibration samples (None: its default)
    engine: EngineOptions = field(default_factory=EngineOptions)
    optimization: str = "all"  # onnxruntime target: offline graph optimisation level
    threads: int | None = None
    gate: GateOptions = field(default_factory=GateOptions)  # changes to the policy's gates of every check
    extra: dict = field(default_factory=dict)  # target-specific options (e.g. openvino's recipe)


@dataclass(frozen=True)
class Target:
    name: str
    precisions: tuple[str, ...]
    preflight: Callable[[BuildOptions], None]  # raise DnxError before any work when unusable here
    build: Callable[[str, str, BuildOptions], dict]  # (onnx at final precision, output, options) -> result
    convert_precision: bool = True  # False: build() receives the fp32 ONNX and applies the precision itself
    int8_activations: str = "int8"  # Q/DQ activation type of the int8 precision step (uint8: ORT-only, faster)
    summary: str = ""
    # The file name the artifact must end in (None: any name but another target's suffix: a TensorRT plan
    # named .onnx would be opened as an ONNX model by `dnx bench`/`dnx verify`).
    output_suffix: str | None = None
    # The target-specific build options (named as in the CLI: `--min-batch` is "min_batch") this target
    # reads; setting one that only other targets read is refused (check_target_options).
    options: tuple[str, ...] = ()


# --- tensorrt ------------------------------------------------------------------------------------
def _tensorrt_preflight(options: BuildOptions) -> None:
    options.engine.validate()
    if options.engine.timing_cache:
        check_output_path(options.engine.timing_cache)
    try:
        check_tensorrt_usable()
    except BackendUnavailableError as exc:
        hint = "`--target onnxruntime` builds a CPU deployment instead"
        if available("openvino"):
            hint += "; `--target openvino` builds the fastest CPU deployment (OpenVINO is installed)"
        raise BackendUnavailableError(f"cannot build a TensorRT engine here: {exc}; {hint}") from exc


def _tensorrt_build(onnx_path: str, output: str, options: BuildOptions) -> dict:
    from dataclasses import asdict

    return build_engine(onnx_path, output, **asdict(options.engine)).as_dict()


# --- onnxruntime ---------------------------------------------------------------------------------
def _onnxruntime_preflight(options: BuildOptions) -> None:
    if options.optimization not in OFFLINE_LEVELS:
        raise DnxError(f"--optimization must be one of {', '.join(OFFLINE_LEVELS)}, got {options.optimization!r}")


def _onnxruntime_build(onnx_path: str, output: str, options: BuildOptions) -> dict:
    return build_ort_deployment(onnx_path, output, optimization=options.optimization, threads=options.threads).as_dict()


# --- openvino ------------------------------------------------------------------------------------
def _openvino_preflight(options: BuildOptions) -> None:
    require("openvino", purpose="--target openvino")
    recipe = options.extra.get("recipe") or "nncf"
    if recipe not in RECIPES:
        raise DnxError(f"unknown --recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if recipe == "nncf" and options.precision == "int8":
        require("nncf", purpose="--int8 --recipe nncf (or use --recipe qdq)")


def _openvino_build(onnx_path: str, output: str, options: BuildOptions) -> dict:
    kwargs = {k: v for k, v in (("samples", options.samples), ("method", options.method)) if v is not None}
    return build_openvino(
        onnx_path,
        output,
        precision=options.precision,
        recipe=options.extra.get("recipe") or "nncf",
        calib_data=options.data,
        verify_data=options.extra.get("verify_data"),
        threads=options.threads,
        gate=options.gate,
        **kwargs,
    ).as_dict()


TARGETS: dict[str, Target] = {
    # fp16/bf16 come from fp16/bf16 ONNX graphs (exporters/fp16.py, exporters/bf16.py): strongly typed.
    "tensorrt": Target(
        "tensorrt",
        ("fp32", "fp16", "bf16", "int8"),
        _tensorrt_preflight,
        _tensorrt_build,
        summary="TensorRT plan + sidecar (NVIDIA GPU)",
        options=(
            "min_batch",
            "opt_batch",
            "max_batch",
            "workspace_gb",
            "opt_level",
            "timing_cache",
            "hardware_compatibility",
            "version_compatible",
        ),
    ),
    # ORT's x86 int8 GEMM is fast for uint8 x int8 only: its int8 step uses asymmetric uint8 activations
    # (measured on densenet_bc100_k12, batch 1, one run: u8 54 ms vs s8 82 ms; fp32 45 ms).
    "onnxruntime": Target(
        "onnxruntime",
        ("fp32", "fp16", "int8"),
        _onnxruntime_preflight,
        _onnxruntime_build,
        int8_activations="uint8",
        summary="ONNX Runtime-optimised ONNX + sidecar (CPU)",
        output_suffix=".onnx",
        options=("optimization", "threads"),
    ),
    # OpenVINO quantizes itself (nncf recipe) or via calibration (qdq recipe): it gets the fp32 ONNX.
    "openvino": Target(
        "openvino",
        ("fp32", "bf16", "int8"),
        _openvino_preflight,
        _openvino_build,
        convert_precision=False,
        summary="OpenVINO IR .xml/.bin + sidecar (CPU, fastest: bf16/int8)",
        output_suffix=".xml",
        options=("recipe", "verify_data", "threads"),
    ),
}


def check_target_options(target: str, given) -> None:
    """DnxError naming each option in `given` (names such as "min_batch") that `target` does not read but
    other targets do, and the targets it applies to: the build would silently ignore it."""
    if target not in TARGETS:
        return  # build_deployment reports the unknown target
    unused = []
    for name in given:
        users = [t.name for t in TARGETS.values() if name in t.options]
        if users and target not in users:
            unused.append(f"--{name.replace('_', '-')} ({', '.join(users)} only)")
    if unused:
        one = len(unused) == 1
        raise DnxError(
            f"--target {target} does not use {', '.join(unused)}; drop {'it' if one else 'them'} "
            f"or choose the target {'it applies' if one else 'they apply'} to"
        )


# --- build-engine --------------------------------------------------------------------------------
def check_output_name(target: Target, output: str) -> None:
    """DnxError when `output` is named like another format: the file would be opened by the wrong backend."""
    lower = os.fspath(output).lower()
    if target.output_suffix:
        if not lower.endswith(target.output_suffix):
            what = {".onnx": "an ONNX model", ".xml": "an OpenVINO IR (.xml, its weights next to it as .bin)"}
            example = {"onnxruntime": "model.ort.onnx", "openvino": "model.xml"}.get(target.name, "model")
            raise DnxError(
                f"--target {target.name} writes {what.get(target.output_suffix, 'its artifact')}: "
                f"-o must end in {target.output_suffix} (e.g. {example}), got {output}"
            )
        return
    kinds = {".onnx": "an ONNX model", ".xml": "an OpenVINO IR"}
    for suffix in dict.fromkeys(t.output_suffix for t in TARGETS.values() if t.output_suffix):
        if lower.endswith(suffix):
            what = target.summary.split(" + ")[0] or "another format"
            raise DnxError(
                f"-o {output} ends in {suffix}, but --target {target.name} writes a {what}, which "
                f"`dnx bench`/`dnx verify` would then open as {kinds.get(suffix, 'another format')}; "
                + ("name it model.plan (or .engine)" if target.name == "tensorrt" else "rename it")
            )


def _unsupported_precision(target: Target, precision: str, meta, onnx_path: str) -> str:
    message = f"target {target.name} does not build {precision} (it builds {', '.join(target.precisions)})"
    if precision != "bf16":
        return message
    if meta.precision == "bf16":  # a bf16 input graph: only TensorRT runs it
        return (
            f"{onnx_path} is a bf16 graph, which only TensorRT builds: make a plan from it with --target "
            "tensorrt; for bf16 on the CPU, build the fp32 export (`dnx export`) with --target openvino --bf16"
        )
    return message + "; for bf16 on the CPU use --target openvino --bf16"


def _calib_data_refusal(target: Target, precision: str, meta, onnx_path: str) -> str:
    """Why --calib-data is unused in this build (the message names the actual reason)."""
    if meta.precision != "fp32" and precision == meta.precision:
        done = "calibrated" if precision == "int8" else "converted"
        return (
            f"{onnx_path} is already {precision}, so nothing is {done} and --calib-data is unused; drop it "
            "(or pass the fp32 export from `dnx export`)"
        )
    if not target.convert_precision:  # openvino: calibration data only feeds its own --int8 quantization
        why = (
            "--target openvino --bf16 converts nothing (OpenVINO runs the fp32 model with bf16 inference "
            "precision), so it takes no --calib-data"
            if precision == "bf16"
            else f"--target {target.name} uses --calib-data only with --int8 (calibration)"
        )
        return f"{why}; the pre-write check's data is --verify-data SRC"
    uses = ["--int8 (calibration)", "--fp16 (which layers stay fp32)"]
    if "bf16" in target.precisions:
        uses.append("--bf16 (the parity check's data)")
    return (
        f"--calib-data is only used with {', '.join(uses[:-1])} and {uses[-1]}"
        + (f" on --target {target.name}" if len(uses) < 3 else "")
        + "; drop it here"
    )


def _fixed_batch_refusal(target: Target, precision: str, meta, onnx_path: str) -> str:
    """Why a fixed-batch export cannot take the precision step, and what this target does instead (before
    any work; the precision step's own check, metadata.check_plain_export, cannot know the target)."""
    step = "calibration" if precision == "int8" else f"the {precision} conversion"
    message = (
        f"{onnx_path} has a fixed batch of {meta.batch}; {step} (--{precision}) takes the dynamic-batch "
        "export (`dnx export` without --batch)"
    )
    if "min_batch" in target.options:
        return message + " and the batch is fixed when building: --min-batch/--opt-batch/--max-batch"
    return message + f"; build --target {target.name} from it, which keeps the dynamic batch axis (any batch size)"


@dataclass
class BuildResult(CheckedResult):
    """What build_deployment made (or, `passed` False, which step refused and why: nothing was written). As
    JSON, the target's own figures sit under the target's name, the precision step's under precision_step."""

    output: str
    target: str
    precision: str
    source: str
    sidecar: str | None
    seconds: float
    precision_step: dict | None = None
    details: dict = field(default_factory=dict)
    passed: bool = True
    failed_step: str | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        doc = {
            "output": self.output,
            "target": self.target,
            "precision": self.precision,
            "seconds": self.seconds,
            "sidecar": self.sidecar,
            "source": self.source,
            "passed": self.passed,
        }
        if not self.passed:
            doc.update(written=False, failed_step=self.failed_step, error=self.error)
        if self.precision_step is not None:
            doc["precision_step"] = self.precision_step
        if self.details or self.passed:
            doc[self.target] = self.details
        return doc

    def __str__(self) -> str:
        if not self.passed:
            return (
                f"NOT written: {self.output} ({self.target}, {self.precision}): {self.failed_step} failed: {self.error}"
            )
        return f"wrote {self.output} ({self.target}, {self.precision}) in {self.seconds:.1f} s" + (
            f"\nsidecar {self.sidecar}" if self.sidecar else ""
        )


def build_deployment(
    onnx_path: str, output: str, options: BuildOptions | None = None, *, progress: bool = False
) -> BuildResult:
    """Build a deployable artifact from an exported ONNX model.

    All checks that can fail (target, precision, output path, metadata, backend availability) run
    before any work, and no partial file is left behind on failure. A failed check of the result
    raises VerificationFailed whose `.result` is a BuildResult with `passed` False.
    """
    options = options or BuildOptions()
    target = TARGETS.get(options.target)
    if target is None:
        raise DnxError(
            f"unknown target {options.target!r}{did_you_mean(options.target, TARGETS)}; "
            f"choose one of {', '.join(TARGETS)}"
        )
    output = check_output_path(output)
    if os.path.abspath(output) == os.path.abspath(onnx_path):
        raise DnxError(f"output {output} would overwrite the input model; choose another -o")
    check_output_name(target, output)
    onnx_path = os.fspath(onnx_path)
    proto = load_onnx(onnx_path, load_weights=False)
    meta = ArtifactMeta.from_props({p.key: p.value for p in proto.metadata_props}, source=onnx_path)
    deployed = ort_deployment_reason(proto, onnx_path)
    if deployed:
        raise ArtifactError(
            f"{onnx_path} is an ONNX Runtime deployment ({deployed}), not a model to build from; "
            f"build --target {target.name} from the plain `dnx export` output instead"
        )
    del proto
    precision = options.precision or meta.precision
    if not target.convert_precision and meta.precision == "bf16":
        raise DnxError(
            f"{onnx_path} is a bf16 graph (for TensorRT); --target {target.name} needs the fp32 export "
            f"from `dnx export` and applies bf16 itself as the inference precision: "
            f"`dnx build-engine FP32.onnx --target {target.name} --bf16`"
        )
    if precision not in target.precisions:
        raise DnxError(_unsupported_precision(target, precision, meta, onnx_path))
    convert = precision != meta.precision
    if convert and meta.precision != "fp32":
        raise DnxError(
            f"{onnx_path} is already {meta.precision}; --{precision} needs the fp32 model (the output of `dnx export`)"
        )
    if precision == "int8" and convert and not options.data:
        raise DnxError(
            "--int8 needs calibration data: --calib-data SRC (an image directory, .npy/.npz, "
            "digits, cifar10:DIR, ...; `random` only for smoke tests)"
        )
    recipe = options.extra.get("recipe")
    calibrates = convert and precision == "int8" and (target.name != "openvino" or recipe == "qdq")
    if options.method and not calibrates:
        raise DnxError(
            "--method is the calibration method of --int8"
            + (" --recipe qdq" if target.name == "openvino" else "")
            + "; drop it here"
        )
    # The precision step's sample count: int8 calibration on every target; the fp16/bf16 conversions'
    # check only where the target converts the graph (openvino runs bf16 as an inference precision).
    if options.samples and not (
        convert and (precision == "int8" or (precision in ("fp16", "bf16") and target.convert_precision))
    ):
        if convert and not target.convert_precision:
            raise DnxError(
                f"--target {target.name} --{precision} has no precision step (OpenVINO runs the fp32 "
                f"model with {precision} inference precision), so --samples is unused; drop it"
            )
        raise DnxError("--samples is the sample count of the precision step (--int8, --fp16, --bf16); drop it here")
    if recipe and not (convert and precision == "int8"):
        raise DnxError("--recipe picks how --int8 quantizes an fp32 model; drop it here")
    uses_data = precision in ("int8", "fp16") or (precision == "bf16" and target.convert_precision)
    if options.data and not (convert and uses_data):
        raise DnxError(_calib_data_refusal(target, precision, meta, onnx_path))
    if meta.batch is not None and (calibrates or (convert and target.convert_precision)):
        raise ArtifactError(_fixed_batch_refusal(target, precision, meta, onnx_path))
    target.preflight(options)

    start = time.perf_counter()
    precision_info = None
    step = "precision step"
    try:
        with tempfile.TemporaryDirectory(prefix="dnx-build-") as tmp:
            source = onnx_path
            if convert and target.convert_precision:
                source = os.path.join(tmp, f"model.{precision}.onnx")
                log.info("converting %s to %s", onnx_path, precision)
                precision_info = convert_precision(
                    onnx_path,
                    source,
                    precision,
                    data=options.data,
                    samples=options.samples,
                    method=options.method,
                    int8_activations=target.int8_activations,
                    gate=options.gate,
                    progress=progress,
                )
            step = target.name
            options.precision = precision
            built = target.build(source, output, options)
    except VerificationFailed as exc:
        # The same document as a success, saying what failed: `--json` prints it (exit 1, nothing written).
        failed = dict(
            output=output,
            target=target.name,
            precision=precision,
            source=onnx_path,
            sidecar=None,
            seconds=round(time.perf_counter() - start, 2),
            passed=False,
            failed_step=step,
            error=str(exc),
        )
        detail = exc.result.as_dict() if exc.result is not None else None
        if step == "precision step":
            precision_info, details = detail, {}
        else:
            details = detail if detail and "parity" in detail else {"parity": detail}
        exc.result = BuildResult(**failed, precision_step=precision_info, details=details)
        raise
    return BuildResult(
        output=output,
        target=target.name,
        precision=precision,
        source=onnx_path,
        sidecar=built.get("sidecar"),
        seconds=round(time.perf_counter() - start, 2),
        precision_step=precision_info,
        details={k: v for k, v in built.items() if k not in ("output", "sidecar", "precision", "seconds")},
    )
