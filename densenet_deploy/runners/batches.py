"""Run a runner over any number of images in batches it accepts: what every check and comparison uses."""

from __future__ import annotations

import numpy as np

from densenet_deploy.data.loading import iter_batches


def run_batches(runner, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Logits of `runner` for all `images`, in chunks of `batch_size` kept inside the runner's batch_range.

    Chunks are min(batch_size, the most the runner takes) images (at least the least it takes); a chunk
    shorter than the least (the last one, or all of a small set) is padded by repeating its last image,
    run, and its padding dropped. A fixed-batch artifact is the case least == most.
    """
    lo, hi = runner.batch_range
    step = max(lo, min(batch_size, hi) if hi is not None else batch_size)
    outputs = []
    for chunk in iter_batches(images, step):
        if len(chunk) < lo:  # pad up to the least batch the runner takes, then drop the padding
            pad = np.concatenate([chunk, np.repeat(chunk[-1:], lo - len(chunk), 0)])
            outputs.append(runner.run(pad)[: len(chunk)])
        else:
            outputs.append(runner.run(chunk))
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)
