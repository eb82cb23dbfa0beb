"""FP16 ONNX with fp32 I/O: parity with the fp32 model and the data-driven fp32 keep-list."""

from __future__ import annotations

import json

import pytest


def _io_types(path):
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return [i.type for i in session.get_inputs()], [o.type for o in session.get_outputs()]


def test_fp16_matches_fp32_on_digits(digits_onnx, tmp_path):
    import onnx

    from densenet_deploy.exporters.fp16 import convert_fp16

    out = tmp_path / "fp16.onnx"
    result = convert_fp16(digits_onnx, str(out), data="digits", samples=200)
    parity = result.parity
    assert result.passed and parity["top1_agreement"] == 1.0
    assert 0 < parity["max_abs_diff"] < 0.1, parity["max_abs_diff"]
    print(f"fp16: max |diff| {parity['max_abs_diff']:.4g}, rel L2 {parity['rel_l2']:.3g}, kept {result.kept_fp32}")
    assert _io_types(str(out)) == (["tensor(float)"], ["tensor(float)"])
    model = onnx.load(str(out))
    conv_weights = {n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    types = {i.name: i.data_type for i in model.graph.initializer if i.name in conv_weights}
    assert types and set(types.values()) == {onnx.TensorProto.FLOAT16}
    props = {p.key: p.value for p in model.metadata_props}
    assert props["dnx.precision"] == "fp16"


def test_fp16_keeps_large_activations_fp32(digits_onnx, tmp_path):
    """A low bound forces the data-driven rule to keep nodes fp32; I/O must still be fp32 (converter bug)."""
    import onnx

    from densenet_deploy.exporters.fp16 import convert_fp16

    out = tmp_path / "mixed.onnx"
    result = convert_fp16(digits_onnx, str(out), data="digits", samples=32, data_max=1.0)
    assert result.kept_fp32 and result.max_activation > 1.0
    assert _io_types(str(out)) == (["tensor(float)"], ["tensor(float)"])
    model = onnx.load(str(out))
    kept = json.loads({p.key: p.value for p in model.metadata_props}["dnx.extra"])["fp16"]["kept_fp32"]
    assert kept == result.kept_fp32
    assert result.parity["top1_agreement"] == 1.0


def test_bf16_is_refused_with_a_pointer(digits_onnx, tmp_path):
    from densenet_deploy.core.errors import DnxError
    from densenet_deploy.exporters.fp16 import convert_fp16

    with pytest.raises(DnxError, match="convert_bf16"):
        convert_fp16(digits_onnx, str(tmp_path / "x.onnx"), precision="bf16")
    assert not (tmp_path / "x.onnx").exists()
