"""The paper's reported figures (Tables 1-3, Figures 3-4) as typed data, each with its source.

Source: Huang, Liu, van der Maaten, Weinberger, "Densely Connected Convolutional Networks", CVPR 2017
(arXiv:1608.06993); exact ImageNet parameter counts and MACs from torchvision's published model figures.
"FLOPs" in the paper count multiply-accumulates (MACs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from densenet_deploy.models import get_spec

PAPER = "Huang et al., Densely Connected Convolutional Networks, CVPR 2017 (arXiv:1608.06993)"
TORCHVISION = "torchvision model documentation (IMAGENET1K_V1 weights)"


@dataclass(frozen=True)
class PaperEntry:
    """What the literature reports for one zoo model."""

    model: str  # zoo name
    label: str  # how the paper names it
    params: int | None = None  # exact count where a source gives it
    params_m: float | None = None  # as the paper rounds it, millions
    macs_g: float | None = None
    top1_error: float | None = None  # ImageNet single-crop top-1 error %
    top5_error: float | None = None
    top1_error_10crop: float | None = None
    cifar_error: dict = field(default_factory=dict)  # {"C10": 7.00, "C10+": 5.24, ...}
    sources: tuple[str, ...] = (PAPER,)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}, ())} | {"sources": list(self.sources)}


def _error(accuracy: float) -> float:
    """Top-1 error % from a published accuracy %, rounded like it (100 - 76.130 = 23.87, not 23.870000000000005)."""
    return round(100 - accuracy, 3)


_ENTRIES = [
    # Table 1 / Table 3 (ImageNet); params and MACs from torchvision except DenseNet-264 (computed)
    PaperEntry("densenet121", "DenseNet-121", 7_978_856, 8.0, 2.834, 25.02, 7.71, 23.61, sources=(PAPER, TORCHVISION)),
    PaperEntry("densenet169", "DenseNet-169", 14_149_480, 14.1, 3.36, 23.80, 6.85, 22.08, sources=(PAPER, TORCHVISION)),
    PaperEntry(
        "densenet201", "DenseNet-201", 20_013_928, 20.0, 4.291, 22.58, 6.34, 21.46, sources=(PAPER, TORCHVISION)
    ),
    PaperEntry(
        "densenet264",
        "DenseNet-264",
        33_337_704,
        33.3,
        5.75,
        22.15,
        6.12,
        20.80,
        sources=(PAPER, "computed from Table 1"),
    ),
    PaperEntry(
        "densenet161",
        "DenseNet-161 (k=48; torchvision, not in the paper)",
        28_681_000,
        28.7,
        7.728,
        _error(77.138),
        sources=(TORCHVISION,),
    ),
    # Table 2 (CIFAR/SVHN error %, "+" = standard augmentation)
    PaperEntry(
        "densenet40_k12",
        "DenseNet (L=40, k=12)",
        params_m=1.0,
        cifar_error={"C10": 7.00, "C10+": 5.24, "C100": 27.55, "C100+": 24.42, "SVHN": 1.79},
    ),
    PaperEntry(
        "densenet100_k12",
        "DenseNet (L=100, k=12)",
        params_m=7.0,
        cifar_error={"C10": 5.77, "C10+": 4.10, "C100": 23.79, "C100+": 20.20, "SVHN": 1.67},
    ),
    PaperEntry(
        "densenet100_k24",
        "DenseNet (L=100, k=24)",
        params_m=27.2,
        cifar_error={"C10": 5.83, "C10+": 3.74, "C100": 23.42, "C100+": 19.25, "SVHN": 1.59},
    ),
    PaperEntry(
        "densenet_bc100_k12",
        "DenseNet-BC (L=100, k=12)",
        params_m=0.8,
        cifar_error={"C10": 5.92, "C10+": 4.51, "C100": 24.15, "C100+": 22.27, "SVHN": 1.76},
    ),
    PaperEntry(
        "densenet_bc250_k24",
        "DenseNet-BC (L=250, k=24)",
        params_m=15.3,
        cifar_error={"C10": 5.19, "C10+": 3.62, "C100": 19.64, "C100+": 17.60, "SVHN": 1.74},
    ),
    PaperEntry(
        "densenet_bc190_k40", "DenseNet-BC (L=190, k=40)", params_m=25.6, cifar_error={"C10+": 3.46, "C100+": 17.18}
    ),
    # Baselines quoted for the comparisons (torchvision V1 weights; Table 2 for pre-activation ResNets)
    PaperEntry("resnet18", "ResNet-18", 11_689_512, 11.7, 1.81, _error(69.758), sources=(TORCHVISION,)),
    PaperEntry("resnet34", "ResNet-34", 21_797_672, 21.8, 3.66, _error(73.314), sources=(TORCHVISION,)),
    PaperEntry("resnet50", "ResNet-50", 25_557_032, 25.6, 4.09, _error(76.130), sources=(TORCHVISION,)),
    PaperEntry("resnet101", "ResNet-101", 44_549_160, 44.5, 7.80, _error(77.374), sources=(TORCHVISION,)),
    PaperEntry("resnet152", "ResNet-152", 60_192_808, 60.2, 11.51, _error(78.312), sources=(TORCHVISION,)),
    PaperEntry(
        "preact_resnet164", "pre-activation ResNet-164", params_m=1.7, cifar_error={"C10+": 5.46, "C100+": 24.33}
    ),
    PaperEntry(
        "preact_resnet1001", "pre-activation ResNet-1001", params_m=10.2, cifar_error={"C10+": 4.62, "C100+": 22.71}
    ),
]

ENTRIES: dict[str, PaperEntry] = {e.model: e for e in _ENTRIES}


def paper_entry(model: str) -> PaperEntry | None:
    return ENTRIES.get(model)


def params_match_rounding(measured: int, entry: PaperEntry) -> bool | None:
    """Exact match where the source gives an exact count, else equality at the paper's 0.1M rounding."""
    if entry.params is not None:
        return measured == entry.params
    if entry.params_m is not None:
        return round(measured / 1e6, 1) == entry.params_m
    return None


