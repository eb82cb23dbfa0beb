"""Latency and throughput of any artifacts through the Runner protocol, with parity against the first.

How a run is organised (so that machine noise hits every artifact alike):
  for each batch size:
    1. parity: a fixed set of inputs goes through every runner in chunks of this batch size (this doubles
       as warm-up); each artifact's logits are compared with the reference's (the first artifact of the
       same model, by its metadata), so a fast but wrong artifact shows up beside its speed. The inputs
       are seeded random normals by default, or `data` (any densenet_deploy.data source, preprocessed
       with the reference's metadata; its held-out split), which also gives accuracy when it has labels.
       Random inputs lie far outside a trained model's data, where INT8/FP16 error is much larger than
       on real images: a reduced-precision row that misses the bounds on random inputs is marked
       "unverified", not "poor", and the result says to pass `data`;
    2. `warmup` more untimed runs per runner;
    3. `passes` round-robin passes; in each, every runner (in rotated order) gets an equal share of the
       time (`seconds`) or iteration (`iters`) budget. Per-iteration latency = wall time of run() plus
       synchronize(), so asynchronous GPU runners are timed to completion.
Spread is reported twice: the IQR of all iterations and the range of the per-pass medians (how much
the machine drifted during the run).

Throughput mode (`mode="throughput"`): a runner that has a `throughput(batch, seconds=..., warmup=...)`
method returning at least {"images_per_s": float} (the OpenVINO runner does: an AsyncInferQueue keeping
every stream busy) is measured through it; other runners fall back to the synchronous loop and their
row says `"mode": "latency"`. A runner adds throughput support by implementing that one method. The
queue runs for a time budget, so throughput mode takes `seconds`, never `iters` (refused).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import time
from dataclasses import dataclass

import numpy as np

from densenet_deploy.bench.report import (  # noqa: F401 (public API)
    BENCH_REPORT_FILES,
    format_table,
    parity_data_text,
    parity_flag,
    write_bench_report,
)
from densenet_deploy.core.errors import DataError, DnxError, did_you_mean
from densenet_deploy.core.host import environment
from densenet_deploy.core.io import check_report_outputs
from densenet_deploy.core.policy import RANDOM_GROSS_REL_L2, gate_for, lower_precision
from densenet_deploy.core.results import Result
from densenet_deploy.data.loading import held_out_split, load_data_for
from densenet_deploy.runners import BACKENDS, check_provider_option, open_runner
from densenet_deploy.runners.batches import run_batches
from densenet_deploy.verify.compare import compare_outputs
from densenet_deploy.verify.parity import DEFAULT_SAMPLES

log = logging.getLogger(__name__)

MODES = ("latency", "throughput")
RANDOM = "random"
RANDOM_PARITY_SAMPLES = 8
RANDOM_NOTE = (
    "parity was measured on random inputs, which lie far outside a trained model's data: they "
    "understate the parity of INT8/FP16 artifacts (a miss is marked 'unverified', not 'POOR'); pass "
    "--data SRC (e.g. --data digits) to measure parity and accuracy on real images"
)
DEFAULT_SECONDS = 3.0  # per artifact and batch size, when neither seconds nor iters is given
DEFAULT_PASSES = 5  # round-robin passes when none are asked for (at most `iters`: each needs one timed run)


@dataclass(frozen=True)
class BenchTarget:
    """One artifact to bench: path or zoo name, and the backend (None: chosen from the file type)."""

    artifact: str
    backend: str | None = None

    @classmethod
    def parse(cls, text: str, backend: str | None = None) -> "BenchTarget":
        """`d.onnx`, or `d.onnx@openvino` to pick the backend for this one artifact."""
        head, sep, tail = text.rpartition("@")
        if sep and tail in BACKENDS:
            return cls(head, tail)
        # `model.onnx@foo`: a backend typo, not a file name with '@' in it (those have an extension or a path).
        if sep and head and re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", tail) and not os.path.exists(text):
            raise DnxError(
                f"unknown backend {tail!r} in {text!r}{did_you_mean(tail, BACKENDS)}; "
                f"ARTIFACT@BACKEND takes one of {', '.join(BACKENDS)}"
            )
        return cls(text, backend)


def parse_batches(batch) -> tuple[int, ...]:
    """ "1,8,32" or an int or a sequence -> (1, 8, 32); DnxError on anything else."""
    items = batch.split(",") if isinstance(batch, str) else ([batch] if isinstance(batch, int) else list(batch))
    if any(not str(b).strip() for b in items) and items != [""]:  # "1,,2", "1,8,": a typo, not "1,2"
        raise DnxError(f"--batch takes comma-separated positive integers (e.g. 1,8,32), got {batch!r} (an empty item)")
    try:
        values = tuple(int(str(b).strip()) for b in items if str(b).strip())
    except ValueError:
        raise DnxError(f"--batch takes comma-separated positive integers (e.g. 1,8,32), got {batch!r}") from None
    if not values or min(values) < 1:
        raise DnxError(f"--batch takes comma-separated positive integers (e.g. 1,8,32), got {batch!r}")
    return tuple(dict.fromkeys(values))


def latency_stats(seconds: list[float]) -> dict:
    """Per-iteration latencies (s) -> ms statistics (p50/p90/p99/mean/min/max/iqr/std, and p25/p75: the
    IQR's ends, so two artifacts' spreads can be compared)."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    p25, p50, p75, p90, p99 = np.percentile(ms, [25, 50, 75, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(ms.mean()),
        "min": float(ms.min()),
        "max": float(ms.max()),
        "iqr": float(p75 - p25),
        "std": float(ms.std()),
        "p25": float(p25),
        "p75": float(p75),
    }


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


