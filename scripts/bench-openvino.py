#!/usr/bin/env python
"""Every figure issue 8 asks for, in one run: densenet121 CPU deployments timed in interleaved passes.

    python scripts/bench-openvino.py --workdir /tmp/dnx-bench-ov --json-out bench-openvino.json

1. Builds (timed, once): densenet121 (random weights: speed does not depend on them) exported to ONNX;
   OpenVINO IR fp32 and bf16; dnx INT8 variants (nncf recipe with each DenseNet-aware option, qdq
   recipe) and the peer, plain NNCF (`nncf.quantize(model, data, preset=PERFORMANCE)`, run with
   OpenVINO's defaults). Calibration data for densenet121: `digits` upscaled to 3x224x224 (real strokes
   give activation statistics closer to images than noise would; accuracy is not measured on it).
2. Accuracy: the digits DenseNet-BC (trained here, ~20 s) in fp32 vs the same INT8 recipes, on the
   held-out digits split.
3. Speed: batch 1 latency (synchronous, LATENCY hint) and batch 8 throughput (OpenVINO: THROUGHPUT hint
   + AsyncInferQueue; torch/ORT: synchronous loop), `--passes` round-robin passes with rotated order;
   per variant the median of per-pass medians, the pass-median range (drift) and the IQR.
Prints a table; writes everything as JSON. Figures are only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time

import numpy as np

log = logging.getLogger("bench-openvino")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", default="/tmp/dnx-bench-ov")
    p.add_argument("--json-out", default="bench-openvino.json")
    p.add_argument("--model", default="densenet121")
    p.add_argument("--passes", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0, help="time per variant per pass (each mode)")
    p.add_argument("--calib-samples", type=int, default=128)
    p.add_argument("--threads", type=int, default=None, help="default: OpenVINO/ORT/torch pick (all cores)")
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--only", help="comma-separated variant names to time (default: all)")
    return p.parse_args(argv)


# --- builds -------------------------------------------------------------------------------------------
def variants_spec():
    """name -> (kind, options). kind: torch | ort | ov-fp32 | ov-bf16 | dnx-nncf | dnx-qdq | plain-nncf."""
    from densenet_deploy.exporters.targets.openvino import NncfOptions

    return {
        "torch eager fp32": ("torch", {}),
        "onnxruntime fp32": ("ort", {}),
        "openvino fp32": ("ov", {"precision": "fp32"}),
        "openvino bf16": ("ov", {"precision": "bf16"}),
        "plain NNCF (peer)": ("plain-nncf", {}),
        "dnx int8 nncf": ("ov", {"precision": "int8", "recipe": "nncf", "nncf_options": NncfOptions()}),
        "dnx int8 nncf f32-rest": (
            "ov",
            {"precision": "int8", "recipe": "nncf", "nncf_options": NncfOptions(inference_precision="f32")},
        ),
        "dnx int8 nncf target-ANY": (
            "ov",
            {"precision": "int8", "recipe": "nncf", "nncf_options": NncfOptions(target_device="ANY")},
        ),
        "dnx int8 nncf float-stem-head": ("ov", {"precision": "int8", "recipe": "nncf", "stem_head": True}),
        "dnx int8 qdq": ("ov", {"precision": "int8", "recipe": "qdq", "inference_precision": "bf16"}),
        "dnx int8 qdq f32-rest": ("ov", {"precision": "int8", "recipe": "qdq", "inference_precision": "f32"}),
    }


def build_plain_nncf(onnx_path: str, out_xml: str, calib: str, samples: int) -> dict:
    """The peer: what an OpenVINO user does by the book; no dnx options, OpenVINO's default precision."""
    import nncf
    import openvino as ov

    from densenet_deploy.core.metadata import read_onnx_meta
    from densenet_deploy.core.sidecars import write_sidecar
    from densenet_deploy.data.loading import load_data_for

    meta = read_onnx_meta(onnx_path)
    data = load_data_for(calib, meta, split="train", limit=samples)
    t0 = time.perf_counter()
    model = nncf.quantize(
        ov.convert_model(onnx_path),
        nncf.Dataset([data.images[i : i + 1] for i in range(len(data))]),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(data),
    )
    seconds = time.perf_counter() - t0
    ov.save_model(model, out_xml, compress_to_fp16=False)
    write_sidecar(
        out_xml, meta.replace(precision="int8"), openvino={"inference_precision": "default", "recipe": "plain nncf"}
    )
    return {
        "seconds": round(seconds, 1),
        "fake_quantize_nodes": sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops()),
    }


