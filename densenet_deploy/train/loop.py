"""Train a zoo model with the paper's recipe; every epoch writes a checkpoint that --resume continues exactly.

Determinism on the CPU: the model is initialised after torch.manual_seed(seed); shuffling and
augmentation draw from a seeded torch.Generator; dropout draws from the global generator. Both
generator states go into every checkpoint, so a resumed run replays the same random numbers.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from densenet_deploy.core.errors import CheckpointError, DnxError
from densenet_deploy.core.io import atomic_output, check_output_path
from densenet_deploy.data.loading import channel_stats, load_raw, normalize, remap_labels
from densenet_deploy.models import build_model
from densenet_deploy.models.checkpoint import (
    extract_state_dict,
    is_dnx_checkpoint,
    load_state_dict_strict,
    read_checkpoint,
    save_checkpoint,
)
from densenet_deploy.models.counting import count_params
from densenet_deploy.train.recipe import DATASETS, Recipe, TrainOptions, base_dataset, lr_at, merge_resume, resolve

log = logging.getLogger(__name__)

PAD = 4  # the "standard augmentation": translate by up to 4 pixels (zero padding), mirror at random


@dataclass
class TrainResult:
    output: str
    epochs: int
    val_accuracy: float | None
    history: list[dict]
    model: str
    params: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    input_size: tuple[int, int, int] = ()
    labels: list[str] | None = None
    recipe: dict = field(default_factory=dict)
    seconds: float = 0.0
    trained_now: int = 0  # epochs this call trained (0: a finished checkpoint resumed, nothing to do)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def digits_preset(output: str, **overrides) -> TrainOptions:
    """The small DenseNet-BC on scikit-learn's digits that the demo and the test fixtures train.

    Chosen by measurement (see docs/train.md): about 20 s on 2 CPU cores, >= 97% on the
    held-out digits split. The lr steps are compressed into the few epochs. One thread: this model is too
    small to gain from two, and two threads slow down ten-fold when other processes share the cores.
    """
    values = dict(
        model="densenet_bc22_k8",
        dataset="digits",
        output=output,
        epochs=8,
        batch_size=32,
        lr=0.1,
        milestones=(5, 7),
        dropout=0.0,
        input_size=16,
        in_channels=1,
        seed=0,
        threads=1,
    )
    values.update({k: v for k, v in overrides.items() if v is not None})  # None keeps the preset's value
    return TrainOptions(**values)


def train(options: TrainOptions, progress: bool = False) -> TrainResult:
    """Train (or resume) as `options` say and return the per-epoch history; writes options.output each epoch."""
    import torch

    started = time.perf_counter()
    saved = _read_resume(options.resume) if options.resume else None
    if saved and options.epochs is not None and options.epochs <= int(saved["epoch"]):
        raise DnxError(
            f"{options.resume} already has {int(saved['epoch'])} epochs; --epochs is the total to "
            f"train to, so it must be larger than {int(saved['epoch'])} (got {options.epochs})"
        )
    recipe = merge_resume(options, Recipe.from_dict(saved["extra"]["recipe"])) if saved else resolve(options)
    output = check_output_path(options.output or options.resume or "")
    threads_before = torch.get_num_threads()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    # CPU kernels split work by thread count, so the last bits of a result depend on it: a resumed run
    # uses the thread count it was trained with unless told otherwise.
    saved_threads = saved["extra"].get("threads") if saved else None
    threads = options.threads or saved_threads
    if saved and options.threads and saved_threads and int(options.threads) != int(saved_threads):
        log.warning(
            "resuming with --threads %d, the checkpoint trained with %d: the run stays correct but is "
            "no longer bit-exact with an uninterrupted one",
            options.threads,
            saved_threads,
        )
    if threads:
        torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        return _run(recipe, saved, output, progress, started, options.eval_batch_size)
    finally:
        torch.set_num_threads(threads_before)
        torch.use_deterministic_algorithms(deterministic_before)


def _run(
    recipe: Recipe, saved: dict | None, output: str, progress: bool, started: float, eval_batch_size: int
) -> TrainResult:
    import torch
    from tqdm import tqdm

    data = prepare_data(recipe, saved)
    torch.manual_seed(recipe.seed)
    model = build_model(
        recipe.model, num_classes=data.num_classes, in_channels=recipe.in_channels, drop_rate=recipe.dropout
    )
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        dampening=0,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )
    generator = torch.Generator().manual_seed(recipe.seed)
    history, start = [], 0
    if saved:
        load_state_dict_strict(model, extract_state_dict(saved, "resume checkpoint"), "resume checkpoint")
        optimizer.load_state_dict(saved["optimizer"])
        rng = saved["extra"]["rng"]
        torch.set_rng_state(rng["torch"])
        generator.set_state(rng["generator"])
        history, start = list(saved.get("history") or []), int(saved["epoch"])
        if start >= recipe.epochs:  # only without --epochs (train() refuses a smaller one): a finished run
            log.warning("checkpoint already holds %d epochs (its recipe's %d); nothing to train", start, recipe.epochs)
    params = count_params(model)
    x_train = torch.from_numpy(data.train_images)
    y_train = torch.from_numpy(data.train_labels)
    for epoch in range(start, recipe.epochs):
        t0 = time.perf_counter()
        lr = lr_at(recipe, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        bar = tqdm(
            total=len(x_train),
            desc=f"epoch {epoch + 1}/{recipe.epochs}",
            unit="img",
            disable=not progress,
            dynamic_ncols=True,
        )
        loss, acc = _train_epoch(model, optimizer, x_train, y_train, recipe, generator, bar)
        if _diverged(loss) or not _finite_weights(model):
            bar.close()
            kept = (
                f"{output} keeps epoch {epoch}, the last good one"
                if epoch > start or (saved and os.path.abspath(output) == saved["_path"])
                else "nothing written"
            )
            what = "non-finite" if not math.isfinite(loss) else f"{loss:.3g}"
            raise DnxError(
                f"training diverged: the loss became {what} in epoch {epoch + 1} at lr {lr:g}; "
                f"{kept}. Try a lower --lr (e.g. {recipe.lr / 10:g})"
            )
        val = evaluate(model, data.val_images, data.val_labels, eval_batch_size)
        # The finished bar stays on screen as the epoch's record, validation accuracy included.
        bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.4f}", val_acc="n/a" if val is None else f"{val:.4f}")
        bar.close()
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": round(loss, 6),
                "train_accuracy": round(acc, 6),
                "val_accuracy": None if val is None else round(val, 6),
                "lr": lr,
                "seconds": round(time.perf_counter() - t0, 3),
            }
        )
        log.info(
            "epoch %d/%d: loss %.4f train acc %.4f val acc %s lr %g",
            epoch + 1,
            recipe.epochs,
            loss,
            acc,
            "n/a" if val is None else f"{val:.4f}",
            lr,
        )
        save_checkpoint(
            output,
            model,
            epoch=epoch + 1,
            optimizer_state=optimizer.state_dict(),
            scheduler_state={
                "type": "multistep",
                "milestones": list(recipe.milestones),
                "gamma": 0.1,
                "base_lr": recipe.lr,
                "last_epoch": epoch + 1,
            },
            mean=data.mean,
            std=data.std,
            input_size=data.input_size,
            labels=data.label_names,
            history=history,
            extra={
                "recipe": recipe.as_dict(),
                "data_fingerprint": data.fingerprint,
                "threads": torch.get_num_threads(),
                "rng": {"torch": torch.get_rng_state(), "generator": generator.get_state()},
            },
        )
    if saved and start >= recipe.epochs and os.path.abspath(output) != saved["_path"]:
        _copy_checkpoint(saved, output)
    last = history[-1]["val_accuracy"] if history else None
    return TrainResult(
        output=output,
        epochs=max(recipe.epochs, start),
        val_accuracy=last,
        history=history,
        model=recipe.model,
        params=params,
        mean=data.mean,
        std=data.std,
        input_size=data.input_size,
        labels=data.label_names,
        recipe=recipe.as_dict(),
        seconds=round(time.perf_counter() - started, 3),
        trained_now=max(recipe.epochs - start, 0),
    )


def _train_epoch(model, optimizer, x, y, recipe: Recipe, generator, bar):
    import torch
    import torch.nn.functional as F

    model.train()
    n = x.shape[0]
    order = torch.randperm(n, generator=generator)
    # A final batch of one image would break batch norm; fold it into the previous batch instead.
    starts = list(range(0, n, recipe.batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    total_loss, correct, seen = 0.0, 0, 0
    for i, s in enumerate(starts):
        e = starts[i + 1] if i + 1 < len(starts) else n
        idx = order[s:e]
        xb, yb = x[idx], y[idx]
        if recipe.augment:
            xb = augment(xb, generator)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        step_loss = float(loss.detach())
        if _diverged(step_loss):  # stop before the step spreads NaN (or worse) into the weights
            return step_loss, correct / max(seen, 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += step_loss * len(idx)
        correct += int((logits.detach().argmax(1) == yb).sum())
        seen += len(idx)
        bar.update(len(idx))
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}")
    return total_loss / max(seen, 1), correct / max(seen, 1)


# A cross-entropy this large means logits ~10,000 apart: the weights have blown up (chance level is ln C,
# about 2.3 for 10 classes, 6.9 for 1000), and NaN follows within steps, or batch norm hides it as huge losses.
DIVERGED_LOSS = 1e4


def _diverged(loss: float) -> bool:
    return not math.isfinite(loss) or loss > DIVERGED_LOSS


def _finite_weights(model) -> bool:
    """Whether every parameter and buffer is finite (an overflowing step can leave NaN behind)."""
    import torch

    return all(
        bool(torch.isfinite(t).all()) for t in list(model.parameters()) + list(model.buffers()) if t.is_floating_point()
    )


def augment(batch, generator):
    """Random translation by up to PAD pixels (zero padding of the normalised image) and horizontal mirroring."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = batch.shape
    padded = F.pad(batch, (PAD, PAD, PAD, PAD))
    dx = torch.randint(0, 2 * PAD + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * PAD + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.empty_like(batch)
    for i in range(n):
        crop = padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def evaluate(model, images: np.ndarray | None, labels: np.ndarray | None, batch_size: int = 256) -> float | None:
    """Top-1 accuracy of `model` (eval mode) on preprocessed images; None without labels."""
    import torch

    if images is None or labels is None or len(images) == 0:
        return None
    model.eval()
    correct = 0
    with torch.inference_mode():
        for s in range(0, len(images), batch_size):
            logits = model(torch.from_numpy(images[s : s + batch_size]))
            correct += int((logits.argmax(1).numpy() == labels[s : s + batch_size]).sum())
    return correct / len(images)


# --- data ------------------------------------------------------------------------------------------
@dataclass
class TrainData:
    train_images: np.ndarray  # normalised
    train_labels: np.ndarray
    val_images: np.ndarray | None
    val_labels: np.ndarray | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int, int]
    label_names: list[str]
    num_classes: int
    fingerprint: str


