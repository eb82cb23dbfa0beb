"""Reading and writing weights: torchvision state dicts (current and legacy keys) and dnx checkpoints.

Checkpoints are always loaded with ``weights_only=True``: a checkpoint must never be able to run code.
"""

from __future__ import annotations

import os
import re

from densenet_deploy.core.errors import CheckpointError
from densenet_deploy.core.io import atomic_output

CHECKPOINT_FORMAT = "dnx-checkpoint-1"
# Old torchvision DenseNet checkpoints spell `denselayer1.norm.1.weight`; the dot before 1/2 is dropped.
_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:1|2)\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def read_checkpoint(path) -> dict:
    """torch.load(weights_only=True) with one-line errors; returns the raw object as a dict."""
    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        # torch.save writes a zip archive (or, before 1.6, a pickle); anything else gives torch errors
        # like "KeyError: 101" that say nothing to the user.
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (neither a torch.save zip archive nor a "
            f"pickle; it starts with {head!r})"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means "not a usable checkpoint"
        text = " ".join(str(exc).split())
        if "weights_only" in text.lower() or "Unsupported global" in text:
            why = (
                "it holds Python objects besides tensors, and dnx loads checkpoints with weights_only=True "
                "so that a checkpoint cannot run code; save the state dict (model.state_dict()) instead"
            )
        else:
            why = f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({why})") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict or checkpoint dict")
    return obj


def is_dnx_checkpoint(obj: dict) -> bool:
    return obj.get("format") == CHECKPOINT_FORMAT and "model_config" in obj


def extract_state_dict(obj: dict, source: str = "checkpoint") -> dict:
    """Find the state dict in a checkpoint dict and normalise its keys (module. prefix, legacy names)."""
    import torch

    for wrapper in ("state_dict", "model", "model_state_dict", "weights"):
        if isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{source} contains no tensors; expected a state dict")
    return normalize_keys(tensors)


def normalize_keys(state: dict) -> dict:
    fixed = {}
    for key, value in state.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        match = _LEGACY_KEY.match(key)
        if match:
            key = match[1] + match[2]
        fixed[key] = value
    return fixed


def load_state_dict_strict(model, state: dict, source: str = "checkpoint") -> None:
    """Load `state` into `model`; one CheckpointError naming missing/unexpected keys and shape mismatches."""
    own = model.state_dict()
    # Checkpoints from before PyTorch 0.4.1 have no BN batch counters; they do not affect inference.
    state = dict(state)
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value.clone()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            problems.append(f"{len(items)} {label}: {'; '.join(items[:3])}{more}")
    if problems:
        name = getattr(model, "dnx_config", {}).get("name", type(model).__name__)
        raise CheckpointError(f"{source} does not fit {name}: " + " | ".join(problems))
    model.load_state_dict(state, strict=True)


def classifier_classes(state: dict) -> int | None:
    """Number of classes from the classifier (DenseNet) or fc (ResNet) weight, if present."""
    for key in ("classifier.weight", "fc.weight"):
        if key in state:
            return int(state[key].shape[0])
    return None


def save_checkpoint(
    path,
    model,
    *,
    epoch: int = 0,
    optimizer_state=None,
    scheduler_state=None,
    mean=None,
    std=None,
    input_size=None,
    labels=None,
    history=None,
    extra=None,
) -> None:
    """Write a dnx checkpoint atomically; it carries everything export needs (config, normalisation, labels)."""
    import torch

    doc = {
        "format": CHECKPOINT_FORMAT,
        "model_config": dict(model.dnx_config),
        "state_dict": model.state_dict(),
        "epoch": int(epoch),
        "mean": list(mean) if mean is not None else None,
        "std": list(std) if std is not None else None,
        "input_size": list(input_size) if input_size is not None else None,
        "labels": list(labels) if labels is not None else None,
        "optimizer": optimizer_state,
        "scheduler": scheduler_state,
        "history": history or [],
        "extra": extra or {},
    }
    with atomic_output(path, suffix=".pt") as tmp:
        torch.save(doc, tmp)
