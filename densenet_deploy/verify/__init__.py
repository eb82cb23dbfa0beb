"""Parity between two artifacts: the metrics (compare) and the check of any artifact against another (parity)."""

from densenet_deploy.verify.compare import ParityResult, Thresholds, compare_outputs
from densenet_deploy.verify.parity import VerifyResult, verify

__all__ = ["ParityResult", "Thresholds", "compare_outputs", "VerifyResult", "verify"]
