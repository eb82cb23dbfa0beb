"""PyTorch eager runner: a zoo name or checkpoint, in eval mode, under torch.inference_mode."""

from __future__ import annotations

import logging

import numpy as np

from densenet_deploy.core.constants import INPUT_NAME
from densenet_deploy.core.errors import BackendUnavailableError
from densenet_deploy.core.metadata import ArtifactMeta
from densenet_deploy.models.loading import load_model
from densenet_deploy.runners.base import InputSpec, Runner

log = logging.getLogger(__name__)


class TorchRunner(Runner):
    """Runs a DenseNet from the zoo (random init, or `weights`) or a dnx checkpoint.

    `channels_last` switches the model and inputs to NHWC memory (faster convolutions on many CPUs
    and on GPUs); `threads` sets torch's intra-op thread count; `device` is "cpu" or "cuda[:N]".
    """

    backend = "torch"

    def __init__(
        self,
        artifact: str,
        weights: str | None = None,
        channels_last: bool = False,
        threads: int | None = None,
        device: str = "cpu",
        num_classes: int | None = None,
        input_size: int | None = None,
    ):
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError(f"device {device!r} asked for, but torch sees no CUDA GPU; use --device cpu")
        if threads:
            torch.set_num_threads(int(threads))
        loaded = load_model(artifact, weights=weights, num_classes=num_classes, input_size=input_size)
        self._torch = torch
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = loaded.model.eval().to(device=device, memory_format=self._memory_format)
        self.name = artifact
        self.device = device
        self.channels_last = channels_last
        self.input = InputSpec(INPUT_NAME, tuple(loaded.input_size))
        self.meta = ArtifactMeta(
            model=loaded.name,
            num_classes=int(loaded.config["num_classes"]),
            input_size=tuple(loaded.input_size),
            mean=tuple(loaded.mean),
            std=tuple(loaded.std),
            model_config=dict(loaded.config),
            labels=loaded.labels,
            weights_sha256=loaded.weights_sha256,
        )
        log.debug("torch runner: %s (%s) on %s", loaded.name, loaded.source, device)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device).contiguous(memory_format=self._memory_format)
            return self.model(x).float().cpu().numpy()

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize(self.device)

    def close(self) -> None:
        self.model = None

    def describe(self) -> dict:
        info = super().describe()
        info["channels_last"] = self.channels_last
        return info
