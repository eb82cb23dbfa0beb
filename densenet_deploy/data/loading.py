"""One data API for training, calibration, verify and bench: SRC string -> preprocessed NCHW float32 images.

SRC forms: a directory of images (class subfolders give labels, sorted by name; loose images are
unlabeled), ``FILE.npy`` / ``FILE.npz`` (already preprocessed (N, C, H, W) float32; npz keys
``images``/``x`` and optional ``labels``/``y``), ``digits`` (scikit-learn), ``cifar10:DIR``,
``cifar100:DIR``, ``svhn:DIR`` and ``random`` (seeded noise, smoke tests only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from densenet_deploy.core.deps import require
from densenet_deploy.core.errors import DataError
from densenet_deploy.core.log import warn_once
from densenet_deploy.data import readers

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "all")
# Sources without their own train/test files get a fixed 80/20 permutation, so "val" is the same
# held-out set whichever command (and whichever --seed) asks for it.
SPLIT_SEED = 0


@dataclass
class Dataset:
    """Preprocessed images ready to feed any Runner."""

    images: np.ndarray  # (N, C, H, W) float32, normalised with mean/std
    labels: np.ndarray | None  # (N,) int64
    label_names: list[str] | None
    source: str  # the SRC string
    fingerprint: str  # sha256 of raw content + preprocessing + split/limit/seed (cache key)
    skipped: int = 0  # unreadable files skipped

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class RawDataset:
    """Images in [0, 1] before normalisation (for training: augmentation and channel statistics)."""

    images: np.ndarray  # (N, C, H, W) float32 in [0, 1]
    labels: np.ndarray | None
    label_names: list[str] | None
    source: str
    fingerprint: str  # sha256 of raw content + input size + split/limit/seed
    skipped: int = 0

    def __len__(self) -> int:
        return int(self.images.shape[0])


def load_data(
    src: str,
    input_size,
    mean,
    std,
    *,
    split: str = "all",
    limit: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> Dataset:
    """Load SRC as model input: images resized to `input_size` (C, H, W) and normalised with mean/std.

    `split` picks "train", "val" or "all"; `limit` keeps a deterministic seeded subset of that split.
    Arrays (.npy/.npz) and `random` are taken as already preprocessed.
    """
    input_size = _check_input_size(input_size)
    mean, std = _check_stats(mean, std, input_size[0])
    source, images, labels, skipped, digest = _materialise(src, input_size, split, limit, seed, progress)
    if not source.preprocessed:
        images = normalize(images, mean, std)
    fingerprint = _fingerprint(
        digest,
        input_size=input_size,
        mean=mean,
        std=std,
        split=split,
        limit=limit,
        seed=seed,
        preprocessed=source.preprocessed,
    )
    return Dataset(images, labels, source.label_names, src, fingerprint, skipped)


def load_data_for(src: str, meta, **kw) -> Dataset:
    """load_data with input size, mean and std taken from an artifact's ArtifactMeta, and labels
    expressed in the model's class indices (see align_labels)."""
    return align_labels(load_data(src, meta.input_size, meta.mean, meta.std, **kw), meta)


def align_labels(data: Dataset, meta) -> Dataset:
    """Express a dataset's labels as the model's class indices.

    Class folders are numbered by sorted name, which is only the model's numbering when the folders are
    exactly its classes: folders `3/` and `7/` of a digits model are classes 3 and 7, not 0 and 1. So
    names are looked up in the model's labels (or read as class numbers when the model has none); when
    they cannot be matched, accuracy would be meaningless and the labels are dropped with a warning.
    """
    aligned, checked = _align_names(data, meta)
    return aligned if checked else _check_label_range(aligned, meta.num_classes)


def _check_label_range(data: Dataset, num_classes: int) -> Dataset:
    """Labels the model cannot predict (e.g. 12 for 10 classes) make accuracy silently wrong: warn with
    their count, or refuse when no label is in range (the data are not for this model)."""
    if data.labels is None or len(data.labels) == 0:
        return data
    outside = int(((data.labels < 0) | (data.labels >= num_classes)).sum())
    if outside == len(data.labels):
        low, high = int(data.labels.min()), int(data.labels.max())
        got = str(low) if low == high else f"{low} to {high}"
        raise DataError(
            f"{data.source}: all {outside} labels are outside the model's {num_classes} classes "
            f"(0-{num_classes - 1}; got {got}); "
            "these data are not labelled for this model"
        )
    if outside:
        log.warning(
            "%s: %d of %d labels are outside the model's %d classes (0-%d); they count as wrong in accuracy",
            data.source,
            outside,
            len(data.labels),
            num_classes,
            num_classes - 1,
        )
    return data


