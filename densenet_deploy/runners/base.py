"""The Runner protocol every backend implements: check the input here, run it in `_run`."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from ..errors import DataError


@dataclass(frozen=True)
class InputSpec:
    """One image batch input: name, per-image shape (C, H, W), fixed batch size or None (dynamic)."""

    name: str
    shape: tuple[int, int, int]
    batch: int | None = None
    dtype: str = "float32"


class Runner(abc.ABC):
    """Runs one artifact on batches of preprocessed NCHW float32 images and returns logits (N, classes).

    Subclasses set `name` (artifact path or model name), `backend` (torch | onnxruntime | openvino |
    tensorrt), `precision` (fp32 | fp16 | bf16 | int8), `device` (e.g. "cpu", "cuda:0"),
    `input` (InputSpec) and `meta` (ArtifactMeta or None), and implement `_run`.
    """

    name: str
    backend: str
    precision: str = "fp32"
    device: str = "cpu"
    input: InputSpec
    meta = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = self.check_input(batch)
        return np.asarray(self._run(batch), dtype=np.float32)

    def check_input(self, batch) -> np.ndarray:
        batch = np.asarray(batch)
        expected = self.input.shape
        if batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(expected):
            raise DataError(f"{self.name} expects input of shape (N, {', '.join(map(str, expected))}), "
                            f"got {tuple(batch.shape)}")
        if self.input.batch is not None and batch.shape[0] != self.input.batch:
            raise DataError(f"{self.name} has a fixed batch of {self.input.batch}, got {batch.shape[0]}")
        if batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        return np.ascontiguousarray(batch)

    @abc.abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        ...

    def synchronize(self) -> None:
        """Wait for queued device work (asynchronous GPU runners override this; timing calls it)."""

    def close(self) -> None:
        """Release sessions/engines; runners are also context managers."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def label(self) -> str:
        return f"{self.backend}-{self.device.split(':')[0]} {self.precision}"

    def describe(self) -> dict:
        return {"artifact": self.name, "backend": self.backend, "precision": self.precision,
                "device": self.device, "input": {"name": self.input.name, "shape": list(self.input.shape),
                                                 "batch": self.input.batch}}
