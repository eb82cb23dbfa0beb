"""An ONNX Runtime session that also returns intermediate tensors (for range and sensitivity probes)."""

from __future__ import annotations

import os
import tempfile


def open_probe_session(model, tensors):
    """(session, output names) for a copy of `model` whose graph outputs also include `tensors`.

    ORT only returns graph outputs, so activations are exposed by adding them as outputs; the session
    runs on the CPU EP, whose results are what the calibration and precision checks reason about.
    """
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output} | {i.name for i in probe.graph.input}
    for name in dict.fromkeys(tensors):
        if name and name not in known:
            probe.graph.output.append(onnx.ValueInfoProto(name=name))
    with tempfile.TemporaryDirectory(prefix="dnx-probe-") as tmp:
        path = os.path.join(tmp, "probe.onnx")
        onnx.save(probe, path)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session, [o.name for o in session.get_outputs()]
