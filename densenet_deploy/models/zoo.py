"""The model zoo: one frozen ModelSpec per name, parsed from fixed names or the CIFAR name grammar."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from densenet_deploy.core.constants import IMAGENET_MEAN, IMAGENET_STD
from densenet_deploy.core.errors import UnknownModelError, did_you_mean

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build a model and describe its input; the single source of truth."""

    name: str
    family: str  # key into BUILDERS
    arch: dict = field(hash=False, compare=True)
    input_size: tuple[int, int, int] = (3, 224, 224)
    num_classes: int = 1000
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    paper_name: str = ""
    dataset: str = "imagenet"  # "imagenet" or "cifar": which input regime the architecture is for


_IMAGENET_DENSENETS = {
    # name: (growth rate k, stem channels, block sizes) -- Table 1; densenet161 from torchvision
    "densenet121": (32, 64, (6, 12, 24, 16)),
    "densenet161": (48, 96, (6, 12, 36, 24)),
    "densenet169": (32, 64, (6, 12, 32, 32)),
    "densenet201": (32, 64, (6, 12, 48, 32)),
    "densenet264": (32, 64, (6, 12, 64, 48)),
}

# Other families (ResNet baselines) register fixed specs here; see register().
_FIXED: dict[str, ModelSpec] = {}

# Names `dnx models` lists: Table 1 and the Table 2 configurations (grammar names stay open-ended).
TABLE2_NAMES = (
    "densenet40_k12",
    "densenet100_k12",
    "densenet100_k24",
    "densenet_bc100_k12",
    "densenet_bc250_k24",
    "densenet_bc190_k40",
)

_GRAMMAR = re.compile(r"^densenet(?P<bc>_bc)?(?P<depth>\d+)_k(?P<k>\d+)$")


def register(spec: ModelSpec) -> ModelSpec:
    _FIXED[spec.name] = spec
    return spec


for _name, (_k, _stem, _blocks) in _IMAGENET_DENSENETS.items():
    register(
        ModelSpec(
            name=_name,
            family="densenet",
            arch=dict(
                growth_rate=_k,
                block_config=_blocks,
                num_init_features=_stem,
                bn_size=4,
                compression=0.5,
                stem="imagenet",
            ),
            paper_name=f"DenseNet-{_name[len('densenet') :]}",
        )
    )


# ResNet baselines (models/resnet.py): torchvision's ImageNet ResNets and the CIFAR pre-activation
# bottleneck ResNets that Table 2 quotes.
for _depth, _block, _layers in (
    (18, "basic", (2, 2, 2, 2)),
    (34, "basic", (3, 4, 6, 3)),
    (50, "bottleneck", (3, 4, 6, 3)),
    (101, "bottleneck", (3, 4, 23, 3)),
    (152, "bottleneck", (3, 8, 36, 3)),
):
    register(
        ModelSpec(
            name=f"resnet{_depth}",
            family="resnet",
            arch=dict(block=_block, layers=_layers),
            paper_name=f"ResNet-{_depth}",
        )
    )
for _depth in (164, 1001):
    register(
        ModelSpec(
            name=f"preact_resnet{_depth}",
            family="preact_resnet",
            arch=dict(depth=_depth),
            input_size=(3, 32, 32),
            num_classes=10,
            mean=CIFAR_MEAN,
            std=CIFAR_STD,
            paper_name=f"pre-activation ResNet-{_depth}",
            dataset="cifar",
        )
    )


# Bounds of the name grammar: far above Table 2 (L <= 250, k <= 40), far below what fails to allocate.
MAX_DEPTH = 1000
MAX_GROWTH_RATE = 256
MAX_PARAMS = 1_000_000_000  # ~4 GB of float32 weights


def _estimate_params(k: int, n: int, bottleneck: bool) -> int:
    """Conv weights of a CIFAR DenseNet (three blocks of n layers): a cheap bound check before building."""
    channels, total = (2 * k if bottleneck else 16), 0
    for block in range(3):
        for i in range(n):
            c = channels + i * k
            total += c * 4 * k + 4 * k * k * 9 if bottleneck else c * k * 9
        channels += n * k
        if block < 2:
            out = int(channels * (0.5 if bottleneck else 1.0))
            total += channels * out
            channels = out
    return total


def _cifar_spec(name: str, bottleneck: bool, depth: int, k: int) -> ModelSpec:
    per_layer = 6 if bottleneck else 3  # a bottleneck layer holds two convolutions
    kind = "DenseNet-BC" if bottleneck else "DenseNet"
    min_depth = 4 + per_layer
    if depth < min_depth or (depth - 4) % per_layer:
        valid = ", ".join(str(4 + per_layer * n) for n in range(1, 6))
        raise UnknownModelError(
            f"{name}: depth {depth} is not valid for {kind}: (L - 4) must be a positive multiple of "
            f"{per_layer} (three blocks of (L-4)/{per_layer} layers); valid depths are {valid}, ..."
        )
    if depth > MAX_DEPTH:
        raise UnknownModelError(
            f"{name}: depth {depth} is too large; valid depths for {kind} are "
            f"{min_depth}..{MAX_DEPTH} with (L - 4) a multiple of {per_layer}"
        )
    if not 1 <= k <= MAX_GROWTH_RATE:
        raise UnknownModelError(
            f"{name}: growth rate k must be in 1..{MAX_GROWTH_RATE} "
            "(valid: e.g. densenet_bc100_k12; the paper uses 12..40)"
        )
    n = (depth - 4) // per_layer
    params = _estimate_params(k, n, bottleneck)
    if params > MAX_PARAMS:
        raise UnknownModelError(
            f"{name}: about {params / 1e9:.1f} G parameters, over the {MAX_PARAMS / 1e9:.0f} G "
            "this tool builds; choose a smaller depth L or growth rate k"
        )
    return ModelSpec(
        name=name,
        family="densenet",
        arch=dict(
            growth_rate=k,
            block_config=(n, n, n),
            num_init_features=2 * k if bottleneck else 16,
            bn_size=4 if bottleneck else None,
            compression=0.5 if bottleneck else 1.0,
            stem="cifar",
        ),
        input_size=(3, 32, 32),
        num_classes=10,
        mean=CIFAR_MEAN,
        std=CIFAR_STD,
        paper_name=f"{kind} (L={depth}, k={k})",
        dataset="cifar",
    )


def get_spec(name: str) -> ModelSpec:
    """The ModelSpec for a zoo name; UnknownModelError (listing what is valid) otherwise."""
    if not isinstance(name, str):
        raise UnknownModelError(f"model name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key in _FIXED:
        return _FIXED[key]
    match = _GRAMMAR.match(key)
    if match:
        # Canonical name: densenet040_k012 is densenet40_k12 (one model, one name in every artifact).
        bc, depth, k = bool(match["bc"]), int(match["depth"]), int(match["k"])
        return _cifar_spec(f"densenet{'_bc' if bc else ''}{depth}_k{k}", bc, depth, k)
    raise UnknownModelError(
        f"unknown model {name!r}{did_you_mean(key, list(_FIXED) + list(TABLE2_NAMES))}; valid: "
        f"{', '.join(sorted(_FIXED))}, or densenet{{L}}_k{{k}} / densenet_bc{{L}}_k{{k}} "
        "(e.g. densenet40_k12, densenet_bc100_k12)"
    )


def listed_names() -> list[str]:
    """The names `dnx models` shows: fixed specs first, then Table 2's CIFAR models."""
    return list(_FIXED) + list(TABLE2_NAMES)
