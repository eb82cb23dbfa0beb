"""Model zoo: build_model(name) and the specs behind it."""

from __future__ import annotations

from densenet_deploy.core.errors import DnxError
from densenet_deploy.models.zoo import ModelSpec, get_spec, listed_names, register

BUILDERS = {}


def _densenet(spec: ModelSpec, num_classes: int, in_channels: int, drop_rate: float, memory_efficient: bool):
    from densenet_deploy.models.densenet import DenseNet

    return DenseNet(
        num_classes=num_classes,
        in_channels=in_channels,
        drop_rate=drop_rate,
        memory_efficient=memory_efficient,
        **spec.arch,
    )


BUILDERS["densenet"] = _densenet


def _resnet(spec: ModelSpec, num_classes: int, in_channels: int, drop_rate: float, memory_efficient: bool):
    from densenet_deploy.models.resnet import ResNet

    return ResNet(num_classes=num_classes, in_channels=in_channels, drop_rate=drop_rate, **spec.arch)


def _preact_resnet(spec: ModelSpec, num_classes: int, in_channels: int, drop_rate: float, memory_efficient: bool):
    from densenet_deploy.models.resnet import PreActResNet

    return PreActResNet(num_classes=num_classes, in_channels=in_channels, drop_rate=drop_rate, **spec.arch)


BUILDERS["resnet"] = _resnet
BUILDERS["preact_resnet"] = _preact_resnet


def model_config(
    name: str, num_classes: int | None = None, in_channels: int | None = None, drop_rate: float = 0.0
) -> dict:
    """The small dict that rebuilds a model (stored in checkpoints and ONNX metadata)."""
    spec = get_spec(name)
    return {
        "name": spec.name,
        "num_classes": int(num_classes if num_classes is not None else spec.num_classes),
        "in_channels": int(in_channels if in_channels is not None else spec.input_size[0]),
        "drop_rate": float(drop_rate),
    }


def build_model(
    name: str,
    num_classes: int | None = None,
    in_channels: int | None = None,
    drop_rate: float = 0.0,
    memory_efficient: bool = False,
):
    """Build a freshly initialised zoo model (eval mode is the caller's choice)."""
    config = model_config(name, num_classes, in_channels, drop_rate)
    if config["num_classes"] < 1 or config["in_channels"] < 1:
        raise DnxError(f"num_classes and in_channels must be >= 1, got {config}")
    spec = get_spec(name)
    try:
        model = BUILDERS[spec.family](
            spec, config["num_classes"], config["in_channels"], config["drop_rate"], memory_efficient
        )
    except (MemoryError, RuntimeError) as exc:
        text = str(exc)
        if not isinstance(exc, MemoryError) and "alloc" not in text.lower():
            raise
        first = (text.strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DnxError(
            f"not enough memory to build {spec.name} with {config['num_classes']} classes and "
            f"{config['in_channels']} input channels ({first})"
        ) from exc
    model.dnx_config = config
    model.dnx_spec = spec
    return model


def build_from_config(config: dict, memory_efficient: bool = False):
    return build_model(
        config["name"],
        config.get("num_classes"),
        config.get("in_channels"),
        config.get("drop_rate", 0.0),
        memory_efficient,
    )


__all__ = [
    "ModelSpec",
    "get_spec",
    "listed_names",
    "register",
    "build_model",
    "build_from_config",
    "model_config",
    "BUILDERS",
]
