"""One data API for every step: a SRC string -> preprocessed NCHW float32 images (loading), the readers of
each source form (readers)."""

from densenet_deploy.data.loading import (
    SPLITS,
    Dataset,
    RawDataset,
    channel_stats,
    held_out_split,
    iter_batches,
    load_data,
    load_data_for,
    load_raw,
    normalize,
    open_image,
    open_source,
    preprocess_image,
    remap_labels,
    select_indices,
)

__all__ = [
    "SPLITS",
    "Dataset",
    "RawDataset",
    "channel_stats",
    "held_out_split",
    "iter_batches",
    "load_data",
    "load_data_for",
    "load_raw",
    "normalize",
    "open_image",
    "open_source",
    "preprocess_image",
    "remap_labels",
    "select_indices",
]
