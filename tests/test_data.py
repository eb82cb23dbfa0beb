"""The shared data API: every SRC form on real files written here, splits, limits, and every error case."""

from __future__ import annotations

import logging
import os
import pickle

import numpy as np
import pytest

from densenet_deploy.core.errors import DataError
from densenet_deploy.data.loading import (
    channel_stats,
    iter_batches,
    load_data,
    load_data_for,
    load_raw,
    preprocess_image,
)

pytest.importorskip("sklearn", reason="scikit-learn (extra 'demo') provides the digits data")
pytest.importorskip("PIL", reason="pillow (extra 'demo') reads image files")

SIZE = (1, 16, 16)


# --- helpers that write data in the real on-disk formats --------------------------------------------
def write_digit_pngs(root, per_class=3, classes=(0, 1, 2), subfolders=True):
    """PNG files of real digits, in class subfolders (labelled) or loose; returns (paths, labels)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    paths, labels = [], []
    for c in classes:
        folder = os.path.join(root, f"class_{c}") if subfolders else root
        os.makedirs(folder, exist_ok=True)
        for i, idx in enumerate(np.flatnonzero(d.target == c)[:per_class]):
            path = os.path.join(folder, f"{c}_{i}.png")
            Image.fromarray((d.images[idx] * 255 / 16).astype(np.uint8), mode="L").save(path)
            paths.append(path)
            labels.append(c)
    return paths, labels


def write_cifar10(root, n_train=6, n_test=4, names=("plane", "car", "bird")):
    """CIFAR-10 python batches exactly as the official archive lays them out (dicts with bytes keys)."""
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    data = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else n_train
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, len(names), size=n)]
        with open(os.path.join(root, name), "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"data": x, b"labels": y, b"filenames": []}, fh)
        data[name] = (x, y)
    with open(os.path.join(root, "batches.meta"), "wb") as fh:
        pickle.dump({b"label_names": [n.encode() for n in names], b"num_vis": 3072}, fh)
    return data


def write_cifar100(root, n=5):
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(1)
    for name in ("train", "test"):
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        with open(os.path.join(root, name), "wb") as fh:
            pickle.dump({b"data": x, b"fine_labels": list(range(n)), b"coarse_labels": [0] * n}, fh)
    with open(os.path.join(root, "meta"), "wb") as fh:
        pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)], b"coarse_label_names": [b"x"]}, fh)


# --- digits -------------------------------------------------------------------------------------------
def test_digits_split_is_fixed_disjoint_and_normalised():
    train = load_raw("digits", SIZE, split="train")
    val = load_raw("digits", SIZE, split="val")
    all_ = load_raw("digits", SIZE)
    assert len(train) + len(val) == len(all_) == 1797
    assert len(val) == 359
    assert train.images.min() >= 0 and train.images.max() <= 1
    # No validation image appears among the training images.
    train_rows = {row.tobytes() for row in train.images}
    assert sum(row.tobytes() in train_rows for row in val.images) < 5  # digits has a few exact duplicates
    assert val.label_names == [str(i) for i in range(10)]
    # --seed changes subsets, never the split.
    assert np.array_equal(load_raw("digits", SIZE, split="val", seed=5).labels, val.labels)

    ds = load_data("digits", SIZE, 0.5, 0.25, split="val")
    assert ds.images.dtype == np.float32 and ds.images.shape == (359, 1, 16, 16)
    np.testing.assert_allclose(ds.images, (val.images - 0.5) / 0.25, rtol=1e-6, atol=1e-6)


def test_digits_channels_replicated_and_upscaled():
    ds = load_raw("digits", (3, 32, 32), split="val", limit=4)
    assert ds.images.shape == (4, 3, 32, 32)
    assert np.array_equal(ds.images[:, 0], ds.images[:, 2])


def test_limit_is_seeded_and_fingerprint_tracks_everything():
    a = load_data("digits", SIZE, 0.5, 0.25, split="train", limit=20, seed=1)
    b = load_data("digits", SIZE, 0.5, 0.25, split="train", limit=20, seed=1)
    c = load_data("digits", SIZE, 0.5, 0.25, split="train", limit=20, seed=2)
    assert len(a) == 20 and np.array_equal(a.images, b.images) and a.fingerprint == b.fingerprint
    assert not np.array_equal(a.labels, c.labels) or not np.array_equal(a.images, c.images)
    assert (
        len(
            {
                a.fingerprint,
                c.fingerprint,
                load_data("digits", SIZE, 0.4, 0.25, split="train", limit=20, seed=1).fingerprint,
                load_data("digits", SIZE, 0.5, 0.25, split="val", limit=20, seed=1).fingerprint,
            }
        )
        == 4
    )
    assert len(a.fingerprint) == 64


def test_load_data_for_reads_artifact_meta():
    from densenet_deploy.core.metadata import ArtifactMeta

    meta = ArtifactMeta(model="m", num_classes=10, input_size=(1, 12, 12), mean=(0.3,), std=(0.3,))
    ds = load_data_for("digits", meta, split="val", limit=3)
    assert ds.images.shape == (3, 1, 12, 12)


# --- arrays ---------------------------------------------------------------------------------------------
def test_npy_is_taken_as_preprocessed(tmp_path):
    x = np.random.default_rng(0).standard_normal((5, 1, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    ds = load_data(str(tmp_path / "x.npy"), SIZE, 0.5, 0.25)
    assert np.array_equal(ds.images, x) and ds.labels is None


@pytest.mark.parametrize("keys", [("images", "labels"), ("x", "y")])
def test_npz_with_labels(tmp_path, keys):
    x = np.random.default_rng(0).standard_normal((6, 1, 16, 16)).astype(np.float32)
    y = np.arange(6) % 3
    np.savez(tmp_path / "d.npz", **{keys[0]: x, keys[1]: y})
    ds = load_data(str(tmp_path / "d.npz"), SIZE, 0, 1, split="val")
    assert ds.labels.dtype == np.int64 and len(ds) == len(ds.labels) >= 1
    full = load_data(str(tmp_path / "d.npz"), SIZE, 0, 1)
    assert np.array_equal(full.labels, y) and np.array_equal(full.images, x)


def test_npz_labels_outside_the_models_classes_warn_or_refuse(tmp_path, caplog):
    from densenet_deploy.core.metadata import ArtifactMeta

    meta = ArtifactMeta(model="m", num_classes=10, input_size=SIZE, mean=(0.0,), std=(1.0,))
    x = np.random.default_rng(0).standard_normal((6, *SIZE)).astype(np.float32)
    np.savez(tmp_path / "some.npz", images=x, labels=np.array([0, 1, 12, 3, -1, 9]))
    with caplog.at_level(logging.WARNING, logger="densenet_deploy.data"):
        ds = load_data_for(str(tmp_path / "some.npz"), meta)
    assert ds.labels.tolist() == [0, 1, 12, 3, -1, 9]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 of 6 labels are outside the model's 10 classes" in warnings[0]
    np.savez(tmp_path / "none.npz", images=x, labels=np.full(6, 12))
    with pytest.raises(DataError, match="all 6 labels are outside the model's 10 classes"):
        load_data_for(str(tmp_path / "none.npz"), meta)


def test_npz_labels_without_a_label_name_count_as_wrong_or_refuse(tmp_path, caplog):
    """Labels index the file's own label_names: 2 (past the end) or -1 (NumPy would read the last name)
    cannot be mapped to the model's classes."""
    from densenet_deploy.core.metadata import ArtifactMeta

    meta = ArtifactMeta(model="m", num_classes=10, input_size=SIZE, mean=(0.0,), std=(1.0,))
    x = np.random.default_rng(0).standard_normal((6, *SIZE)).astype(np.float32)
    np.savez(tmp_path / "some.npz", images=x, labels=np.array([0, 1, 2, 1, -1, 0]), label_names=np.array(["3", "7"]))
    with caplog.at_level(logging.WARNING, logger="densenet_deploy.data"):
        ds = load_data_for(str(tmp_path / "some.npz"), meta)
    assert ds.labels.tolist() == [3, 7, -1, 7, -1, 3]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 of 6 labels have no entry in its 2 label names" in warnings[0]
    np.savez(tmp_path / "none.npz", images=x, labels=np.full(6, 5), label_names=np.array(["3", "7"]))
    with pytest.raises(DataError, match="none of its 6 labels indexes its 2 label names"):
        load_data_for(str(tmp_path / "none.npz"), meta)


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((2, 16, 16), np.float32), "rank 3"),
        (np.zeros((2, 3, 16, 16), np.float32), "3 channels, the model expects 1"),
        (np.zeros((2, 1, 8, 8), np.float32), "8x8, the model expects 16x16"),
        (np.zeros((2, 1, 16, 16), np.uint8), "dtype is uint8"),
        (np.full((2, 1, 16, 16), np.nan, np.float32), "NaN/inf"),
    ],
)
def test_array_errors(tmp_path, array, match):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(DataError, match=match):
        load_data(str(tmp_path / "bad.npy"), SIZE, 0, 1)


