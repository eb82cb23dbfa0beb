"""`dnx train`: the paper's recipe defaults, exact resume, checkpoints that load with their preprocessing."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from densenet_deploy.cli.main import cli
from densenet_deploy.core.errors import DnxError
from densenet_deploy.train.loop import TrainOptions, augment, digits_preset, train
from densenet_deploy.train.recipe import resolve

pytest.importorskip("sklearn", reason="scikit-learn (extra 'demo') provides the digits data")

# Small enough to train an epoch in well under a second: 64 digits at 8x8, batch 16. One thread: a model
# this small gains nothing from two, and two threads crawl when other processes share the cores.
TINY = [
    "--dataset",
    "digits",
    "--input-size",
    "8",
    "--limit",
    "64",
    "--val-limit",
    "32",
    "--batch-size",
    "16",
    "--threads",
    "1",
]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_resume_gives_bit_identical_weights(tmp_path):
    import torch

    resumed, straight = tmp_path / "c.pt", tmp_path / "straight.pt"
    r = invoke("train", "densenet_bc40_k12", *TINY, "--epochs", 2, "-o", resumed)
    assert r.exit_code == 0, r.output
    r = invoke("train", "--resume", resumed, "--epochs", 3, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["epochs"] == 3 and [h["epoch"] for h in doc["history"]] == [1, 2, 3]
    train(
        TrainOptions(
            model="densenet_bc40_k12",
            dataset="digits",
            output=str(straight),
            epochs=3,
            input_size=8,
            limit=64,
            val_limit=32,
            batch_size=16,
            threads=1,
        )
    )
    a = torch.load(resumed, weights_only=True)
    b = torch.load(straight, weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    assert a["state_dict"].keys() == b["state_dict"].keys()
    # Dropout 0.2 is on (no augmentation), so this also proves the RNG state is restored.
    assert a["extra"]["recipe"]["dropout"] == 0.2
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]


def test_resume_refuses_a_changed_recipe_and_foreign_checkpoints(tmp_path):
    import torch

    ckpt = tmp_path / "c.pt"
    assert invoke("train", "densenet_bc10_k4", *TINY, "--epochs", 1, "-o", ckpt).exit_code == 0
    r = invoke("train", "--resume", ckpt, "--lr", 0.5, "--epochs", 2)
    assert r.exit_code == 2 and "lr 0.5 (checkpoint: 0.1)" in r.output
    bare = tmp_path / "bare.pt"
    torch.save({"state_dict": torch.load(ckpt, weights_only=True)["state_dict"]}, bare)
    r = invoke("train", "--resume", bare, "--epochs", 2)
    assert r.exit_code == 2 and "not a `dnx train` checkpoint" in r.output


def test_resume_with_epochs_not_beyond_the_checkpoint_is_refused(tmp_path):
    ckpt = tmp_path / "c.pt"
    assert invoke("train", "densenet_bc10_k4", *TINY, "--epochs", 2, "-o", ckpt).exit_code == 0
    before = ckpt.read_bytes()
    for n in (1, 2):
        r = invoke("train", "--resume", ckpt, "--epochs", n)
        assert r.exit_code == 2, r.output
        assert "already has 2 epochs" in r.output and "must be larger than 2" in r.output
        assert len(r.output.strip().splitlines()) == 1
    assert ckpt.read_bytes() == before
    # Without --epochs a finished run is a no-op whose report says what the checkpoint holds.
    r = invoke("train", "--resume", ckpt, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["epochs"] == 2 and [h["epoch"] for h in doc["history"]] == [1, 2] and doc["trained_now"] == 0
    text = invoke("train", "--resume", ckpt).stdout
    assert "nothing to train: the checkpoint already holds 2 epochs" in text and "wrote" not in text
    assert ckpt.read_bytes() == before


def test_resume_with_other_threads_warns_that_it_is_not_bit_exact(tmp_path, caplog):
    import logging

    ckpt = tmp_path / "c.pt"
    assert invoke("train", "densenet_bc10_k4", *TINY, "--epochs", 1, "-o", ckpt).exit_code == 0
    with caplog.at_level(logging.WARNING, logger="densenet_deploy.train"):
        result = train(TrainOptions(model="", dataset="", output="", resume=str(ckpt), epochs=2, threads=2))
    assert result.trained_now == 1
    assert any("no longer bit-exact" in r.getMessage() and "trained with 1" in r.getMessage() for r in caplog.records)


def test_checkpoint_loads_with_labels_and_normalisation(digits_checkpoint):
    """The preset reaches >= 97% on the held-out digits; load_model + load_data reproduce that figure."""
    import torch

    from densenet_deploy.data.loading import load_data
    from densenet_deploy.models.checkpoint import read_checkpoint
    from densenet_deploy.models.loading import load_model

    loaded = load_model(digits_checkpoint)
    assert loaded.labels == [str(i) for i in range(10)]
    assert loaded.input_size == (1, 16, 16) and len(loaded.mean) == len(loaded.std) == 1
    assert 0.1 < loaded.mean[0] < 0.5 and 0.2 < loaded.std[0] < 0.5  # computed from the training split
    history = read_checkpoint(digits_checkpoint)["history"]
    assert history[-1]["val_accuracy"] >= 0.97
    val = load_data("digits", loaded.input_size, loaded.mean, loaded.std, split="val")
    with torch.inference_mode():
        predicted = loaded.model(torch.from_numpy(val.images)).argmax(1).numpy()
    assert np.mean(predicted == val.labels) == pytest.approx(history[-1]["val_accuracy"], abs=1e-6)


def test_export_keeps_labels_and_normalisation(digits_checkpoint, digits_onnx):
    from densenet_deploy.core.metadata import read_onnx_meta
    from densenet_deploy.models.checkpoint import read_checkpoint

    ckpt = read_checkpoint(digits_checkpoint)
    meta = read_onnx_meta(digits_onnx)
    assert meta.labels == ckpt["labels"] == [str(i) for i in range(10)]
    assert meta.mean == pytest.approx(tuple(ckpt["mean"])) and meta.std == pytest.approx(tuple(ckpt["std"]))
    assert list(meta.input_size) == ckpt["input_size"] == [1, 16, 16]


def test_json_output_and_no_file_on_bad_output(tmp_path):
    r = invoke("train", "densenet_bc10_k4", *TINY, "--epochs", 1, "--json", "-o", tmp_path / "m.pt")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert {"output", "epochs", "val_accuracy", "history", "model", "params"} <= set(doc)
    assert set(doc["history"][0]) == {"epoch", "train_loss", "train_accuracy", "val_accuracy", "lr", "seconds"}
    assert doc["model"] == "densenet_bc10_k4" and doc["params"] > 0 and 0 <= doc["val_accuracy"] <= 1
    r = invoke("train", "densenet_bc10_k4", *TINY, "-o", tmp_path / "nodir" / "m.pt")
    assert r.exit_code == 2 and "does not exist" in r.output
    r = invoke("train", "densenet_bc10_k4", "--dataset", "cifar10", "-o", tmp_path / "m.pt")
    assert r.exit_code == 2 and "needs --data-dir" in r.output
    r = invoke("train", "densenet_bc11_k4", *TINY, "-o", tmp_path / "x.pt")
    assert r.exit_code == 2 and "depth 11 is not valid" in r.output
    assert not (tmp_path / "x.pt").exists()


def test_paper_recipe_defaults(tmp_path):
    c10 = resolve(TrainOptions(model="densenet_bc100_k12", dataset="cifar10+", output="x", data_dir=str(tmp_path)))
    assert (c10.epochs, c10.batch_size, c10.lr, c10.milestones) == (300, 64, 0.1, (150, 225))
    assert (c10.momentum, c10.nesterov, c10.weight_decay) == (0.9, True, 1e-4)
    assert c10.augment and c10.dropout == 0.0 and c10.input_size == 32 and c10.in_channels == 3
    c100 = resolve(TrainOptions(model="densenet40_k12", dataset="cifar100", output="x", data_dir=str(tmp_path)))
    assert not c100.augment and c100.dropout == 0.2
    svhn = resolve(TrainOptions(model="densenet40_k12", dataset="svhn", output="x", data_dir=str(tmp_path)))
    assert (svhn.epochs, svhn.milestones, svhn.dropout) == (40, (20, 30), 0.2)
    inet = resolve(
        TrainOptions(model="densenet121", dataset="imagefolder", output="x", data_dir=str(tmp_path), augment=True)
    )
    assert (inet.epochs, inet.batch_size, inet.milestones, inet.input_size) == (90, 256, (30, 60), 224)
    # ImageNet: standard augmentation and no dropout by default (Section 4.2), even with --no-augment.
    inet = resolve(TrainOptions(model="densenet121", dataset="imagefolder", output="x", data_dir=str(tmp_path)))
    assert inet.augment and inet.dropout == 0.0
    plain = resolve(
        TrainOptions(model="densenet121", dataset="imagefolder", output="x", data_dir=str(tmp_path), augment=False)
    )
    assert not plain.augment and plain.dropout == 0.0
    # The schedule is the recipe's, whatever --epochs says, so a resumed run equals a straight one.
    short = resolve(
        TrainOptions(model="densenet_bc100_k12", dataset="cifar10", output="x", data_dir=str(tmp_path), epochs=100)
    )
    assert short.milestones == (150, 225) and short.epochs == 100
    scaled = resolve(
        TrainOptions(
            model="densenet_bc100_k12",
            dataset="cifar10",
            output="x",
            data_dir=str(tmp_path),
            epochs=100,
            milestones=(50, 75),
        )
    )
    assert scaled.milestones == (50, 75)
    with pytest.raises(DnxError, match="unknown dataset 'cifar11'.*did you mean 'cifar10'"):
        resolve(TrainOptions(model="densenet40_k12", dataset="cifar11", output="x"))


def test_augment_translates_and_mirrors():
    import torch

    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6) + 1
    out = augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(2):
        crops = [padded[i, :, dy : dy + 6, dx : dx + 6] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1)) for c in crops)
    assert torch.equal(out, augment(x, torch.Generator().manual_seed(0)))


def test_train_on_cifar_pickles_with_augmentation(tmp_path):
    from test_data import write_cifar10

    write_cifar10(tmp_path / "data", n_train=8, n_test=6)
    out = tmp_path / "c10.pt"
    r = invoke(
        "train",
        "densenet_bc10_k4",
        "--dataset",
        "cifar10+",
        "--data-dir",
        tmp_path / "data",
        "--epochs",
        1,
        "--input-size",
        16,
        "--batch-size",
        16,
        "--threads",
        1,
        "--json",
        "-o",
        out,
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["labels"] == ["plane", "car", "bird"] and doc["input_size"] == [3, 16, 16]
    assert doc["recipe"]["augment"] and doc["recipe"]["dropout"] == 0.0 and len(doc["mean"]) == 3


def test_train_on_image_folder_with_train_val(tmp_path):
    from test_data import write_digit_pngs

    write_digit_pngs(tmp_path / "train", per_class=6)
    write_digit_pngs(tmp_path / "val", per_class=2)
    out = tmp_path / "folder.pt"
    result = train(
        TrainOptions(
            model="densenet_bc10_k4",
            dataset="imagefolder",
            data_dir=str(tmp_path),
            output=str(out),
            epochs=1,
            input_size=8,
            in_channels=1,
            batch_size=8,
            threads=1,
        )
    )
    assert result.labels == ["class_0", "class_1", "class_2"] and os.path.isfile(out)
    assert result.history[0]["val_accuracy"] is not None


def test_digits_preset_is_the_small_demo_model(tmp_path):
    options = digits_preset(output=str(tmp_path / "p.pt"), epochs=1, threads=None)
    assert options.dataset == "digits" and options.epochs == 1 and options.model.startswith("densenet_bc")
    assert options.threads == 1  # None keeps the preset's value


def write_solid_pngs(root, colours: dict, per_class=4, size=8):
    """Solid-colour PNGs, one folder per class name: {"cat": 0, "dog": 255}."""
    from PIL import Image

    for name, value in colours.items():
        folder = os.path.join(root, name)
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (size, size), (value, value, (value + 40 * i) % 256)).save(
                os.path.join(folder, f"{i}.png")
            )


def test_val_folders_take_the_train_class_indices_by_name(tmp_path):
    from densenet_deploy.train.loop import prepare_data

    write_solid_pngs(tmp_path / "tv" / "train", {"cat": 0, "dog": 255})
    write_solid_pngs(tmp_path / "tv" / "val", {"dog": 255}, per_class=2)
    recipe = resolve(
        TrainOptions(
            model="densenet_bc10_k4",
            dataset="imagefolder",
            data_dir=str(tmp_path / "tv"),
            output="x",
            epochs=1,
            input_size=8,
        )
    )
    data = prepare_data(recipe)
    assert data.label_names == ["cat", "dog"]
    assert list(data.val_labels) == [1, 1]  # val/dog is train's dog (1), not its own folder number (0)


def test_val_class_missing_from_train_is_a_one_line_error(tmp_path):
    write_solid_pngs(tmp_path / "tv" / "train", {"cat": 0, "dog": 255})
    write_solid_pngs(tmp_path / "tv" / "val", {"dog": 255, "zebra": 128}, per_class=2)
    out = tmp_path / "z.pt"
    r = invoke(
        "train",
        "densenet_bc10_k4",
        "--dataset",
        "imagefolder",
        "--data-dir",
        tmp_path / "tv",
        "--epochs",
        1,
        "--input-size",
        8,
        "--threads",
        1,
        "-o",
        out,
    )
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "zebra" in lines[0] and not out.exists()


def test_divergence_is_an_error_and_keeps_no_diverged_state(tmp_path):
    out = tmp_path / "nanlr.pt"
    r = invoke("train", "densenet_bc10_k4", *TINY, "--lr", "1e8", "--epochs", 2, "-o", out)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: training diverged") and "epoch 1" in lines[0]
    assert "--lr" in lines[0] and "wrote" not in r.output
    assert not out.exists()  # nothing finite was ever trained


def test_divergence_after_a_finite_epoch_keeps_that_checkpoint(tmp_path):
    import torch

    out = tmp_path / "c.pt"
    assert invoke("train", "densenet_bc10_k4", *TINY, "--epochs", 1, "-o", out).exit_code == 0
    # The resumed run's recipe (lr 0.1) stays finite, so poison the saved weights' optimizer momentum
    # instead: its first step sends the weights to infinity, and the next loss is NaN.
    ckpt = torch.load(out, weights_only=False)
    for state in ckpt["optimizer"]["state"].values():
        state["momentum_buffer"].fill_(1e38)
    torch.save(ckpt, out)
    r = invoke("train", "--resume", out, "--epochs", 3, "-o", tmp_path / "next.pt")
    assert r.exit_code == 2 and "training diverged" in r.output and "epoch 2" in r.output, r.output
    assert not (tmp_path / "next.pt").exists()
    assert torch.load(out, weights_only=False)["epoch"] == 1


def test_data_dir_with_builtin_digits_is_an_error(tmp_path):
    (tmp_path / "data").mkdir()
    out = tmp_path / "d.pt"
    r = invoke("train", "densenet_bc10_k4", *TINY, "--epochs", 1, "--data-dir", tmp_path / "data", "-o", out)
    assert r.exit_code == 2 and r.output.startswith("error: --data-dir") and "digits" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and not out.exists()


def test_svhn_trains_on_train_plus_extra_with_pixels_divided_by_255(tmp_path):
    from test_data import write_svhn

    (tmp_path / "svhn").mkdir()
    write_svhn(tmp_path / "svhn")
    r = invoke(
        "train",
        "densenet_bc10_k4",
        "--dataset",
        "svhn",
        "--data-dir",
        tmp_path / "svhn",
        "--epochs",
        1,
        "--input-size",
        8,
        "--batch-size",
        4,
        "--threads",
        1,
        "--json",
        "-o",
        tmp_path / "s.pt",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["mean"] == [0.0, 0.0, 0.0] and doc["std"] == [1.0, 1.0, 1.0]  # /255 only (Section 4.2)
    assert doc["history"][0]["val_accuracy"] is not None
