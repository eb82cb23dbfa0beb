"""The paper's training recipe (Section 4.2) as options with defaults, resolved per dataset and model."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass

from densenet_deploy.core.errors import DnxError, did_you_mean
from densenet_deploy.models import get_spec

log = logging.getLogger(__name__)

DATASETS = ("digits", "cifar10", "cifar10+", "cifar100", "cifar100+", "svhn", "imagefolder")


@dataclass
class TrainOptions:
    """What `dnx train` takes; None means "the paper's recipe for this dataset and model"."""

    model: str
    dataset: str
    output: str
    data_dir: str | None = None
    epochs: int | None = None  # CIFAR 300, SVHN 40, ImageNet-style 90, digits 30
    batch_size: int | None = None  # 64; ImageNet-style 256
    lr: float | None = None  # 0.1
    milestones: tuple[int, ...] | None = (
        None  # lr /10 at these epochs; default 50%/75% of the recipe's epochs (ImageNet 30/60)
    )
    momentum: float = 0.9  # Nesterov, no dampening
    nesterov: bool = True
    weight_decay: float = 1e-4
    dropout: float | None = None  # 0.2 without augmentation (CIFAR/SVHN), else 0; ImageNet-style always 0
    augment: bool | None = None  # translation + mirroring; default: on for the "+" datasets and ImageNet-style
    input_size: int | None = None  # square side; default: the model's (32 CIFAR-style, 224 ImageNet)
    in_channels: int | None = None  # default: the data's (digits 1, others 3)
    limit: int | None = None  # train on a seeded subset of this many images (quick runs)
    val_limit: int | None = None
    seed: int = 0
    resume: str | None = None
    threads: int | None = None
    eval_batch_size: int = 256


@dataclass(frozen=True)
class Recipe:
    """Concrete values after defaults are applied; stored in the checkpoint so --resume reuses them."""

    model: str
    dataset: str
    data_dir: str | None
    epochs: int
    batch_size: int
    lr: float
    milestones: tuple[int, ...]
    momentum: float
    nesterov: bool
    weight_decay: float
    dropout: float
    augment: bool
    input_size: int
    in_channels: int
    limit: int | None
    val_limit: int | None
    seed: int

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        values["milestones"] = tuple(int(m) for m in values.get("milestones", ()))
        return cls(**values)


# Fields that --resume may change; every other recipe field must match the checkpoint.
RESUMABLE = ("epochs",)


def base_dataset(dataset: str) -> str:
    return dataset.rstrip("+")


def resolve(options: TrainOptions) -> Recipe:
    """Apply the paper's defaults for the dataset/model to every option left as None."""
    dataset = options.dataset.strip().lower() if options.dataset else ""
    if dataset not in DATASETS:
        raise DnxError(
            f"unknown dataset {options.dataset!r}{did_you_mean(dataset, DATASETS)}; choose one of {', '.join(DATASETS)}"
        )
    base = base_dataset(dataset)
    if base in ("cifar10", "cifar100", "svhn", "imagefolder") and not options.data_dir:
        raise DnxError(f"dataset {dataset} needs --data-dir (the directory holding its files)")
    if base == "digits" and options.data_dir:
        raise DnxError(
            f"--data-dir {options.data_dir}: dataset digits is built in (scikit-learn) and reads no "
            "directory; drop --data-dir, or use --dataset imagefolder for a folder of images"
        )
    if options.data_dir and not os.path.isdir(options.data_dir):
        raise DnxError(f"--data-dir {options.data_dir}: no such directory")
    spec = get_spec(options.model)
    imagenet_style = base == "imagefolder" and spec.dataset == "imagenet"
    # The paper's schedule belongs to the recipe, not to --epochs: lr /10 at 50% and 75% of the recipe's
    # epochs (CIFAR 300 -> 150, 225; SVHN 40 -> 20, 30) or at 30 and 60 of ImageNet's 90. --epochs only
    # says how far along that schedule to train, which is what makes `--resume c.pt --epochs N`
    # identical to a straight N-epoch run. Shorter runs that want the decay pass --milestones.
    nominal = {"cifar10": 300, "cifar100": 300, "svhn": 40, "digits": 30}.get(base, 90 if imagenet_style else 300)
    epochs = options.epochs if options.epochs is not None else nominal
    if epochs < 1:
        raise DnxError(f"--epochs must be >= 1, got {epochs}")
    fractions = (1 / 3, 2 / 3) if imagenet_style else (0.5, 0.75)
    milestones = (
        options.milestones if options.milestones is not None else tuple(int(round(nominal * f)) for f in fractions)
    )
    if options.milestones is None and epochs <= min(milestones):
        log.warning(
            "lr schedule: the paper's %d-epoch recipe divides the lr by 10 at epochs %s; this %d-epoch "
            "run ends before the first drop (pass --milestones to decay within the run)",
            nominal,
            ", ".join(map(str, milestones)),
            epochs,
        )
    # Section 4.2: the "+" datasets and ImageNet train with standard augmentation; dropout 0.2 is only for
    # CIFAR/SVHN without augmentation (ImageNet never uses dropout, even with --no-augment).
    augment = options.augment if options.augment is not None else (dataset.endswith("+") or imagenet_style)
    dropout = options.dropout if options.dropout is not None else (0.0 if augment or imagenet_style else 0.2)
    natural_channels = 1 if base == "digits" else 3
    recipe = Recipe(
        model=spec.name,
        dataset=dataset,
        data_dir=os.path.abspath(options.data_dir) if options.data_dir else None,
        epochs=int(epochs),
        batch_size=int(options.batch_size or (256 if imagenet_style else 64)),
        lr=float(options.lr if options.lr is not None else 0.1),
        milestones=tuple(sorted(int(m) for m in milestones)),
        momentum=float(options.momentum),
        nesterov=bool(options.nesterov),
        weight_decay=float(options.weight_decay),
        dropout=float(dropout),
        augment=bool(augment),
        input_size=int(options.input_size or spec.input_size[1]),
        in_channels=int(options.in_channels or natural_channels),
        limit=options.limit,
        val_limit=options.val_limit,
        seed=int(options.seed),
    )
    _check(recipe)
    return recipe