def test_npz_without_images_key(tmp_path):
    np.savez(tmp_path / "d.npz", pixels=np.zeros((2, 1, 16, 16), np.float32))
    with pytest.raises(DataError, match="expected one named 'images' or 'x'"):
        load_data(str(tmp_path / "d.npz"), SIZE, 0, 1)


# --- image directories ------------------------------------------------------------------------------
def test_image_dir_class_subfolders(tmp_path):
    paths, labels = write_digit_pngs(tmp_path)
    (tmp_path / "class_0" / "notes.txt").write_text("not an image")
    ds = load_data(str(tmp_path), SIZE, 0.5, 0.25)
    assert ds.label_names == ["class_0", "class_1", "class_2"]
    assert list(ds.labels) == labels and ds.skipped == 0
    one = preprocess_image(paths[4], SIZE, 0.5, 0.25)
    np.testing.assert_allclose(ds.images[4], one)
    # A real digit scaled to [0, 1] and normalised: values span (0 - 0.5)/0.25 .. (1 - 0.5)/0.25.
    assert ds.images.min() >= -2.0 - 1e-6 and ds.images.max() <= 2.0 + 1e-6 and ds.images.std() > 0.5


def test_loose_images_are_unlabeled_and_rgb(tmp_path):
    write_digit_pngs(tmp_path, subfolders=False)
    ds = load_data(str(tmp_path), (3, 8, 8), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert ds.labels is None and ds.images.shape == (9, 3, 8, 8)


def test_corrupt_images_are_skipped_and_counted(tmp_path, caplog):
    write_digit_pngs(tmp_path, per_class=2)
    (tmp_path / "class_1" / "broken.png").write_bytes(b"\x89PNG this is not really a png")
    with caplog.at_level(logging.WARNING):
        ds = load_data(str(tmp_path), SIZE, 0.5, 0.25)
    assert ds.skipped == 1 and len(ds) == 6 and len(ds.labels) == 6
    assert "broken.png" in caplog.text


def test_image_dir_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="contains no image files"):
        load_data(str(empty), SIZE, 0, 1)
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("x")
    with pytest.raises(DataError, match="1 other file"):
        load_data(str(texts), SIZE, 0, 1)
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(2):
        (broken / f"{i}.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"none of the 2 image files could be read \(2 skipped\)"):
        load_data(str(broken), SIZE, 0, 1)


# --- CIFAR / SVHN ------------------------------------------------------------------------------------
def test_cifar10_pickle_batches(tmp_path):
    batches = write_cifar10(tmp_path / "cifar-10-batches-py")
    # The archive's top folder or the batches folder itself are both accepted.
    train = load_raw(f"cifar10:{tmp_path}", (3, 32, 32), split="train")
    val = load_raw(f"cifar10:{tmp_path / 'cifar-10-batches-py'}", (3, 32, 32), split="val")
    assert len(train) == 30 and len(val) == 4
    assert train.label_names == ["plane", "car", "bird"]
    x, y = batches["test_batch"]
    # Row layout: 1024 red, then green, then blue values, each row-major 32x32.
    assert val.images[1, 2, 0, 5] == pytest.approx(x[1, 2048 + 5] / 255)
    assert list(val.labels) == y
    small = load_data(f"cifar10:{tmp_path}", (3, 16, 16), (0.5,) * 3, (0.25,) * 3, split="val")
    assert small.images.shape == (4, 3, 16, 16)


def test_cifar100_fine_labels(tmp_path):
    write_cifar100(tmp_path)
    ds = load_raw(f"cifar100:{tmp_path}", (3, 32, 32), split="train")
    assert list(ds.labels) == [0, 1, 2, 3, 4] and len(ds.label_names) == 100 and ds.label_names[3] == "c3"


def test_cifar_errors(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(DataError, match="3 channels, the model expects 1"):
        load_raw(f"cifar10:{tmp_path}", (1, 32, 32))
    (tmp_path / "data_batch_3").write_bytes(b"\x80\x04truncated")
    with pytest.raises(DataError, match="data_batch_3 is not a readable CIFAR pickle batch"):
        load_raw(f"cifar10:{tmp_path}", (3, 32, 32))
    # A pickle that would run code is refused, not executed.
    with open(tmp_path / "data_batch_3", "wb") as fh:
        pickle.dump({b"data": os.system}, fh)
    with pytest.raises(DataError, match="refusing to load"):
        load_raw(f"cifar10:{tmp_path}", (3, 32, 32))
    with pytest.raises(DataError, match="no such directory"):
        load_raw(f"cifar10:{tmp_path / 'nope'}", (3, 32, 32))


def write_svhn(root, counts=(("train_32x32.mat", 10), ("extra_32x32.mat", 5), ("test_32x32.mat", 3))):
    """Tiny SVHN format-2 .mat files; file k's labels are all k+1 (so a split's origin shows in its labels)."""
    sio = pytest.importorskip("scipy.io", reason="scipy (extra 'demo') reads SVHN .mat files")
    rng = np.random.default_rng(0)
    for k, (name, n) in enumerate(counts):
        sio.savemat(
            os.path.join(root, name),
            {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8), "y": np.full((n, 1), k + 1, dtype=np.uint8)},
        )


def test_svhn_mat_files(tmp_path, caplog):
    """The paper's SVHN: train + extra for training, held-out images of train as val, test not used."""
    write_svhn(tmp_path)
    train = load_raw(f"svhn:{tmp_path}", (3, 32, 32), split="train")
    val = load_raw(f"svhn:{tmp_path}", (3, 32, 32), split="val")
    # 20 % of a small train file (6,000 of the real one) is held out; every extra image trains.
    assert (len(train), len(val)) == (8 + 5, 2)
    assert sorted(train.labels.tolist()) == [1] * 8 + [2] * 5 and val.labels.tolist() == [1, 1]
    assert 3 not in train.labels and 3 not in val.labels  # test_32x32.mat is the test set, never read
    os.remove(tmp_path / "extra_32x32.mat")
    with caplog.at_level(logging.WARNING):
        assert len(load_raw(f"svhn:{tmp_path}", (3, 32, 32), split="train")) == 8
    assert "extra_32x32.mat: no such file" in caplog.text
    os.remove(tmp_path / "train_32x32.mat")
    with pytest.raises(DataError, match="train_32x32.mat: no such file"):
        load_raw(f"svhn:{tmp_path}", (3, 32, 32))


def test_svhn_labels_10_mean_digit_0(tmp_path):
    sio = pytest.importorskip("scipy.io", reason="scipy (extra 'demo') reads SVHN .mat files")
    sio.savemat(
        tmp_path / "train_32x32.mat",
        {"X": np.zeros((32, 32, 3, 5), dtype=np.uint8), "y": np.array([[10], [1], [2], [3], [4]], dtype=np.uint8)},
    )
    both = load_raw(f"svhn:{tmp_path}", (3, 32, 32), split="all")
    assert both.labels.tolist() == [0, 1, 2, 3, 4]


# --- random and the rest ---------------------------------------------------------------------------
def test_random_is_seeded_and_warns(caplog):
    with caplog.at_level(logging.WARNING):
        a = load_data("random", (3, 8, 8), 0, 1, limit=4, seed=3)
    assert "proves little" in caplog.text
    assert a.images.shape == (4, 3, 8, 8) and a.labels is None
    assert np.array_equal(a.images, load_data("random", (3, 8, 8), 0, 1, limit=4, seed=3).images)
    assert len(load_data("random", (3, 8, 8), 0, 1, limit=4, split="val")) == 4


@pytest.mark.parametrize(
    "src, match",
    [
        ("imagenet", "unknown data source 'imagenet'; valid forms: .*digits.*cifar10:DIR"),
        ("./missing_dir", "no such file or directory"),
        ("missing.npz", "missing.npz: no such file"),
        ("", "data source is empty"),
    ],
)
def test_source_errors(src, match):
    with pytest.raises(DataError, match=match):
        load_data(src, SIZE, 0, 1)


def test_bad_split_limit_and_stats():
    with pytest.raises(DataError, match="unknown split 'test'"):
        load_data("digits", SIZE, 0, 1, split="test")
    with pytest.raises(DataError, match="limit must be >= 1"):
        load_data("digits", SIZE, 0, 1, limit=0)
    with pytest.raises(DataError, match="mean/std have 2/1 values; the input has 1 channel"):
        load_data("digits", SIZE, (0.1, 0.2), 1)


def test_channel_stats_and_batches():
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(0.2, 0.1, (50, 8, 8)), rng.normal(0.7, 0.3, (50, 8, 8))], 1).astype(np.float32)
    mean, std = channel_stats(x)
    assert mean == pytest.approx((0.2, 0.7), abs=0.01) and std == pytest.approx((0.1, 0.3), abs=0.01)
    sizes = [len(b) for b in iter_batches(x, 16)]
    assert sizes == [16, 16, 16, 2]


