"""Classify images with a model served by Triton (tritonclient over HTTP), preprocessed exactly as dnx does."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import numpy as np

from densenet_deploy.core.deps import require
from densenet_deploy.core.errors import ArtifactError, DataError, DnxError
from densenet_deploy.core.metadata import ArtifactMeta
from densenet_deploy.core.results import Result
from densenet_deploy.core.sidecars import read_artifact_meta
from densenet_deploy.data.loading import open_image, preprocess_image

log = logging.getLogger(__name__)

_NUMPY = {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16, "TYPE_FP64": np.float64}


def load_client_meta(artifact: str | None = None, config: dict | None = None) -> ArtifactMeta:
    """The preprocessing metadata: from `artifact` (an .onnx, a .plan/.xml with its sidecar, a dnx.json or
    sidecar .json, or a model directory of a repository written by `dnx triton`), else from the
    `dnx.metadata` parameter of the served config (python-backend models carry it)."""
    if artifact:
        if not os.path.exists(artifact):
            raise ArtifactError(f"--artifact {artifact}: no such file or directory")
        path = os.path.join(artifact, "dnx.json") if os.path.isdir(artifact) else artifact
        return read_artifact_meta(path)[0]
    raw = ((config or {}).get("parameters") or {}).get("dnx.metadata", {}).get("string_value")
    if not raw:
        raise DnxError(
            "the served model's config carries no dnx metadata; pass --artifact with the artifact, "
            "its sidecar, or the model's directory in the repository (its dnx.json)"
        )
    return ArtifactMeta.from_props(json.loads(raw), source="server config parameter dnx.metadata")


def _host_port(url: str) -> str:
    for scheme in ("http://", "https://"):
        if url.startswith(scheme):
            if scheme == "https://":
                raise DnxError("https URLs are not supported by `dnx triton-client`; use http://HOST:PORT")
            url = url[len(scheme) :]
    return url.rstrip("/")


def classify(
    url: str, model: str, images, topk: int = 5, artifact: str | None = None, version: str = "", timeout: float = 30.0
) -> Classification:
    """Send `images` (file paths) to `model` on the Triton server at `url`; top-k classes with labels.

    Returns {"url", "model", "version", "results": [{"image", "top": [{"index", "label", "probability",
    "logit"}]}]}. Inputs go in batches of the model's max_batch_size.
    """
    http = require("tritonclient.http", extra="triton", purpose="talking to a Triton server")
    from tritonclient.utils import InferenceServerException

    images = list(images)
    if not images:
        raise DnxError("no image given")
    host = _host_port(url)
    # Local inputs first: a bad image path or --artifact is its own error, with no network attempt.
    for path in images:
        if os.path.isdir(path):
            raise DataError(f"{os.fspath(path)} is a directory, not an image file; give the image files in it")
        open_image(path).close()
    local_meta = load_client_meta(artifact) if artifact else None
    client = http.InferenceServerClient(host, connection_timeout=timeout, network_timeout=timeout)
    try:
        try:
            config = client.get_model_config(model, model_version=version)
        except InferenceServerException as exc:
            raise DnxError(f"Triton at {host}: cannot get model {model!r}: {exc.message() or exc}") from exc
        except Exception as exc:  # connection refused, DNS, timeouts: tritonclient passes them through
            raise DnxError(f"cannot reach Triton at {host} ({type(exc).__name__}: {exc})") from exc
        meta = local_meta or load_client_meta(None, config)
        spec_in, spec_out = config["input"][0], config["output"][0]
        dtype = _NUMPY.get(spec_in.get("data_type"), np.float32)
        batch = np.stack([preprocess_image(p, meta.input_size, meta.mean, meta.std) for p in images]).astype(dtype)
        max_batch = int(config.get("max_batch_size", 0))
        if max_batch == 0:
            fixed = int(spec_in["dims"][0])
            if len(batch) != fixed:
                raise DnxError(
                    f"model {model!r} takes exactly {fixed} image(s) per request (fixed batch); got {len(batch)}"
                )
            chunks = [batch]
        else:
            chunks = [batch[i : i + max_batch] for i in range(0, len(batch), max_batch)]
        logits = []
        for chunk in chunks:
            tensor = http.InferInput(spec_in["name"], list(chunk.shape), spec_in["data_type"].replace("TYPE_", ""))
            tensor.set_data_from_numpy(chunk)
            wanted = [http.InferRequestedOutput(spec_out["name"])]
            try:
                reply = client.infer(model, [tensor], outputs=wanted, model_version=version)
            except InferenceServerException as exc:
                raise DnxError(f"Triton at {host}: inference on {model!r} failed: {exc.message() or exc}") from exc
            logits.append(np.asarray(reply.as_numpy(spec_out["name"]), dtype=np.float32).reshape(len(chunk), -1))
    finally:
        client.close()
    rows = [{"image": os.fspath(p), "top": top_k(row, meta, topk)} for p, row in zip(images, np.concatenate(logits))]
    return Classification(f"http://{host}", model, version or "latest", rows)


@dataclass
class Classification(Result):
    """Top-k classes per image from the server: {"image", "top": [{"index", "label", "probability", "logit"}]}."""

    url: str
    model: str
    version: str
    results: list[dict]

    def __str__(self) -> str:
        lines = []
        for r in self.results:
            lines.append(r["image"])
            lines += [f"  {t['probability'] * 100:6.2f} %  {t['label']} ({t['index']})" for t in r["top"]]
        return "\n".join(lines)


def top_k(logits: np.ndarray, meta: ArtifactMeta, k: int) -> list[dict]:
    """The k best classes of one logit row, with softmax probabilities and the metadata's labels."""
    logits = np.asarray(logits, dtype=np.float64)
    probs = logits if meta.softmax else np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    order = np.argsort(-logits, kind="stable")[:k]
    labels = meta.labels or []
    return [
        {
            "index": int(i),
            "label": labels[i] if i < len(labels) else str(int(i)),
            "probability": float(probs[i]),
            "logit": float(logits[i]),
        }
        for i in order
    ]
