"""Compare two sets of logits: the metrics export, calibrate, verify and bench all report, judged by a gate of
the one policy table (densenet_deploy.core.policy)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from densenet_deploy.core.errors import DataError
from densenet_deploy.core.policy import Gate
from densenet_deploy.core.results import Result


@dataclass
class ParityResult(Result):
    """Truthy when it passes; prints as a small table."""

    samples: int
    max_abs_diff: float
    mean_abs_diff: float
    rel_l2: float
    cosine_min: float
    centered_cosine_min: float
    top1_agreement: float
    logit_scale: float
    passed: bool
    failures: list[str] = field(default_factory=list)
    accuracy: dict | None = None  # {"ref": .., "cand": ..} when labels are known
    data: str | None = None  # what the inputs were, when the caller says (e.g. "digits (val split)")
    gate: dict | None = None  # the gate it was judged by, when the caller records it
    candidate: dict | None = None  # what ran the candidate, when the caller knows (e.g. OpenVINO's precision)

    def __bool__(self) -> bool:
        return self.passed

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        rows = [
            ("samples", f"{self.samples}"),
            ("max |diff|", f"{self.max_abs_diff:.3g}"),
            ("mean |diff|", f"{self.mean_abs_diff:.3g}"),
            ("rel L2", f"{self.rel_l2:.3g}"),
            ("cosine min", f"{self.cosine_min:.6f}"),
            ("centered cos min", f"{self.centered_cosine_min:.6f}"),
            ("top-1 agreement", f"{self.top1_agreement * 100:.2f} %"),
        ]
        if self.accuracy:
            rows.append(
                ("accuracy ref/cand", f"{self.accuracy['ref'] * 100:.2f} % / {self.accuracy['cand'] * 100:.2f} %")
            )
        rows.append(("result", "PASS" if self.passed else "FAIL: " + "; ".join(self.failures)))
        return "\n".join(f"  {k:<18}{v}" for k, v in rows)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    denom = na * nb
    cos = np.where(denom > 0, (a * b).sum(1) / np.where(denom > 0, denom, 1), 1.0)
    # Two all-zero rows are identical; one zero row against a non-zero one is not.
    cos = np.where((na == 0) ^ (nb == 0), 0.0, cos)
    return cos


def compare_outputs(
    ref: np.ndarray,
    cand: np.ndarray,
    labels: np.ndarray | None = None,
    gate: Gate | None = None,
    real_data: bool = True,
    center: np.ndarray | None = None,
) -> ParityResult:
    """Metrics of `cand` logits against `ref` logits (both (N, classes)), judged by `gate` (None: metrics only;
    non-finite candidate outputs fail whatever the gate). `real_data`: the inputs are real images, not the
    `random` source (agreement and accuracy are gated only on real data, see core.policy).

    With random weights every input picks the same class, so top-1 agreement proves little; the
    centered cosine (logits minus the mean reference logit, or `center`) shows whether the candidate
    reproduces how outputs *vary* between inputs, and rel_l2 = ||cand - ref|| / ||ref|| the overall error.
    """
    ref = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    cand = np.asarray(cand, dtype=np.float64).reshape(len(cand), -1)
    if ref.shape != cand.shape:
        raise DataError(f"cannot compare outputs of shapes {ref.shape} and {cand.shape}")
    diff = np.abs(ref - cand)
    ref_norm = float(np.linalg.norm(ref))
    mid = ref.mean(0, keepdims=True) if center is None else np.asarray(center, dtype=np.float64).reshape(1, -1)
    cos = _cosines(ref, cand)
    ccos = _cosines(ref - mid, cand - mid)
    accuracy = None
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        accuracy = {"ref": float((ref.argmax(1) == labels).mean()), "cand": float((cand.argmax(1) == labels).mean())}
    result = ParityResult(
        samples=len(ref),
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        rel_l2=float(np.linalg.norm(ref - cand) / ref_norm) if ref_norm > 0 else float(np.linalg.norm(cand) > 0),
        cosine_min=float(cos.min()) if len(cos) else 1.0,
        centered_cosine_min=float(ccos.min()) if len(ccos) else 1.0,
        top1_agreement=float((ref.argmax(1) == cand.argmax(1)).mean()) if len(ref) else 1.0,
        logit_scale=float(ref.max() - ref.min()) if ref.size else 0.0,
        passed=True,
        accuracy=accuracy,
    )
    failures = [] if np.all(np.isfinite(cand)) else ["candidate has NaN/inf outputs"]
    if gate is not None:
        failures += gate_failures(result, gate, real_data)
    result.failures, result.passed = failures, not failures
    return result


def gate_failures(parity: ParityResult, gate: Gate, real_data: bool = True) -> list[str]:
    """What in `parity` misses `gate`, one message per metric (empty: it passes)."""
    failures = []
    bound = (
        gate.atol
        if gate.atol is not None
        else (gate.rel_atol * max(parity.logit_scale, 1.0) if gate.rel_atol is not None else None)
    )
    if bound is not None and parity.max_abs_diff > bound:
        failures.append(f"max |diff| {parity.max_abs_diff:.3g} > {bound:.3g}")
    if gate.max_rel_l2 is not None and not parity.rel_l2 <= gate.max_rel_l2:
        failures.append(f"rel L2 {parity.rel_l2:.4g} > {gate.max_rel_l2}")
    if gate.min_centered_cosine is not None and parity.centered_cosine_min < gate.min_centered_cosine:
        failures.append(f"centered cosine {parity.centered_cosine_min:.4f} < {gate.min_centered_cosine}")
    if not (real_data or gate.agreement_on_random):
        return failures
    if gate.min_agreement is not None and parity.top1_agreement < gate.min_agreement:
        failures.append(f"top-1 agreement {parity.top1_agreement * 100:.2f} % < {gate.min_agreement * 100:.2f} %")
    if gate.max_accuracy_drop is not None and parity.accuracy:
        drop = (parity.accuracy["ref"] - parity.accuracy["cand"]) * 100
        if drop > gate.max_accuracy_drop:
            failures.append(
                f"accuracy drop {drop:.2f} points > {gate.max_accuracy_drop:g} points "
                f"({parity.accuracy['cand'] * 100:.2f} % vs {parity.accuracy['ref'] * 100:.2f} %)"
            )
    return failures