def test_cli_reports_data_errors_with_exit_2(tmp_path):
    from click.testing import CliRunner

    from densenet_deploy.cli.main import cli

    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "densenet_bc10_k4",
            "--dataset",
            "cifar10",
            "--data-dir",
            str(tmp_path / "empty"),
            "-o",
            str(tmp_path / "c.pt"),
        ],
    )
    assert result.exit_code == 2
    assert "error: " in result.output and "data_batch_1: no such file" in result.output
    assert not (tmp_path / "c.pt").exists()

    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "readme.md").write_text("no images")
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "densenet_bc10_k4",
            "--dataset",
            "imagefolder",
            "--data-dir",
            str(tmp_path / "texts"),
            "-o",
            str(tmp_path / "c.pt"),
        ],
    )
    assert result.exit_code == 2 and "contains no image files" in result.output
    assert "Traceback" not in result.output


def test_class_folders_take_the_models_class_indices(tmp_path):
    """Folders 3/ and 7/ of a digits model are classes 3 and 7, not 0 and 1 (their sorted order)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from densenet_deploy.core.metadata import ArtifactMeta
    from densenet_deploy.data.loading import load_data_for

    digits = load_digits()
    for cls in (3, 7):
        (tmp_path / "dig" / str(cls)).mkdir(parents=True)
        for i, image in enumerate(digits.images[digits.target == cls][:4]):
            Image.fromarray((image * 15).astype("uint8")).save(tmp_path / "dig" / str(cls) / f"{i}.png")
    meta = ArtifactMeta(
        model="m", num_classes=10, input_size=(1, 16, 16), mean=(0.3,), std=(0.3,), labels=[str(i) for i in range(10)]
    )
    data = load_data_for(str(tmp_path / "dig"), meta)
    assert sorted(set(data.labels.tolist())) == [3, 7] and data.label_names == meta.labels
    unlabeled = load_data_for(str(tmp_path / "dig"), meta.replace(labels=None))
    assert sorted(set(unlabeled.labels.tolist())) == [3, 7]  # numeric folder names are class numbers
    foreign = load_data_for(str(tmp_path / "dig"), meta.replace(labels=[f"c{i}" for i in range(10)]))
    assert foreign.labels is None  # names that match nothing: no accuracy rather than a wrong one


def test_class_names_mismatch_warns_once_per_command(tmp_path, caplog):
    """A command that loads the same data twice (two checks) says the mismatch once; the next command again."""
    from PIL import Image

    from densenet_deploy.core.log import reset_warnings
    from densenet_deploy.core.metadata import ArtifactMeta

    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        Image.new("L", (8, 8), 0 if name == "cat" else 255).save(tmp_path / "pets" / name / "0.png")
    meta = ArtifactMeta(
        model="m", num_classes=10, input_size=(1, 8, 8), mean=(0.5,), std=(0.5,), labels=[str(i) for i in range(10)]
    )
    reset_warnings()  # what the CLI does when a command starts
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            assert load_data_for(str(tmp_path / "pets"), meta).labels is None
    assert caplog.text.count("do not match") == 1
    caplog.clear()
    reset_warnings()
    with caplog.at_level(logging.WARNING):
        load_data_for(str(tmp_path / "pets"), meta)
    assert caplog.text.count("do not match") == 1


def test_train_val_folder_layout_gives_its_own_split(tmp_path):
    """DIR/train and DIR/val (what `dnx train --dataset imagefolder` reads) are the splits, not classes."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from densenet_deploy.data.loading import load_data

    digits = load_digits()
    counts = {"train": 5, "val": 3}
    for split, n in counts.items():
        for cls in (1, 2):
            folder = tmp_path / "dig" / split / str(cls)
            folder.mkdir(parents=True)
            for i, image in enumerate(digits.images[digits.target == cls][:n]):
                Image.fromarray((image * 15).astype("uint8")).save(folder / f"{i}.png")
    args = (str(tmp_path / "dig"), (1, 8, 8), (0.3,), (0.3,))
    train, val, both = (load_data(*args, split=s) for s in ("train", "val", "all"))
    assert (len(train), len(val), len(both)) == (10, 6, 16)
    assert train.label_names == val.label_names == ["1", "2"]


