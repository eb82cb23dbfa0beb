"""FP16 ONNX with fp32 inputs/outputs for TensorRT's strongly typed networks, checked with ONNX Runtime.

Converter: onnxconverter-common's `float16.convert_float_to_float16(keep_io_types=True)`, the maintained
converter already in our dependency set (NVIDIA ModelOpt's AutoCast does the same job but pins onnx/
onnxruntime versions that clash with ours). Its data-driven part is reproduced here with AutoCast's rule
and defaults (ModelOpt guide "AutoCast (ONNX)": nodes whose observed outputs exceed `data_max`=512 on
calibration data, or whose initializers exceed `init_max`=65504, stay fp32). The converter has known
bugs around pre-existing Cast nodes and node order, so the result is validated: onnx.checker, a
topological-order check, and ONNX Runtime parity with the fp32 model before anything is written.
bf16 graphs come from exporters/bf16.py (no keep-list: bf16 has fp32's range; checked on OpenVINO, since
ONNX Runtime's CPU provider has no bf16 Conv).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from densenet_deploy.calibration.quantize import run_onnx
from densenet_deploy.core.deps import require
from densenet_deploy.core.errors import DnxError, VerificationFailed
from densenet_deploy.core.io import atomic_output, check_output_path
from densenet_deploy.core.metadata import load_fp32_export, write_onnx_meta
from densenet_deploy.core.policy import GateOptions, gate_for
from densenet_deploy.core.results import CheckedResult
from densenet_deploy.core.sidecars import drop_stale_sidecar
from densenet_deploy.data.loading import load_data_for
from densenet_deploy.runners.probe import open_probe_session
from densenet_deploy.verify.compare import compare_outputs

log = logging.getLogger(__name__)

DATA_MAX = 512.0  # AutoCast default for node outputs
INIT_MAX = 65504.0  # largest finite fp16
DEFAULT_SAMPLES = 64


@dataclass
class PrecisionResult(CheckedResult):
    """What convert_fp16 / convert_bf16 did; truthy when the parity check passed."""

    output: str
    precision: str
    converter: str
    kept_fp32: list[str]
    max_activation: float
    parity: dict
    samples: int
    data: str
    seconds: float
    passed: bool = True
    failures: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        p = self.parity
        head = f"{'wrote' if self.passed else 'NOT written:'} {self.output} ({self.precision}, {self.converter})"
        lines = [head + (f" in {self.seconds:.1f} s" if self.seconds else "")]
        if self.kept_fp32:
            lines.append(f"kept fp32 {len(self.kept_fp32)} node(s): {', '.join(self.kept_fp32[:8])}")
        lines.append(
            f"parity    {self.samples} {self.data} samples: rel L2 {p['rel_l2']:.4g}, top-1 agreement "
            f"{p['top1_agreement'] * 100:.2f} %"
        )
        if self.failures:
            lines.append("FAIL: " + "; ".join(self.failures))
        return "\n".join(lines)


def _node_magnitudes(model, images: np.ndarray, input_name: str) -> dict[str, float]:
    """max |output| per node (any output) over `images`, from one ONNX Runtime run exposing all tensors."""
    session, names = open_probe_session(model, [out for node in model.graph.node for out in node.output])
    peak = dict.fromkeys(names, 0.0)
    for start in range(0, len(images), 16):
        for name, value in zip(names, session.run(names, {input_name: images[start : start + 16]})):
            if np.issubdtype(np.asarray(value).dtype, np.floating):
                peak[name] = max(peak[name], float(np.abs(value).max()) if np.size(value) else 0.0)
    return {node.name: max((peak.get(o, 0.0) for o in node.output), default=0.0) for node in model.graph.node}


def _large_initializer_nodes(model, bound: float) -> list[str]:
    from onnx import numpy_helper

    big = {
        i.name
        for i in model.graph.initializer
        if i.data_type == 1 and np.abs(numpy_helper.to_array(i)).max(initial=0) > bound
    }
    return [n.name for n in model.graph.node if any(i in big for i in n.input)]


def _fix_io_types(original, converted) -> list[str]:
    """Make every graph input/output fp32 again where the converter left fp16 (it does with blocked nodes)."""
    from onnx import TensorProto, helper

    fixed = []
    want = {v.name: v.type.tensor_type.elem_type for v in list(original.graph.input) + list(original.graph.output)}
    for value in converted.graph.input:
        if value.type.tensor_type.elem_type != want.get(value.name, value.type.tensor_type.elem_type):
            raise DnxError(f"fp16 conversion changed the type of input {value.name}; cannot keep fp32 I/O")
    for value in converted.graph.output:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16 and want.get(value.name) == TensorProto.FLOAT:
            inner = value.name + "_fp16"
            for node in converted.graph.node:
                node.output[:] = [inner if o == value.name else o for o in node.output]
                node.input[:] = [inner if i == value.name else i for i in node.input]
            converted.graph.node.append(
                helper.make_node("Cast", [inner], [value.name], to=TensorProto.FLOAT, name=f"{value.name}_to_fp32")
            )
            value.type.tensor_type.elem_type = TensorProto.FLOAT
            fixed.append(value.name)
    return fixed


def _check_graph(model) -> None:
    import onnx

    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise DnxError(f"fp16 conversion produced an invalid graph: {str(exc).splitlines()[0]}") from exc
    seen = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer} | {""}
    for node in model.graph.node:
        missing = [i for i in node.input if i not in seen]
        if missing:
            raise DnxError(f"fp16 conversion broke node order: {node.name} reads {missing[0]} before it is made")
        seen.update(node.output)


def convert_fp16(
    onnx_path: str,
    output: str,
    *,
    precision: str = "fp16",
    data: str | None = None,
    samples: int = DEFAULT_SAMPLES,
    data_max: float = DATA_MAX,
    init_max: float = INIT_MAX,
    keep_nodes=(),
    gate: GateOptions | None = None,
    seed: int = 0,
) -> PrecisionResult:
    """Write an FP16 copy of `onnx_path` with fp32 I/O; nodes with observed |output| > data_max stay fp32.

    Magnitudes and parity are measured on `data` (SRC: its train split for the rule, its val split for
    parity) or, without data, on seeded standard-normal inputs. Raises VerificationFailed (nothing
    written) when the fp16 model misses the policy's fp16 parity gate (changed by `gate`).
    """
    import onnx

    start = time.perf_counter()
    if precision != "fp16":
        raise DnxError(
            f"convert_fp16 makes fp16 graphs, not {precision!r}; bf16 graphs come from "
            "densenet_deploy.exporters.bf16.convert_bf16 (`dnx build-engine --bf16`)"
        )
    check_output_path(output)
    model, meta = load_fp32_export(onnx_path, "convert", output=output)
    float16 = require("onnxconverter_common.float16", purpose="FP16 conversion")
    if data:
        probe = load_data_for(data, meta, split="train", limit=samples, seed=seed).images
        held = load_data_for(data, meta, split="val", limit=samples, seed=seed)
        held_images, labels = held.images, held.labels
    else:
        rng = np.random.default_rng(seed)
        probe = rng.standard_normal((samples,) + tuple(meta.input_size)).astype(np.float32)
        held_images, labels = rng.standard_normal((samples,) + tuple(meta.input_size)).astype(np.float32), None
    magnitudes = _node_magnitudes(model, probe, meta.input_name)
    keep = list(
        dict.fromkeys(
            [n for n, m in magnitudes.items() if m > data_max]
            + _large_initializer_nodes(model, init_max)
            + list(keep_nodes)
        )
    )
    log.info("fp16: keeping %d node(s) in fp32 (|output| > %g): %s", len(keep), data_max, ", ".join(keep[:8]))
    converted = float16.convert_float_to_float16(
        model, keep_io_types=True, node_block_list=keep or None, disable_shape_infer=False
    )
    fixed = _fix_io_types(model, converted)
    if fixed:
        log.info("fp16: re-cast output(s) %s to fp32 (converter left them fp16)", ", ".join(fixed))
    _check_graph(converted)
    with tempfile.TemporaryDirectory(prefix="dnx-fp16-") as tmp:
        path = os.path.join(tmp, "fp16.onnx")
        onnx.save(converted, path)
        parity = compare_outputs(
            run_onnx(onnx_path, held_images),
            run_onnx(path, held_images),
            labels=labels,
            gate=(gate or GateOptions()).apply(gate_for("fp16")),
            real_data=bool(data) and data != "random",
        )
    result = PrecisionResult(
        output=os.fspath(output),
        precision="fp16",
        converter="onnxconverter-common float16 (keep_io_types)",
        kept_fp32=keep,
        max_activation=max(magnitudes.values(), default=0.0),
        parity=parity.as_dict(),
        samples=parity.samples,
        data=data or "random-normal",
        seconds=0.0,
        passed=parity.passed,
        failures=parity.failures,
    )
    if not parity.passed:
        result.seconds = round(time.perf_counter() - start, 3)
        raise VerificationFailed(
            f"fp16 model failed parity ({'; '.join(parity.failures)}); {output} not written", result
        )
    write_onnx_meta(
        converted,
        meta.replace(
            precision="fp16",
            extra={**meta.extra, "fp16": {"kept_fp32": keep, "data_max": data_max, "converter": result.converter}},
        ),
    )
    with atomic_output(output) as tmp_out:
        onnx.save(converted, tmp_out)
    drop_stale_sidecar(output)
    result.seconds = round(time.perf_counter() - start, 3)
    return result
