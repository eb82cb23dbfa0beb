"""The tolerance policy: every gate's thresholds in one typed table, one unit each.

A gate compares a candidate's logits with its reference's on the same inputs. The same gate is applied
wherever that comparison happens, so a build step's check before writing and `dnx verify` afterwards give
the same verdict on the same data: the export's parity check, the fp16/bf16 conversions, the INT8
calibration gate, the ONNX Runtime and OpenVINO pre-write checks, `dnx verify`, `dnx bench`'s parity
column and the demo. Documented in docs/policy.md.

Units: rel_atol is a fraction of the reference logit range (max - min, at least 1); rel L2 is
||cand - ref|| / ||ref||; agreement is a fraction (0..1) of inputs with the same top-1 class; accuracy
drop is in accuracy points (percentage points: 99.4 % -> 98.9 % is a drop of 0.5).

Random inputs (the `random` data source, or no data at all) lie far outside a trained model's data and a
random-weight model's logits are near-tied, so a reduced-precision candidate's top-1 flips there without
meaning anything: agreement and accuracy are gated only on real data for fp16/bf16/int8; rel L2 and the
centered cosine (how the logits vary between inputs) are gated on any data.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
RANK = {p: i for i, p in enumerate(PRECISIONS)}
CHECKS = ("parity", "rewrite")


@dataclass(frozen=True)
class Gate:
    """Pass criteria of one check at one precision; None: that metric is not gated."""

    rel_atol: float | None = None  # max |diff| <= rel_atol x max(reference logit range, 1)
    max_rel_l2: float | None = None
    min_centered_cosine: float | None = None
    min_agreement: float | None = None  # fraction 0..1; real data only unless agreement_on_random
    max_accuracy_drop: float | None = None  # accuracy points, reference minus candidate, when labels are known
    agreement_on_random: bool = False  # fp32 must reproduce even near-tied argmaxes: same math
    atol: float | None = None  # an absolute max |diff| bound (a user override; replaces rel_atol)

    def overridden(self, **values) -> Gate:
        """This gate with the given fields replaced; None values leave a field as it is."""
        unknown = set(values) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown gate fields: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in dataclasses.asdict(self).items()}


POLICY: dict[str, dict[str, Gate]] = {
    # An artifact against the model it was made from (export vs PyTorch, a precision step or a target's
    # build vs its fp32 ONNX, `dnx verify REF CAND`, bench's parity column, the demo).
    "parity": {
        # The same math in another runtime: only summation order differs.
        "fp32": Gate(rel_atol=1e-3, max_rel_l2=1e-3, min_agreement=0.99, agreement_on_random=True),
        # 10-bit mantissa; measured on digits and densenet121: rel L2 ~1e-3..5e-3.
        "fp16": Gate(max_rel_l2=2e-2, min_centered_cosine=0.99, min_agreement=0.98, max_accuracy_drop=1.0),
        # 7-bit mantissa: rel L2 0.013 measured on digits (docs/benchmarks.md).
        "bf16": Gate(max_rel_l2=6e-2, min_agreement=0.98, max_accuracy_drop=1.0),
        # INT8 logits move by design; the calibration issue's gates: agreement 98 %, accuracy within 1 point.
        # rel L2 bounds the logit error so a chance-level model (the known OpenVINO Q/DQ bug) fails even on
        # random data.
        "int8": Gate(max_rel_l2=0.25, min_agreement=0.98, max_accuracy_drop=1.0),
    },
    # The same graph after a runtime's offline optimisation (ONNX Runtime's saved optimised model).
    "rewrite": {
        "fp32": Gate(rel_atol=1e-3),
        "fp16": Gate(rel_atol=2e-2),
        "bf16": Gate(rel_atol=2e-2),
        "int8": Gate(rel_atol=2e-2),
    },
}

# bench on random inputs: a reduced-precision pair that misses its gate is "unverified" (random inputs
# overstate its error), unless its error exceeds the logits themselves: then it is plainly wrong.
RANDOM_GROSS_REL_L2 = 1.0


def lower_precision(*precisions: str) -> str:
    """The lowest of several precisions (int8 < bf16 < fp16 < fp32); unknown names count as int8."""
    return max(precisions, key=lambda p: RANK.get(p, RANK["int8"]))


def gate_for(precision: str, check: str = "parity") -> Gate:
    """The gate of `check` at `precision` (an unknown precision gets int8's, the loosest)."""
    if check not in POLICY:
        raise ValueError(f"unknown check {check!r}; one of {', '.join(CHECKS)}")
    table = POLICY[check]
    return table.get(precision, table["int8"])


@dataclass(frozen=True)
class GateOptions:
    """What a user changes in a gate (`--max-rel-l2`, `--min-agreement`, ...): None keeps the policy's value.
    Every command that gates takes these, so a user can steer any check the same way."""

    atol: float | None = None
    rel_atol: float | None = None
    max_rel_l2: float | None = None
    min_centered_cosine: float | None = None
    min_agreement: float | None = None
    max_accuracy_drop: float | None = None  # accuracy points

    def apply(self, gate: Gate) -> Gate:
        return gate.overridden(**dataclasses.asdict(self))

    def given(self) -> dict:
        """The fields the user set."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
