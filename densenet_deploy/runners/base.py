"""The Runner protocol every backend implements: check the input here, run it in `_run`."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from densenet_deploy.core.errors import DataError


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

    `batch_range` is (least, most) batch size the artifact runs, most None for no bound: by default
    (1, None), or (N, N) for a fixed batch of N; a runner with another range (a TensorRT plan's
    optimisation profile) assigns its own. run() refuses batches outside it; callers chunk and pad
    (verify.run_batches) or skip (bench) accordingly.
    """

    name: str
    backend: str
    precision: str = "fp32"
    device: str = "cpu"
    input: InputSpec
    meta = None
    batch_range_hint = ""  # appended to the out-of-range message, e.g. which build options set the range

    @property
    def batch_range(self) -> tuple[int, int | None]:
        explicit = self.__dict__.get("_batch_range")
        if explicit is not None:
            return explicit
        fixed = self.input.batch
        return (int(fixed), int(fixed)) if fixed else (1, None)

    @batch_range.setter
    def batch_range(self, value) -> None:
        lo, hi = value
        lo, hi = max(1, int(lo)), (None if hi is None else int(hi))
        if hi is not None and hi < lo:
            raise ValueError(f"batch range ({lo}, {hi}) is empty")
        self._batch_range = (lo, hi)

    def accepts_batch(self, size: int) -> bool:
        """Whether `size` lies in batch_range."""
        lo, hi = self.batch_range
        return lo <= size and (hi is None or size <= hi)

    def batch_range_text(self) -> str:
        """ "fixed batch 8", "batch sizes 2..16" or "batch sizes 1 and up" (for messages)."""
        lo, hi = self.batch_range
        if lo == hi:
            return f"fixed batch {lo}"
        return f"batch sizes {lo}..{hi}" if hi is not None else f"batch sizes {lo} and up"

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = self.check_input(batch)
        return np.asarray(self._run(batch), dtype=np.float32)

    def check_input(self, batch) -> np.ndarray:
        batch = np.asarray(batch)
        expected = self.input.shape
        if batch.ndim != 4 or tuple(batch.shape[1:]) != tuple(expected):
            raise DataError(
                f"{self.name} expects input of shape (N, {', '.join(map(str, expected))}), got {tuple(batch.shape)}"
            )
        if self.input.batch is not None and batch.shape[0] != self.input.batch:
            raise DataError(f"{self.name} has a fixed batch of {self.input.batch}, got {batch.shape[0]}")
        if not self.accepts_batch(batch.shape[0]):
            raise DataError(
                f"{self.name} was built for {self.batch_range_text()}{self.batch_range_hint}, "
                f"got a batch of {batch.shape[0]}"
            )
        if batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        return np.ascontiguousarray(batch)

    @abc.abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray: ...

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
        return {
            "artifact": self.name,
            "backend": self.backend,
            "precision": self.precision,
            "device": self.device,
            "input": {"name": self.input.name, "shape": list(self.input.shape), "batch": self.input.batch},
            "batch_range": list(self.batch_range),
        }
