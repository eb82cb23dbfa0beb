"""Which backends and devices are usable here: versions, ONNX Runtime providers, CUDA GPUs, CPU features, and
NNCF (the OpenVINO INT8 quantizer; a tool, not a backend, so it is never in `usable`)."""

from __future__ import annotations

import os
import platform


def _version(module: str) -> dict:
    import importlib

    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken install raising anything at import
        return {"available": False, "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    return {"available": True, "version": getattr(mod, "__version__", "unknown")}


NNCF_INSTALL = "pip install 'densenet-deploy[openvino]'"
NNCF_PURPOSE = "needed by `dnx build-engine --target openvino --int8` (the default nncf recipe)"


def optional_package(module: str, install: str, purpose: str) -> dict:
    """_version(module), with how to install it and what needs it when it is missing."""
    info = _version(module)
    if not info["available"]:
        import importlib.util

        missing = importlib.util.find_spec(module) is None  # else installed but broken: keep its error
        info["reason"] = (f"not installed ({install}); {purpose}" if missing
                          else f"{info['reason']} (reinstall: {install}); {purpose}")
    return info


def cpu_info(cpuinfo_path: str = "/proc/cpuinfo") -> dict:
    """CPU model, logical cores and the SIMD features that matter for inference (from /proc/cpuinfo flags)."""
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    try:
        with open(cpuinfo_path) as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "flags" and not flags:
                    flags = set(value.split())
                elif key == "model name":
                    model = value.strip()
    except OSError:
        pass
    return {
        "model": model,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "avx2": "avx2" in flags,
        "avx512": "avx512f" in flags,
        "vnni": bool({"avx512_vnni", "avx_vnni"} & flags),  # int8 dot products
        "avx512_bf16": "avx512_bf16" in flags,
        "amx": bool({"amx_tile", "amx_int8", "amx_bf16"} & flags),  # matrix tiles: int8/bf16 at high rate
        "amx_int8": "amx_int8" in flags,
        "amx_bf16": "amx_bf16" in flags,
    }


def cuda_info() -> dict:
    """CUDA devices as torch sees them."""
    import torch

    if not torch.cuda.is_available():
        return {"available": False, "devices": [], "torch_cuda": torch.version.cuda}
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        devices.append({"index": i, "name": props.name, "compute_capability": f"{props.major}.{props.minor}",
                        "memory_gb": round(props.total_memory / 2**30, 1)})
    return {"available": True, "devices": devices, "torch_cuda": torch.version.cuda}


def diagnose() -> dict:
    """Everything `dnx doctor` reports, as one dict."""
    from .runners.tensorrt import tensorrt_version

    backends = {"torch": _version("torch"), "onnx": _version("onnx"), "onnxruntime": _version("onnxruntime"),
                "tensorrt": None, "cuda": None, "openvino": _version("openvino"),
                "nncf": optional_package("nncf", NNCF_INSTALL, NNCF_PURPOSE)}
    if backends["onnxruntime"]["available"]:
        import onnxruntime as ort

        backends["onnxruntime"]["providers"] = ort.get_available_providers()
    trt = tensorrt_version()
    backends["tensorrt"] = ({"available": True, "version": trt} if trt else
                            {"available": False, "reason": "not installed (pip install 'densenet-deploy[trt]')"})
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
    return {"backends": backends, "cpu": cpu_info(), "python": platform.python_version(),
            "platform": platform.platform(), "usable": usable}


def format_report(report: dict) -> str:
    lines = []
    for name, info in report["backends"].items():
        if name == "cuda":
            if info.get("available"):
                for d in info["devices"]:
                    lines.append(f"cuda        #{d['index']} {d['name']} (cc {d['compute_capability']}, {d['memory_gb']} GB)")
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
