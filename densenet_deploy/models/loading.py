"""Turn a MODEL argument (zoo name or checkpoint path, optional --weights) into a ready model."""

from __future__ import annotations

import os
from dataclasses import dataclass

from densenet_deploy.core.errors import CheckpointError, UnknownModelError
from densenet_deploy.core.io import sha256_file
from densenet_deploy.models import build_from_config, build_model, get_spec
from densenet_deploy.models.checkpoint import (
    classifier_classes,
    extract_state_dict,
    is_dnx_checkpoint,
    load_state_dict_strict,
    read_checkpoint,
)


@dataclass
class LoadedModel:
    """A model in eval mode plus what artifacts should say about it."""

    model: object
    name: str
    config: dict
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels: list[str] | None
    weights_sha256: str  # "" for random initialisation
    source: str  # "zoo (random init)", or the checkpoint path


def looks_like_path(model: str) -> bool:
    """A checkpoint path, not a zoo name. A bare zoo name stays a zoo name even if a file of that name
    happens to sit in the working directory (write ./densenet121 to mean the file)."""
    if os.sep in model or model.endswith((".pt", ".pth", ".ckpt", ".bin")):
        return True

    try:
        get_spec(model)
        return False
    except UnknownModelError:
        return os.path.isfile(model)


def first_conv_channels(state: dict) -> int | None:
    """Input channels of a state dict's first convolution (DenseNet features.conv0, ResNet conv1)."""
    for key in ("features.conv0.weight", "conv1.weight"):
        weight = state.get(key)
        if weight is not None and getattr(weight, "ndim", 0) == 4:
            return int(weight.shape[1])
    return None


def load_model(
    model: str,
    weights: str | None = None,
    num_classes: int | None = None,
    input_size: int | tuple | None = None,
    seed: int = 0,
) -> LoadedModel:
    """Load a zoo model (random Kaiming init, seeded), a zoo model with --weights, or a dnx checkpoint."""
    import torch

    if looks_like_path(model):
        if weights:
            raise CheckpointError("give either a checkpoint path as MODEL or --weights with a zoo name, not both")
        obj = read_checkpoint(model)
        if not is_dnx_checkpoint(obj):
            raise CheckpointError(
                f"{model} is a bare state dict without a model config; pass the zoo name and the file: "
                f"dnx ... NAME --weights {model}"
            )
        config = dict(obj["model_config"])
        if num_classes is not None and num_classes != config["num_classes"]:
            raise CheckpointError(
                f"--num-classes {num_classes} contradicts the checkpoint's {config['num_classes']} classes"
            )
        try:
            net = build_from_config(config)
        except UnknownModelError as exc:
            raise CheckpointError(f"{model}: {exc}") from exc
        load_state_dict_strict(net, extract_state_dict(obj, model), model)
        spec = get_spec(config["name"])
        size = tuple(obj.get("input_size") or (config["in_channels"],) + spec.input_size[1:])
        mean = tuple(obj.get("mean") or spec.mean)
        std = tuple(obj.get("std") or spec.std)
        labels = obj.get("labels")
        sha, source = sha256_file(model), model
    else:
        spec = get_spec(model)
        state, in_channels, obj = None, None, None
        if weights:
            obj = read_checkpoint(weights)
            if is_dnx_checkpoint(obj):
                ckpt_name = str(obj["model_config"].get("name", "?"))
                if ckpt_name != spec.name:
                    raise CheckpointError(
                        f"--weights {weights} is a dnx checkpoint of {ckpt_name}, not {spec.name}; export it "
                        f"with its own metadata: dnx export {weights}"
                    )
            state = extract_state_dict(obj, weights)
            found = classifier_classes(state)
            if num_classes is None:
                num_classes = found
            in_channels = first_conv_channels(state)
        torch.manual_seed(seed)
        net = build_model(spec.name, num_classes=num_classes, in_channels=in_channels)
        if state is not None:
            load_state_dict_strict(net, state, weights)
        config = net.dnx_config
        size, mean, std, labels = spec.input_size, spec.mean, spec.std, None
        channels = int(config["in_channels"])
        if channels != size[0]:  # e.g. a grayscale state dict for a 3-channel zoo model
            size = (channels,) + tuple(size[1:])
            mean = (round(sum(mean) / len(mean), 4),) * channels
            std = (round(sum(std) / len(std), 4),) * channels
        if obj is not None and is_dnx_checkpoint(obj):  # same architecture: keep what training recorded
            size = tuple(obj.get("input_size") or size)
            mean = tuple(obj.get("mean") or mean)
            std = tuple(obj.get("std") or std)
            labels = obj.get("labels")
        sha = sha256_file(weights) if weights else ""
        source = weights or "zoo (random init)"
    if input_size is not None:
        hw = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        size = (size[0],) + hw
    net.eval()
    return LoadedModel(
        net,
        config["name"],
        config,
        tuple(int(s) for s in size),
        tuple(mean),
        tuple(std),
        list(labels) if labels else None,
        sha,
        source,
    )