@dataclass(frozen=True)
class BenchOptions:
    """How bench times: batch sizes ("1,8,32" or a sequence), a time budget (`seconds`) or a run count
    (`iters`) per artifact and batch, untimed `warmup` runs, intra-op `threads`, one `backend` for every
    artifact (None: from the file type; `path@backend` picks one), `mode` latency or throughput, `passes`
    round-robin passes, the parity inputs (`data`: a data source, None or "random": seeded random inputs;
    `samples` of them, default 64 with data, else `parity_samples`), `report` (a directory for report.md,
    results.json and a plot), ONNX Runtime execution `provider`s."""

    batch: str | int | tuple = "1"
    seconds: float | None = None
    iters: int | None = None
    warmup: int = 3
    threads: int | None = None
    backend: str | None = None
    mode: str = "latency"
    passes: int | None = None
    parity_samples: int = RANDOM_PARITY_SAMPLES
    seed: int = 0
    report: str | None = None
    data: str | None = None
    samples: int | None = None
    provider: str | list | None = None


@dataclass
class BenchResult(Result):
    """Rows per artifact and batch (latency or throughput, parity against the reference, accuracy), the batch
    sizes skipped, the machine, the settings as run, notes, and the report files when one was written."""

    results: list[dict]
    skipped: list[dict]
    env: dict
    settings: dict
    notes: list[str]
    report: dict | None = None

    def as_dict(self) -> dict:
        doc = dataclasses.asdict(self)
        if self.report is None:
            del doc["report"]
        return doc

    def __bool__(self) -> bool:
        """False when a row's parity is POOR on real data (`data`): a fast artifact that computes something
        else failed its check. On random inputs POOR rows are flagged, but prove too little to fail on."""
        return not (self.poor and self.settings.get("parity_data", RANDOM) != RANDOM)

    @property
    def poor(self) -> list[str]:
        return [
            f"{os.path.basename(r['artifact'])} at batch {r['batch']}"
            for r in self.results
            if (r.get("parity") or {}).get("status") == "poor"
        ]

    def __str__(self) -> str:
        text = format_table(self.as_dict())
        return text + ("\nreport: " + ", ".join(self.report.values()) if self.report else "")


