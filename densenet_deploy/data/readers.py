"""Readers for each data source form; each returns a RawSource that data.py splits, subsets and normalises.

Readers yield images scaled to [0, 1] at the requested (C, H, W), except array files, which hold
already-preprocessed tensors and are passed through untouched (``preprocessed=True``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from densenet_deploy.core.deps import require
from densenet_deploy.core.errors import DataError
from densenet_deploy.core.log import warn_once

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm")
VALID_FORMS = (
    "a directory of images (class subfolders give labels)",
    "FILE.npy",
    "FILE.npz",
    "digits",
    "cifar10:DIR",
    "cifar100:DIR",
    "svhn:DIR",
    "random",
)


@dataclass
class RawSource:
    """A source before split/limit: `fetch(indices)` returns (images, skipped, content_digest) for the
    chosen items; content_digest is "" unless the bytes are only read at fetch time (image files)."""

    count: int
    labels: np.ndarray | None
    label_names: list[str] | None
    fetch: Callable[[np.ndarray], tuple[np.ndarray, int, str]]
    digest: str  # sha256 of the raw content (files or arrays) this source reads
    preprocessed: bool = False  # arrays: already normalised model input, not [0, 1] images
    # Index subsets for sources whose split is fixed (files per split, or the digits split).
    splits: dict[str, np.ndarray] = field(default_factory=dict)


# --- resizing ------------------------------------------------------------------------------------
def resize_unit(images: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear-resize (N, C, h, w) float images to (N, C, H, W) with PIL (same filter as image files)."""
    h, w = hw
    if images.shape[2:] == (h, w):
        return images.astype(np.float32, copy=False)

    Image = require("PIL.Image", purpose="resizing images")
    out = np.empty(images.shape[:2] + (h, w), dtype=np.float32)
    for n in range(images.shape[0]):
        for c in range(images.shape[1]):
            plane = Image.fromarray(np.ascontiguousarray(images[n, c], dtype=np.float32), mode="F")
            out[n, c] = np.asarray(plane.resize((w, h), Image.BILINEAR), dtype=np.float32)
    return out


