"""BF16 ONNX graph with fp32 inputs/outputs for TensorRT's strongly typed networks, checked on the CPU.

A strongly typed TensorRT network takes each layer's precision from its tensor types, so bf16 on the GPU
needs a graph whose weights and activations are bfloat16. ONNX allows bfloat16 in Conv, MaxPool,
AveragePool and GlobalAveragePool only from opset 22 (BatchNormalization, Relu, Concat, Gemm accept it
earlier), so the fp32 export is first moved to opset 22 with onnx's version converter: the newest opset
our exporter writes is 20, and TensorRT 11's parser reads up to opset 25 (NVIDIA, "ONNX Opset Guide",
TensorRT 11.x). Every float initializer becomes bfloat16; a Cast at the input and one at the output keep
the graph's I/O fp32, as the fp16 graph does, so runners and C++ callers feed the same buffers.

No layer is kept in fp32: bf16 has fp32's exponent range, so the overflow rule the fp16 conversion needs
does not apply; what bf16 loses is mantissa (8 bits), which the parity check measures.

Verification runs the very file that will be written, on held-out data, against ONNX Runtime on the fp32
model. ONNX Runtime's CPU provider has no bf16 Conv, so the bf16 graph runs on OpenVINO (bf16 inference
precision; the `openvino` extra) or, without it, on onnx's reference evaluator (the ONNX specification's
own NumPy implementation, rounding every op's result to bfloat16; slow, so it sees fewer samples).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time

import numpy as np

from densenet_deploy.calibration.quantize import run_onnx
from densenet_deploy.core.deps import available, require
from densenet_deploy.core.errors import DnxError, VerificationFailed
from densenet_deploy.core.io import atomic_output, check_output_path
from densenet_deploy.core.metadata import load_fp32_export, write_onnx_meta
from densenet_deploy.core.policy import GateOptions, gate_for
from densenet_deploy.core.sidecars import drop_stale_sidecar
from densenet_deploy.data.loading import load_data_for
from densenet_deploy.exporters.fp16 import PrecisionResult
from densenet_deploy.runners.batches import run_batches
from densenet_deploy.runners.openvino import OpenVinoRunner
from densenet_deploy.verify.compare import compare_outputs

log = logging.getLogger(__name__)

BF16_OPSET = 22  # first opset whose Conv and pooling ops accept tensor(bfloat16)
DEFAULT_SAMPLES = 64
REFERENCE_MAX_SAMPLES = 16  # onnx.reference is pure NumPy: ~0.1 s per 32x32 image, minutes per 224x224 one
ENGINES = ("auto", "openvino", "reference")


def to_bf16_graph(model):
    """A bf16 copy of the fp32 ModelProto `model` (opset 22, fp32 I/O through Casts); `model` is not changed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper, version_converter

    ml_dtypes = _ml_dtypes()
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset > 25:
        raise DnxError(f"bf16 conversion needs a standard-domain opset <= 25, the graph has {opset}")
    try:
        converted = version_converter.convert_version(model, BF16_OPSET) if opset < BF16_OPSET else onnx.ModelProto()
    except Exception as exc:  # the converter raises plain RuntimeErrors naming the op it cannot move
        raise DnxError(f"cannot move the graph to opset {BF16_OPSET} for bf16: {str(exc).splitlines()[0]}") from exc
    if opset >= BF16_OPSET:
        converted.CopyFrom(model)
    graph = converted.graph
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(ml_dtypes.bfloat16), init.name))
    for value in list(graph.input) + list(graph.output):
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise DnxError(f"bf16 conversion expects fp32 graph inputs/outputs; {value.name} is not float")
    renames = {v.name: v.name + "_bf16" for v in list(graph.input) + list(graph.output)}
    for node in graph.node:
        node.input[:] = [renames.get(i, i) for i in node.input]
        node.output[:] = [renames.get(o, o) for o in node.output]
    casts_in = [
        helper.make_node("Cast", [v.name], [renames[v.name]], to=TensorProto.BFLOAT16, name=f"{v.name}_to_bf16")
        for v in graph.input
    ]
    casts_out = [
        helper.make_node("Cast", [renames[v.name]], [v.name], to=TensorProto.FLOAT, name=f"{v.name}_to_fp32")
        for v in graph.output
    ]
    nodes = casts_in + list(graph.node) + casts_out
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # float types there are stale; shape inference rewrites them as bfloat16
    try:
        converted = onnx.shape_inference.infer_shapes(converted, strict_mode=True)
        onnx.checker.check_model(converted)
    except Exception as exc:  # InferenceError / ValidationError: an op that does not take bfloat16
        raise DnxError(f"bf16 conversion produced an invalid graph: {str(exc).splitlines()[0]}") from exc
    leftover = [i.name for i in graph.initializer if i.data_type == TensorProto.FLOAT]
    if leftover:
        raise DnxError(f"bf16 conversion left fp32 weights: {', '.join(leftover[:3])}")
    return converted


