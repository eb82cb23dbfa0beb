"""The precision step of `dnx build-engine`: an fp32 export converted to an fp16/bf16 graph or calibrated to
an INT8 Q/DQ graph, by the same functions `dnx calibrate` and the Python API use."""

from __future__ import annotations

import logging

from densenet_deploy.calibration.quantize import CalibrationOptions, quantize_int8
from densenet_deploy.core.errors import DnxError
from densenet_deploy.core.policy import GateOptions
from densenet_deploy.exporters.bf16 import convert_bf16
from densenet_deploy.exporters.fp16 import convert_fp16

log = logging.getLogger(__name__)

# build-engine calibrates into a temporary file, and --auto-exclude is `dnx calibrate`'s.
BUILD_CALIBRATION_ADVICE = (
    "nothing written; try another --method, or calibrate with `dnx calibrate --auto-exclude` "
    "and build the int8 model it writes"
)


def convert_precision(
    onnx_path: str,
    output: str,
    precision: str,
    *,
    data: str | None = None,
    samples: int | None = None,
    method: str | None = None,
    int8_activations: str = "int8",
    gate: GateOptions | None = None,
    progress: bool = False,
) -> dict:
    """Write `output`: `onnx_path` (fp32) converted to fp16/bf16 (`data`: the parity check's data) or
    calibrated to Q/DQ int8 on `data` with `int8_activations` ("int8" for TensorRT, "uint8" for ONNX
    Runtime). `gate`: changes to the policy's gate of the step's check. Returns the step's result as a dict;
    VerificationFailed when its check fails."""
    gate = gate or GateOptions()
    if precision in ("fp16", "bf16"):
        kwargs = {k: v for k, v in (("data", data), ("samples", samples)) if v is not None}
        info = (convert_fp16 if precision == "fp16" else convert_bf16)(onnx_path, output, gate=gate, **kwargs)
    elif precision == "int8":
        kwargs = {k: v for k, v in (("method", method), ("samples", samples)) if v is not None}
        options = CalibrationOptions(activation_type=int8_activations, gate=gate, **kwargs)
        info = quantize_int8(
            onnx_path, output, data, options, progress=progress, failure_advice=BUILD_CALIBRATION_ADVICE
        )
    else:
        raise DnxError(f"no conversion to {precision!r}")
    info = info.as_dict()
    got = info.get("samples")
    if samples and isinstance(got, int) and got < samples:
        log.warning(
            "%s gave only %d sample%s for the %s step, fewer than --samples %d",
            data or "the data",
            got,
            "" if got == 1 else "s",
            precision,
            samples,
        )
    return info