def _align_names(data: Dataset, meta) -> tuple[Dataset, bool]:
    """(data with labels as the model's class indices, whether their range was checked here)."""
    names = data.label_names
    if data.labels is None or not names:
        return data, False
    model_labels = list(meta.labels) if getattr(meta, "labels", None) else None
    if model_labels == list(names):
        return data, False
    if model_labels is not None and all(n in model_labels for n in names):
        index = [model_labels.index(n) for n in names]
    elif model_labels is None and all(n.isdigit() and int(n) < meta.num_classes for n in names):
        index = [int(n) for n in names]
    elif model_labels is None and len(names) == meta.num_classes:
        return data, False  # one folder per class, sorted: the usual ImageFolder numbering
    else:
        unknown = [n for n in names if not model_labels or n not in model_labels][:3]
        what = "labels" if model_labels else f"{meta.num_classes} classes"
        warn_once(
            ("class names", data.source, tuple(unknown), what),
            "%s: class names %s do not match the model's %s; reporting no accuracy",
            data.source,
            unknown,
            what,
        )
        return dataclasses.replace(data, labels=None, label_names=None), True
    # Labels index the source's own names; one without a name (e.g. 2 with names ['0', '1'], or -1,
    # which NumPy would read from the end) cannot be mapped and counts as wrong (-1).
    raw = np.asarray(data.labels, dtype=np.int64)
    named = (raw >= 0) & (raw < len(names))
    if not named.any():
        raise DataError(
            f"{data.source}: none of its {len(raw)} labels indexes its {len(names)} label names "
            f"(got {int(raw.min())} to {int(raw.max())}); these labels do not fit their names"
        )
    if not named.all():
        log.warning(
            "%s: %d of %d labels have no entry in its %d label names; they count as wrong in accuracy",
            data.source,
            int((~named).sum()),
            len(raw),
            len(names),
        )
    labels = np.full(len(raw), -1, dtype=np.int64)
    labels[named] = np.asarray(index, dtype=np.int64)[raw[named]]
    return dataclasses.replace(
        data, labels=labels, label_names=model_labels or [str(i) for i in range(meta.num_classes)]
    ), True


def load_raw(
    src: str, input_size, *, split: str = "all", limit: int | None = None, seed: int = 0, progress: bool = False
) -> RawDataset:
    """Load SRC as [0, 1] images (not normalised); arrays and `random` are refused (already preprocessed)."""
    input_size = _check_input_size(input_size)
    source, images, labels, skipped, digest = _materialise(src, input_size, split, limit, seed, progress)
    if source.preprocessed:
        raise DataError(
            f"{src} holds already-preprocessed arrays; this step needs raw images "
            "(digits, cifar10:DIR, cifar100:DIR, svhn:DIR or an image directory)"
        )
    fingerprint = _fingerprint(digest, input_size=input_size, split=split, limit=limit, seed=seed, raw=True)
    return RawDataset(images, labels, source.label_names, src, fingerprint, skipped)


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of (N, C, H, W) images (float64 accumulation)."""
    if images.ndim != 4 or images.shape[0] == 0:
        raise DataError(f"channel statistics need a non-empty (N, C, H, W) array, got shape {images.shape}")
    mean = images.mean(axis=(0, 2, 3), dtype=np.float64)
    std = images.std(axis=(0, 2, 3), dtype=np.float64)
    std = np.where(std < 1e-6, 1.0, std)  # a constant channel would divide by zero
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def normalize(images: np.ndarray, mean, std) -> np.ndarray:
    """(x - mean) / std per channel, as float32."""
    c = images.shape[1]
    mean, std = _check_stats(mean, std, c)
    m = np.asarray(mean, dtype=np.float32).reshape(1, c, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, c, 1, 1)
    return ((images - m) / s).astype(np.float32, copy=False)


def preprocess_image(path_or_pil, input_size, mean, std) -> np.ndarray:
    """One image file or PIL image -> (C, H, W) float32: 16-bit gray scaled to 8 bits (value >> 8),
    grayscale if C == 1 else RGB, bilinear resize, /255, (x - mean) / std. The same steps every dnx
    loader (and the C++ app) apply."""
    input_size = _check_input_size(input_size)
    if isinstance(path_or_pil, (str, os.PathLike)):
        with open_image(path_or_pil) as image:
            try:
                unit = readers.pil_to_unit(image, input_size)
            except readers.decode_errors() as exc:
                raise DataError(
                    f"{os.fspath(path_or_pil)} is not a readable image ({readers.unreadable_reason(exc)})"
                ) from exc
    else:
        unit = readers.pil_to_unit(path_or_pil, input_size)
    return normalize(unit[None], mean, std)[0]


def open_image(path):
    """The image file at `path`, opened and decoded with PIL (use it as a context manager); DataError when
    it is missing or not a readable image, so a bad path is reported before any other work."""
    Image = require("PIL.Image", purpose="reading images")
    if not os.path.isfile(path):
        raise DataError(f"{os.fspath(path)}: no such image file")
    try:
        image = Image.open(path)
        image.load()  # decode now: a truncated file fails here, not later
    except readers.decode_errors() as exc:  # also an image over PIL's pixel limit (decompression bomb)
        raise DataError(f"{os.fspath(path)} is not a readable image ({readers.unreadable_reason(exc)})") from exc
    return image


def iter_batches(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Consecutive batches of at most `batch_size` images (the last one may be smaller)."""
    if batch_size < 1:
        raise DataError(f"batch size must be >= 1, got {batch_size}")
    for start in range(0, images.shape[0], batch_size):
        yield images[start : start + batch_size]


