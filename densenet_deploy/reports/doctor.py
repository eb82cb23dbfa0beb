"""Which backends and devices are usable here: versions, ONNX Runtime providers, CUDA GPUs, CPU features, and
NNCF (the OpenVINO INT8 quantizer; a tool, not a backend, so it is never in `usable`)."""

from __future__ import annotations

import importlib
import importlib.util
import platform
from dataclasses import dataclass

from densenet_deploy.core.host import cpu_info, cuda_info
from densenet_deploy.core.results import Result
from densenet_deploy.runners.tensorrt import tensorrt_version


def _version(module: str) -> dict:

    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken install raising anything at import
        return {
            "available": False,
            "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
        }
    return {"available": True, "version": getattr(mod, "__version__", "unknown")}


NNCF_INSTALL = "pip install 'densenet-deploy[openvino]'"
NNCF_PURPOSE = "needed by `dnx build-engine --target openvino --int8` (the default nncf recipe)"


def optional_package(module: str, install: str, purpose: str) -> dict:
    """_version(module), with how to install it and what needs it when it is missing."""
    info = _version(module)
    if not info["available"]:
        missing = importlib.util.find_spec(module) is None  # else installed but broken: keep its error
        info["reason"] = (
            f"not installed ({install}); {purpose}"
            if missing
            else f"{info['reason']} (reinstall: {install}); {purpose}"
        )
    return info


def diagnose() -> DoctorReport:
    """Everything `dnx doctor` reports, as one dict."""
    backends = {
        "torch": _version("torch"),
        "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime"),
        "tensorrt": None,
        "cuda": None,
        "openvino": _version("openvino"),
        "nncf": optional_package("nncf", NNCF_INSTALL, NNCF_PURPOSE),
    }
    if backends["onnxruntime"]["available"]:
        import onnxruntime as ort

        backends["onnxruntime"]["providers"] = ort.get_available_providers()
    trt = tensorrt_version()
    backends["tensorrt"] = (
        {"available": True, "version": trt}
        if trt
        else {"available": False, "reason": "not installed (pip install 'densenet-deploy[trt]')"}
    )
    backends["cuda"] = cuda_info() if backends["torch"]["available"] else {"available": False, "devices": []}
    if backends["openvino"]["available"]:
        try:
            import openvino as ov

            backends["openvino"]["devices"] = list(ov.Core().available_devices)
        except Exception as exc:  # a broken plugin must not break the report
            backends["openvino"]["devices_error"] = str(exc).splitlines()[0][:200]
    usable = ["torch"] * backends["torch"]["available"] + ["onnxruntime"] * backends["onnxruntime"]["available"]
    if backends["openvino"]["available"]:
        usable.append("openvino")
    if backends["tensorrt"]["available"] and backends["cuda"]["available"]:
        usable.append("tensorrt")
    return DoctorReport(backends, cpu_info(), platform.python_version(), platform.platform(), usable)


@dataclass
class DoctorReport(Result):
    """Versions (or why unavailable) of every backend and tool, CUDA devices, CPU features, what is usable."""

    backends: dict
    cpu: dict
    python: str
    platform: str
    usable: list[str]

    def __str__(self) -> str:
        return format_report(self.as_dict())


def format_report(report: dict) -> str:
    lines = []
    for name, info in report["backends"].items():
        if name == "cuda":
            if info.get("available"):
                for d in info["devices"]:
                    lines.append(
                        f"cuda        #{d['index']} {d['name']} (cc {d['compute_capability']}, {d['memory_gb']} GB)"
                    )
            else:
                lines.append("cuda        no GPU visible")
            continue
        if info.get("available"):
            extra = ""
            if info.get("providers"):
                extra = "  providers: " + ", ".join(info["providers"])
            if info.get("devices"):
                extra = "  devices: " + ", ".join(info["devices"])
            lines.append(f"{name:<12}{info.get('version', '?')}{extra}")
        else:
            lines.append(f"{name:<12}unavailable: {info.get('reason', '')}")
    cpu = report["cpu"]
    feats = [k for k in ("avx2", "avx512", "vnni", "avx512_bf16", "amx") if cpu.get(k)]
    lines.append(f"cpu         {cpu['model']}, {cpu['usable_cores']} cores usable; {' '.join(feats) or 'no AVX2'}")
    lines.append(f"usable      {', '.join(report['usable'])}")
    return "\n".join(lines)
