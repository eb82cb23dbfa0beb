"""Calibration data sources: the shared data API of densenet_deploy.data (one loader for every step)."""

from densenet_deploy.data import (SPLITS, Dataset, RawDataset, channel_stats, iter_batches, load_data,
                                  load_data_for, load_raw, normalize, preprocess_image)

__all__ = ["Dataset", "RawDataset", "load_data", "load_data_for", "load_raw", "channel_stats", "normalize",
           "preprocess_image", "iter_batches", "SPLITS"]