def build_all(onnx_path: str, workdir: str, tag: str, calib: str, samples: int, names) -> dict:
    """Build every OpenVINO variant of `onnx_path`; returns name -> {path, build info}."""
    from densenet_deploy.core.errors import DnxError
    from densenet_deploy.exporters.targets.openvino import build_openvino
    from densenet_deploy.exporters.targets.openvino_nncf import classifier_and_stem

    built = {}
    for name, (kind, opts) in variants_spec().items():
        if name not in names or kind in ("torch", "ort"):
            continue
        out = os.path.join(workdir, f"{tag}.{name.replace(' ', '_').replace('(', '').replace(')', '')}.xml")
        t0 = time.perf_counter()
        try:
            if kind == "plain-nncf":
                info = build_plain_nncf(onnx_path, out, calib, samples)
            else:
                opts = dict(opts)
                if opts.pop("stem_head", False):
                    import openvino as ov

                    from densenet_deploy.exporters.targets.openvino import NncfOptions

                    opts["nncf_options"] = NncfOptions(ignored_scope=classifier_and_stem(ov.convert_model(onnx_path)))
                kw = {"calib_data": calib, "samples": samples} if opts["precision"] == "int8" else {}
                r = build_openvino(onnx_path, out, verify_data=calib, verify_samples=64, **kw, **opts)
                info = {
                    "fake_quantize_nodes": r["fake_quantize_nodes"],
                    "parity": r["parity"],
                    "inference_precision": r["inference_precision"],
                }
        except (DnxError, ImportError) as exc:  # e.g. calibration package missing, verification refused
            log.warning("%s: not built: %s", name, exc)
            built[name] = {"error": str(exc)}
            continue
        info["build_seconds"] = round(time.perf_counter() - t0, 1)
        built[name] = {"path": out, **info}
        log.info("built %s in %.1f s", name, info["build_seconds"])
    return built


# --- accuracy -----------------------------------------------------------------------------------------
def accuracy(workdir: str, samples: int, names) -> dict:
    from densenet_deploy.core.metadata import read_onnx_meta
    from densenet_deploy.data.loading import load_data_for
    from densenet_deploy.exporters.onnx import export_onnx
    from densenet_deploy.runners import open_runner
    from densenet_deploy.train.loop import digits_preset, train

    ckpt = os.path.join(workdir, "digits.pt")
    if not os.path.isfile(ckpt):
        train(digits_preset(output=ckpt))
    onnx_path = os.path.join(workdir, "digits.onnx")
    if not os.path.isfile(onnx_path):
        export_onnx(ckpt, onnx_path)
    val = load_data_for("digits", read_onnx_meta(onnx_path), split="val")
    int8 = [n for n in names if "int8" in n or "NNCF" in n]
    built = build_all(onnx_path, workdir, "digits", "digits", samples, int8 + ["openvino fp32"])
    rows = {}
    with open_runner(onnx_path) as ref_runner:
        ref = ref_runner.run(val.images)
    rows["onnxruntime fp32"] = {"accuracy": float((ref.argmax(1) == val.labels).mean())}
    for name, info in built.items():
        if "path" not in info:
            rows[name] = info
            continue
        with open_runner(info["path"]) as runner:
            out = runner.run(val.images)
        rows[name] = {
            "accuracy": float((out.argmax(1) == val.labels).mean()),
            "agreement": float((out.argmax(1) == ref.argmax(1)).mean()),
            "rel_l2": float(np.linalg.norm(out - ref) / np.linalg.norm(ref)),
        }
        rows[name]["drop_points"] = round((rows["onnxruntime fp32"]["accuracy"] - rows[name]["accuracy"]) * 100, 2)
    return {"samples": len(val), "rows": rows}


# --- timing -------------------------------------------------------------------------------------------
def open_all(model: str, onnx_path: str, built: dict, names, threads):
    from densenet_deploy.runners import open_runner

    runners = {}
    for name in names:
        kind = variants_spec()[name][0]
        opts = {"threads": threads} if threads else {}
        if kind == "torch":
            runners[name] = open_runner(model, **opts)
        elif kind == "ort":
            runners[name] = open_runner(onnx_path, **opts)
        elif "path" in built.get(name, {}):
            runners[name] = open_runner(built[name]["path"], **opts)
    return runners


