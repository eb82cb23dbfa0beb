"""Latency and throughput of artifacts side by side, with parity against the first (timing), and their report."""

from densenet_deploy.bench.timing import bench

__all__ = ["bench"]