def bench(artifacts, options: BenchOptions | None = None, *, progress: bool = False) -> BenchResult:
    """Bench `artifacts` (zoo names, checkpoints, .onnx, .xml, .plan; `path@backend` picks a backend) side by
    side; the first artifact of each model is its parity reference (see BenchOptions)."""
    o = options or BenchOptions()
    batch, seconds, iters, warmup, threads, backend = o.batch, o.seconds, o.iters, o.warmup, o.threads, o.backend
    mode, passes, parity_samples, seed, report = o.mode, o.passes, o.parity_samples, o.seed, o.report
    data, samples, provider = o.data, o.samples, o.provider
    if not artifacts:
        raise DnxError("give at least one ARTIFACT to bench")
    if mode not in MODES:
        raise DnxError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if seconds is not None and iters is not None:
        raise DnxError("give either --seconds or --iters, not both")
    if mode == "throughput" and iters is not None:
        # The asynchronous queue runs for a time budget, not a count of runs: refuse instead of silently
        # swapping --iters for some number of seconds.
        raise DnxError(
            "--mode throughput measures for a time budget (an asynchronous queue keeps every stream "
            "busy), not a number of runs; give --seconds instead of --iters"
        )
    if seconds is None and iters is None:
        seconds = DEFAULT_SECONDS
    if (
        (seconds is not None and seconds <= 0)
        or (iters is not None and iters < 1)
        or warmup < 0
        or (passes is not None and passes < 1)
    ):
        raise DnxError("--seconds must be > 0, --iters and passes >= 1, --warmup >= 0")
    if samples is not None and samples < 1:
        raise DnxError(f"--samples must be >= 1, got {samples}")
    data = None if data is None or data.strip() == RANDOM else data.strip()
    if data is None:
        n_samples = samples or parity_samples
    else:
        n_samples = samples or DEFAULT_SAMPLES
    batches = parse_batches(batch)
    targets = [a if isinstance(a, BenchTarget) else BenchTarget.parse(str(a), backend) for a in artifacts]
    providers = check_provider_option(provider, [(t.artifact, t.backend) for t in targets])
    if report:  # every report file, before any work (a report.md that is a directory fails here, not at the end)
        check_report_outputs(report, BENCH_REPORT_FILES)
    notes = []
    if passes is None:  # not asked for: DEFAULT_PASSES, fewer when --iters is smaller (no warning)
        passes = DEFAULT_PASSES if iters is None else min(DEFAULT_PASSES, iters)
    elif iters is not None and passes > iters:
        # Each pass needs at least one timed run: say so instead of reporting passes that never ran.
        notes.append(
            f"--passes {passes} with --iters {iters}: each pass needs one timed run, so {iters} "
            f"pass{'es' if iters > 1 else ''} ran"
        )
        log.warning("%s", notes[-1])

    runners, load_rss, parity_inputs = [], [], None
    try:
        for target in targets:
            before = rss_mb()
            options = {"threads": threads} if threads else {}
            runners.append(open_runner(target.artifact, target.backend, providers=providers, **options))
            load_rss.append(rss_mb() - before)
        _check_batches(runners, batches)
        parity_inputs = _load_parity_data(runners, data, n_samples, seed) if data else None
        measured = _measure(
            runners, load_rss, batches, seconds, iters, warmup, mode, passes, n_samples, seed, progress, parity_inputs
        )
    finally:
        for runner in runners:
            runner.close()

    settings = {
        "batches": list(batches),
        "seconds": seconds,
        "iters": iters,
        "warmup": warmup,
        "passes": min(passes, iters) if iters is not None else passes,
        "mode": mode,
        "parity_data": data or RANDOM,
        "parity_split": held_out_split(data) if data else None,
        "parity_samples": n_samples,
        "seed": seed,
        "reference": targets[0].artifact,
        "provider": providers,
    }
    if iters is not None and passes > iters:
        settings["passes_requested"] = passes
    if parity_inputs:
        settings["parity_samples"] = len(parity_inputs[0])
    if data is None and any(r["precision"] != "fp32" for r in measured["results"]):
        notes.append(RANDOM_NOTE)
    result = BenchResult(measured["results"], measured["skipped"], environment(threads), settings, notes)
    if report:
        result.report = write_bench_report(result.as_dict(), report)
    return result