def test_val_folder_takes_train_class_indices_by_name(tmp_path):
    """val/ holding only some of train/'s classes keeps train's numbering; an unknown class is refused."""
    from PIL import Image

    for split, classes in (("train", ("cat", "dog")), ("val", ("dog",))):
        for name in classes:
            folder = tmp_path / "tv" / split / name
            folder.mkdir(parents=True)
            for i in range(2):
                Image.new("L", (8, 8), 255 if name == "dog" else 0).save(folder / f"{i}.png")
    args = (str(tmp_path / "tv"), (1, 8, 8), (0.5,), (0.5,))
    val, both = load_data(*args, split="val"), load_data(*args, split="all")
    assert val.label_names == ["cat", "dog"] and list(val.labels) == [1, 1]
    assert list(both.labels) == [0, 0, 1, 1, 1, 1]
    zebra = tmp_path / "tv" / "val" / "zebra"
    zebra.mkdir()
    Image.new("L", (8, 8), 128).save(zebra / "0.png")
    for split in ("val", "all"):
        with pytest.raises(DataError, match="zebra"):
            load_data(*args, split=split)


# --- 16-bit images and PIL's pixel limit ---------------------------------------------------------------
def _png_bytes(width, height, bit_depth, color_type, rows) -> bytes:
    """A PNG file written chunk by chunk (PIL writes no 16-bit RGB, and would need the pixels in memory)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(6)
    data = b"".join(packer.compress(b"\0" + row) for row in rows) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def write_png16(path, array):
    """A 16-bit PNG of uint16 `array`: (H, W) gray, (H, W, 2) gray + alpha or (H, W, 3) RGB."""
    array = np.asarray(array, dtype=np.uint16)
    color_type = {2: 0, 3: {2: 4, 3: 2}.get(array.shape[-1])}[array.ndim]
    rows = [row.astype(">u2").tobytes() for row in array]
    path.write_bytes(_png_bytes(array.shape[1], array.shape[0], 16, color_type, rows))


def write_huge_png(path, side=20000):
    """A valid all-black side x side 8-bit gray PNG (~400 KB): more pixels than PIL opens (2 x 89.5 M)."""
    zero_row = bytes(side)
    path.write_bytes(_png_bytes(side, side, 8, 0, (zero_row for _ in range(side))))


def test_16bit_images_preprocess_like_their_8bit_version(tmp_path):
    """16-bit PNG/PGM of X * 257 (or X * 256 + low bits) give X's 8-bit result: value >> 8, as stb_image
    (dnx-infer) decodes them, not PIL's convert("L"), which saturates 16-bit gray at 255."""
    from PIL import Image
    from sklearn.datasets import load_digits

    x = np.round(load_digits().images[5] * 255 / 16).astype(np.uint16)  # 8x8, values 0..255
    x = np.kron(x, np.ones((2, 3), np.uint16))[:, :20]  # 16x20: not the input size, so it is resized
    inv = 255 - x
    low_bits = np.random.default_rng(0).integers(0, 256, size=x.shape, dtype=np.uint16)
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(x.astype(np.uint8)).save(folder / "gray8.png")
    Image.fromarray(np.stack([x, inv, x], -1).astype(np.uint8)).save(folder / "rgb8.png")
    gray16 = Image.fromarray(x * 257)
    assert gray16.mode == "I;16"
    gray16.save(folder / "gray16.png")
    gray16.save(folder / "gray16.pgm")
    Image.fromarray(x * 256 + low_bits).save(folder / "gray16_low_bits.png")  # floor, not rounding
    write_png16(folder / "gray_alpha16.png", np.stack([x * 257, np.full_like(x, 65535)], -1))
    write_png16(folder / "rgb16.png", np.stack([x, inv, x], -1) * 257)
    with Image.open(folder / "gray16.png") as a, Image.open(folder / "gray16.pgm") as b:
        assert a.mode.startswith("I") and b.mode.startswith("I")  # what made convert("L") clip

    for size in ((1, 16, 16), (3, 12, 12), (1, 16, 20)):
        mean, std = (0.5,) * size[0], (0.25,) * size[0]
        gray = preprocess_image(folder / "gray8.png", size, mean, std)
        rgb = preprocess_image(folder / "rgb8.png", size, mean, std)
        for name in ("gray16.png", "gray16.pgm", "gray16_low_bits.png", "gray_alpha16.png"):
            np.testing.assert_array_equal(preprocess_image(folder / name, size, mean, std), gray, err_msg=name)
        np.testing.assert_array_equal(preprocess_image(folder / "rgb16.png", size, mean, std), rgb)
        # The folder reader takes the same path.
        ds = load_data(str(folder), size, mean, std)
        assert ds.skipped == 0 and len(ds) == 7
        names = sorted(os.listdir(folder))
        for name, row in zip(names, ds.images):
            np.testing.assert_array_equal(row, rgb if name.startswith("rgb") else gray, err_msg=name)


