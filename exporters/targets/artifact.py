"""What a target's build returns: the artifact written, its sidecar, and the target's own figures."""

from __future__ import annotations

from dataclasses import dataclass, field

from densenet_deploy.core.results import Result


@dataclass
class TargetBuild(Result):
    """One target's build: `details` are its own figures (parity of the pre-write check, recipe, ...)."""

    output: str
    sidecar: str
    precision: str
    seconds: float
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "output": self.output,
            "sidecar": self.sidecar,
            "precision": self.precision,
            "seconds": self.seconds,
            **self.details,
        }

    def __str__(self) -> str:
        return f"wrote {self.output} ({self.precision}) in {self.seconds:.1f} s; sidecar {self.sidecar}"
