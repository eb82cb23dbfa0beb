"""Sidecars: ``<artifact>.json`` describes artifacts that cannot carry metadata inside (TensorRT plans,
OpenVINO IRs, ONNX Runtime deployments): the metadata string map, target fields, and the artifact's sha256."""

from __future__ import annotations

import json
import logging
import os

from densenet_deploy.core.errors import ArtifactError
from densenet_deploy.core.formats import SIDECAR_SUFFIX, sidecar_path
from densenet_deploy.core.io import atomic_write_text, sha256_file
from densenet_deploy.core.metadata import ArtifactMeta, read_onnx_meta

log = logging.getLogger(__name__)


def drop_stale_sidecar(onnx_path) -> None:
    """Remove `<onnx_path>.json` left by an earlier artifact at this path (e.g. an ONNX Runtime deployment):
    a plain ONNX file carries its metadata inside, and readers would take the old sidecar for its own."""
    stale = sidecar_path(onnx_path)
    if os.path.isfile(stale):
        os.remove(stale)
        log.info("removed %s: it described the file %s replaces", stale, onnx_path)


ARTIFACT_SHA256 = "artifact_sha256"  # sidecar key: sha256 of the artifact it describes (the .xml for OpenVINO IR)


def write_sidecar(artifact_path, meta: ArtifactMeta, artifact_file=None, **extra) -> str:
    """Write ``<artifact>.json`` holding the metadata string map plus target-specific fields.

    The sidecar also records the sha256 of the artifact's bytes (``artifact_sha256``), read from
    `artifact_file` when the artifact is still at a temporary path (moved onto `artifact_path` later:
    a move keeps the bytes), else from `artifact_path`; read_sidecar refuses a sidecar whose hash is
    not the artifact's own. No hash is recorded when neither file exists yet.
    """
    doc = {"metadata": meta.to_props(), **extra}
    source = os.fspath(artifact_file) if artifact_file is not None else os.fspath(artifact_path)
    if os.path.isfile(source):
        doc[ARTIFACT_SHA256] = artifact_sha256(source)
    path = sidecar_path(artifact_path)
    atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path


_HASH_CACHE: dict[tuple, str] = {}


def artifact_sha256(path) -> str:
    """sha256 of a file, cached per (path, size, mtime) so one command hashes each artifact once."""
    path = os.path.realpath(os.fspath(path))
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _HASH_CACHE:
        _HASH_CACHE[key] = sha256_file(path)
    return _HASH_CACHE[key]


def check_sidecar_matches(artifact_path, doc: dict, sidecar: str | None = None) -> None:
    """ArtifactError when the sidecar `doc` records the sha256 of another file than `artifact_path`.

    Sidecars written before the hash was recorded (no ``artifact_sha256``) are accepted as they are.
    """
    recorded = doc.get(ARTIFACT_SHA256)
    artifact_path = os.fspath(artifact_path)
    if not recorded or not os.path.isfile(artifact_path):
        return
    if artifact_sha256(artifact_path) != recorded:
        sidecar = sidecar or sidecar_path(artifact_path)
        raise ArtifactError(
            f"sidecar {sidecar} describes another file than {artifact_path} (its sha256 differs); "
            "rebuild, or restore the right sidecar"
        )


def read_sidecar(artifact_path) -> tuple[ArtifactMeta, dict]:
    """Return (meta, whole sidecar document) for a non-ONNX artifact, checked against the artifact's sha256."""
    path = sidecar_path(artifact_path)
    if not os.path.isfile(path):
        raise ArtifactError(f"{artifact_path} has no sidecar {path}; build it with `dnx build-engine`")
    meta, doc = _read_sidecar_doc(path)
    check_sidecar_matches(artifact_path, doc, path)
    return meta, doc


def _read_sidecar_doc(path: str) -> tuple[ArtifactMeta, dict]:
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not a readable JSON sidecar ({exc})") from exc
    if not isinstance(doc, dict):
        raise ArtifactError(f"{path} is not a dnx sidecar (expected a JSON object)")
    return ArtifactMeta.from_props(doc.get("metadata", {}), source=path), doc


def read_artifact_meta(path) -> tuple[ArtifactMeta, dict]:
    """(meta, sidecar document) of any artifact: an .onnx (document {}), a sidecar .json itself, or an
    artifact (.plan, .xml, ORT deployment) next to its sidecar."""
    path = os.fspath(path)
    if path.lower().endswith(".onnx") and not os.path.isfile(sidecar_path(path)):
        return read_onnx_meta(path), {}
    if path.lower().endswith(".json"):
        if not os.path.isfile(path):
            raise ArtifactError(f"{path}: no such file")
        meta, doc = _read_sidecar_doc(path)
        check_sidecar_matches(path[: -len(SIDECAR_SUFFIX)], doc, path)  # when the artifact is beside it
        return meta, doc
    return read_sidecar(path)
