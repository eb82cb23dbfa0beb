"""How results format themselves: the checked-result mixin, JSON conversion and markdown tables."""

from __future__ import annotations

import dataclasses


class Result:
    """What every public function returns: `as_dict()` is its JSON document (what `--json` prints) and
    `str()` the text the CLI prints. A dataclass subclass gets as_dict from its fields."""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class CheckedResult(Result):
    """A result with a `passed` field: truthy when its check passed."""

    def __bool__(self) -> bool:
        return self.passed


def json_default(value):
    """json.dumps(default=...): dataclasses as dicts, numpy values as Python ones, tuples/sets as lists."""
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def md_table(header: list[str], rows: list[list]) -> str:
    """A markdown table; None cells are empty."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def fixed(value, digits: int = 2) -> str | None:
    """`value` with `digits` decimals, None for None (an empty table cell)."""
    return None if value is None else f"{value:.{digits}f}"
