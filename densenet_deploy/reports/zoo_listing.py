"""The zoo as a table (what `dnx models` prints)."""

from __future__ import annotations

from dataclasses import dataclass

from densenet_deploy.core.results import Result
from densenet_deploy.models import get_spec, listed_names
from densenet_deploy.models.counting import spec_counts


@dataclass
class ZooListing(Result):
    """`dnx models`: one row per listed zoo model (name, paper name, params, MACs, input size, classes)."""

    models: list[dict]

    def __str__(self) -> str:
        lines = [f"{'model':<22}{'params':>14}{'MACs':>16}  input   paper name"]
        for r in self.models:
            mac = f"{r['macs'] / 1e9:.3f} G" if r.get("macs") is not None else "-"
            size = "x".join(map(str, r["input_size"]))
            lines.append(f"{r['name']:<22}{r['params']:>14,}{mac:>16}  {size:<7} {r['paper_name']}")
        lines.append(
            "MACs = multiply-accumulates (the paper's 'FLOPs'). CIFAR names follow densenet{L}_k{k} / "
            "densenet_bc{L}_k{k} for any valid depth."
        )
        return "\n".join(lines)


def list_models(with_macs: bool = True) -> ZooListing:
    """Every listed zoo model with its params and MACs, counted from the spec (spec_counts): no model is built
    and torch is not imported, so the listing is instant."""
    rows = []
    for name in listed_names():
        spec = get_spec(name)
        counts = spec_counts(spec)
        rows.append(
            {
                "name": name,
                "paper_name": spec.paper_name,
                "params": counts.params,
                "macs": counts.macs if with_macs else None,
                "input_size": list(spec.input_size),
                "num_classes": spec.num_classes,
            }
        )
    return ZooListing(rows)
