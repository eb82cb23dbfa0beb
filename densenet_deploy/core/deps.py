"""Import optional dependencies on demand, with an error that names the extra to install."""

import importlib

from densenet_deploy.core.errors import MissingDependencyError

# module name -> (pip extra of densenet-deploy, package to pip install)
_EXTRAS = {
    "tensorrt": ("trt", "tensorrt"),
    "openvino": ("openvino", "openvino"),
    "nncf": ("openvino", "nncf"),
    "matplotlib": ("plot", "matplotlib"),
    "sklearn": ("demo", "scikit-learn"),
    "scipy": ("demo", "scipy"),
    "PIL": ("demo", "pillow"),
    "onnxconverter_common": ("demo", "onnxconverter-common"),
    "tritonclient": ("triton", "tritonclient[http]"),
    "pytriton": ("triton", "nvidia-pytriton"),
    "psutil": ("dev", "psutil"),
}


def require(module: str, extra: str | None = None, purpose: str = ""):
    """Import `module` or raise MissingDependencyError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        default_extra, package = _EXTRAS.get(top, (None, top))
        extra = extra or default_extra
        why = f" for {purpose}" if purpose else ""
        hint = f"pip install 'densenet-deploy[{extra}]'" if extra else f"pip install {package}"
        raise MissingDependencyError(
            f"{module} is needed{why} but cannot be imported ({exc}); install it with: {hint}"
        ) from exc


def available(module: str) -> bool:
    """True when `module` can be imported (without importing it twice)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
