"""Latency and throughput of any artifacts through the Runner protocol, with parity against the first.

How a run is organised (so that machine noise hits every artifact alike):
  for each batch size:
    1. parity: a fixed, seeded set of inputs goes through every runner in chunks of this batch size
       (this doubles as warm-up); each artifact's logits are compared with the reference's (the first
       artifact of the same model, by its metadata), so a fast but wrong artifact shows up beside its speed;
    2. `warmup` more untimed runs per runner;
    3. `passes` round-robin passes; in each, every runner (in rotated order) gets an equal share of the
       time (`seconds`) or iteration (`iters`) budget. Per-iteration latency = wall time of run() plus
       synchronize(), so asynchronous GPU runners are timed to completion.
Spread is reported twice: the IQR of all iterations and the range of the per-pass medians (how much
the machine drifted during the run).

Throughput mode (`mode="throughput"`): a runner that has a `throughput(batch, seconds=..., warmup=...)`
method returning at least {"images_per_s": float} (the OpenVINO runner does: an AsyncInferQueue keeping
every stream busy) is measured through it; other runners fall back to the synchronous loop and their
row says `"mode": "latency"`. A runner adds throughput support by implementing that one method.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from .errors import DnxError

log = logging.getLogger(__name__)

MODES = ("latency", "throughput")
DEFAULT_SECONDS = 3.0  # per artifact and batch size, when neither seconds nor iters is given


@dataclass(frozen=True)
class BenchTarget:
    """One artifact to bench: path or zoo name, and the backend (None: chosen from the file type)."""

    artifact: str
    backend: str | None = None

    @classmethod
    def parse(cls, text: str, backend: str | None = None) -> "BenchTarget":
        """`d.onnx`, or `d.onnx@openvino` to pick the backend for this one artifact."""
        from .runners import BACKENDS

        head, sep, tail = text.rpartition("@")
        if sep and tail in BACKENDS:
            return cls(head, tail)
        return cls(text, backend)


def parse_batches(batch) -> tuple[int, ...]:
    """"1,8,32" or an int or a sequence -> (1, 8, 32); DnxError on anything else."""
    items = batch.split(",") if isinstance(batch, str) else ([batch] if isinstance(batch, int) else list(batch))
    try:
        values = tuple(int(str(b).strip()) for b in items if str(b).strip())
    except ValueError:
        raise DnxError(f"--batch takes comma-separated positive integers (e.g. 1,8,32), got {batch!r}") from None
    if not values or min(values) < 1:
        raise DnxError(f"--batch takes comma-separated positive integers (e.g. 1,8,32), got {batch!r}")
    return tuple(dict.fromkeys(values))


def latency_stats(seconds: list[float]) -> dict:
    """Per-iteration latencies (s) -> ms statistics (p50/p90/p99/mean/min/max/iqr/std)."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    p25, p50, p75, p90, p99 = np.percentile(ms, [25, 50, 75, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(ms.mean()),
            "min": float(ms.min()), "max": float(ms.max()), "iqr": float(p75 - p25), "std": float(ms.std())}


def timed_loop(runner, batch: np.ndarray, iters: int | None = None, seconds: float | None = None) -> list[float]:
    """Run `runner` on `batch` until `iters` runs or `seconds` have passed (at least once); seconds per run."""
    run, sync, clock = runner.run, runner.synchronize, time.perf_counter
    times: list[float] = []
    deadline = clock() + (seconds or 0.0)
    while True:
        t0 = clock()
        run(batch)
        sync()
        t1 = clock()
        times.append(t1 - t0)
        if (len(times) >= iters) if iters is not None else (t1 >= deadline):
            return times


