"""PyTorch DenseNet -> canonical fp32 ONNX (dnx metadata inside), checked and compared with ONNX Runtime.

Exporter choice. torch 2.13 offers two: the TorchScript-based exporter (``dynamo=False``) and the
torch.export-based one (``dynamo=True``, the default of ``torch.onnx.export`` since PyTorch 2.9). Both
pass our parity check on every zoo model here, with non-trivial BN statistics (figures in
docs/export.md), but the dynamo exporter has shipped wrong numbers for BN-heavy CNNs in
other releases (pytorch/pytorch#169178: torchvision ResNet-18 at 0 % accuracy; #166797: wrong Conv bias
shape), takes 1.3-5x longer, cannot go below opset 15, folds BNs and merges equal initializers (so the
graph's param count stops matching PyTorch's), and writes ReduceMean/Reshape where the TorchScript
exporter writes GlobalAveragePool/Flatten. The default is therefore ``torchscript``; ``dynamo`` is
offered, cleaned to the same op set, and the parity check runs for both, always.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from densenet_deploy.core.constants import BATCH_AXIS, DEFAULT_OPSET, INPUT_NAME, MAX_OPSET, MIN_OPSET, OUTPUT_NAME
from densenet_deploy.core.errors import DnxError, VerificationFailed
from densenet_deploy.core.io import atomic_output, check_output_path
from densenet_deploy.core.metadata import ArtifactMeta, write_onnx_meta
from densenet_deploy.core.policy import gate_for
from densenet_deploy.core.results import Result
from densenet_deploy.core.sidecars import drop_stale_sidecar
from densenet_deploy.data.loading import load_data_for
from densenet_deploy.exporters.onnx_graph import ALLOWED_OPS, canonicalize, check_ops, op_counts
from densenet_deploy.models.counting import count_onnx_macs, count_onnx_params
from densenet_deploy.models.loading import LoadedModel, load_model
from densenet_deploy.verify.compare import ParityResult, compare_outputs

log = logging.getLogger(__name__)

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_EXPORTER = "torchscript"
DYNAMO_NATIVE_OPSET = 18  # the opset torch.onnx's dynamo exporter emits before any conversion
DYNAMO_MIN_OPSET = 15  # the lowest opset its graph converts down to (13/14 fail in the version converter)
PARITY_BATCH = 4  # the batch > 1 that proves the dynamic axis
REFERENCE_CHUNK = 8  # PyTorch reference outputs are computed this many images at a time


@dataclass
class ExportResult(Result):
    """What an export produced; truthy when the parity check passed."""

    output: str
    model: str
    opset: int
    exporter: str
    batch: int | None  # None: dynamic batch axis
    input_size: tuple[int, int, int]
    params: int  # counted from the ONNX graph (equals the PyTorch count; BN running stats excluded)
    macs: int  # per image, counted from the ONNX graph
    seconds: float  # the torch.onnx export and clean-up (parity check not included)
    parity: ParityResult  # every batch size together
    parity_by_batch: dict[int, ParityResult]
    data: str  # "random" or the SRC of real images
    ops: dict[str, int]
    meta: ArtifactMeta
    total_seconds: float = 0.0
    torch_params: int | None = None
    warnings: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.parity)

    def __str__(self) -> str:
        batch = "dynamic batch" if self.batch is None else f"fixed batch {self.batch}"
        sizes = ", ".join(str(b) for b in self.parity_by_batch)
        lines = [
            f"exported {self.model} -> {self.output} ({self.exporter} exporter, opset {self.opset}, {batch}, "
            f"input {'x'.join(map(str, self.input_size))}) in {self.seconds:.1f} s",
            f"params {self.params:,}   MACs {self.macs / 1e9:.3f} G (counted from the ONNX graph)",
            f"ops    {', '.join(f'{k} {v}' for k, v in self.ops.items())}",
            f"parity ONNX Runtime CPU vs PyTorch, {self.parity.samples} {self.data} inputs, batch {sizes}:",
            str(self.parity),
        ]
        lines += [f"note   {w}" for w in self.warnings]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        parity = self.parity.as_dict()
        parity["batches"] = {str(b): r.as_dict() for b, r in self.parity_by_batch.items()}
        parity["data"] = self.data
        return {
            "output": self.output,
            "model": self.model,
            "opset": self.opset,
            "exporter": self.exporter,
            "batch": self.batch if self.batch is not None else "dynamic",
            "input_size": list(self.input_size),
            "params": self.params,
            "torch_params": self.torch_params,
            "macs": self.macs,
            "seconds": round(self.seconds, 3),
            "total_seconds": round(self.total_seconds, 3),
            "ops": self.ops,
            "parity": parity,
            "passed": self.parity.passed,
            "meta": dataclasses.asdict(self.meta),
        }


def export_onnx(
    model,
    path,
    *,
    weights=None,
    opset: int = DEFAULT_OPSET,
    input_size=None,
    batch="dynamic",
    num_classes=None,
    exporter: str = DEFAULT_EXPORTER,
    softmax: bool = False,
    data=None,
    samples: int = 8,
    seed: int = 0,
) -> ExportResult:
    """Export `model` (zoo name, dnx checkpoint path or LoadedModel) to ONNX at `path`, then verify it.

    The graph is canonical (standard ops, fixed I/O names, dynamic batch axis unless `batch` is an int,
    deterministic bytes) and carries ArtifactMeta. After export: onnx.checker (full check), shape
    inference, and ONNX Runtime (CPU) against PyTorch on `samples` inputs (random normal, or real
    images from `data`) at batch 1 and 4 (or the fixed batch). A failed parity check keeps the file and
    raises VerificationFailed carrying the ExportResult; any other error leaves no file behind.
    """
    started = time.perf_counter()
    opset, exporter, fixed_batch = _check_options(opset, exporter, batch, samples)
    path = check_output_path(path)
    _check_not_input(path, model, weights)
    if isinstance(model, LoadedModel):
        if weights or num_classes or input_size:
            raise DnxError(
                "weights, num_classes and input_size apply to a model name or checkpoint, "
                "not to an already loaded model"
            )
        loaded = model
    else:
        loaded = load_model(model, weights=weights, num_classes=num_classes, input_size=input_size, seed=seed)
    module = _with_softmax(loaded.model) if softmax else loaded.model
    module.eval()
    meta = _artifact_meta(loaded, fixed_batch, softmax, exporter, opset)

    inputs, labels = _parity_inputs(data, meta, samples, seed)
    reference = _reference_outputs(module, inputs, loaded)  # also proves the model runs at this size

    t0 = time.perf_counter()
    proto = _torch_to_onnx(module, loaded.input_size, fixed_batch, opset, exporter)
    proto = _finish(proto, loaded.name, meta, exporter)
    seconds = time.perf_counter() - t0
    payload = proto.SerializeToString(deterministic=True)

    params = count_onnx_params(proto)["params"]
    macs = count_onnx_macs(proto)
    torch_params = int(sum(p.numel() for p in loaded.model.parameters()))
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(payload)
        batches = [fixed_batch] if fixed_batch else [1, PARITY_BATCH]
        combined, by_batch = _check_parity(tmp, inputs, reference, labels, batches)
    drop_stale_sidecar(path)
    result = ExportResult(
        output=path,
        model=loaded.name,
        opset=opset,
        exporter=exporter,
        batch=fixed_batch,
        input_size=loaded.input_size,
        params=params,
        macs=macs,
        seconds=seconds,
        parity=combined,
        parity_by_batch=by_batch,
        data=data or "random",
        ops=op_counts(proto),
        meta=meta,
        total_seconds=time.perf_counter() - started,
        torch_params=torch_params,
    )
    if params != torch_params:
        result.warnings.append(f"ONNX graph holds {params:,} params, the PyTorch model {torch_params:,}")
        log.warning(result.warnings[-1])
    log.info("exported %s to %s in %.1f s (%s, opset %d)", loaded.name, path, seconds, exporter, opset)
    if not combined:
        raise VerificationFailed(
            f"parity check failed ({'; '.join(combined.failures)}); the ONNX file is kept at {path} "
            "but does not match the PyTorch model",
            result,
        )
    return result


# --- options -------------------------------------------------------------------------------------------
def _check_options(opset, exporter, batch, samples):
    try:
        opset = int(opset)
    except (TypeError, ValueError):
        raise DnxError(f"opset must be an integer, got {opset!r}") from None
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise DnxError(
            f"opset {opset} is out of range: choose {MIN_OPSET}..{MAX_OPSET} (the opsets both "
            f"ONNX Runtime and TensorRT 10/11 parse; default {DEFAULT_OPSET})"
        )
    if exporter not in EXPORTERS:
        raise DnxError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    if exporter == "dynamo" and opset < DYNAMO_MIN_OPSET:
        raise DnxError(
            f"the dynamo exporter cannot write opset {opset}: use --opset {DYNAMO_MIN_OPSET}..{MAX_OPSET} "
            f"or --exporter torchscript (opset {MIN_OPSET}..{MAX_OPSET})"
        )
    fixed = parse_batch(batch)
    if int(samples) < 1:
        raise DnxError(f"samples must be >= 1, got {samples}")
    return opset, exporter, fixed


def _check_not_input(path, model, weights) -> None:
    """Refuse an output that is one of the inputs (the checkpoint MODEL or --weights): it would be replaced."""
    import os

    target = os.path.realpath(path)
    for option, source in (("the input checkpoint", model), ("the --weights file", weights)):
        if isinstance(source, (str, os.PathLike)) and os.path.exists(source) and os.path.realpath(source) == target:
            raise DnxError(f"output {path} would overwrite {option} {os.fspath(source)}; choose another -o")
    if not str(path).lower().endswith(".onnx"):
        raise DnxError(f"output {path} should end in .onnx (dnx export writes an ONNX model)")


def parse_batch(batch) -> int | None:
    """'dynamic' or None -> None (dynamic batch axis); a positive int (or its string) -> that fixed batch."""
    if batch is None or (isinstance(batch, str) and batch.strip().lower() == "dynamic"):
        return None
    try:
        value = int(batch)
    except (TypeError, ValueError):
        raise DnxError(f"batch must be 'dynamic' or a positive integer, got {batch!r}") from None
    if value < 1:
        raise DnxError(f"batch must be 'dynamic' or a positive integer, got {batch!r}")
    return value


def _with_softmax(model):
    """`model` followed by Softmax over classes, with the same parameter names (no `0.` prefix that an
    nn.Sequential wrapper would add to every initializer)."""
    import torch
    import torch.nn as nn

    class WithSoftmax(nn.Module):
        def __init__(self):
            super().__init__()
            for name, child in model.named_children():
                self.add_module(name, child)  # the same module objects, registered under the same names
            self.inner_forward = model.forward

        def forward(self, x):
            return torch.softmax(self.inner_forward(x), dim=1)

    return WithSoftmax().eval()


def _artifact_meta(loaded, batch, softmax, exporter, opset) -> ArtifactMeta:
    import onnx
    import onnxruntime
    import torch

    import densenet_deploy

    return ArtifactMeta(
        model=loaded.name,
        num_classes=int(loaded.config["num_classes"]),
        input_size=tuple(loaded.input_size),
        mean=tuple(loaded.mean),
        std=tuple(loaded.std),
        model_config=dict(loaded.config),
        labels=loaded.labels,
        batch=batch,
        precision="fp32",
        softmax=bool(softmax),
        weights_sha256=loaded.weights_sha256,
        versions={
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "densenet_deploy": densenet_deploy.__version__,
        },
        extra={"exporter": exporter, "opset": opset},
    )


# --- export --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet():
    """torch.onnx prints progress and warnings; keep stdout clean for --json (logged at debug level)."""
    buffer = io.StringIO()
    torch_onnx_log = logging.getLogger("torch.onnx")
    level = torch_onnx_log.level
    torch_onnx_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buffer):
            warnings.simplefilter("ignore")
            yield
    finally:
        torch_onnx_log.setLevel(level)
        if buffer.getvalue().strip():
            log.debug("torch.onnx output:\n%s", buffer.getvalue())


def _torch_to_onnx(module, input_size, batch, opset, exporter):
    import onnx
    import torch

    example = torch.zeros((batch or 1,) + tuple(input_size))
    names = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME])
    try:
        with _quiet(), torch.no_grad():
            if exporter == "dynamo":
                # The dynamo exporter builds opset 18 and down-converts; that fails on its own ReduceMean
                # (axes as an input) and then silently keeps 18. So export at >= 18 and convert after
                # canonicalize() has turned that ReduceMean into GlobalAveragePool (see _finish).
                dims = None if batch else ({0: torch.export.Dim(BATCH_AXIS, min=1, max=1 << 16)},)
                program = torch.onnx.export(
                    module,
                    (example,),
                    None,
                    dynamo=True,
                    dynamic_shapes=dims,
                    optimize=True,
                    external_data=False,
                    verbose=False,
                    opset_version=max(opset, DYNAMO_NATIVE_OPSET),
                    **names,
                )
                return program.model_proto
            buffer = io.BytesIO()
            axes = None if batch else {INPUT_NAME: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}}
            # keep_initializers_as_inputs=True only stops the exporter from merging equal-valued
            # initializers (freshly initialised BN weights are all ones) into one plus Identity nodes;
            # canonicalize() removes the initializers from the inputs again. TrainingMode.PRESERVE (the
            # module is in eval mode) skips the eval peephole that folds norm0 into conv0, so the graph
            # keeps PyTorch's parameters one to one; runtimes fuse Conv+BN themselves.
            torch.onnx.export(
                module,
                (example,),
                buffer,
                dynamo=False,
                dynamic_axes=axes,
                do_constant_folding=True,
                keep_initializers_as_inputs=True,
                training=torch.onnx.TrainingMode.PRESERVE,
                verbose=False,
                opset_version=opset,
                **names,
            )
            return onnx.load_from_string(buffer.getvalue())
    except DnxError:
        raise
    except Exception as exc:  # the exporters raise many types; the message is what the user needs
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        other = "torchscript" if exporter == "dynamo" else "dynamo"
        raise DnxError(
            f"torch.onnx ({exporter} exporter) failed: {type(exc).__name__}: {first}; try --exporter {other}"
        ) from exc


def _finish(proto, name, meta, exporter):
    """Canonicalise, attach metadata, run the full checker and shape inference."""
    import onnx

    canonicalize(proto, graph_name=name)
    _convert_opset(proto, meta.extra["opset"], exporter)
    allowed = ALLOWED_OPS if meta.softmax else ALLOWED_OPS - {"Softmax"}
    check_ops(proto, allowed, hint=f" ({exporter} exporter; try the other one with --exporter)")
    # The dynamo exporter stamps "2.13.0+cpu", the TorchScript one "2.13.0": name the real producer.
    proto.producer_name, proto.producer_version = "densenet-deploy", meta.versions["densenet_deploy"]
    del proto.metadata_props[:]
    write_onnx_meta(proto, meta)
    try:
        onnx.checker.check_model(proto, full_check=True)
        proto = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise DnxError(f"exported graph fails the ONNX checker: {str(exc).splitlines()[0][:300]}") from exc
    return proto


def _opset_of(proto) -> int | None:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def _convert_opset(proto, opset, exporter) -> None:
    import onnx

    if _opset_of(proto) == opset:
        return
    try:
        converted = onnx.version_converter.convert_version(proto, opset)
    except Exception as exc:  # the converter raises RuntimeError/ValueError with C++ assertion text
        raise DnxError(
            f"the {exporter} exporter wrote opset {_opset_of(proto)} and it cannot be converted to "
            f"{opset} ({str(exc).splitlines()[0][:200]}); use --opset {_opset_of(proto)} or "
            "--exporter torchscript"
        ) from exc
    proto.CopyFrom(converted)
    if _opset_of(proto) != opset:
        raise DnxError(f"the {exporter} exporter wrote opset {_opset_of(proto)}, not the requested {opset}")


# --- parity --------------------------------------------------------------------------------------------
def _parity_inputs(data, meta, samples, seed):
    if not data:
        rng = np.random.default_rng(seed)
        return rng.standard_normal((samples,) + tuple(meta.input_size), dtype=np.float32), None

    dataset = load_data_for(data, meta, limit=samples, seed=seed)
    return np.ascontiguousarray(dataset.images, dtype=np.float32), dataset.labels


def _reference_outputs(module, inputs, loaded) -> np.ndarray:
    import torch

    outputs = []
    try:
        with torch.no_grad():
            for start in range(0, len(inputs), REFERENCE_CHUNK):
                outputs.append(module(torch.from_numpy(inputs[start : start + REFERENCE_CHUNK])).numpy())
    except RuntimeError as exc:  # e.g. an input too small for the network's downsampling
        first = (str(exc).strip().splitlines() or ["RuntimeError"])[0][:200]
        raise DnxError(
            f"{loaded.name} cannot run on inputs of size {'x'.join(map(str, loaded.input_size))}: {first}"
        ) from exc
    return np.concatenate(outputs).astype(np.float32)


def _check_parity(onnx_path, inputs, reference, labels, batches):
    """ONNX Runtime (CPU) against the PyTorch outputs, per batch size and all together, by the policy's fp32
    parity gate (the one `dnx verify` applies to the same pair)."""
    gate = gate_for("fp32")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    n = len(inputs)
    by_batch, cands = {}, []
    for batch in batches:
        # Cycle through the inputs so every run is a full batch (a fixed-batch model takes no other size).
        order = np.arange(-(-n // batch) * batch) % n
        out = np.concatenate(
            [
                session.run([OUTPUT_NAME], {INPUT_NAME: inputs[order[i : i + batch]]})[0]
                for i in range(0, len(order), batch)
            ]
        )[:n]
        by_batch[batch] = compare_outputs(reference, out, labels=labels, gate=gate)
        cands.append(out)
    k = len(batches)
    combined = compare_outputs(
        np.concatenate([reference] * k),
        np.concatenate(cands),
        labels=None if labels is None else np.tile(labels, k),
        gate=gate,
        center=reference.mean(0),
    )
    combined = dataclasses.replace(combined, samples=n)
    return combined, by_batch
