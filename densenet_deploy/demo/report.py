"""The demo's summary: the terminal table, and report.md, results.json and demo.png in the workdir."""

from __future__ import annotations

import os

from densenet_deploy.core.io import atomic_write_text, write_json
from densenet_deploy.core.plotting import pyplot, save_figure, try_plot
from densenet_deploy.core.results import md_table

COLUMNS = (
    "stage",
    "artifact",
    "backend / precision",
    "size",
    "accuracy",
    "agree vs torch",
    "p50 b1 ms",
    "p50 b32 ms",
    "check",
)


def rows(result) -> list[list[str]]:
    """One row of strings per stage, in COLUMNS order."""
    out = []
    for s in result.stages:
        reference = s.stage == "train"
        label = s.label or f"{s.backend} {s.precision}"
        check = {"ok": "ref" if reference else "PASS", "skipped": "skipped", "failed": "FAIL", "error": "ERROR"}[
            s.status
        ]
        out.append(
            [
                s.stage,
                os.path.basename(s.artifact) if s.artifact else "-",
                label,
                _size(s.size_bytes),
                _pct(s.accuracy),
                "ref" if reference else _pct(s.agreement),
                *[_ms(s.latency_ms.get(str(b))) for b in result.settings["batches"]],
                check,
            ]
        )
    return out


def format_table(result) -> str:
    """The summary table, then one line per failed or skipped stage, then where the report is."""
    table = [list(COLUMNS)] + rows(result)
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    right = {3, 4, 5, 6, 7}
    lines = []
    for n, r in enumerate(table):
        lines.append(
            "  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip()
        )
        if n == 0:
            lines.append("-" * len(lines[0]))
    notes = [f"{s.stage}: {s.message}" for s in result.stages if s.status != "ok" and s.message]
    lines += [""] + notes if notes else []
    env = (result.bench or {}).get("env", {})
    lines.append("")
    lines.append(
        f"accuracy and agreement: {_verified_on(result)}; latency: median of "
        f"{result.settings['bench_seconds']:g} s per artifact and batch"
        + (f" on {env['cpu']} (load {env.get('loadavg')})" if env.get("cpu") else "")
    )
    if result.report:
        lines.append(f"report: {', '.join(result.report.values())}  ({result.seconds:.0f} s in all)")
    lines.append("all checks passed" if result else "FAILED: " + "; ".join(result.failures))
    return "\n".join(lines)


def _verified_on(result) -> str:
    for s in result.stages:
        if s.verify:
            return f"{s.verify['samples']} held-out digits (val split)"
    return "no artifact verified"


def write_demo_report(result, workdir: str) -> dict:
    """report.md, results.json and (with matplotlib) demo.png in `workdir`; returns the paths written."""
    files = {"markdown": os.path.join(workdir, "report.md"), "json": os.path.join(workdir, "results.json")}
    png, why = try_plot(plot_demo, result, os.path.join(workdir, "demo.png"))
    if png:
        files["plot"] = png
    result.report = files
    write_json(files["json"], result.as_dict())
    train = result.train or {}
    text = [
        "# dnx demo",
        "",
        f"A {train.get('model', 'DenseNet-BC')} trained on scikit-learn's digits "
        f"({train.get('epochs')} epochs), exported to ONNX, converted to FP16, calibrated to INT8 "
        f"({result.settings['method']}, training digits), deployed, then every artifact verified against the "
        f"PyTorch model on the held-out digits and timed. {result.seconds:.0f} s in all.",
        "",
        md_table(list(COLUMNS), rows(result)),
        "",
    ]
    notes = [f"- **{s.stage}** ({s.status}): {s.message}" for s in result.stages if s.status != "ok" and s.message]
    if notes:
        text += ["Notes:", ""] + notes + [""]
    env = (result.bench or {}).get("env", {})
    if env:
        text += [
            f"Machine: {env.get('cpu')}, {env.get('cores')} cores, load average {env.get('loadavg')}; "
            + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()),
            "",
        ]
    text += [
        "Accuracy: top-1 on the held-out split; agree: top-1 agreement with PyTorch on the same images; "
        "p50: median latency of one `run()` at batch 1 and 32 (`dnx bench`). Everything is in "
        "results.json.",
        "",
        "![accuracy and latency per artifact](demo.png)" if png else f"_No plot: {why}_",
        "",
    ]
    atomic_write_text(files["markdown"], "\n".join(text))
    return files


def plot_demo(result, path: str) -> str:
    """Two panels per artifact: held-out accuracy, and p50 latency at each batch size."""
    plt = pyplot()
    stages = [s for s in result.stages if s.artifact and s.status in ("ok", "failed")]
    names = [f"{s.stage}\n{s.label or s.precision}" for s in stages]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.5 * len(stages) + 2.0), sharey=True)
    y = list(range(len(stages)))
    ax1.barh(y, [100 * (s.accuracy or 0) for s in stages], color="tab:green")
    low = min([100 * s.accuracy for s in stages if s.accuracy] or [90.0])
    ax1.set_xlim(max(0.0, low - 5), 100)
    ax1.set_xlabel("top-1 accuracy on held-out digits [%]")
    ax1.set_yticks(y, names, fontsize=8)
    ax1.invert_yaxis()
    batches = result.settings["batches"]
    height = 0.8 / len(batches)
    for k, b in enumerate(batches):
        ax2.barh(
            [v + (k - (len(batches) - 1) / 2) * height for v in y],
            [s.latency_ms.get(str(b)) or 0 for s in stages],
            height=height,
            label=f"batch {b}",
        )
    ax2.set_xscale("log")
    ax2.set_xlabel("median latency per batch [ms] (log)")
    ax2.legend(fontsize=8)
    for ax in (ax1, ax2):
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle("dnx demo: every artifact, verified and timed")
    out = save_figure(fig, path)
    plt.close(fig)
    return out


def _size(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def _pct(value) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _ms(value) -> str:
    return "-" if value is None else f"{value:.2f}"
