"""Parity between any two artifacts (zoo name/checkpoint, .onnx, .xml, .plan) through their runners.

Default thresholds depend on the lower precision of the two (documented in docs/sections/05-build-engine.md):
- fp32: strict. max |diff| <= 1e-3 x logit range, rel L2 <= 1e-3, top-1 agreement >= 99 %.
- fp16: rel L2 <= 2e-2, centered cosine >= 0.99, agreement >= 98 %; no max |diff| bound.
- bf16: rel L2 <= 6e-2, agreement >= 95 %.
- int8: rel L2 <= 0.25, agreement >= 90 %: agreement-based, because INT8 logits move by design.
Any of them can be overridden (atol, rel_atol, min_agreement, min_centered_cosine, max_rel_l2).
With random weights every input gets the same top-1 class, so agreement alone proves nothing: rel L2 and
the centered cosine show whether the candidate reproduces how the logits vary between inputs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field

from densenet_deploy.core.errors import DataError, VerificationFailed
from densenet_deploy.data.loading import held_out_split, load_data_for
from densenet_deploy.runners import check_provider_option, open_runner
from densenet_deploy.runners.batches import run_batches
from densenet_deploy.verify.compare import ParityResult, Thresholds, compare_outputs

log = logging.getLogger(__name__)

PRECISION_RANK = {"fp32": 0, "fp16": 1, "bf16": 2, "int8": 3}
DEFAULT_THRESHOLDS = {
    "fp32": Thresholds(rel_atol=1e-3, min_agreement=0.99, max_rel_l2=1e-3),
    "fp16": Thresholds(rel_atol=math.inf, min_agreement=0.98, min_centered_cosine=0.99, max_rel_l2=2e-2),
    "bf16": Thresholds(rel_atol=math.inf, min_agreement=0.95, max_rel_l2=6e-2),
    "int8": Thresholds(rel_atol=math.inf, min_agreement=0.90, max_rel_l2=0.25),
}
DEFAULT_SAMPLES = 64


@dataclass
class VerifyResult:
    """Parity metrics plus what was compared; truthy when it passed."""

    parity: ParityResult
    ref: dict
    cand: dict
    data: str
    precision: str
    thresholds: dict
    warnings: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.parity)

    def as_dict(self) -> dict:
        out = self.parity.as_dict()
        out.update(
            ref=self.ref,
            cand=self.cand,
            data=self.data,
            precision=self.precision,
            thresholds=self.thresholds,
            warnings=self.warnings,
        )
        return out

    def __str__(self) -> str:
        head = [
            f"  {role:<18}{side['artifact']} ({side['backend']} {side['precision']}, {side['device']})"
            for role, side in (("reference", self.ref), ("candidate", self.cand))
        ] + [
            f"  {'data':<18}{self.data}",
        ]
        tail = "".join(f"\n  warning: {w}" for w in self.warnings)
        return "\n".join(head) + "\n" + str(self.parity) + tail


def default_thresholds(precision: str) -> Thresholds:
    from dataclasses import replace

    return replace(DEFAULT_THRESHOLDS.get(precision, DEFAULT_THRESHOLDS["int8"]))


def _default_data(*metas) -> str:
    """The calibration source an artifact records when it is a built-in one, else "random"."""
    for meta in metas:
        calib = getattr(meta, "calibration", None) or {}
        src = calib.get("data_source")
        if src == "digits":
            return src
    return "random"


def verify(
    ref: str,
    cand: str,
    *,
    data: str | None = None,
    samples: int | None = None,
    batch_size: int = 16,
    atol: float | None = None,
    rel_atol: float | None = None,
    min_agreement: float | None = None,
    min_centered_cosine: float | None = None,
    max_rel_l2: float | None = None,
    backend_ref: str | None = None,
    backend_cand: str | None = None,
    seed: int = 0,
    raise_on_failure: bool = False,
    provider=None,
) -> VerifyResult:
    """Run `ref` and `cand` on the same preprocessed inputs and compare their logits.

    `data`: a data source (see densenet_deploy.data; None: a built-in source the artifacts' calibration
    metadata names, else `random`, which proves little); held-out ("val") split where the source has one.
    `provider`: ONNX Runtime execution providers for whichever of the two runs on onnxruntime ("cpu",
    "cuda", "tensorrt", provider names, or a comma-separated list; None: every installed one, best first).
    """
    if batch_size < 1:
        raise DataError(f"--batch-size must be >= 1, got {batch_size}")
    providers = check_provider_option(provider, [(ref, backend_ref), (cand, backend_cand)])
    warnings = []
    with (
        open_runner(ref, backend_ref, providers=providers) as r,
        open_runner(cand, backend_cand, providers=providers) as c,
    ):
        if tuple(r.input.shape) != tuple(c.input.shape):
            raise DataError(
                f"{ref} takes input {r.input.shape} but {cand} takes {c.input.shape}; they are not the same model"
            )
        ref_model, cand_model = (getattr(x.meta, "model", None) for x in (r, c))
        if ref_model and cand_model and ref_model != cand_model:
            warnings.append(
                f"{ref} is {ref_model} but {cand} is {cand_model} (by their metadata): different "
                "models do not match unless one is a fine-tune of the other"
            )
        meta = c.meta or r.meta
        if meta is None:
            raise DataError(
                f"neither {ref} nor {cand} carries dnx metadata (input size, mean/std); "
                "export one of them with `dnx export`"
            )
        if data is None:
            data = _default_data(c.meta, r.meta)
        if data == "random":
            warnings.append("data 'random' proves little (random inputs, no labels); pass --data with real images")
        split = held_out_split(data)  # the source's own held-out split where it has one, else all of it
        dataset = load_data_for(data, meta, split=split, limit=samples or DEFAULT_SAMPLES, seed=seed)
        if len(dataset) == 0:
            raise DataError(f"data {data!r} gave no samples")
        precision = max((r.precision, c.precision), key=lambda p: PRECISION_RANK.get(p, 3))
        t = default_thresholds(precision)
        for name, value in (
            ("atol", atol),
            ("rel_atol", rel_atol),
            ("min_agreement", min_agreement),
            ("min_centered_cosine", min_centered_cosine),
            ("max_rel_l2", max_rel_l2),
        ):
            if value is not None:
                setattr(t, name, value)
        log.info("verifying %s against %s on %d samples of %s", cand, ref, len(dataset), data)
        ref_out = run_batches(r, dataset.images, batch_size)
        cand_out = run_batches(c, dataset.images, batch_size)
        parity = compare_outputs(ref_out, cand_out, labels=dataset.labels, thresholds=t)
        result = VerifyResult(
            parity,
            r.describe(),
            c.describe(),
            data if split == "all" else f"{data} (val split)",
            precision,
            {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in asdict(t).items()},
            warnings,
        )
    if raise_on_failure and not result:
        raise VerificationFailed(f"{cand} differs from {ref}: {'; '.join(parity.failures)}", result)
    return result