# PIL modes of 16-bit grayscale files: "I;16" (16-bit PNG), "I" (16-bit PGM), and the byte-order variants.
SIXTEEN_BIT_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def decode_errors() -> tuple[type[BaseException], ...]:
    """What PIL raises for a file it cannot or will not decode: corrupt or truncated data, an unknown
    format, or more pixels than its decompression-bomb guard allows (Image.MAX_IMAGE_PIXELS, which dnx
    leaves as it is)."""
    from PIL import Image, UnidentifiedImageError

    return (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def unreadable_reason(exc: BaseException) -> str:
    """Why an image is unreadable, for a warning or an error (`exc` is one of decode_errors())."""
    from PIL import Image

    if isinstance(exc, Image.DecompressionBombError):
        return f"too many pixels for PIL's limit: {exc}"
    return str(exc)


def to_8bit(image):
    """16-bit grayscale images scaled to 8 bits as stb_image (dnx-infer) and PIL's own 16-bit RGB decoding
    do: the high byte, value >> 8. PIL's convert("L") would saturate them at 255 instead. Other images
    are returned as they are (PIL already gives 16-bit RGB and gray+alpha PNGs as 8-bit RGB/RGBA)."""
    if image.mode not in SIXTEEN_BIT_GRAY_MODES:
        return image
    from PIL import Image

    values = np.clip(np.asarray(image).astype(np.int64), 0, 65535) >> 8
    return Image.fromarray(values.astype(np.uint8))


def pil_to_unit(image, input_size) -> np.ndarray:
    """A PIL image -> (C, H, W) float32 in [0, 1]: 16-bit gray scaled to 8 bits (value >> 8), grayscale if
    C == 1 else RGB, bilinear resize to (W, H)."""
    Image = require("PIL.Image", purpose="reading images")
    c, h, w = input_size
    if c not in (1, 3):
        raise DataError(f"images can feed 1 (grayscale) or 3 (RGB) channels, the model expects {c}")
    image = to_8bit(image).convert("L" if c == 1 else "RGB")
    if image.size != (w, h):
        image = image.resize((w, h), Image.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array[None] if c == 1 else array.transpose(2, 0, 1)


# --- digits ---------------------------------------------------------------------------------------
DIGITS_SPLIT_SEED = 0  # fixed, so "val" is the same held-out set for train, calibrate and verify
VAL_FRACTION = 0.2


def read_digits(input_size) -> RawSource:
    datasets = require("sklearn.datasets", purpose="the built-in digits data")
    bunch = datasets.load_digits()
    raw = bunch.images.astype(np.float32)  # (N, 8, 8), values 0..16
    labels = bunch.target.astype(np.int64)
    c, h, w = input_size

    def fetch(idx):
        unit = resize_unit(raw[idx][:, None] / 16.0, (h, w))
        return np.clip(np.repeat(unit, c, axis=1), 0.0, 1.0), 0, ""

    digest = hashlib.sha256(raw.tobytes() + labels.tobytes()).hexdigest()
    perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(raw))
    n_val = int(round(len(raw) * VAL_FRACTION))
    splits = {"val": np.sort(perm[:n_val]), "train": np.sort(perm[n_val:])}
    return RawSource(len(raw), labels, [str(i) for i in range(10)], fetch, digest, splits=splits)


# --- arrays ---------------------------------------------------------------------------------------
def read_array_file(path: str, input_size) -> RawSource:
    labels = None
    label_names = None
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # bad magic, truncated file, pickled objects
        raise DataError(f"{path} is not a readable numpy file ({type(exc).__name__}: {exc})") from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            key = next((k for k in ("images", "x") if k in keys), None)
            if key is None:
                raise DataError(
                    f"{path} has arrays {keys}; expected one named 'images' or 'x' (and optionally 'labels' or 'y')"
                )
            images = loaded[key]
            lkey = next((k for k in ("labels", "y") if k in keys), None)
            if lkey is not None:
                labels = loaded[lkey]
            if "label_names" in keys:
                label_names = [str(s) for s in loaded["label_names"].tolist()]
    else:
        images = loaded
    images = check_array(images, input_size, path)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != images.shape[0] or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(
                f"{path}: labels must be {images.shape[0]} integers (one per image), "
                f"got shape {labels.shape} dtype {labels.dtype}"
            )
        labels = labels.astype(np.int64)
    digest = hashlib.sha256(images.tobytes() + (labels.tobytes() if labels is not None else b"")).hexdigest()
    return RawSource(len(images), labels, label_names, lambda idx: (images[idx], 0, ""), digest, preprocessed=True)


def check_array(images, input_size, source: str) -> np.ndarray:
    images = np.asarray(images)
    c, h, w = input_size
    if images.ndim != 4:
        raise DataError(
            f"{source}: array has shape {images.shape} (rank {images.ndim}); expected "
            f"(N, {c}, {h}, {w}) float32, already preprocessed"
        )
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(
            f"{source}: array dtype is {images.dtype}; expected float32 already normalised "
            "with the model's mean/std (convert it, or pass a directory of images instead)"
        )
    if images.shape[1] != c:
        raise DataError(
            f"{source}: array has {images.shape[1]} channels, the model expects {c} "
            f"(shape {images.shape}, expected (N, {c}, {h}, {w}))"
        )
    if tuple(images.shape[2:]) != (h, w):
        raise DataError(
            f"{source}: array images are {images.shape[2]}x{images.shape[3]}, the model expects "
            f"{h}x{w} (shape {images.shape}, expected (N, {c}, {h}, {w}))"
        )
    if images.shape[0] == 0:
        raise DataError(f"{source}: array holds no images (shape {images.shape})")
    bad = int(np.size(images) - np.count_nonzero(np.isfinite(images)))
    if bad:
        raise DataError(f"{source}: array holds {bad} NaN/inf values; clean the data first")
    return images.astype(np.float32, copy=False)


# --- image directories ----------------------------------------------------------------------------
def read_image_dir(path: str, input_size, progress: bool = False) -> RawSource:
    require("PIL.Image", purpose="reading image directories")
    entries = sorted(os.listdir(path))
    class_dirs = [e for e in entries if os.path.isdir(os.path.join(path, e)) and not e.startswith(".")]
    files, labels, ignored = [], [], 0
    if class_dirs:
        loose = [e for e in entries if _is_image(e) and os.path.isfile(os.path.join(path, e))]
        if loose:
            log.warning("%s: %d image(s) beside class subfolders are ignored", path, len(loose))
        for label, name in enumerate(class_dirs):
            for root, dirs, names in os.walk(os.path.join(path, name)):
                dirs.sort()
                for f in sorted(names):
                    if _is_image(f):
                        files.append(os.path.join(root, f))
                        labels.append(label)
                    else:
                        ignored += 1
        label_array, label_names = np.asarray(labels, dtype=np.int64), class_dirs
    else:
        for f in entries:
            if _is_image(f):
                files.append(os.path.join(path, f))
            else:
                ignored += 1
        label_array, label_names = None, None
    if not files:
        raise DataError(
            f"{path} contains no image files ({', '.join(IMAGE_EXTENSIONS)}); {ignored} other file(s) ignored"
        )
    digest = hashlib.sha256("\n".join(os.path.relpath(f, path) for f in files).encode()).hexdigest()

    def fetch(idx):
        return _read_images([files[i] for i in idx], input_size, progress, path)

    return RawSource(len(files), label_array, label_names, fetch, digest)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _read_images(paths, input_size, progress, source):
    """Read and decode; unreadable files become NaN rows that data.py drops (and counts as skipped)."""
    import io

    from PIL import Image
    from tqdm import tqdm

    out = np.empty((len(paths),) + tuple(input_size), dtype=np.float32)
    skipped, digest = 0, hashlib.sha256()
    for i, p in enumerate(tqdm(paths, desc="reading images", disable=not progress, leave=False)):
        try:
            with open(p, "rb") as fh:
                content = fh.read()
            digest.update(hashlib.sha256(content).digest())
            with Image.open(io.BytesIO(content)) as image:
                out[i] = pil_to_unit(image, input_size)
        except decode_errors() as exc:
            log.warning("skipping unreadable image %s (%s)", p, unreadable_reason(exc))
            out[i] = np.nan
            skipped += 1
    if skipped == len(paths):
        raise DataError(f"{source}: none of the {len(paths)} image files could be read ({skipped} skipped)")
    return out, skipped, digest.hexdigest()


# --- CIFAR (python pickle batches) ----------------------------------------------------------------
class _ArrayOnlyUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles; allow only what they contain (numpy arrays) so a file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        # Python 3 writes bytes as _codecs.encode(text, "latin1") at pickle protocol 2: harmless
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _load_pickle(path: str) -> dict:
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file (expected the CIFAR python-pickle batches in this directory)")
    try:
        with open(path, "rb") as fh:
            obj = _ArrayOnlyUnpickler(fh, encoding="bytes").load()
    except Exception as exc:  # truncated, not a pickle, or a disallowed global
        raise DataError(f"{path} is not a readable CIFAR pickle batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, expected a dict with b'data' and labels")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _cifar_dir(path: str, inner: str, marker: str) -> str:
    if not os.path.isdir(path):
        raise DataError(f"{path}: no such directory (expected the extracted CIFAR python batches)")
    if not os.path.exists(os.path.join(path, marker)) and os.path.isdir(os.path.join(path, inner)):
        return os.path.join(path, inner)
    return path


def read_cifar(kind: str, path: str, input_size) -> RawSource:
    if kind == "cifar10":
        root = _cifar_dir(path, "cifar-10-batches-py", "batches.meta")
        parts = {"train": [f"data_batch_{i}" for i in range(1, 6)], "val": ["test_batch"]}
        meta_file, names_key, label_key = "batches.meta", "label_names", "labels"
    else:
        root = _cifar_dir(path, "cifar-100-python", "meta")
        parts = {"train": ["train"], "val": ["test"]}
        meta_file, names_key, label_key = "meta", "fine_label_names", "fine_labels"
    chunks, labels, splits, digest = [], [], {}, hashlib.sha256()
    start = 0
    for split, names in parts.items():
        for name in names:
            file = os.path.join(root, name)
            batch = _load_pickle(file)
            data, lab = batch.get("data"), batch.get(label_key)
            if data is None or lab is None:
                raise DataError(f"{file}: CIFAR batch lacks b'data' or b'{label_key}' (keys: {sorted(batch)})")
            data = np.asarray(data)
            if data.ndim != 2 or data.shape[1] != 3072 or len(lab) != data.shape[0]:
                raise DataError(
                    f"{file}: b'data' has shape {data.shape} with {len(lab)} labels; expected "
                    "(N, 3072) uint8 and N labels"
                )
            digest.update(data.tobytes())
            chunks.append(data.astype(np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(lab, dtype=np.int64))
        count = sum(len(x) for x in labels)
        splits[split] = np.arange(start, count)
        start = count
    label_names = None
    meta_path = os.path.join(root, meta_file)
    if os.path.isfile(meta_path):
        names = _load_pickle(meta_path).get(names_key)
        if names:
            label_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    images = np.concatenate(chunks)
    return _uint8_source(images, np.concatenate(labels), label_names, input_size, digest.hexdigest(), splits, kind)


def _uint8_source(images, labels, label_names, input_size, digest, splits, kind) -> RawSource:
    c, h, w = input_size
    if c != images.shape[1]:
        raise DataError(
            f"{kind} images have {images.shape[1]} channels, the model expects {c}; "
            f"use a model with in_channels={images.shape[1]}"
        )

    def fetch(idx):
        return resize_unit(images[idx].astype(np.float32) / 255.0, (h, w)), 0, ""

    return RawSource(len(images), labels, label_names, fetch, digest, splits=splits)


# --- SVHN (.mat) ----------------------------------------------------------------------------------
SVHN_HELD_OUT = 6000  # Section 4.2: 6,000 training images held out for validation


def read_svhn(path: str, input_size) -> RawSource:
    """SVHN format 2 as the paper uses it: train_32x32.mat + extra_32x32.mat are the training set, and
    6,000 images of train_32x32.mat (a fixed permutation; 20 % of a file under 30,000 images) are held
    out as the "val" split. test_32x32.mat is not read (it is the test set, not validation)."""
    sio = require("scipy.io", purpose="reading SVHN .mat files")
    if not os.path.isdir(path):
        raise DataError(f"{path}: no such directory (expected train_32x32.mat and extra_32x32.mat)")
    chunks, labels, digest = [], [], hashlib.sha256()
    for name in ("train_32x32.mat", "extra_32x32.mat"):
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            if name == "train_32x32.mat":
                raise DataError(f"{file}: no such file (expected the SVHN format-2 .mat files in {path})")
            log.warning("%s: no such file; training on train_32x32.mat only (the paper adds the extra set)", file)
            continue
        try:
            mat = sio.loadmat(file)
        except Exception as exc:
            raise DataError(f"{file} is not a readable .mat file ({type(exc).__name__}: {exc})") from exc
        x, y = mat.get("X"), mat.get("y")
        if x is None or y is None or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.size != x.shape[3]:
            raise DataError(f"{file}: expected X of shape (32, 32, 3, N) and y of N labels")
        digest.update(np.ascontiguousarray(x).tobytes())
        chunks.append(np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8))
        lab = y.reshape(-1).astype(np.int64)
        labels.append(np.where(lab == 10, 0, lab))  # SVHN stores digit 0 as label 10
    n_train, total = len(labels[0]), sum(len(lab) for lab in labels)
    n_val = SVHN_HELD_OUT if n_train >= 5 * SVHN_HELD_OUT else int(round(n_train * VAL_FRACTION))
    n_val = min(max(n_val, 1), n_train - 1) if n_train > 1 else 0
    perm = np.random.default_rng(0).permutation(n_train)
    splits = {"val": np.sort(perm[:n_val]), "train": np.concatenate([np.sort(perm[n_val:]), np.arange(n_train, total)])}
    return _uint8_source(
        np.concatenate(chunks),
        np.concatenate(labels),
        [str(i) for i in range(10)],
        input_size,
        digest.hexdigest(),
        splits,
        "svhn",
    )


# --- random ---------------------------------------------------------------------------------------
RANDOM_COUNT = 64


def read_random(input_size, count: int, seed: int) -> RawSource:
    # calibration and the parity check after it both read it in one command: said once
    warn_once(
        ("data random",), "data 'random': seeded noise proves little about accuracy; use real images for a real check"
    )
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((count,) + tuple(input_size), dtype=np.float32)
    digest = hashlib.sha256(f"random:{count}:{seed}".encode()).hexdigest()
    # Noise has no held-out part: every split is the whole draw, so `limit` images come back for any split.
    whole = np.arange(count)
    return RawSource(
        count,
        None,
        None,
        lambda idx: (images[idx], 0, ""),
        digest,
        preprocessed=True,
        splits={"train": whole, "val": whole},
    )