def _check(r: Recipe) -> None:
    problems = []
    if r.batch_size < 2:
        problems.append(f"--batch-size must be >= 2 (batch norm), got {r.batch_size}")
    if r.lr <= 0:
        problems.append(f"--lr must be > 0, got {r.lr}")
    if not 0 <= r.dropout < 1:
        problems.append(f"--dropout must be in [0, 1), got {r.dropout}")
    if r.nesterov and r.momentum <= 0:
        problems.append("Nesterov momentum needs --momentum > 0 (or --no-nesterov)")
    if r.input_size < 8:
        problems.append(f"--input-size must be >= 8, got {r.input_size}")
    if r.in_channels not in (1, 3):
        problems.append(f"--in-channels must be 1 or 3, got {r.in_channels}")
    if any(m < 0 for m in r.milestones):
        problems.append(f"milestones must be >= 0, got {list(r.milestones)}")
    for name in ("limit", "val_limit"):
        if getattr(r, name) is not None and getattr(r, name) < 2:
            problems.append(f"--{name.replace('_', '-')} must be >= 2, got {getattr(r, name)}")
    if problems:
        raise DnxError("; ".join(problems))


def merge_resume(options: TrainOptions, saved: Recipe) -> Recipe:
    """The checkpoint's recipe with the options --resume may change; contradicting options are refused."""
    given = resolve_given(options)
    conflicts = [
        f"{k} {v!r} (checkpoint: {getattr(saved, k)!r})"
        for k, v in given.items()
        if k not in RESUMABLE and getattr(saved, k) != v
    ]
    if conflicts:
        raise DnxError(
            "--resume continues the checkpoint's recipe; these options differ: "
            + "; ".join(conflicts)
            + ". Drop them or start a new run"
        )
    changes = {k: v for k, v in given.items() if k in RESUMABLE}
    return dataclasses.replace(saved, **changes)


def resolve_given(options: TrainOptions) -> dict:
    """Only the recipe fields the caller set explicitly (None/defaults are not "given")."""
    defaults = TrainOptions(model="", dataset="", output="")
    given = {}
    for f in dataclasses.fields(Recipe):
        if not hasattr(options, f.name):
            continue
        value = getattr(options, f.name)
        if value is None or value == "" or value == getattr(defaults, f.name):
            continue
        if f.name == "model":
            value = get_spec(value).name
        elif f.name == "dataset":
            value = value.strip().lower()
        elif f.name == "data_dir":
            value = os.path.abspath(value)
        elif f.name == "milestones":
            value = tuple(sorted(int(m) for m in value))
        given[f.name] = value
    return given


def lr_at(recipe: Recipe, epoch: int) -> float:
    """Step schedule: lr divided by 10 at each milestone epoch (0-based epoch index)."""
    return recipe.lr / 10 ** sum(1 for m in recipe.milestones if epoch >= m)
