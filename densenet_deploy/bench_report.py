"""How bench and paper results read: the terminal table, and `--report DIR` (results.json, report.md, PNG plots)."""

from __future__ import annotations

import json
import logging
import os


log = logging.getLogger(__name__)


BENCH_REPORT_FILES = ("results.json", "report.md", "latency_vs_batch.png")
PAPER_REPORT_FILES = ("results.json", "report.md", "imagenet_error_vs_params_macs.png", "cifar10_error_vs_params.png")


def check_report_dir(directory: str) -> str:
    """Create DIR if needed; fail early (before any measuring) when it cannot be written."""
    from .io import check_output_dir

    return check_output_dir(directory, "--report")


def _missing_levels(directory: str) -> list[str]:
    """The levels of `directory` that do not exist yet, deepest first (what makedirs would create)."""
    missing, path = [], os.path.abspath(directory)
    while not os.path.lexists(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def _remove_empty(levels: list[str]) -> None:
    for path in levels:  # deepest first; stops at the first one that is not empty
        try:
            os.rmdir(path)
        except OSError:
            return


def check_report_outputs(directory: str, names=BENCH_REPORT_FILES) -> str:
    """Fail early (one line, before any measuring) when DIR or any report file in it cannot be written.

    Leaves the file system as it was: a directory created for the check is removed again."""
    from .io import check_output_path

    created = _missing_levels(directory)
    try:
        check_report_dir(directory)
        for name in names:
            check_output_path(os.path.join(directory, name))
    finally:
        _remove_empty(created)
    return directory


class _StagedReport:
    """Report files written into a hidden directory inside DIR, moved into place only when all succeeded:
    a failure leaves none of them (and no directory that this report created)."""

    def __init__(self, directory: str, names):
        import tempfile

        self.directory, self.created = directory, _missing_levels(directory)
        check_report_outputs(directory, names)
        check_report_dir(directory)
        try:
            self.stage = tempfile.mkdtemp(prefix=".dnx-report-", dir=directory)
        except OSError as exc:
            _remove_empty(self.created)
            from .errors import DnxError

            raise DnxError(f"cannot write --report {directory}: {exc.strerror or exc}") from exc

    def path(self, name: str) -> str:
        return os.path.join(self.stage, name)

    def commit(self, files: dict) -> dict:
        """Move every staged file over its final name; returns `files` with the final paths."""
        final = {key: os.path.join(self.directory, os.path.basename(p)) for key, p in files.items()}
        moved = []
        try:
            for key, path in files.items():
                target = os.path.realpath(final[key])  # a symlink: replace its target, keep the link
                os.replace(path, target)
                moved.append(target)
        except OSError as exc:
            for path in moved:
                os.unlink(path)
            from .errors import DnxError

            raise DnxError(f"cannot write the --report files in {self.directory}: {exc.strerror or exc}") from exc
        return final

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        import shutil

        shutil.rmtree(self.stage, ignore_errors=True)
        if exc_type is not None:
            _remove_empty(self.created)
        return False


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
    text = ("Throughput mode: img/s = images completed per second by an asynchronous queue that keeps every "
            "stream busy (median over the passes; no per-run latency).")
    if any(r.get("mode") == "latency" for r in rows):
        text += (" Rows with latency columns come from runners without throughput support, timed "
                 f"synchronously instead ({latency}).")
    return text


def format_table(result: dict) -> str:
    """The terminal table: speed and parity side by side."""
    with_acc = any(r.get("accuracy") is not None for r in result["results"])
    head = (f"{'artifact':<28}{'backend / precision':<26}{'batch':>5}{'p50 ms':>10}{'p90 ms':>9}{'p99 ms':>9}"
            f"{'iqr':>9}{'img/s':>9}{'rss MB':>8}" + (f"{'acc':>7}" if with_acc else "")
            + f"  {'rel L2':>8}{'c.cos':>8}{'agree':>7}")
    lines = [head, "-" * len(head)]
    for r in result["results"]:
        name = os.path.basename(r["artifact"])[:27]
        lat = r["latency_ms"]
        speed = (f"{lat['p50']:>10.2f}{lat['p90']:>9.2f}{lat['p99']:>9.2f}{lat['iqr']:>9.2f}" if lat
                 else f"{'(throughput mode)':>37}")
        p = r["parity"]
        if p is None:
            par = f"  {'reference':>23}"
        elif "rel_l2" in p:
            flag = parity_flag(p)
            par = (f"  {p['rel_l2']:>8.2g}{p['centered_cosine_min']:>8.4f}{p['top1_agreement'] * 100:>6.0f}%"
                   + (f"  {flag}" if flag else ""))
        else:
            par = f"  {p.get('note', '')}"
        acc = ""
        if with_acc:
            acc = f"{r['accuracy'] * 100:>6.1f}%" if r.get("accuracy") is not None else f"{'':>7}"
        lines.append(f"{name:<28}{r['label']:<26}{r['batch']:>5}{speed}{r['throughput']:>9.1f}"
                     f"{r['peak_rss_mb']:>8.0f}{acc}{par}")
    for s in result.get("skipped", []):
        lines.append(f"skipped {s['artifact']} at batch {s['batch']}: {s['reason']}")
    env = result.get("env", {})
    settings = result.get("settings", {})
    lines.append(f"{timing_text(result)} Parity vs the first artifact of the same model (rel L2, min centered "
                 f"cosine, top-1 agreement) on {parity_data_text(settings)}"
                 + ("; on random inputs top-1 agreement proves little." if _random_parity(settings) else "."))
    lines += [f"note: {n}" for n in result.get("notes", [])]
    if env:
        lines.append(f"cpu: {env.get('cpu')} ({env.get('cores')} cores, load {env.get('loadavg')})")
    return "\n".join(lines)


def write_json(path: str, doc: dict) -> None:
    from .cli import _json_default
    from .io import atomic_write_text

    atomic_write_text(path, json.dumps(doc, indent=2, default=_json_default) + "\n")


def try_plot(plot, *args) -> tuple[str | None, str | None]:
    """(path, None) or (None, why not) -- a report without matplotlib still has its tables."""
    from .errors import MissingDependencyError

    try:
        return plot(*args), None
    except MissingDependencyError as exc:
        log.warning("skipping plot: %s", exc)
        return None, str(exc)


def md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_bench_report(result: dict, directory: str) -> dict:
    """results.json, report.md, latency_vs_batch.png under `directory`; returns the paths written."""
    with _StagedReport(directory, BENCH_REPORT_FILES) as staged:
        return staged.commit(_write_bench_report(result, staged.path))


def _write_bench_report(result: dict, path) -> dict:
    from .io import atomic_write_text
    from .plots import plot_latency_vs_batch

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
            parity = (f"{p['rel_l2']:.3g} / {p['centered_cosine_min']:.4f} / {p['top1_agreement'] * 100:.0f}%"
                      + (f" **{flag}**" if flag else ""))
        else:
            parity = p.get("note", "")
        acc = [_f(r["accuracy"] * 100, 1) if r.get("accuracy") is not None else None] if with_acc else []
        rows.append([os.path.basename(r["artifact"]), r["label"], r["batch"],
                     _f(lat.get("p50")), _f(lat.get("p90")), _f(lat.get("p99")), _f(lat.get("mean")),
                     _f(lat.get("iqr")), _f(r.get("pass_spread_pct"), 1), _f(r["throughput"], 1),
                     _f(r["peak_rss_mb"], 0), *acc, parity])
    env = result.get("env", {})
    settings = result.get("settings", {})
    text = [
        "# dnx bench", "",
        f"CPU: {env.get('cpu')} ({env.get('cores')} cores; load average at the end {env.get('loadavg')}); "
        f"threads: {env.get('threads') or 'backend default'}; versions: "
        + ", ".join(f"{k} {v}" for k, v in env.get("versions", {}).items()), "",
        f"Settings: batches {settings.get('batches')}, "
        + (f"{settings['seconds']} s" if settings.get("seconds") else f"{settings.get('iters')} iterations")
        + f" per artifact and batch in {settings.get('passes')} interleaved passes, warm-up {settings.get('warmup')}; "
        f"reference for parity: `{settings.get('reference')}`; parity data: {parity_data_text(settings)}.", "",
        md_table(["artifact", "backend / precision", "batch", "p50 ms", "p90 ms", "p99 ms", "mean ms", "IQR ms",
                  "pass spread %", "img/s", "peak RSS MB", *(["accuracy %"] if with_acc else []),
                  "parity: rel L2 / centered cos / top-1 agree"], rows),
        "",
        timing_text(result, markdown=True) + " "
        "Pass spread = range of the per-pass medians relative to the overall median (machine drift). "
        "Peak RSS is the bench process's resident memory while this artifact ran (every opened artifact "
        "stays loaded, so it includes the others). Parity compares logits with the first artifact of the same "
        "model on the same inputs"
        + ("; on random inputs top-1 agreement proves little, rel L2 and centered cosine do. "
           if _random_parity(settings) else ". ")
        + "POOR: centered cosine < 0.95 or rel L2 > 0.25 (with real data also top-1 agreement < 90 %).",
    ]
    text += ["", *(f"**Note:** {n}" for n in result.get("notes", []))] if result.get("notes") else []
    if result.get("skipped"):
        text += ["", "Skipped: " + "; ".join(f"{s['artifact']} at batch {s['batch']} ({s['reason']})"
                                            for s in result["skipped"])]
    text += ["", "![latency vs batch](latency_vs_batch.png)" if png else f"_No plot: {why}_", ""]
    atomic_write_text(files["markdown"], "\n".join(text))
    return files


def _f(value, digits: int = 2):
    return None if value is None else f"{value:.{digits}f}"


def write_paper_report(result: dict, directory: str) -> dict:
    """results.json, report.md and the Figure 3/4 style plots for `dnx paper --report`."""
    with _StagedReport(directory, PAPER_REPORT_FILES) as staged:
        return staged.commit(_write_paper_report(result, staged.path))


def _write_paper_report(result: dict, path) -> dict:
    from .io import atomic_write_text
    from .plots import plot_cifar_error_vs_params, plot_error_vs_cost

    files = {"json": path("results.json"), "markdown": path("report.md")}
    notes = []
    for key, plot, name in (("imagenet_plot", plot_error_vs_cost, "imagenet_error_vs_params_macs.png"),
                            ("cifar_plot", plot_cifar_error_vs_params, "cifar10_error_vs_params.png")):
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
        reported = (f"{paper['params']:,}" if m["dataset"] == "imagenet" and paper.get("params") else
                    f"{paper['params_m']}M" if paper.get("params_m") is not None else "")
        match = {True: "yes", False: "NO", None: "n/a"}[m.get("params_match")]
        if m.get("params_note"):
            match += f" ({m['params_note']})"
        error = (f"{m['top1_error']:.2f}" if m.get("top1_error") is not None else
                 ", ".join(f"{k} {v:.2f}" for k, v in (m.get("cifar_error") or {}).items()))
        rows.append([m["paper_label"], f"{m['params']:,}", reported, _f(m.get("params_ratio"), 4), match,
                     f"{m['macs'] / 1e9:.3f}", _f(paper.get("macs_g"), 3), error,
                     _f(m.get("latency_ms")), _f(m.get("latency_iqr_ms"))])
    lat = result.get("latency")
    text = ["# dnx paper: DenseNet's efficiency claims, measured", "",
            "Params and MACs are measured from this package's models (MACs = multiply-accumulates, what the "
            "paper calls FLOPs). Error rates are reported, not re-measured: " +
            "; ".join(f"{k}: {v}" for k, v in result["sources"].items()) + ".", "",
            md_table(["model", "params (measured)", "params (reported)", "ratio", "matches at paper's rounding",
                      "GMACs (measured)", "GMACs (reported)", "error % (reported)", "latency p50 ms", "IQR ms"],
                     rows), ""]
    if lat:
        from .paper_report import latency_text

        text += [f"Latency: {latency_text(lat)}.", ""]
    text += ["## Claims", "", md_table(["claim", "measured", "verdict"],
                                       [[c["claim"], c["measured"], f"**{c['verdict']}**"] for c in result["claims"]]),
             ""]
    for key, title in (("imagenet_plot", "ImageNet top-1 error vs params and MACs"),
                       ("cifar_plot", "C10+ error vs params")):
        if key in files:
            text.append(f"![{title}]({os.path.basename(files[key])})")
    text += [f"_No plot: {n}_" for n in notes] + [""]
    return "\n".join(text)
