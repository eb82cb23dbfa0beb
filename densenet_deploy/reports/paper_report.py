"""How `dnx paper` results read: the terminal view, and `--report DIR` (results.json, report.md, plots)."""

from __future__ import annotations

import os

from densenet_deploy.core.io import StagedReport, atomic_write_text, write_json
from densenet_deploy.core.plotting import try_plot
from densenet_deploy.core.results import fixed, md_table
from densenet_deploy.reports.claims import MIN_LATENCY_SAMPLES
from densenet_deploy.reports.plots import plot_cifar_error_vs_params, plot_error_vs_cost, plot_latency_vs_cost

PAPER_REPORT_FILES = (
    "results.json",
    "report.md",
    "imagenet_error_vs_params_macs.png",
    "cifar10_error_vs_params.png",
    "latency_vs_macs_params.png",  # with latency only
)


def write_paper_report(result: dict, directory: str) -> dict:
    """results.json, report.md and the Figure 3/4 style plots for `dnx paper --report`."""
    with StagedReport(directory, PAPER_REPORT_FILES) as staged:
        return staged.commit(_write_paper_report(result, staged.path))


def _write_paper_report(result: dict, path) -> dict:
    files = {"json": path("results.json"), "markdown": path("report.md")}
    notes = []
    plots = [
        ("imagenet_plot", plot_error_vs_cost, "imagenet_error_vs_params_macs.png"),
        ("cifar_plot", plot_cifar_error_vs_params, "cifar10_error_vs_params.png"),
    ]
    if result.get("latency"):
        plots.append(("latency_plot", plot_latency_vs_cost, "latency_vs_macs_params.png"))
    for key, plot, name in plots:
        png, why = try_plot(plot, result["models"], path(name))
        if png:
            files[key] = png
        else:
            notes.append(why)
    write_json(files["json"], {k: v for k, v in result.items() if k != "report"})
    atomic_write_text(files["markdown"], format_paper_markdown(result, files, notes))
    return files


def format_paper_markdown(result: dict, files: dict, notes: list[str]) -> str:
    rows = []
    for m in result["models"]:
        paper = m.get("paper") or {}
        # ImageNet sources give exact counts; Table 2 gives millions at one decimal.
        reported = (
            f"{paper['params']:,}"
            if m["dataset"] == "imagenet" and paper.get("params")
            else f"{paper['params_m']}M"
            if paper.get("params_m") is not None
            else ""
        )
        match = {True: "yes", False: "NO", None: "n/a"}[m.get("params_match")]
        if m.get("params_note"):
            match += f" ({m['params_note']})"
        error = (
            f"{m['top1_error']:.2f}"
            if m.get("top1_error") is not None
            else ", ".join(f"{k} {v:.2f}" for k, v in (m.get("cifar_error") or {}).items())
        )
        rows.append(
            [
                m["paper_label"],
                f"{m['params']:,}",
                reported,
                fixed(m.get("params_ratio"), 4),
                match,
                f"{m['macs'] / 1e9:.3f}",
                fixed(paper.get("macs_g"), 3),
                error,
                fixed(m.get("latency_ms")),
                fixed(m.get("latency_iqr_ms")),
            ]
        )
    lat = result.get("latency")
    text = [
        "# dnx paper: DenseNet's efficiency claims, measured",
        "",
        "Params and MACs are measured from this package's models (MACs = multiply-accumulates, what the "
        "paper calls FLOPs). Error rates are reported, not re-measured: "
        + "; ".join(f"{k}: {v}" for k, v in result["sources"].items())
        + ".",
        "",
        md_table(
            [
                "model",
                "params (measured)",
                "params (reported)",
                "ratio",
                "matches at paper's rounding",
                "GMACs (measured)",
                "GMACs (reported)",
                "error % (reported)",
                "latency p50 ms",
                "IQR ms",
            ],
            rows,
        ),
        "",
    ]
    if lat:
        text += [f"Latency: {latency_text(lat)}.", ""]
    text += [
        "## Claims",
        "",
        md_table(
            ["claim", "measured", "verdict"],
            [[c["claim"], c["measured"], f"**{c['verdict']}**"] for c in result["claims"]],
        ),
        "",
    ]
    for key, title in (
        ("imagenet_plot", "ImageNet top-1 error vs params and MACs"),
        ("cifar_plot", "C10+ error vs params"),
        ("latency_plot", "measured latency vs MACs and params"),
    ):
        if key in files:
            text.append(f"![{title}]({os.path.basename(files[key])})")
    text += [f"_No plot: {n}_" for n in notes] + [""]
    return "\n".join(text)


def latency_text(lat: dict) -> str:
    """What was run for the latency column, as run: '5 timed runs per model in 3 interleaved passes'."""
    iters, passes = lat["iters"], lat.get("passes", 1)
    runs = f"{iters} timed run{'' if iters == 1 else 's'} per model in {passes} "
    runs += "interleaved passes (every model once per pass, rotated order)" if passes > 1 else "pass"
    return (
        f"batch {lat['batch']} on {lat['backend']} (this CPU), {runs}; median, IQR as spread. A latency "
        f"verdict is inconclusive with fewer than {lat.get('min_samples_for_verdict', MIN_LATENCY_SAMPLES)} "
        "timed runs per model, overlapping IQR ranges, or a spread across the verdict's boundary"
    )


def format_paper(result: dict) -> str:
    """The terminal view: one line per model, then the claims with their verdicts."""
    head = f"{'model':<30}{'params':>13}{'reported':>12}{'match':>7}{'GMACs':>8}{'error %':>24}{'lat ms':>9}"
    lines = [head, "-" * len(head)]
    for m in result["models"]:
        paper = m.get("paper") or {}
        reported = (
            f"{paper['params'] / 1e6:.2f}M"
            if m["dataset"] == "imagenet" and paper.get("params")
            else f"{paper['params_m']}M"
            if paper.get("params_m") is not None
            else "-"
        )
        match = {True: "yes", False: "NO", None: "n/a"}[m.get("params_match")] + ("*" if m.get("params_note") else "")
        error = (
            f"top-1 {m['top1_error']:.2f}"
            if m.get("top1_error") is not None
            else " ".join(f"{k} {v:.2f}" for k, v in (m.get("cifar_error") or {}).items() if k in ("C10+", "C100+"))
        )
        lat = f"{m['latency_ms']:.2f}" if m.get("latency_ms") is not None else "-"
        lines.append(
            f"{m['paper_label'][:29]:<30}{m['params']:>13,}{reported:>12}{match:>7}{m['macs'] / 1e9:>8.3f}"
            f"{error:>24}{lat:>9}"
        )
    lines += [f"  * {m['paper_label']}: {m['params_note']}" for m in result["models"] if m.get("params_note")]
    lines.append("MACs = multiply-accumulates (the paper's 'FLOPs'); errors are reported (ResNet: fb.resnet.torch).")
    if result.get("latency"):
        lines.append(f"Latency: {latency_text(result['latency'])}.")
    lines.append("")
    for c in result["claims"]:
        lines.append(f"[{c['verdict']}] {c['claim']}\n    {c['measured']}")
    return "\n".join(lines)
