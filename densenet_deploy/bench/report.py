"""How bench results read: the terminal table, and `--report DIR` (results.json, report.md, latency plot)."""

from __future__ import annotations

import os

from densenet_deploy.core.io import StagedReport, atomic_write_text, write_json
from densenet_deploy.core.plotting import pyplot, save_figure, try_plot
from densenet_deploy.core.results import fixed, md_table

BENCH_REPORT_FILES = ("results.json", "report.md", "latency_vs_batch.png")


def parity_flag(parity: dict) -> str:
    """What the table prints after the parity numbers: '', 'POOR' or 'unverified (random inputs)'."""
    status = parity.get("status", "ok" if parity.get("ok") else "poor")
    return {"ok": "", "poor": "POOR", "unverified": "unverified (random inputs)"}[status]


def parity_data_text(settings: dict) -> str:
    """'8 seeded random inputs' or '64 samples of digits (val split)' from a result's settings."""
    n, data = settings.get("parity_samples"), settings.get("parity_data", "random")
    if data == "random":
        return f"{n} seeded random inputs"
    split = settings.get("parity_split")
    return f"{n} samples of {data}" + (f" ({split} split)" if split and split != "all" else "")


def _random_parity(settings: dict) -> bool:
    return settings.get("parity_data", "random") == "random"


def timing_text(result: dict, markdown: bool = False) -> str:
    """What the speed columns mean, for the mode the rows were measured in."""
    rows = result.get("results", [])
    code = (lambda t: f"`{t}`") if markdown else (lambda t: t)
    latency = f"wall time per {code('run()')} incl. {code('synchronize()')}; iqr = p75-p25 ms; img/s = batch / p50"
    if not any(r.get("mode") == "throughput" for r in rows):
        return f"Latency: {latency}."
    text = (
        "Throughput mode: img/s = images completed per second by an asynchronous queue that keeps every "
        "stream busy (median over the passes; no per-run latency)."
    )
    if any(r.get("mode") == "latency" for r in rows):
        text += (
            " Rows with latency columns come from runners without throughput support, timed "
            f"synchronously instead ({latency})."
        )
    return text


