"""Compare two sets of logits: the metrics export, calibrate, verify and bench all report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from densenet_deploy.core.errors import DataError


@dataclass
class Thresholds:
    """Pass criteria; `rel_atol` scales with the reference logit range so it works for any model."""

    atol: float | None = None  # absolute max diff bound; None: use rel_atol * logit scale
    rel_atol: float = 1e-3
    min_agreement: float = 1.0
    min_centered_cosine: float | None = None
    max_rel_l2: float | None = None


@dataclass
class ParityResult:
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
    thresholds: Thresholds | None = None,
    center: np.ndarray | None = None,
) -> ParityResult:
    """Metrics of `cand` logits against `ref` logits (both (N, classes)).

    With random weights every input picks the same class, so top-1 agreement proves little; the
    centered cosine (logits minus the mean reference logit, or `center`) shows whether the candidate
    reproduces how outputs *vary* between inputs, and rel_l2 = ||cand - ref|| / ||ref|| the overall error.
    """
    t = thresholds or Thresholds()
    ref = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
    cand = np.asarray(cand, dtype=np.float64).reshape(len(cand), -1)
    if ref.shape != cand.shape:
        raise DataError(f"cannot compare outputs of shapes {ref.shape} and {cand.shape}")
    diff = np.abs(ref - cand)
    max_abs = float(diff.max()) if diff.size else 0.0
    mean_abs = float(diff.mean()) if diff.size else 0.0
    ref_norm = float(np.linalg.norm(ref))
    rel_l2 = float(np.linalg.norm(ref - cand) / ref_norm) if ref_norm > 0 else float(np.linalg.norm(cand) > 0)
    mid = ref.mean(0, keepdims=True) if center is None else np.asarray(center, dtype=np.float64).reshape(1, -1)
    cos = _cosines(ref, cand)
    ccos = _cosines(ref - mid, cand - mid)
    agree = float((ref.argmax(1) == cand.argmax(1)).mean()) if len(ref) else 1.0
    scale = float(ref.max() - ref.min()) if ref.size else 0.0
    bound = t.atol if t.atol is not None else t.rel_atol * max(scale, 1.0)

    failures = []
    if not np.all(np.isfinite(cand)):
        failures.append("candidate has NaN/inf outputs")
    if max_abs > bound:
        failures.append(f"max |diff| {max_abs:.3g} > {bound:.3g}")
    if agree < t.min_agreement:
        failures.append(f"top-1 agreement {agree * 100:.2f} % < {t.min_agreement * 100:.2f} %")
    if t.min_centered_cosine is not None and float(ccos.min()) < t.min_centered_cosine:
        failures.append(f"centered cosine {float(ccos.min()):.4f} < {t.min_centered_cosine}")
    if t.max_rel_l2 is not None and rel_l2 > t.max_rel_l2:
        failures.append(f"rel L2 {rel_l2:.4g} > {t.max_rel_l2}")

    accuracy = None
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        accuracy = {"ref": float((ref.argmax(1) == labels).mean()), "cand": float((cand.argmax(1) == labels).mean())}
    return ParityResult(
        samples=len(ref),
        max_abs_diff=max_abs,
        mean_abs_diff=mean_abs,
        rel_l2=rel_l2,
        cosine_min=float(cos.min()) if len(cos) else 1.0,
        centered_cosine_min=float(ccos.min()) if len(ccos) else 1.0,
        top1_agreement=agree,
        logit_scale=scale,
        passed=not failures,
        failures=failures,
        accuracy=accuracy,
    )