def _check_batches(runners, batches) -> None:
    """Warn about each (artifact, batch) outside the artifact's batch range (a fixed-batch export, a TensorRT
    plan's --min-batch..--max-batch); DnxError when no requested batch size can run on any artifact."""
    limited = [r for r in runners if r.batch_range != (1, None)]
    runnable = [b for b in batches if any(r.accepts_batch(b) for r in runners)]
    if not runnable:
        sizes = "; ".join(f"{os.path.basename(r.name)} was built for {r.batch_range_text()}" for r in limited)
        fixed = [r.input.batch for r in limited if r.input.batch is not None]
        hint = (
            (
                f"pass --batch {','.join(str(b) for b in dict.fromkeys(fixed))} or re-export with a dynamic batch "
                "(`dnx export` without --batch)"
            )
            if fixed and len(fixed) == len(limited)
            else "pass --batch inside those ranges, or rebuild with other --min-batch/--max-batch"
        )
        raise DnxError(f"no requested batch size ({','.join(map(str, batches))}) can run: {sizes}; {hint}")
    for r in limited:
        other = [b for b in batches if not r.accepts_batch(b)]
        if other:
            log.warning(
                "skipping %s at batch %s: it was built for %s",
                os.path.basename(r.name),
                ",".join(map(str, other)),
                r.batch_range_text(),
            )


def _load_parity_data(runners, data: str, samples: int, seed: int) -> dict:
    """{runner index: Dataset}: `data` preprocessed with the metadata of each runner's reference
    (the first artifact of its model; its own when that has none), loaded once per preprocessing."""
    everyone = list(range(len(runners)))
    cache: dict[tuple, object] = {}
    out = {}
    for i, runner in enumerate(runners):
        ref = _reference(runners, everyone, i)
        meta = (getattr(runners[ref], "meta", None) if ref is not None else None) or getattr(runner, "meta", None)
        if meta is None:
            raise DataError(
                f"{runner.name} carries no dnx metadata (input size, mean/std), so --data {data} "
                "cannot be preprocessed for it; export it with `dnx export` or bench without --data"
            )
        key = (tuple(meta.input_size), tuple(np.atleast_1d(meta.mean)), tuple(np.atleast_1d(meta.std)))
        if key not in cache:
            cache[key] = load_data_for(data, meta, split=held_out_split(data), limit=samples, seed=seed)
            log.info("parity data: %d samples of %s", len(cache[key]), data)
        out[i] = cache[key]
    return out


def _measure(
    runners, load_rss, batches, seconds, iters, warmup, mode, passes, parity_samples, seed, progress, parity_inputs=None
):
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
    bar = tqdm(
        total=len(batches) * len(runners) * (n_passes + 1), disable=not progress, unit="step", desc="bench", leave=False
    )
    try:
        for b in batches:
            active = []
            for i, runner in enumerate(runners):
                if not runner.accepts_batch(b):
                    skipped.append({"artifact": runner.name, "batch": b, "reason": runner.batch_range_text()})
                else:
                    active.append(i)
            if not active:
                continue
            n_parity = math.ceil(parity_samples / b) * b
            outputs = {}
            for i in active:  # parity run, which is also the first part of the warm-up
                bar.set_postfix_str(f"parity b={b} {os.path.basename(runners[i].name)}")
                x = pool(tuple(runners[i].input.shape))
                if parity_inputs is not None:
                    outputs[i] = run_batches(runners[i], parity_inputs[i].images, b)
                else:
                    outputs[i] = run_batches(runners[i], x[:n_parity], b)
                for _ in range(warmup):
                    runners[i].run(x[:b])
                runners[i].synchronize()
                bar.update(1)
            times = {i: [] for i in active}
            pass_medians = {i: [] for i in active}
            throughput = {i: [] for i in active}
            budgets = _split(iters, n_passes) if iters is not None else [seconds / n_passes] * n_passes
            for p, budget in enumerate(budgets):
                order = active[p % len(active) :] + active[: p % len(active)]  # rotate: no fixed position
                for i in order:
                    runner = runners[i]
                    bar.set_postfix_str(f"b={b} pass {p + 1}/{n_passes} {os.path.basename(runner.name)}")
                    x = np.ascontiguousarray(pool(tuple(runner.input.shape))[:b])
                    if mode == "throughput" and callable(getattr(runner, "throughput", None)):
                        sample = runner.throughput(x, seconds=budget, warmup=0.0 if p else min(1.0, budget))
                        throughput[i].append(float(sample["images_per_s"]))
                    else:
                        t = timed_loop(
                            runner,
                            x,
                            iters=budget if iters is not None else None,
                            seconds=budget if iters is None else None,
                        )
                        times[i].extend(t)
                        pass_medians[i].append(float(np.median(t)) * 1e3)
                    bar.update(1)
            for i in active:
                ref = _reference(runners, active, i)
                dataset = parity_inputs[i] if parity_inputs is not None else None
                labels = dataset.labels if dataset is not None else None
                if ref is not None and parity_inputs is not None and parity_inputs[ref] is not dataset:
                    parity = {"note": "preprocessing differs from the reference's; not comparable"}
                else:
                    parity = parity_summary(runners, outputs, i, ref, real_data=dataset is not None)
                row = _row(runners[i], b, times[i], pass_medians[i], throughput[i], load_rss[i], parity)
                row["accuracy"] = (
                    float((outputs[i].argmax(1) == labels).mean())
                    if labels is not None and len(labels) == len(outputs[i])
                    else None
                )
                results.append(row)
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


