#!/usr/bin/env python
"""Every benchmark figure issue 7 asks for, in one run, as JSON (run it on a quiet machine).

  python scripts/bench-figures.py --workdir bench-figures --seconds 10

1. exports densenet121 and resnet50 to ONNX and calibrates INT8 Q/DQ copies (random data: the
   weights are random too; reused when the files exist);
2. benches, in ONE interleaved run (round-robin passes), batch 1 and 8: torch eager fp32, ONNX Runtime
   fp32, ONNX Runtime int8 for both models (and OpenVINO fp32/int8 rows when openvino is installed);
3. ratios measured in that same run, per pass (same noise) with median and range: ORT fp32 vs torch
   (target >= 2.5x for densenet121 at batch 1), int8 vs fp32, densenet121 vs resnet50;
4. the bench harness's overhead over a bare `session.run` loop on the same ONNX Runtime session
   (target < 2 %), interleaved the same way;
and writes figures.json (+ the bench report: report.md, results.json, latency_vs_batch.png).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def _prepare(workdir: str, notes: list[str]) -> dict:
    from densenet_deploy.exporters.onnx import export_onnx

    paths = {}
    for model, short in (("densenet121", "d"), ("resnet50", "r")):
        fp32 = os.path.join(workdir, f"{short}.onnx")
        if not os.path.isfile(fp32):
            print(f"exporting {model} ...", file=sys.stderr)
            export_onnx(model, fp32)
        paths[model] = {"fp32": fp32}
        int8 = os.path.join(workdir, f"{short}.int8.onnx")
        if not os.path.isfile(int8):
            print(f"calibrating {model} INT8 ...", file=sys.stderr)
            try:
                from densenet_deploy.calibration.quantize import CalibrationOptions, quantize_int8
                from densenet_deploy.core.policy import GateOptions

                gate = GateOptions(min_agreement=0.0, max_accuracy_drop=100.0, max_rel_l2=float("inf"))
                quantize_int8(fp32, int8, "random", CalibrationOptions(samples=32, eval_samples=16, gate=gate))
            except Exception as exc:  # the figures still come out without the int8 rows
                notes.append(f"int8 {model}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        if os.path.isfile(int8):
            paths[model]["int8"] = int8
    return paths


def _artifacts(paths: dict, openvino: bool) -> list[str]:
    out = []
    for model in ("densenet121", "resnet50"):
        out.append(model)  # torch eager, and the parity reference of its model
        out += [paths[model][p] for p in ("fp32", "int8") if p in paths[model]]
        if openvino:
            out += [f"{paths[model][p]}@openvino" for p in ("fp32", "int8") if p in paths[model]]
    return out


def _row(result, artifact_suffix: str, label_start: str, batch: int):
    for r in result["results"]:
        if r["batch"] == batch and r["artifact"].endswith(artifact_suffix) and r["label"].startswith(label_start):
            return r
    return None


def _ratio(slow, fast) -> dict | None:
    """slow.p50 / fast.p50 overall, and per pass (both measured in the same pass: same machine state)."""
    if not slow or not fast or not slow.get("latency_ms") or not fast.get("latency_ms"):
        return None
    per_pass = [a / b for a, b in zip(slow["pass_p50_ms"], fast["pass_p50_ms"])]
    return {
        "ratio": slow["latency_ms"]["p50"] / fast["latency_ms"]["p50"],
        "per_pass_median": float(np.median(per_pass)),
        "per_pass_min": min(per_pass),
        "per_pass_max": max(per_pass),
    }


def _ratios(result: dict, paths: dict, batches) -> dict:
    out = {}
    for b in batches:
        d_torch, r_torch = _row(result, "densenet121", "torch", b), _row(result, "resnet50", "torch", b)
        d32, r32 = _row(result, "/d.onnx", "onnxruntime", b), _row(result, "/r.onnx", "onnxruntime", b)
        d8, r8 = _row(result, "/d.int8.onnx", "onnxruntime", b), _row(result, "/r.int8.onnx", "onnxruntime", b)
        out[f"batch{b}"] = {
            "densenet121_ort_fp32_speedup_vs_torch": _ratio(d_torch, d32),
            "resnet50_ort_fp32_speedup_vs_torch": _ratio(r_torch, r32),
            "densenet121_ort_int8_speedup_vs_ort_fp32": _ratio(d32, d8),
            "resnet50_ort_int8_speedup_vs_ort_fp32": _ratio(r32, r8),
            "densenet121_latency_over_resnet50_torch": _ratio(d_torch, r_torch),
            "densenet121_latency_over_resnet50_ort_fp32": _ratio(d32, r32),
            "densenet121_latency_over_resnet50_ort_int8": _ratio(d8, r8),
        }
    return out


def harness_overhead(onnx_path: str, seconds: float, passes: int, batch: int = 1, threads=None) -> dict:
    """Bench's timed loop (Runner.run + synchronize) vs a bare session.run loop on the SAME session."""
    from densenet_deploy.bench.timing import latency_stats, timed_loop
    from densenet_deploy.runners import open_runner

    runner = open_runner(onnx_path, "onnxruntime", **({"threads": threads} if threads else {}))
    session, name = runner.session, runner.input.name
    out_name = session.get_outputs()[0].name
    x = np.random.default_rng(0).standard_normal((batch, *runner.input.shape)).astype(np.float32)
    for _ in range(5):
        session.run([out_name], {name: x})
    bare_all, harness_all, per_pass = [], [], []
    clock = time.perf_counter
    for p in range(passes):
        order = ("bare", "harness") if p % 2 == 0 else ("harness", "bare")
        medians = {}
        for kind in order:
            if kind == "bare":
                times, deadline = [], clock() + seconds / passes
                while True:
                    t0 = clock()
                    session.run([out_name], {name: x})
                    t1 = clock()
                    times.append(t1 - t0)
                    if t1 >= deadline:
                        break
                bare_all += times
            else:
                times = timed_loop(runner, x, seconds=seconds / passes)
                harness_all += times
            medians[kind] = float(np.median(times))
        per_pass.append(100.0 * (medians["harness"] / medians["bare"] - 1))
    runner.close()
    bare, harness = latency_stats(bare_all), latency_stats(harness_all)
    return {
        "artifact": onnx_path,
        "batch": batch,
        "bare_session_run_ms": bare,
        "bench_harness_ms": harness,
        "overhead_pct": 100.0 * (harness["p50"] / bare["p50"] - 1),
        "per_pass_overhead_pct": per_pass,
        "target_pct": 2.0,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="bench-figures")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per artifact and batch")
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-openvino", action="store_true")
    parser.add_argument("--out", default=None, help="JSON path (default WORKDIR/figures.json)")
    args = parser.parse_args(argv)

    from densenet_deploy.bench.timing import BenchOptions, bench, format_table, parse_batches
    from densenet_deploy.core.deps import available

    started = time.perf_counter()
    os.makedirs(args.workdir, exist_ok=True)
    notes: list[str] = []
    paths = _prepare(args.workdir, notes)
    openvino = available("openvino") and not args.no_openvino
    artifacts = _artifacts(paths, openvino)
    print(f"benching {len(artifacts)} artifacts ...", file=sys.stderr)
    options = BenchOptions(
        batch=args.batch,
        seconds=args.seconds,
        passes=args.passes,
        threads=args.threads,
        report=os.path.join(args.workdir, "report"),
    )
    result = bench(artifacts, options, progress=sys.stderr.isatty()).as_dict()
    print(format_table(result), file=sys.stderr)
    overhead = {
        "densenet121": harness_overhead(
            paths["densenet121"]["fp32"], 2 * args.seconds, args.passes, threads=args.threads
        )
    }
    print(
        f"harness overhead vs bare session.run (densenet121, batch 1): "
        f"{overhead['densenet121']['overhead_pct']:+.2f} %",
        file=sys.stderr,
    )
    doc = {
        "figures": _ratios(result, paths, parse_batches(args.batch)),
        "harness_overhead": overhead,
        "bench": result,
        "notes": notes,
        "seconds_total": round(time.perf_counter() - started, 1),
        "settings": vars(args),
    }
    out = args.out or os.path.join(args.workdir, "figures.json")
    with open(out, "w") as fh:
        json.dump(doc, fh, indent=2, default=str)
    print(json.dumps(doc["figures"], indent=2))
    print(f"wrote {out} in {doc['seconds_total']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
