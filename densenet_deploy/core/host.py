"""Facts about this machine that numbers depend on: CPU model and SIMD features, CUDA devices, library versions."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata


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
        devices.append(
            {
                "index": i,
                "name": props.name,
                "compute_capability": f"{props.major}.{props.minor}",
                "memory_gb": round(props.total_memory / 2**30, 1),
            }
        )
    return {"available": True, "devices": devices, "torch_cuda": torch.version.cuda}


def environment(threads: int | None = None) -> dict:
    """What the numbers depend on: CPU, cores, library versions, thread setting, load."""
    cpu = cpu_info()["model"]
    versions = {"python": sys.version.split()[0]}
    for package in ("densenet-deploy", "numpy", "torch", "onnxruntime", "openvino", "tensorrt"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    env = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": threads,
        "versions": versions,
        "platform": platform.platform(),
    }
    if hasattr(os, "sched_getaffinity"):
        env["cores_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        env["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    return env
