"""Atomic file writes: a failed step never leaves a partial output behind."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile

from .errors import DnxError


def check_output_path(path) -> str:
    """Fail early (one line) when `path` cannot become an output file: before any long work runs."""
    import stat

    path = os.fspath(path)
    if not path:
        raise DnxError("output path is empty")
    if os.path.isdir(path):
        raise DnxError(f"output path {path} is a directory; give a file name")
    target = os.path.realpath(path)  # a symlink: write its target, keep the link
    if os.path.exists(target) and not stat.S_ISREG(os.stat(target).st_mode):
        # Outputs are written beside the target and renamed over it: that would replace a device
        # (-o /dev/null as root) or a pipe with a regular file.
        raise DnxError(f"output path {path} exists and is not a regular file (a device, pipe or socket); "
                       "give a file name")
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise DnxError(f"cannot write {path}: directory {parent} does not exist")
    try:  # os.access says yes to root on read-only mounts (/proc, ro bind mounts): try for real
        fd, probe = tempfile.mkstemp(prefix=".dnx-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DnxError(f"cannot write {path}: {exc.strerror or exc} in {parent}") from exc
    return path


def check_output_dir(directory, option: str = "output directory") -> str:
    """Create an output directory if needed; one-line DnxError (before any work) when it is a file or
    cannot be written. `option` names it in messages (e.g. "--report", "--workdir")."""
    directory = os.fspath(directory)
    if not directory:
        raise DnxError(f"{option} is empty")
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise DnxError(f"{option} {directory} is a file; give a directory (it is created if missing)")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise DnxError(f"cannot create {option} {directory}: {exc.strerror or exc}") from exc
    if not os.access(directory, os.W_OK):
        raise DnxError(f"{option} {directory} is not writable")
    return directory


@contextlib.contextmanager
def atomic_output(path, suffix: str = ""):
    """Yield a temp path in the target's directory; rename it over `path` only if the block succeeds."""
    path = check_output_path(path)
    target = os.path.realpath(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".dnx-", suffix=suffix or os.path.splitext(path)[1],
                                   dir=os.path.dirname(target))
    except OSError as exc:
        raise DnxError(f"cannot write {path}: {exc.strerror or exc}") from exc
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates the file 0600; give the artifact the mode a plain open() would (umask applies).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def sha256_file(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