def _row(runner, b, times, pass_medians, throughput, load_rss, parity) -> dict:
    row = {
        "artifact": runner.name,
        "backend": runner.backend,
        "precision": runner.precision,
        "device": runner.device,
        "label": runner.label,
        "batch": b,
    }
    if throughput:
        tp = float(np.median(throughput))
        row.update(
            mode="throughput",
            latency_ms=None,
            throughput=tp,
            throughput_spread=[float(min(throughput)), float(max(throughput))],
            iterations=None,
        )
    else:
        stats = latency_stats(times)
        row.update(
            mode="latency",
            latency_ms=stats,
            throughput=b * 1e3 / stats["p50"],
            iterations=len(times),
            pass_p50_ms=pass_medians,
            pass_spread_pct=100.0 * (max(pass_medians) - min(pass_medians)) / stats["p50"],
        )
    # What opening this artifact added to the process's resident memory: per artifact, unlike the process's
    # total (every opened artifact stays loaded). The first artifact of a backend also pays for its runtime.
    row["load_rss_mb"] = round(load_rss, 1)
    row["parity"] = parity
    return row


def parity_summary(runners, outputs: dict, i: int, ref: int | None, real_data: bool = False) -> dict | None:
    """Parity of runner i's logits against the reference's; None for the reference itself.

    `status`: "ok" (the policy's parity gate at the pair's lower precision passes, as `dnx verify` would
    judge it on the same inputs); "poor"; or "unverified": on random inputs (`real_data` False), a
    reduced-precision pair that misses the gate but whose error stays below the logits themselves (random
    inputs overstate INT8/FP16 error on trained models, so this proves neither good nor bad).
    """
    if ref is None:
        return {"note": "no reference artifact of this model was run at this batch size"}
    if i == ref:
        return None
    if tuple(runners[i].input.shape) != tuple(runners[ref].input.shape):
        return {"note": f"input shape {tuple(runners[i].input.shape)} differs from the reference's; not comparable"}
    a, c = outputs[ref], outputs[i]
    if a.shape != c.shape:
        return {"note": f"outputs differ in shape ({a.shape[1:]} vs {c.shape[1:]}); not comparable"}
    precision = lower_precision(runners[i].precision, runners[ref].precision)
    r = compare_outputs(a, c, gate=gate_for(precision), real_data=real_data)
    finite = bool(np.all(np.isfinite(c)))
    ok = bool(r)
    if ok:
        status = "ok"
    elif not real_data and precision != "fp32" and finite and r.rel_l2 <= RANDOM_GROSS_REL_L2:
        status = "unverified"
    else:
        status = "poor"
    return {
        "samples": r.samples,
        "rel_l2": r.rel_l2,
        "centered_cosine_min": r.centered_cosine_min,
        "cosine_min": r.cosine_min,
        "top1_agreement": r.top1_agreement,
        "max_abs_diff": r.max_abs_diff,
        "ok": ok,
        "status": status,
        "failures": r.failures,
    }
