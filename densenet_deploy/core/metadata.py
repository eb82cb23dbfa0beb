"""The description every artifact carries (ArtifactMeta), stored in ONNX metadata_props (here) or in the JSON
sidecar of other formats (core.sidecars).

All values are stored as strings under keys starting with ``dnx.``; structured values are JSON.
The C++ runtime and the Triton exporter read the same keys, so the set below is a public contract.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from densenet_deploy.core.constants import INPUT_NAME, LAYOUT, OUTPUT_NAME
from densenet_deploy.core.errors import ArtifactError

PREFIX = "dnx."
FORMAT_VERSION = "1"


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
            name = key[len(PREFIX) :]
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
        raise ArtifactError(
            f"{source} contains {', '.join(custom)} ops (an ONNX Runtime deployment?); "
            f"{verb} the plain fp32 export from `dnx export` instead"
        )
    if meta.batch is not None:
        raise ArtifactError(
            f"{source} has a fixed batch of {meta.batch}; {verb} the dynamic-batch export "
            "(`dnx export` without --batch); a TensorRT engine fixes its batch when building "
            "(build-engine --min-batch/--opt-batch/--max-batch), other targets keep it dynamic"
        )
