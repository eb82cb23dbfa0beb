"""PNG plots for `dnx bench --report` and `dnx paper --report` (matplotlib, the optional `plot` extra)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def _pyplot():
    from .deps import require

    matplotlib = require("matplotlib", purpose="plots")
    matplotlib.use("Agg")  # files only: no display needed, and no GUI backend is imported
    import matplotlib.pyplot as plt

    return plt


def plots_available() -> bool:
    from .deps import available

    return available("matplotlib")


def _save(fig, path: str) -> str:
    from .io import atomic_output

    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    return path


def plot_latency_vs_batch(results: list[dict], path: str) -> str:
    """Median latency per image (ms) and throughput (img/s) vs batch, one line per artifact/backend."""
    plt = _pyplot()
    series: dict[str, list[tuple]] = {}
    for r in results:
        if r.get("latency_ms"):
            key = f"{r['artifact'].rsplit('/', 1)[-1]} ({r['label']})"
            lat = r["latency_ms"]
            series.setdefault(key, []).append((r["batch"], lat["p50"], lat["p90"], r["throughput"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    for key, points in series.items():
        points.sort()
        b = [p[0] for p in points]
        line, = ax1.plot(b, [p[1] for p in points], marker="o", label=key)
        ax1.fill_between(b, [p[1] for p in points], [p[2] for p in points], color=line.get_color(), alpha=0.15)
        ax2.plot(b, [p[3] for p in points], marker="o", label=key)
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    batches = sorted({p[0] for points in series.values() for p in points})
    for ax, title, ylabel in ((ax1, "Latency per batch (median; band to p90)", "latency per batch [ms]"),
                              (ax2, "Throughput (batch / median latency)", "throughput [images/s]")):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(batches))  # label the measured batch sizes as plain numbers
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_yscale("log")
    ax2.legend(fontsize=8, loc="best")
    fig.suptitle("dnx bench: latency and throughput vs batch size")
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_error_vs_cost(models: list[dict], path: str) -> str:
    """Figure 3 style: ImageNet top-1 error (paper-reported) vs measured params and vs measured MACs."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    families = {}
    for m in models:
        if m.get("dataset") == "imagenet" and m.get("top1_error") is not None:
            families.setdefault(m["family_label"], []).append(m)
    for ax, key, scale, xlabel in ((axes[0], "params", 1e6, "parameters [millions] (measured)"),
                                   (axes[1], "macs", 1e9, "MACs per image [G] (measured; the paper's 'FLOPs')")):
        for label, items in families.items():
            items = sorted(items, key=lambda m: m[key])
            xs = [m[key] / scale for m in items]
            ys = [m["top1_error"] for m in items]
            ax.plot(xs, ys, marker="o", label=label)
            for m, x, y in zip(items, xs, ys):
                ax.annotate(m["paper_label"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("ImageNet top-1 validation error [%] (single crop, reported)")
        ax.grid(True, alpha=0.3)
        if families:  # no ImageNet model in this run: no legend to draw
            ax.legend()
    axes[0].set_title("Top-1 error vs parameters")
    axes[1].set_title("Top-1 error vs MACs")
    fig.suptitle("DenseNet vs ResNet on ImageNet (Huang et al. 2017, Figure 3 style)")
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_cifar_error_vs_params(models: list[dict], path: str, dataset: str = "C10+") -> str:
    """Figure 4 style: C10+ error (reported) vs measured params, DenseNet / DenseNet-BC / pre-act ResNet."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.8))
    families = {}
    for m in models:
        error = (m.get("cifar_error") or {}).get(dataset)
        if error is not None:
            families.setdefault(m["family_label"], []).append((m["params"] / 1e6, error, m["paper_label"]))
    for label, items in families.items():
        items.sort()
        ax.plot([i[0] for i in items], [i[1] for i in items], marker="o", label=label)
        for x, y, name in items:
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("parameters [millions] (measured, log scale)")
    ax.set_ylabel(f"{dataset} test error [%] (reported)")
    ax.set_title(f"{dataset} error vs parameters (Figure 4 style)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    out = _save(fig, path)
    plt.close(fig)
    return out