def run_bf16_graph(path: str, images: np.ndarray, engine: str = "auto", threads: int | None = None):
    """Outputs of the bf16 ONNX file `path` on `images`, and the name of the engine that ran it."""
    if engine not in ENGINES:
        raise DnxError(f"unknown bf16 check engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "auto":
        engine = "openvino" if available("openvino") else "reference"
    if engine == "openvino":
        with OpenVinoRunner(path, precision_hint="bf16", threads=threads) as runner:
            outputs = run_batches(runner, images, 16)
        import openvino

        return outputs, f"openvino {openvino.get_version().split('-')[0]} (bf16 inference precision)"
    import onnx
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(onnx.load(path))
    input_name = evaluator.input_names[0]
    outputs = np.concatenate(
        [evaluator.run(None, {input_name: images[i : i + 8]})[0] for i in range(0, len(images), 8)]
    )
    return outputs.astype(np.float32), f"onnx {onnx.__version__} reference evaluator"


def convert_bf16(
    onnx_path: str,
    output: str,
    *,
    data: str | None = None,
    samples: int = DEFAULT_SAMPLES,
    engine: str = "auto",
    gate: GateOptions | None = None,
    seed: int = 0,
) -> PrecisionResult:
    """Write a BF16 copy of the fp32 export `onnx_path` with fp32 I/O, after a parity check.

    Parity is measured on `data`'s val split or, without data, on seeded standard-normal inputs, by running
    the bf16 file on `engine` (auto: OpenVINO if installed, else the ONNX reference evaluator, capped at
    REFERENCE_MAX_SAMPLES). Raises VerificationFailed (nothing written) when it misses the policy's bf16
    parity gate (changed by `gate`): the one `dnx verify` applies to bf16 artifacts. On random inputs
    agreement is not gated: a random-weight model's near-tied logits flip under bf16 rounding (measured
    down to 97 % on 64 random inputs) without the model being any worse.
    """
    import onnx

    start = time.perf_counter()
    check_output_path(output)
    if samples < 1:
        raise DnxError(f"samples must be >= 1, got {samples}")
    if engine not in ENGINES:
        raise DnxError(f"unknown bf16 check engine {engine!r}; choose one of {', '.join(ENGINES)}")
    _ml_dtypes()
    model, meta = load_fp32_export(onnx_path, "convert", output=output)
    converted = to_bf16_graph(model)
    opset = next(o.version for o in converted.opset_import if o.domain in ("", "ai.onnx"))
    write_onnx_meta(
        converted,
        meta.replace(
            precision="bf16",
            extra={
                **meta.extra,
                "bf16": {"opset": opset, "converter": "dnx to_bf16_graph (all layers bf16, fp32 I/O)"},
            },
        ),
    )

    resolved = engine if engine != "auto" else ("openvino" if available("openvino") else "reference")
    limit = min(samples, REFERENCE_MAX_SAMPLES) if resolved == "reference" else samples
    if limit < samples:
        log.warning(
            "bf16 check on the ONNX reference evaluator: %d of %d samples (it is pure NumPy); "
            "with OpenVINO installed (pip install 'densenet-deploy[openvino]') all are checked",
            limit,
            samples,
        )
    if data:
        held = load_data_for(data, meta, split="val", limit=limit, seed=seed)
        images, labels = held.images, held.labels
    else:
        rng = np.random.default_rng(seed)
        images, labels = rng.standard_normal((limit,) + tuple(meta.input_size)).astype(np.float32), None
    with tempfile.TemporaryDirectory(prefix="dnx-bf16-") as tmp:
        path = os.path.join(tmp, "bf16.onnx")
        onnx.save(converted, path)
        checked, engine_name = run_bf16_graph(path, images, engine=resolved)
        parity = compare_outputs(
            run_onnx(onnx_path, images),
            checked,
            labels=labels,
            gate=(gate or GateOptions()).apply(gate_for("bf16")),
            real_data=bool(data) and data != "random",
        )
        result = PrecisionResult(
            output=os.fspath(output),
            precision="bf16",
            converter=f"dnx to_bf16_graph (opset {opset}), checked on {engine_name}",
            kept_fp32=[],
            max_activation=None,
            parity=parity.as_dict(),
            samples=parity.samples,
            data=data or "random-normal",
            seconds=0.0,
            passed=parity.passed,
            failures=parity.failures,
        )
        result.seconds = round(time.perf_counter() - start, 3)
        if not parity.passed:
            raise VerificationFailed(
                f"bf16 model failed parity on {engine_name} ({'; '.join(parity.failures)}); {output} not written",
                result,
            )
        with atomic_output(output) as tmp_out:
            onnx.save(converted, tmp_out)
        drop_stale_sidecar(output)
    result.seconds = round(time.perf_counter() - start, 3)
    return result


def _ml_dtypes():
    # onnx stores bfloat16 as raw uint16; ml_dtypes (an onnx dependency) does the fp32 -> bf16 rounding.
    return require("ml_dtypes", purpose="bf16 conversion")