def format_table(result: dict) -> str:
    """The terminal table: speed and parity side by side."""
    with_acc = any(r.get("accuracy") is not None for r in result["results"])
    head = (
        f"{'artifact':<28}{'backend / precision':<26}{'batch':>5}{'p50 ms':>10}{'p90 ms':>9}{'p99 ms':>9}"
        f"{'iqr':>9}{'img/s':>9}{'load MB':>8}"
        + (f"{'acc':>7}" if with_acc else "")
        + f"  {'rel L2':>8}{'c.cos':>8}{'agree':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in result["results"]:
        name = os.path.basename(r["artifact"])[:27]
        lat = r["latency_ms"]
        speed = (
            f"{lat['p50']:>10.2f}{lat['p90']:>9.2f}{lat['p99']:>9.2f}{lat['iqr']:>9.2f}"
            if lat
            else f"{'(throughput mode)':>37}"
        )
        p = r["parity"]
        if p is None:
            par = f"  {'reference':>23}"
        elif "rel_l2" in p:
            flag = parity_flag(p)
            par = f"  {p['rel_l2']:>8.2g}{p['centered_cosine_min']:>8.4f}{p['top1_agreement'] * 100:>6.0f}%" + (
                f"  {flag}" if flag else ""
            )
        else:
            par = f"  {p.get('note', '')}"
        acc = ""
        if with_acc:
            acc = f"{r['accuracy'] * 100:>6.1f}%" if r.get("accuracy") is not None else f"{'':>7}"
        lines.append(
            f"{name:<28}{r['label']:<26}{r['batch']:>5}{speed}{r['throughput']:>9.1f}{r['load_rss_mb']:>8.0f}{acc}{par}"
        )
    for s in result.get("skipped", []):
        lines.append(f"skipped {s['artifact']} at batch {s['batch']}: {s['reason']}")
    env = result.get("env", {})
    settings = result.get("settings", {})
    lines.append(
        f"{timing_text(result)} Parity vs the first artifact of the same model (rel L2, min centered "
        f"cosine, top-1 agreement) on {parity_data_text(settings)}"
        + ("; on random inputs top-1 agreement proves little." if _random_parity(settings) else ".")
    )
    lines += [f"note: {n}" for n in result.get("notes", [])]
    if env:
        lines.append(f"cpu: {env.get('cpu')} ({env.get('cores')} cores, load {env.get('loadavg')})")
    return "\n".join(lines)


def write_bench_report(result: dict, directory: str) -> dict:
    """results.json, report.md, latency_vs_batch.png under `directory`; returns the paths written."""
    with StagedReport(directory, BENCH_REPORT_FILES) as staged:
        return staged.commit(_write_bench_report(result, staged.path))


def _write_bench_report(result: dict, path) -> dict:
    files = {"json": path("results.json"), "markdown": path("report.md")}
    png, why = try_plot(plot_latency_vs_batch, result["results"], path("latency_vs_batch.png"))
    if png:
        files["latency_plot"] = png
    write_json(files["json"], {k: v for k, v in result.items() if k != "report"})

    rows = []
    with_acc = any(r.get("accuracy") is not None for r in result["results"])
    for r in result["results"]:
        lat = r.get("latency_ms") or {}
        p = r.get("parity")
        if p is None:
            parity = "reference"
        elif "rel_l2" in p:
            flag = parity_flag(p)
            parity = f"{p['rel_l2']:.3g} / {p['centered_cosine_min']:.4f} / {p['top1_agreement'] * 100:.0f}%" + (
                f" **{flag}**" if flag else ""
            )
        else:
            parity = p.get("note", "")
        acc = [fixed(r["accuracy"] * 100, 1) if r.get("accuracy") is not None else None] if with_acc else []
        rows.append(
            [
                os.path.basename(r["artifact"]),
                r["label"],
                r["batch"],
                fixed(lat.get("p50")),
                fixed(lat.get("p90")),
                fixed(lat.get("p99")),
                fixed(lat.get("mean")),
                fixed(lat.get("iqr")),
                fixed(r.get("pass_spread_pct"), 1),
                fixed(r["throughput"], 1),
                fixed(r["load_rss_mb"], 0),
                *acc,
                parity,
            ]
        )
    env = result.get("env", {})
    settings = result.get("settings", {})
    text = [
        "# dnx bench",
        "",
        f"CPU: {env.get('cpu')} ({env.get('cores')} cores; load average at the end {env.get('loadavg')}); "
        f"threads: {env.get('threads') or 'backend default'}; versions: "
        + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()),
        "",
        f"Settings: batches {settings.get('batches')}, "
        + (f"{settings['seconds']} s" if settings.get("seconds") else f"{settings.get('iters')} iterations")
        + f" per artifact and batch in {settings.get('passes')} interleaved passes, warm-up {settings.get('warmup')}; "
        f"reference for parity: `{settings.get('reference')}`; parity data: {parity_data_text(settings)}.",
        "",
        md_table(
            [
                "artifact",
                "backend / precision",
                "batch",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "mean ms",
                "IQR ms",
                "pass spread %",
                "img/s",
                "load MB",
                *(["accuracy %"] if with_acc else []),
                "parity: rel L2 / centered cos / top-1 agree",
            ],
            rows,
        ),
        "",
        timing_text(result, markdown=True) + " "
        "Pass spread = range of the per-pass medians relative to the overall median (machine drift). "
        "Load MB is what opening the artifact added to the bench process's resident memory (the first "
        "artifact of a backend also pays for loading that runtime). Parity compares logits with the first "
        "artifact of the same model on the same inputs"
        + (
            "; on random inputs top-1 agreement proves little, rel L2 and centered cosine do. "
            if _random_parity(settings)
            else ". "
        )
        + "POOR: the pair misses the parity gate `dnx verify` applies at its lower precision (docs/policy.md).",
    ]
    text += ["", *(f"**Note:** {n}" for n in result.get("notes", []))] if result.get("notes") else []
    if result.get("skipped"):
        text += [
            "",
            "Skipped: "
            + "; ".join(f"{s['artifact']} at batch {s['batch']} ({s['reason']})" for s in result["skipped"]),
        ]
    text += ["", "![latency vs batch](latency_vs_batch.png)" if png else f"_No plot: {why}_", ""]
    atomic_write_text(files["markdown"], "\n".join(text))
    return files


def plot_latency_vs_batch(results: list[dict], path: str) -> str:
    """Median latency per image (ms) and throughput (img/s) vs batch, one line per artifact/backend."""
    plt = pyplot()
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
        (line,) = ax1.plot(b, [p[1] for p in points], marker="o", label=key)
        ax1.fill_between(b, [p[1] for p in points], [p[2] for p in points], color=line.get_color(), alpha=0.15)
        ax2.plot(b, [p[3] for p in points], marker="o", label=key)
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    batches = sorted({p[0] for points in series.values() for p in points})
    for ax, title, ylabel in (
        (ax1, "Latency per batch (median; band to p90)", "latency per batch [ms]"),
        (ax2, "Throughput (batch / median latency)", "throughput [images/s]"),
    ):
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
    out = save_figure(fig, path)
    plt.close(fig)
    return out
