"""matplotlib, the optional `plot` extra, for every report: imported on demand with the file-only Agg backend;
figures saved atomically; a missing matplotlib skips a plot instead of failing the report."""

from __future__ import annotations

import logging

from densenet_deploy.core.deps import available, require
from densenet_deploy.core.errors import MissingDependencyError
from densenet_deploy.core.io import atomic_output

log = logging.getLogger(__name__)


def pyplot():
    matplotlib = require("matplotlib", purpose="plots")
    matplotlib.use("Agg")  # files only: no display needed, and no GUI backend is imported
    import matplotlib.pyplot as plt

    return plt


def plots_available() -> bool:
    return available("matplotlib")


def save_figure(fig, path: str) -> str:
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    return path


def try_plot(plot, *args) -> tuple[str | None, str | None]:
    """(path, None) or (None, why not) -- a report without matplotlib still has its tables."""
    try:
        return plot(*args), None
    except MissingDependencyError as exc:
        log.warning("skipping plot: %s", exc)
        return None, str(exc)