def data_sources(recipe: Recipe) -> tuple[str, str, str, str]:
    """(train SRC, train split, val SRC, val split) for the recipe's dataset."""
    base = base_dataset(recipe.dataset)
    if base == "digits":
        return "digits", "train", "digits", "val"
    if base in ("cifar10", "cifar100", "svhn"):
        src = f"{base}:{recipe.data_dir}"
        return src, "train", src, "val"
    train_dir, val_dir = os.path.join(recipe.data_dir, "train"), os.path.join(recipe.data_dir, "val")
    if os.path.isdir(train_dir) and os.path.isdir(val_dir):  # ImageNet-style train/ and val/ folders
        return train_dir, "all", val_dir, "all"
    return recipe.data_dir, "train", recipe.data_dir, "val"


def prepare_data(recipe: Recipe, saved: dict | None = None) -> TrainData:
    """Load train/val images, normalise both with the training split's per-channel statistics (SVHN: none
    beyond /255, as in the paper)."""
    size = (recipe.in_channels, recipe.input_size, recipe.input_size)
    train_src, train_split, val_src, val_split = data_sources(recipe)
    train = load_raw(train_src, size, split=train_split, limit=recipe.limit, seed=recipe.seed)
    if train.labels is None:
        raise DnxError(f"{train_src}: training needs labels (class subfolders), found loose images only")
    val = load_raw(val_src, size, split=val_split, limit=recipe.val_limit, seed=recipe.seed)
    # val/ numbers its own class folders; express them as the training split's class indices by name.
    val = dataclasses.replace(
        val,
        labels=remap_labels(val.labels, val.label_names, train.label_names, val_src),
        label_names=train.label_names if val.labels is not None else val.label_names,
    )
    if saved:  # exact continuation needs the exact normalisation (and ideally the same data)
        mean, std = tuple(saved["mean"]), tuple(saved["std"])
        if saved["extra"].get("data_fingerprint") != train.fingerprint:
            log.warning("the training data differ from the checkpoint's; the resumed run will not be exact")
    elif base_dataset(recipe.dataset) == "svhn":  # Section 4.2: SVHN pixels are only divided by 255
        mean, std = (0.0,) * recipe.in_channels, (1.0,) * recipe.in_channels
    else:
        mean, std = channel_stats(train.images)
    names = train.label_names or [str(i) for i in range(int(train.labels.max()) + 1)]
    num_classes = max(len(names), int(train.labels.max()) + 1)
    return TrainData(
        normalize(train.images, mean, std),
        train.labels,
        normalize(val.images, mean, std),
        val.labels,
        mean,
        std,
        size,
        list(names),
        num_classes,
        train.fingerprint,
    )


# --- checkpoints -----------------------------------------------------------------------------------
def _read_resume(path: str) -> dict:
    obj = read_checkpoint(path)
    extra = obj.get("extra") or {}
    if not is_dnx_checkpoint(obj) or "recipe" not in extra or "rng" not in extra or not obj.get("optimizer"):
        raise CheckpointError(
            f"{path} is not a `dnx train` checkpoint (no recipe/optimizer/RNG state); "
            "--resume needs a checkpoint written by dnx train"
        )
    obj["_path"] = os.path.abspath(path)
    return obj


def _copy_checkpoint(saved: dict, output: str) -> None:
    import shutil

    with atomic_output(output, suffix=".pt") as tmp:
        shutil.copyfile(saved["_path"], tmp)


__all__ = ["TrainOptions", "TrainResult", "train", "digits_preset", "evaluate", "augment", "prepare_data", "DATASETS"]
