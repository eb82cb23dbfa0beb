"""PNG plots of `dnx paper --report`: the paper's Figure 3 and 4 with measured params and MACs."""

from __future__ import annotations

from densenet_deploy.core.plotting import pyplot, save_figure


def plot_error_vs_cost(models: list[dict], path: str) -> str:
    """Figure 3 style: ImageNet top-1 error (paper-reported) vs measured params and vs measured MACs."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    families = {}
    for m in models:
        if m.get("dataset") == "imagenet" and m.get("top1_error") is not None:
            families.setdefault(m["family_label"], []).append(m)
    for ax, key, scale, xlabel in (
        (axes[0], "params", 1e6, "parameters [millions] (measured)"),
        (axes[1], "macs", 1e9, "MACs per image [G] (measured; the paper's 'FLOPs')"),
    ):
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
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def plot_cifar_error_vs_params(models: list[dict], path: str, dataset: str = "C10+") -> str:
    """Figure 4 style: C10+ error (reported) vs measured params, DenseNet / DenseNet-BC / pre-act ResNet."""
    plt = pyplot()
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
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def plot_latency_vs_cost(models: list[dict], path: str) -> str:
    """Figure 3 style, with measured latency: median latency vs measured MACs and vs params, one line per
    family (DenseNet vs ResNet), ImageNet and CIFAR models apart (their inputs differ 50-fold in pixels)."""
    plt = pyplot()
    timed = [m for m in models if m.get("latency_ms") is not None]
    datasets = [d for d in ("imagenet", "cifar") if any(m["dataset"] == d for m in timed)]
    fig, axes = plt.subplots(max(1, len(datasets)), 2, figsize=(12, 4.6 * max(1, len(datasets))), squeeze=False)
    for row, dataset in enumerate(datasets):
        families = {}
        for m in timed:
            if m["dataset"] == dataset:
                families.setdefault(m["family_label"], []).append(m)
        for ax, key, scale, xlabel in (
            (axes[row][0], "macs", 1e9, "MACs per image [G] (measured; the paper's 'FLOPs')"),
            (axes[row][1], "params", 1e6, "parameters [millions] (measured)"),
        ):
            for label, items in families.items():
                items = sorted(items, key=lambda m: m[key])
                xs = [m[key] / scale for m in items]
                ys = [m["latency_ms"] for m in items]
                ax.plot(xs, ys, marker="o", label=label)
                for m, x, y in zip(items, xs, ys):
                    ax.annotate(m["paper_label"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("median latency [ms] (measured)")
            ax.set_title(f"{'ImageNet' if dataset == 'imagenet' else 'CIFAR'}: latency vs {key}")
            ax.grid(True, alpha=0.3)
            ax.legend()
    label = next((m.get("latency_label") for m in timed if m.get("latency_label")), "")
    fig.suptitle(f"Does latency follow MACs? DenseNet vs ResNet, measured on this machine ({label})")
    out = save_figure(fig, path)
    plt.close(fig)
    return out
