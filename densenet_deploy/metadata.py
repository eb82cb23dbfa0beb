"""The description every artifact carries: ONNX metadata_props and the JSON sidecar of other formats.

All values are stored as strings under keys starting with ``dnx.``; structured values are JSON.
The C++ runtime and the Triton exporter read the same keys, so the set below is a public contract.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from .constants import INPUT_NAME, LAYOUT, OUTPUT_NAME
from .errors import ArtifactError

PREFIX = "dnx."
FORMAT_VERSION = "1"
SIDECAR_SUFFIX = ".json"


@dataclass
class ArtifactMeta:
    """What an artifact says about itself; the fields map 1:1 onto ``dnx.<field>`` metadata keys."""

    model: str
    num_classes: int
    input_size: tuple[int, int, int]  # C, H, W
    mean: tuple[float, ...]
    std: tuple[float, ...]
    model_config: dict = field(default_factory=dict)
    labels: list[str] | None = None
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    layout: str = LAYOUT
    batch: int | None = None  # None: dynamic batch axis
    precision: str = "fp32"
    softmax: bool = False
    weights_sha256: str = ""
    versions: dict = field(default_factory=dict)
    calibration: dict | None = None
    extra: dict = field(default_factory=dict)
    format_version: str = FORMAT_VERSION

    # --- string map (ONNX metadata_props / sidecar "metadata") -----------------------------
    def to_props(self) -> dict[str, str]:
        props = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            props[PREFIX + f.name] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "artifact") -> "ArtifactMeta":
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {}
        for key, raw in props.items():
            if not key.startswith(PREFIX):
                continue
            name = key[len(PREFIX):]
            if name not in known:
                continue
            if known[name].type == "str":
                values[name] = raw
            else:
                try:
                    values[name] = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise ArtifactError(f"{source}: metadata {key} is not valid JSON: {raw[:60]!r}") from exc
        missing = [n for n in ("model", "num_classes", "input_size", "mean", "std") if n not in values]
        if missing:
            raise ArtifactError(
                f"{source} has no dnx metadata ({', '.join(PREFIX + m for m in missing)} missing); "
                "export it with `dnx export` so later steps know its input size and normalisation"
            )
        values["input_size"] = tuple(int(v) for v in values["input_size"])
        values["mean"] = tuple(float(v) for v in values["mean"])
        values["std"] = tuple(float(v) for v in values["std"])
        return cls(**values)

    def replace(self, **changes) -> "ArtifactMeta":
        return dataclasses.replace(self, **changes)


# --- ONNX --------------------------------------------------------------------------------------
def write_onnx_meta(model_proto, meta: ArtifactMeta) -> None:
    """Replace the dnx.* metadata_props of an in-memory ONNX ModelProto (other keys are kept)."""
    keep = [(p.key, p.value) for p in model_proto.metadata_props if not p.key.startswith(PREFIX)]
    del model_proto.metadata_props[:]
    for key, value in keep + sorted(meta.to_props().items()):
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value


def read_onnx_meta(model_or_path) -> ArtifactMeta:
    """Read ArtifactMeta from an ONNX ModelProto or path (without loading external weights)."""
    if isinstance(model_or_path, (str, os.PathLike)):
        proto = load_onnx(model_or_path, load_weights=False)
        source = os.fspath(model_or_path)
    else:
        proto, source = model_or_path, "ONNX model"
    return ArtifactMeta.from_props({p.key: p.value for p in proto.metadata_props}, source=source)


def load_onnx(path, load_weights: bool = True):
    """onnx.load with a one-line ArtifactError for missing or corrupt files."""
    import onnx

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ArtifactError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise ArtifactError(f"{path} is not a readable ONNX model (the file is empty)")
    try:
        model = onnx.load(path, load_external_data=load_weights)
    except Exception as exc:  # protobuf DecodeError and friends: the file is not an ONNX model
        raise ArtifactError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    if not model.HasField("graph") or not model.graph.node:  # protobuf parses some garbage as an empty model
        raise ArtifactError(f"{path} is not a readable ONNX model (it holds no graph)")
    return model


def load_fp32_export(onnx_path, verb: str, output=None):
    """(ModelProto, ArtifactMeta) of the plain fp32 export a precision step (calibrate, fp16, bf16) starts
    from; ArtifactError for another precision, a deployment or a fixed batch, or an `output` that is it."""
    if output is not None and os.path.realpath(output) == os.path.realpath(onnx_path):
        raise ArtifactError(f"output {output} would overwrite the fp32 model; choose another output")
    model = load_onnx(onnx_path)
    meta = read_onnx_meta(model)
    if meta.precision != "fp32":
        raise ArtifactError(f"{onnx_path} is already {meta.precision}; {verb} the fp32 export")
    check_plain_export(model, meta, onnx_path, verb)
    return model, meta


def check_plain_export(model_proto, meta: ArtifactMeta, source: str, verb: str) -> None:
    """Precision steps take `dnx export`'s plain graph: a dynamic batch axis and standard ONNX ops only.

    An ONNX Runtime deployment (model.ort.onnx) holds com.microsoft fused/NCHWc ops that the quantizer
    would silently skip, and a fixed-batch export cannot be fed calibration batches of other sizes.
    """
    custom = sorted({n.domain for n in model_proto.graph.node if n.domain not in ("", "ai.onnx")})
    if custom:
        raise ArtifactError(f"{source} contains {', '.join(custom)} ops (an ONNX Runtime deployment?); "
                            f"{verb} the plain fp32 export from `dnx export` instead")
    if meta.batch is not None:
        raise ArtifactError(f"{source} has a fixed batch of {meta.batch}; {verb} the dynamic-batch export "
                            "(`dnx export` without --batch); a TensorRT engine fixes its batch when building "
                            "(build-engine --min-batch/--opt-batch/--max-batch), other targets keep it dynamic")


# --- sidecars (plan, OpenVINO IR, ORT deployment) -------------------------------------------------
def sidecar_path(artifact_path) -> str:
    return os.fspath(artifact_path) + SIDECAR_SUFFIX


def drop_stale_sidecar(onnx_path) -> None:
    """Remove `<onnx_path>.json` left by an earlier artifact at this path (e.g. an ONNX Runtime deployment):
    a plain ONNX file carries its metadata inside, and readers would take the old sidecar for its own."""
    stale = sidecar_path(onnx_path)
    if os.path.isfile(stale):
        os.remove(stale)
        import logging

        logging.getLogger(__name__).info("removed %s: it described the file %s replaces", stale, onnx_path)


ARTIFACT_SHA256 = "artifact_sha256"  # sidecar key: sha256 of the artifact it describes (the .xml for OpenVINO IR)


def write_sidecar(artifact_path, meta: ArtifactMeta, artifact_file=None, **extra) -> str:
    """Write ``<artifact>.json`` holding the metadata string map plus target-specific fields.

    The sidecar also records the sha256 of the artifact's bytes (``artifact_sha256``), read from
    `artifact_file` when the artifact is still at a temporary path (moved onto `artifact_path` later:
    a move keeps the bytes), else from `artifact_path`; read_sidecar refuses a sidecar whose hash is
    not the artifact's own. No hash is recorded when neither file exists yet.
    """
    from .io import atomic_write_text

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
    from .io import sha256_file

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
        raise ArtifactError(f"sidecar {sidecar} describes another file than {artifact_path} (its sha256 differs); "
                            "rebuild, or restore the right sidecar")


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