def paper_figures(name: str, params: int, macs: int, num_classes: int | None = None, input_size=None) -> dict:
    """The paper's numbers for `name` and how the measured ones compare (ratios, rounding match).

    `num_classes`: the measured model's classifier size (None: the zoo's); the paper's figures are for its
    class count (1000 ImageNet, 10 CIFAR), so another head has no params match. `input_size` (C, H, W) is
    what `macs` was counted at; MACs grow with H x W, so when it differs from the paper's input (224x224
    ImageNet, 32x32 CIFAR) there is no MACs ratio, only `macs_note`.
    """
    entry = paper_entry(name)
    if entry is None:
        return {}
    out = entry.as_dict()
    out["macs"] = int(entry.macs_g * 1e9) if entry.macs_g else None
    out["params"] = (
        entry.params
        if entry.params is not None
        else (int(entry.params_m * 1e6) if entry.params_m is not None else None)
    )
    out["top1_error"] = entry.top1_error
    if out["params"]:
        out["params_ratio"] = round(params / out["params"], 4)
    spec = get_spec(name)
    paper_hw = tuple(spec.input_size[1:])
    if out["macs"] and input_size is not None and tuple(input_size)[1:] != paper_hw:
        out["macs_ratio"] = None
        out["macs_note"] = (
            f"ratio n/a: counted at {'x'.join(map(str, tuple(input_size)[1:]))}, "
            f"the paper's figure is for {'x'.join(map(str, paper_hw))}"
        )
    elif out["macs"]:
        out["macs_ratio"] = round(macs / out["macs"], 4)
    default_head = num_classes is None or num_classes == spec.num_classes
    out["params_match"] = params_match_rounding(params, entry) if default_head else None
    return out