# --- internals -----------------------------------------------------------------------------------
def open_source(
    src: str, input_size, *, limit: int | None = None, seed: int = 0, progress: bool = False
) -> readers.RawSource:
    """Parse SRC into a RawSource (nothing decoded yet for image directories)."""
    if not isinstance(src, str) or not src.strip():
        raise DataError(f"data source is empty; give one of: {'; '.join(readers.VALID_FORMS)}")
    src = src.strip()
    if src == "digits":
        return readers.read_digits(input_size)
    if src == "random":
        return readers.read_random(input_size, limit or readers.RANDOM_COUNT, seed)
    kind, sep, rest = src.partition(":")
    if sep and kind in ("cifar10", "cifar100"):
        return readers.read_cifar(kind, os.path.expanduser(rest), input_size)
    if sep and kind == "svhn":
        return readers.read_svhn(os.path.expanduser(rest), input_size)
    path = os.path.expanduser(src)
    if path.lower().endswith((".npy", ".npz")):
        if not os.path.isfile(path):
            raise DataError(f"{src}: no such file")
        return readers.read_array_file(path, input_size)
    if os.path.isdir(path):
        return readers.read_image_dir(path, input_size, progress)
    if os.path.exists(path):
        raise DataError(f"{src} is a file but not .npy/.npz; valid data sources: {'; '.join(readers.VALID_FORMS)}")
    if os.sep in src or src.startswith("."):
        raise DataError(f"{src}: no such file or directory")
    raise DataError(f"unknown data source {src!r}; valid forms: {'; '.join(readers.VALID_FORMS)}")