def rss_mb() -> float:
    """Resident set size of this process now, MB (Linux /proc; psutil elsewhere; 0.0 if neither)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            return psutil.Process().memory_info().rss / 2**20
        except ImportError:
            return 0.0


def bench(artifacts, batch="1", seconds: float | None = None, iters: int | None = None, warmup: int = 3,
          threads: int | None = None, backend: str | None = None, mode: str = "latency", passes: int = 5,
          parity_samples: int = 8, seed: int = 0, report: str | None = None, progress: bool = False) -> dict:
    """Bench `artifacts` (zoo names, checkpoints, .onnx, .xml, .plan; `path@backend` picks a backend).

    Returns {"results": [...], "skipped": [...], "env": {...}, "settings": {...}}; the first artifact
    of each model is its parity reference. With `report`, also writes report.md, results.json and a latency plot there.
    """
    from .runners import open_runner

    if not artifacts:
        raise DnxError("give at least one ARTIFACT to bench")
    if mode not in MODES:
        raise DnxError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if seconds is not None and iters is not None:
        raise DnxError("give either --seconds or --iters, not both")
    if seconds is None and iters is None:
        seconds = DEFAULT_SECONDS
    if (seconds is not None and seconds <= 0) or (iters is not None and iters < 1) or warmup < 0 or passes < 1:
        raise DnxError("--seconds must be > 0, --iters and passes >= 1, --warmup >= 0")
    batches = parse_batches(batch)
    targets = [a if isinstance(a, BenchTarget) else BenchTarget.parse(str(a), backend) for a in artifacts]
    if report:
        from .bench_report import check_report_dir

        check_report_dir(report)

    runners, load_rss = [], []
    try:
        for target in targets:
            before = rss_mb()
            options = {"threads": threads} if threads else {}
            runners.append(open_runner(target.artifact, target.backend, **options))
            load_rss.append(rss_mb() - before)
        result = _measure(runners, load_rss, batches, seconds, iters, warmup, mode, passes, parity_samples, seed,
                          progress)
    finally:
        for runner in runners:
            runner.close()
    result["env"] = environment(threads)
    result["settings"] = {"batches": list(batches), "seconds": seconds, "iters": iters, "warmup": warmup,
                          "passes": passes, "mode": mode, "parity_samples": parity_samples, "seed": seed,
                          "reference": targets[0].artifact}
    if report:
        from .bench_report import write_bench_report

        result["report"] = write_bench_report(result, report)
    return result


def _measure(runners, load_rss, batches, seconds, iters, warmup, mode, passes, parity_samples, seed, progress):
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    pool_size = max(math.ceil(parity_samples / b) * b for b in batches)  # whole chunks at every batch size
    pools: dict[tuple, np.ndarray] = {}

    def pool(shape):  # one seeded input pool per input shape, shared by every runner
        if shape not in pools:
            pools[shape] = rng.standard_normal((pool_size, *shape)).astype(np.float32)
        return pools[shape]

    results, skipped = [], []
    n_passes = min(passes, iters) if iters is not None else passes
    bar = tqdm(total=len(batches) * len(runners) * (n_passes + 1), disable=not progress, unit="step",
               desc="bench", leave=False)
    try:
        for b in batches:
            active = []
            for i, runner in enumerate(runners):
                if runner.input.batch is not None and runner.input.batch != b:
                    skipped.append({"artifact": runner.name, "batch": b,
                                    "reason": f"fixed batch {runner.input.batch}"})
                else:
                    active.append(i)
            if not active:
                continue
            n_parity = math.ceil(parity_samples / b) * b
            outputs = {}
            for i in active:  # parity run, which is also the first part of the warm-up
                bar.set_postfix_str(f"parity b={b} {os.path.basename(runners[i].name)}")
                x = pool(tuple(runners[i].input.shape))
                outputs[i] = np.concatenate([runners[i].run(x[s:s + b]) for s in range(0, n_parity, b)])
                for _ in range(warmup):
                    runners[i].run(x[:b])
                runners[i].synchronize()
                bar.update(1)
            times = {i: [] for i in active}
            pass_medians = {i: [] for i in active}
            peak = {i: 0.0 for i in active}
            throughput = {i: [] for i in active}
            budgets = _split(iters, n_passes) if iters is not None else [seconds / n_passes] * n_passes
            for p, budget in enumerate(budgets):
                order = active[p % len(active):] + active[:p % len(active)]  # rotate: no fixed position
                for i in order:
                    runner = runners[i]
                    bar.set_postfix_str(f"b={b} pass {p + 1}/{n_passes} {os.path.basename(runner.name)}")
                    x = np.ascontiguousarray(pool(tuple(runner.input.shape))[:b])
                    if mode == "throughput" and callable(getattr(runner, "throughput", None)):
                        t_budget = budget if iters is None else 0.5  # async throughput needs a time budget
                        sample = runner.throughput(x, seconds=t_budget, warmup=0.0 if p else min(1.0, t_budget))
                        throughput[i].append(float(sample["images_per_s"]))
                    else:
                        t = timed_loop(runner, x, iters=budget if iters is not None else None,
                                       seconds=budget if iters is None else None)
                        times[i].extend(t)
                        pass_medians[i].append(float(np.median(t)) * 1e3)
                    peak[i] = max(peak[i], rss_mb())
                    bar.update(1)
            for i in active:
                parity = parity_summary(runners, outputs, i, _reference(runners, active, i))
                results.append(_row(runners[i], b, times[i], pass_medians[i], throughput[i], peak[i], load_rss[i],
                                    parity))
    finally:
        bar.close()
    return {"results": results, "skipped": skipped}


def _model_name(runner) -> str | None:
    return getattr(getattr(runner, "meta", None), "model", None)


def _reference(runners, active: list[int], i: int) -> int | None:
    """The first artifact of the same model (by metadata); without metadata, the first artifact.

    So `dnx bench densenet121 d.onnx resnet50 r.onnx` compares d.onnx with densenet121 and r.onnx with
    resnet50, instead of calling resnet50 a poor copy of densenet121.
    """
    model = _model_name(runners[i])
    if model is None:
        return 0 if 0 in active else None
    for j in active:
        if _model_name(runners[j]) == model:
            return j
    return None


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def _row(runner, b, times, pass_medians, throughput, peak, load_rss, parity) -> dict:
    row = {"artifact": runner.name, "backend": runner.backend, "precision": runner.precision,
           "device": runner.device, "label": runner.label, "batch": b}
    if throughput:
        tp = float(np.median(throughput))
        row.update(mode="throughput", latency_ms=None, throughput=tp,
                   throughput_spread=[float(min(throughput)), float(max(throughput))], iterations=None)
    else:
        stats = latency_stats(times)
        row.update(mode="latency", latency_ms=stats, throughput=b * 1e3 / stats["p50"],
                   iterations=len(times), pass_p50_ms=pass_medians,
                   pass_spread_pct=100.0 * (max(pass_medians) - min(pass_medians)) / stats["p50"])
    row["peak_rss_mb"] = round(peak, 1)
    row["load_rss_mb"] = round(load_rss, 1)
    row["parity"] = parity
    return row


def parity_summary(runners, outputs: dict, i: int, ref: int | None) -> dict | None:
    """Parity of runner i's logits against the reference's; None for the reference itself."""
    from .compare import compare_outputs

    if ref is None:
        return {"note": "no reference artifact of this model was run at this batch size"}
    if i == ref:
        return None
    if tuple(runners[i].input.shape) != tuple(runners[ref].input.shape):
        return {"note": f"input shape {tuple(runners[i].input.shape)} differs from the reference's; not comparable"}
    a, c = outputs[ref], outputs[i]
    if a.shape != c.shape:
        return {"note": f"outputs differ in shape ({a.shape[1:]} vs {c.shape[1:]}); not comparable"}
    r = compare_outputs(a, c)
    # Loose on purpose: INT8/FP16 artifacts stay well inside, a different or broken model does not.
    ok = r.centered_cosine_min >= 0.95 and r.rel_l2 <= 0.25 and bool(np.all(np.isfinite(c)))
    return {"samples": r.samples, "rel_l2": r.rel_l2, "centered_cosine_min": r.centered_cosine_min,
            "cosine_min": r.cosine_min, "top1_agreement": r.top1_agreement, "max_abs_diff": r.max_abs_diff,
            "ok": ok}


def environment(threads: int | None = None) -> dict:
    """What the numbers depend on: CPU, cores, library versions, thread setting, load."""
    import platform
    import sys
    from importlib import metadata

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {"python": sys.version.split()[0]}
    for package in ("densenet-deploy", "numpy", "torch", "onnxruntime", "openvino", "tensorrt"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    env = {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "versions": versions,
           "platform": platform.platform()}
    if hasattr(os, "sched_getaffinity"):
        env["cores_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        env["loadavg"] = [round(v, 2) for v in os.getloadavg()]
    return env


def format_table(result: dict) -> str:
    """The terminal table: speed and parity side by side."""
    head = (f"{'artifact':<28}{'backend / precision':<26}{'batch':>5}{'p50 ms':>10}{'p90 ms':>9}{'p99 ms':>9}"
            f"{'iqr':>9}{'img/s':>9}{'rss MB':>8}  {'rel L2':>8}{'c.cos':>8}{'agree':>7}")
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
            flag = "" if p["ok"] else "  POOR"
            par = f"  {p['rel_l2']:>8.2g}{p['centered_cosine_min']:>8.4f}{p['top1_agreement'] * 100:>6.0f}%{flag}"
        else:
            par = f"  {p.get('note', '')}"
        lines.append(f"{name:<28}{r['label']:<26}{r['batch']:>5}{speed}{r['throughput']:>9.1f}"
                     f"{r['peak_rss_mb']:>8.0f}{par}")
    for s in result.get("skipped", []):
        lines.append(f"skipped {s['artifact']} at batch {s['batch']}: {s['reason']}")
    env = result.get("env", {})
    lines.append(f"latency: wall time per run() incl. synchronize; iqr = p75-p25 ms; img/s = batch / p50. "
                 f"Parity vs the first artifact of the same model (rel L2, min centered cosine, top-1 agreement); "
                 f"random weights make top-1 agreement meaningless.")
    if env:
        lines.append(f"cpu: {env.get('cpu')} ({env.get('cores')} cores, load {env.get('loadavg')})")
    return "\n".join(lines)
