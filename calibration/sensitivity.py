"""Per-layer INT8 sensitivity: which weighted layers lose the most signal when quantized.

Our own SQNR per layer, from one float run (cheaper than ONNX Runtime's qdq_loss_debug, which runs and
matches two full models): for each Conv/Gemm/MatMul, the activation entering it is fake-quantized with
the scale the Q/DQ model will use and the weight per output channel; the layer's noise-to-signal is the
sum of both (independent noise sources add), and the lowest-SQNR layers are the first kept in float.
"""

from __future__ import annotations

import logging

import numpy as np

from densenet_deploy.calibration.qdq import weighted_nodes
from densenet_deploy.calibration.ranges import Ranges
from densenet_deploy.runners.probe import open_probe_session

log = logging.getLogger(__name__)


def _fake_quant(x: np.ndarray, scale) -> np.ndarray:
    return np.clip(np.round(x / scale), -127, 127) * scale


def _weight_nsr(w: np.ndarray, axis: int) -> float:
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    scale = np.maximum(np.abs(moved).max(1, keepdims=True), 1e-12) / 127.0
    noise = ((moved - _fake_quant(moved, scale)) ** 2).sum()
    return float(noise / max((moved**2).sum(), 1e-30))


def layer_sqnr(
    model_path: str, images: np.ndarray, input_name: str, ranges: Ranges, batch_size: int = 8
) -> dict[str, float]:
    """SQNR in dB per weighted node (higher is better), measured on `images`."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(model_path)
    inits = {i.name: i for i in model.graph.initializer}
    nodes = [
        n for n in weighted_nodes(model) if n.input[0] in ranges.values and len(n.input) > 1 and n.input[1] in inits
    ]
    session, names = open_probe_session(model, [n.input[0] for n in nodes])
    signal = {n.name: 0.0 for n in nodes}
    noise = {n.name: 0.0 for n in nodes}
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        values = dict(zip(names, session.run(names, {input_name: batch})))
        values[input_name] = batch
        for node in nodes:
            x = values[node.input[0]]
            scale = max(ranges.amax(node.input[0]), 1e-12) / 127.0
            signal[node.name] += float((x.astype(np.float64) ** 2).sum())
            noise[node.name] += float(((x - _fake_quant(x, scale)) ** 2).sum())
    out = {}
    for node in nodes:
        w = numpy_helper.to_array(inits[node.input[1]])
        axis = 1 if node.op_type == "MatMul" else 0
        nsr = noise[node.name] / max(signal[node.name], 1e-30) + _weight_nsr(w, axis)
        out[node.name] = float(-10 * np.log10(max(nsr, 1e-30)))
    return out


def rank_layers(model_path: str, images: np.ndarray, input_name: str, ranges: Ranges) -> list[str]:
    """Weighted node names, most sensitive (lowest SQNR) first."""
    sqnr = layer_sqnr(model_path, images, input_name, ranges)
    ranking = sorted(sqnr, key=sqnr.get)
    log.info("most INT8-sensitive layers: %s", ", ".join(f"{n} ({sqnr[n]:.1f} dB)" for n in ranking[:5]))
    return ranking