def select_indices(source: readers.RawSource, split: str, limit: int | None, seed: int) -> np.ndarray:
    """Indices of `split` (fixed per source), then a seeded subset of `limit` of them (kept in order)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    if split == "all":
        idx = np.arange(source.count)
    elif source.splits:
        idx = source.splits[split]
    else:
        perm = np.random.default_rng(SPLIT_SEED).permutation(source.count)
        n_val = int(round(source.count * readers.VAL_FRACTION))
        if source.count > 1:
            n_val = min(max(n_val, 1), source.count - 1)
        idx = np.sort(perm[:n_val] if split == "val" else perm[n_val:])
    if limit is not None:
        if limit < 1:
            raise DataError(f"limit must be >= 1, got {limit}")
        if limit < len(idx):
            idx = np.sort(np.random.default_rng(seed).choice(idx, size=limit, replace=False))
    if len(idx) == 0:
        raise DataError(f"split {split!r} of this source holds no images")
    return idx


# Sources that define their own held-out split (also kept out of calibration, which reads "train").
HELD_OUT_SOURCES = ("digits", "cifar10", "cifar100", "svhn")


def held_out_split(data: str | None) -> str:
    """The split checks run on: "val" for sources that define a held-out split (digits, cifar10:,
    cifar100:, svhn:, an image directory with train/ and val/), else "all" (.npy/.npz, a plain image
    directory, random: their 80/20 split is only a fixed permutation, and 20 % of a small set is little).
    `dnx verify`, `dnx bench --data` and the OpenVINO pre-write check all use this rule."""
    if not data:
        return "all"
    if data.split(":")[0] in HELD_OUT_SOURCES or _split_folders(os.path.expanduser(data)):
        return "val"
    return "all"


def _split_folders(src) -> dict | None:
    """{"train": DIR/train, "val": DIR/val} for an image folder laid out that way (the layout `dnx train
    --dataset imagefolder` reads), so that its own split is used instead of a seeded 80/20 of both."""
    if not isinstance(src, str) or not os.path.isdir(src):
        return None
    folders = {split: os.path.join(src, split) for split in ("train", "val")}
    return folders if all(os.path.isdir(f) for f in folders.values()) else None


def remap_labels(
    labels: np.ndarray | None, names: list[str] | None, to_names: list[str] | None, source: str
) -> np.ndarray | None:
    """Labels that index `names` (a held-out split's own class folders, sorted) re-expressed as indices
    into `to_names` (the training split's classes), matched by name: val/ holding only `dog` must label
    it with train's `dog` index, not 0. A held-out class that training never saw is a DataError."""
    if labels is None or not names or not to_names or list(names) == list(to_names):
        return labels
    used = [names[i] for i in np.unique(labels) if 0 <= i < len(names)]
    unknown = [n for n in used if n not in to_names]
    if unknown:
        raise DataError(
            f"{source}: class folder(s) {', '.join(unknown)} are not among the training split's "
            f"classes ({', '.join(to_names)}); held-out classes must also be in train/"
        )
    index = np.asarray([to_names.index(n) if n in to_names else -1 for n in names], dtype=np.int64)
    return index[np.asarray(labels, dtype=np.int64)]


def _train_names(folders: dict, input_size) -> list[str] | None:
    """The class folder names of a split layout's train/ (listing only, nothing decoded)."""
    return open_source(folders["train"], input_size).label_names


def _materialise(src, input_size, split, limit, seed, progress):
    folders = _split_folders(src)
    if folders and split == "train":
        return _materialise(folders[split], input_size, "all", limit, seed, progress)
    if folders and split == "val":  # val/ takes train/'s class indices by name
        source, images, labels, skipped, digest = _materialise(folders[split], input_size, "all", limit, seed, progress)
        names = _train_names(folders, input_size)
        if labels is not None and names:
            labels = remap_labels(labels, source.label_names, names, folders["val"])
            source = dataclasses.replace(source, label_names=list(names))
        return source, images, labels, skipped, digest
    if folders:  # "all": both halves, val/ numbered by train/'s class names
        parts = [_materialise(folders[s], input_size, "all", None, seed, progress) for s in ("train", "val")]
        if (parts[0][2] is None) != (parts[1][2] is None):
            raise DataError(f"{src}: only one of train/ and val/ has class folders; give both or neither")
        images = np.concatenate([p[1] for p in parts])
        labels = None
        if parts[0][2] is not None:
            val_labels = remap_labels(parts[1][2], parts[1][0].label_names, parts[0][0].label_names, folders["val"])
            labels = np.concatenate([parts[0][2], val_labels])
        if limit is not None and limit < len(images):
            keep = np.sort(np.random.default_rng(seed).permutation(len(images))[:limit])
            images, labels = images[keep], (labels[keep] if labels is not None else None)
        return parts[0][0], images, labels, parts[0][3] + parts[1][3], parts[0][4] + parts[1][4]
    source = open_source(src, input_size, limit=limit, seed=seed, progress=progress)
    idx = select_indices(source, split, limit, seed)
    images, skipped, content_digest = source.fetch(idx)
    labels = source.labels[idx] if source.labels is not None else None
    if skipped:
        keep = np.isfinite(images).reshape(len(images), -1).all(axis=1)
        images = images[keep]
        labels = labels[keep] if labels is not None else None
        log.warning("%s: skipped %d unreadable file(s)", src, skipped)
    return source, np.ascontiguousarray(images, dtype=np.float32), labels, skipped, source.digest + content_digest


def _fingerprint(digest: str, **params) -> str:
    doc = json.dumps(
        {"content": digest, **{k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}}, sort_keys=True
    )
    return hashlib.sha256(doc.encode()).hexdigest()


def _check_input_size(input_size) -> tuple[int, int, int]:
    try:
        size = tuple(int(v) for v in input_size)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise DataError(f"input size must be (C, H, W) with positive entries, got {input_size!r}")
    return size


def _check_stats(mean, std, channels: int):
    mean = tuple(float(m) for m in np.atleast_1d(mean))
    std = tuple(float(s) for s in np.atleast_1d(std))
    if len(mean) == 1:
        mean = mean * channels
    if len(std) == 1:
        std = std * channels
    if len(mean) != channels or len(std) != channels:
        raise DataError(f"mean/std have {len(mean)}/{len(std)} values; the input has {channels} channel(s)")
    if min(std) <= 0:
        raise DataError(f"std must be positive, got {std}")
    return mean, std


__all__ = [
    "Dataset",
    "RawDataset",
    "load_data",
    "load_data_for",
    "load_raw",
    "channel_stats",
    "normalize",
    "preprocess_image",
    "iter_batches",
    "open_source",
    "select_indices",
    "remap_labels",
    "SPLITS",
]