def measure(runners: dict, passes: int, seconds: float) -> dict:
    rng = np.random.default_rng(0)
    names = list(runners)
    shape = next(iter(runners.values())).input.shape
    x1 = rng.standard_normal((1, *shape)).astype(np.float32)
    x8 = rng.standard_normal((8, *shape)).astype(np.float32)
    for r in runners.values():  # warm-up: compile both static shapes, first-touch memory
        r.run(x1), r.run(x8)
    lat = {n: {"pass_medians": [], "all": []} for n in names}
    tput = {n: [] for n in names}
    for p in range(passes):
        order = names[p % len(names) :] + names[: p % len(names)]
        for n in order:
            r = runners[n]
            times, t_end = [], time.perf_counter() + seconds
            while time.perf_counter() < t_end or len(times) < 3:
                t0 = time.perf_counter()
                r.run(x1)
                times.append((time.perf_counter() - t0) * 1e3)
            lat[n]["pass_medians"].append(statistics.median(times))
            lat[n]["all"] += times
        for n in order:
            r = runners[n]
            if callable(getattr(r, "throughput", None)):
                tput[n].append(r.throughput(x8, seconds=seconds, warmup=0.3 if p else 1.0)["images_per_s"])
            else:
                count, t0 = 0, time.perf_counter()
                while time.perf_counter() - t0 < seconds or count < 2:
                    r.run(x8)
                    count += 1
                tput[n].append(count * 8 / (time.perf_counter() - t0))
        log.info("pass %d/%d done", p + 1, passes)
    out = {}
    for n in names:
        q = np.percentile(lat[n]["all"], [25, 75])
        out[n] = {
            "label": runners[n].label,
            "b1_latency_ms": round(statistics.median(lat[n]["pass_medians"]), 3),
            "b1_pass_median_range_ms": [round(min(lat[n]["pass_medians"]), 3), round(max(lat[n]["pass_medians"]), 3)],
            "b1_iqr_ms": [round(float(q[0]), 3), round(float(q[1]), 3)],
            "b8_throughput_img_s": round(statistics.median(tput[n]), 1),
            "b8_pass_range_img_s": [round(min(tput[n]), 1), round(max(tput[n]), 1)],
        }
    return out


def verdicts(speed: dict, acc: dict | None) -> dict:
    dnx = {n: v for n, v in speed.items() if n.startswith("dnx ") or n.startswith("openvino ")}
    peer = speed.get("plain NNCF (peer)")
    torch_ = speed.get("torch eager fp32")
    if not dnx or not peer:
        return {}
    best_lat = min(dnx, key=lambda n: dnx[n]["b1_latency_ms"])
    best_tp = max(dnx, key=lambda n: dnx[n]["b8_throughput_img_s"])
    v = {
        "best_latency": best_lat,
        "best_throughput": best_tp,
        "latency_speedup_vs_peer": round(peer["b1_latency_ms"] / dnx[best_lat]["b1_latency_ms"], 3),
        "throughput_speedup_vs_peer": round(dnx[best_tp]["b8_throughput_img_s"] / peer["b8_throughput_img_s"], 3),
    }
    if torch_:
        v["latency_speedup_vs_torch_eager"] = round(torch_["b1_latency_ms"] / dnx[best_lat]["b1_latency_ms"], 2)
    v["target_at_least_peer"] = v["latency_speedup_vs_peer"] >= 1.0 and v["throughput_speedup_vs_peer"] >= 1.0
    v["goal_1.2x_peer"] = v["latency_speedup_vs_peer"] >= 1.2 and v["throughput_speedup_vs_peer"] >= 1.2
    v["target_8x_torch"] = v.get("latency_speedup_vs_torch_eager", 0) >= 8
    if acc:
        drops = {n: r.get("drop_points") for n, r in acc["rows"].items() if r.get("drop_points") is not None}
        v["int8_accuracy_drop_points"] = drops
    return v


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("nncf", "densenet_deploy.data.readers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.makedirs(args.workdir, exist_ok=True)
    start = time.perf_counter()
    names = [n for n in variants_spec() if not args.only or n in args.only.split(",")]

    from densenet_deploy.core.host import environment
    from densenet_deploy.exporters.onnx import export_onnx

    onnx_path = os.path.join(args.workdir, f"{args.model}.onnx")
    if not os.path.isfile(onnx_path):
        export_onnx(args.model, onnx_path)
    built = build_all(onnx_path, args.workdir, args.model, "digits", args.calib_samples, names)
    acc = None if args.skip_accuracy else accuracy(args.workdir, args.calib_samples, names)
    runners = open_all(args.model, onnx_path, built, names, args.threads)
    try:
        speed = measure(runners, args.passes, args.seconds)
    finally:
        for r in runners.values():
            r.close()
    result = {
        "model": args.model,
        "builds": built,
        "speed": speed,
        "accuracy_digits": acc,
        "verdicts": verdicts(speed, acc),
        "settings": vars(args),
        "env": environment(args.threads),
        "seconds_total": round(time.perf_counter() - start, 1),
    }
    with open(args.json_out, "w") as fh:
        json.dump(result, fh, indent=2, default=str)
    print(f"{'variant':<32}{'b1 ms (median)':>15}{'pass range':>20}{'b8 img/s':>10}{'pass range':>20}")
    for n, s in speed.items():
        print(
            f"{n:<32}{s['b1_latency_ms']:>15.2f}{str(s['b1_pass_median_range_ms']):>20}"
            f"{s['b8_throughput_img_s']:>10.1f}{str(s['b8_pass_range_img_s']):>20}"
        )
    if acc:
        print("digits accuracy (held-out):", {n: r.get("accuracy") for n, r in acc["rows"].items()})
    print("verdicts:", json.dumps(result["verdicts"]))
    print(f"total {result['seconds_total']} s; JSON: {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
