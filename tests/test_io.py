"""Outputs are written atomically and never replace what is not a regular file."""

import os

import pytest

from densenet_deploy.core.errors import DnxError
from densenet_deploy.core.io import atomic_write_text, check_output_path


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    from densenet_deploy.core.io import atomic_output

    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            open(tmp, "w").write("partial")
            raise RuntimeError("the step failed")
    assert os.listdir(tmp_path) == []


def test_refuses_devices_and_pipes(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(DnxError, match="not a regular file"):
        check_output_path(fifo)
    with pytest.raises(DnxError, match="not a regular file"):
        atomic_write_text("/dev/null", "x")
    assert not os.path.isfile("/dev/null")


def test_symlink_output_writes_the_target(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_directory_missing_and_unwritable_paths(tmp_path):
    with pytest.raises(DnxError, match="is a directory"):
        check_output_path(tmp_path)
    with pytest.raises(DnxError, match="does not exist"):
        check_output_path(tmp_path / "nope" / "x.onnx")
    if os.path.isdir("/proc/self"):
        with pytest.raises(DnxError, match="cannot write"):
            check_output_path("/proc/self/x.onnx")
