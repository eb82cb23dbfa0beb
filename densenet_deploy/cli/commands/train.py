"""`dnx train MODEL --dataset NAME -o CKPT`: the paper's training recipe, resumable checkpoints every epoch."""

import click

from densenet_deploy.cli.options import json_option, progress_enabled
from densenet_deploy.cli.output import emit
from densenet_deploy.core.errors import DnxError
from densenet_deploy.train.loop import TrainOptions, train

DATASET_CHOICES = ("digits", "cifar10", "cifar10+", "cifar100", "cifar100+", "svhn", "imagefolder")


def _milestones(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated epochs such as 150,225, got {value!r}") from None


@click.command("train")
@click.argument("model", required=False)
@click.option(
    "--dataset",
    type=click.Choice(DATASET_CHOICES, case_sensitive=False),
    help="digits (built in), cifar10/cifar100 (+ = augmented), svhn, imagefolder.",
)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Directory with the dataset's files.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Checkpoint written after every epoch (default with --resume: the resumed file).",
)
@click.option("--epochs", type=click.IntRange(1), help="Default: CIFAR 300, SVHN 40, ImageNet-style 90, digits 30.")
@click.option("--batch-size", type=click.IntRange(2), help="Default: 64 (ImageNet-style 256).")
@click.option("--lr", type=click.FloatRange(0, min_open=True), help="Initial learning rate (default 0.1).")
@click.option(
    "--milestones",
    callback=_milestones,
    help="Comma-separated epochs where lr is divided by 10 (default 50%,75%; ImageNet-style 30,60 of 90).",
)
@click.option("--momentum", type=click.FloatRange(0, 1), default=0.9, show_default=True)
@click.option("--nesterov/--no-nesterov", default=True, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(0), default=1e-4, show_default=True)
@click.option(
    "--dropout",
    type=click.FloatRange(0, 1, max_open=True),
    help="Dropout after each conv but the first (default 0.2 without augmentation, else 0; ImageNet-style 0).",
)
@click.option(
    "--augment/--no-augment",
    default=None,
    help="4-pixel translation + mirroring (default: on for cifar10+/cifar100+ and ImageNet-style).",
)
@click.option("--input-size", type=click.IntRange(8), help="Square input side (default: the model's).")
@click.option("--in-channels", type=click.Choice(["1", "3"]), help="Default: the data's (digits 1, else 3).")
@click.option("--limit", type=click.IntRange(2), help="Train on a seeded subset of this many images.")
@click.option("--val-limit", type=click.IntRange(2), help="Validate on a seeded subset of this many images.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", type=click.Path(dir_okay=False), help="Continue a `dnx train` checkpoint exactly.")
@click.option("--threads", type=click.IntRange(1), help="torch CPU threads (default: torch's).")
@json_option
def command(
    model,
    dataset,
    data_dir,
    output,
    epochs,
    batch_size,
    lr,
    milestones,
    momentum,
    nesterov,
    weight_decay,
    dropout,
    augment,
    input_size,
    in_channels,
    limit,
    val_limit,
    seed,
    resume,
    threads,
    as_json,
):
    """Train MODEL (a zoo name such as densenet_bc100_k12) on a dataset with the paper's recipe.

    SGD with Nesterov momentum 0.9, weight decay 1e-4, batch 64, lr 0.1 divided by 10 at 50% and 75% of
    the epochs, per-channel normalisation from the training split. Every epoch writes OUTPUT (atomic),
    holding everything `dnx export` and `--resume` need.
    """
    if not resume and (not model or not dataset or not output):
        raise DnxError("give MODEL, --dataset and -o/--output (or --resume CKPT to continue a run)")
    options = TrainOptions(
        model=model or "",
        dataset=dataset or "",
        output=output or resume,
        data_dir=data_dir,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        milestones=milestones,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
        dropout=dropout,
        augment=augment,
        input_size=input_size,
        in_channels=int(in_channels) if in_channels else None,
        limit=limit,
        val_limit=val_limit,
        seed=seed,
        resume=resume,
        threads=threads,
    )
    result = train(options, progress=progress_enabled(as_json))
    doc = {
        "output": result.output,
        "epochs": result.epochs,
        "val_accuracy": result.val_accuracy,
        "history": result.history,
        "model": result.model,
        "params": result.params,
        "input_size": list(result.input_size),
        "mean": list(result.mean),
        "std": list(result.std),
        "labels": result.labels,
        "recipe": result.recipe,
        "seconds": result.seconds,
        "trained_now": result.trained_now,
    }
    emit(doc, as_json, format_result(result))


def format_result(r) -> str:
    lines = [f"{'epoch':>5} {'loss':>8} {'train acc':>9} {'val acc':>8} {'lr':>8} {'s':>7}"]
    for h in r.history:
        val = "-" if h["val_accuracy"] is None else f"{h['val_accuracy'] * 100:.2f}%"
        lines.append(
            f"{h['epoch']:>5} {h['train_loss']:>8.4f} {h['train_accuracy'] * 100:>8.2f}% {val:>8} "
            f"{h['lr']:>8.4g} {h['seconds']:>7.1f}"
        )
    val = "n/a" if r.val_accuracy is None else f"{r.val_accuracy * 100:.2f}%"
    if r.trained_now:
        lines.append(f"{r.model} ({r.params:,} params) trained {r.epochs} epochs: val accuracy {val}; wrote {r.output}")
    else:  # a finished checkpoint resumed: nothing trained (at most copied to -o)
        lines.append(
            f"nothing to train: the checkpoint already holds {r.epochs} epochs (val accuracy {val}); "
            f"{r.output} holds it"
        )
    return "\n".join(lines)
