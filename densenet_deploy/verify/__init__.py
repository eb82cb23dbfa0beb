"""Parity between two artifacts: the metrics (compare) and the check of any artifact against another (parity)."""

from densenet_deploy.verify.compare import ParityResult, compare_outputs, gate_failures
from densenet_deploy.verify.parity import VerifyResult, verify

__all__ = ["ParityResult", "compare_outputs", "gate_failures", "VerifyResult", "verify"]
