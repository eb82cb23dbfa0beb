"""Parity between any two artifacts (zoo name/checkpoint, .onnx, .xml, .plan) through their runners.

The gate is the policy's parity gate at the lower precision of the two (densenet_deploy.core.policy,
docs/policy.md): the same gate every build step applies before writing, so a step's check and `dnx verify`
agree on the same data. Any field can be overridden (VerifyOptions.gate). With random weights every input
gets the same top-1 class, so agreement alone proves nothing: rel L2 and the centered cosine show whether the
candidate reproduces how the logits vary between inputs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from densenet_deploy.core.errors import DataError, OptionError, VerificationFailed
from densenet_deploy.core.policy import GateOptions, gate_for, lower_precision
from densenet_deploy.core.results import Result
from densenet_deploy.data.loading import held_out_split, load_data_for
from densenet_deploy.runners import check_provider_option, open_runner
from densenet_deploy.runners.batches import run_batches
from densenet_deploy.verify.compare import ParityResult, compare_outputs

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 64


@dataclass(frozen=True)
class VerifyOptions:
    """How `verify` runs: the data (None: a built-in source the artifacts' calibration metadata names, else
    `random`, which proves little; the held-out split where the source has one), how many samples, the batch
    both runners get, gate overrides, backends (None: from the file type), ONNX Runtime execution providers
    ("cpu", "cuda", "tensorrt", provider names or a comma-separated list; None: every installed one)."""

    data: str | None = None
    samples: int = DEFAULT_SAMPLES
    batch_size: int = 16
    gate: GateOptions = field(default_factory=GateOptions)
    backend_ref: str | None = None
    backend_cand: str | None = None
    provider: str | list | None = None
    seed: int = 0

    def validate(self) -> "VerifyOptions":
        if self.batch_size < 1:
            raise OptionError("batch_size", f"must be >= 1, got {self.batch_size}")
        if self.samples < 1:
            raise OptionError("samples", f"must be >= 1, got {self.samples}")
        return self


@dataclass
class VerifyResult(Result):
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


def _default_data(*metas) -> str:
    """The calibration source an artifact records when it is a built-in one, else "random"."""
    for meta in metas:
        calib = getattr(meta, "calibration", None) or {}
        src = calib.get("data_source")
        if src == "digits":
            return src
    return "random"


def verify(
    ref: str, cand: str, options: VerifyOptions | None = None, *, raise_on_failure: bool = False
) -> VerifyResult:
    """Run `ref` and `cand` (zoo names, checkpoints, .onnx, .xml, .plan) on the same preprocessed inputs and
    compare their logits with the policy's gate; VerificationFailed on a miss when `raise_on_failure`."""
    o = (options or VerifyOptions()).validate()
    data, backend_ref, backend_cand = o.data, o.backend_ref, o.backend_cand
    providers = check_provider_option(o.provider, [(ref, backend_ref), (cand, backend_cand)])
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
        dataset = load_data_for(data, meta, split=split, limit=o.samples, seed=o.seed)
        if len(dataset) == 0:
            raise DataError(f"data {data!r} gave no samples")
        precision = lower_precision(r.precision, c.precision)
        gate = o.gate.apply(gate_for(precision))
        log.info("verifying %s against %s on %d samples of %s", cand, ref, len(dataset), data)
        ref_out = run_batches(r, dataset.images, o.batch_size)
        cand_out = run_batches(c, dataset.images, o.batch_size)
        parity = compare_outputs(ref_out, cand_out, labels=dataset.labels, gate=gate, real_data=data != "random")
        result = VerifyResult(
            parity,
            r.describe(),
            c.describe(),
            data if split == "all" else f"{data} (val split)",
            precision,
            gate.as_dict(),
            warnings,
        )
    if raise_on_failure and not result:
        raise VerificationFailed(f"{cand} differs from {ref}: {'; '.join(parity.failures)}", result)
    return result