def test_images_over_pils_pixel_limit_are_unreadable(tmp_path, caplog):
    """A 20000x20000 PNG (400 KB) trips PIL's decompression-bomb guard: skipped with a warning in a folder,
    a one-line DataError alone; PIL's global limit is left as it is."""
    from PIL import Image

    from densenet_deploy.data.loading import open_image

    limit = Image.MAX_IMAGE_PIXELS
    write_digit_pngs(tmp_path / "dir", per_class=2)
    huge = tmp_path / "dir" / "class_1" / "huge.png"
    write_huge_png(huge)
    assert huge.stat().st_size < 1_000_000
    with caplog.at_level(logging.WARNING):
        ds = load_data(str(tmp_path / "dir"), SIZE, 0.5, 0.25)
    assert ds.skipped == 1 and len(ds) == 6
    assert "huge.png (too many pixels for PIL's limit" in caplog.text

    for fn in (lambda: open_image(huge), lambda: preprocess_image(huge, SIZE, 0.5, 0.25)):
        with pytest.raises(DataError, match=r"huge\.png is not a readable image \(too many pixels for PIL's limit"):
            fn()
    assert Image.MAX_IMAGE_PIXELS == limit

    # Through the CLI: one `error:` line, exit 2, before any network use.
    pytest.importorskip("tritonclient.http", reason="tritonclient (extra 'triton') for `dnx triton-client`")
    from click.testing import CliRunner

    from densenet_deploy.cli.main import cli

    result = CliRunner().invoke(cli, ["triton-client", "http://127.0.0.1:9", "densenet", str(huge)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "too many pixels for PIL's limit" in result.output
    assert [line for line in result.output.splitlines() if line.startswith("error: ")], result.output
