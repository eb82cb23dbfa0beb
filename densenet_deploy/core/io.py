"""Atomic file writes (one file, a JSON document, or a set of report files): a failed step never leaves a
partial output behind; and path checks that fail before any long work runs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile

from densenet_deploy.core.errors import DnxError
from densenet_deploy.core.results import json_default


def check_output_path(path) -> str:
    """Fail early (one line) when `path` cannot become an output file: before any long work runs."""
    path = os.fspath(path)
    if not path:
        raise DnxError("output path is empty")
    if os.path.isdir(path):
        raise DnxError(f"output path {path} is a directory; give a file name")
    target = os.path.realpath(path)  # a symlink: write its target, keep the link
    if os.path.exists(target) and not stat.S_ISREG(os.stat(target).st_mode):
        # Outputs are written beside the target and renamed over it: that would replace a device
        # (-o /dev/null as root) or a pipe with a regular file.
        raise DnxError(
            f"output path {path} exists and is not a regular file (a device, pipe or socket); give a file name"
        )
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
        fd, tmp = tempfile.mkstemp(
            prefix=".dnx-", suffix=suffix or os.path.splitext(path)[1], dir=os.path.dirname(target)
        )
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


def check_report_dir(directory: str) -> str:
    """Create DIR if needed; fail early (before any measuring) when it cannot be written."""
    return check_output_dir(directory, "--report")


def _missing_levels(directory: str) -> list[str]:
    """The levels of `directory` that do not exist yet, deepest first (what makedirs would create)."""
    missing, path = [], os.path.abspath(directory)
    while not os.path.lexists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def _remove_empty(levels: list[str]) -> None:
    for path in levels:  # deepest first; stops at the first one that is not empty
        try:
            os.rmdir(path)
        except OSError:
            return


def check_report_outputs(directory: str, names) -> str:
    """Fail early (one line, before any measuring) when DIR or any report file in it cannot be written.

    Leaves the file system as it was: a directory created for the check is removed again."""
    created = _missing_levels(directory)
    try:
        check_report_dir(directory)
        for name in names:
            check_output_path(os.path.join(directory, name))
    finally:
        _remove_empty(created)
    return directory


class StagedReport:
    """Report files written into a hidden directory inside DIR, moved into place only when all succeeded:
    a failure leaves none of them (and no directory that this report created)."""

    def __init__(self, directory: str, names):
        self.directory, self.created = directory, _missing_levels(directory)
        check_report_outputs(directory, names)
        check_report_dir(directory)
        try:
            self.stage = tempfile.mkdtemp(prefix=".dnx-report-", dir=directory)
        except OSError as exc:
            _remove_empty(self.created)
            raise DnxError(f"cannot write --report {directory}: {exc.strerror or exc}") from exc

    def path(self, name: str) -> str:
        return os.path.join(self.stage, name)

    def commit(self, files: dict) -> dict:
        """Move every staged file over its final name; returns `files` with the final paths."""
        final = {key: os.path.join(self.directory, os.path.basename(p)) for key, p in files.items()}
        moved = []
        try:
            for key, path in files.items():
                target = os.path.realpath(final[key])  # a symlink: replace its target, keep the link
                os.replace(path, target)
                moved.append(target)
        except OSError as exc:
            for path in moved:
                os.unlink(path)
            raise DnxError(f"cannot write the --report files in {self.directory}: {exc.strerror or exc}") from exc
        return final

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        shutil.rmtree(self.stage, ignore_errors=True)
        if exc_type is not None:
            _remove_empty(self.created)
        return False


def write_json(path: str, doc: dict) -> None:
    """`doc` as indented JSON at `path`, atomically (dataclasses and numpy values converted)."""
    atomic_write_text(path, json.dumps(doc, indent=2, default=json_default) + "\n")
