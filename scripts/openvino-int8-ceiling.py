#!/usr/bin/env python
"""How fast INT8 can go on this CPU with OpenVINO, and where an INT8 model's time goes.

    python scripts/openvino-int8-ceiling.py                      # conv ceiling per DenseNet-121 layer shape
    python scripts/openvino-int8-ceiling.py --profile a.xml b.xml  # + per-node-type split of built IRs

1. Ceiling: chains of symmetric int8 Q/DQ convolutions (+ReLU) at the conv shapes of densenet121's dense
   layers and transitions, compiled by OpenVINO (LATENCY hint), timed with PERF_COUNT on the Convolution
   nodes only; MACs are computed from the shapes. densenet121's conv floor is the sum over its layers of
   MACs / the rate measured at that layer's shape (the stem and classifier at the nearest shape).
2. Profile: each IR (e.g. from `dnx build-engine --target openvino --int8`) at batch 1, run 200 times with
   PERF_COUNT; time per node type and the wall-clock median (the gap is dispatch between nodes).
Figures vary between runs on a shared machine: compare within one run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import time

import numpy as np

# (cin, cout, kernel, spatial, MACs of densenet121 spent at this shape family): dense-layer 1x1 and 3x3
# convs per block and the transitions, at their real sizes (block b: 6/12/24/16 layers, k=32, 4k=128).
BLOCKS = ((56, 64, 6), (28, 128, 12), (14, 256, 24), (7, 512, 16))


def densenet121_shapes():
    """[(label, cin, cout, k, hw, macs)] for every conv of densenet121's features except the stem."""
    shapes = []
    for index, (hw, c0, layers) in enumerate(BLOCKS):
        for layer in range(layers):
            cin = c0 + 32 * layer
            shapes.append((f"block{index + 1} 1x1", cin, 128, 1, hw, cin * 128 * hw * hw))
            shapes.append((f"block{index + 1} 3x3", 128, 32, 3, hw, 128 * 32 * 9 * hw * hw))
        if index < 3:
            cout = (c0 + 32 * layers) // 2
            shapes.append(
                (f"transition{index + 1}", c0 + 32 * layers, cout, 1, hw, (c0 + 32 * layers) * cout * hw * hw)
            )
    return shapes


def conv_chain(cin: int, cout: int, k: int, hw: int, n: int, seed: int = 0):
    """An ONNX model of n Q/DQ int8 convs (alternating cin->cout->cin) with ReLU; returns (model, MACs)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = (
        [],
        [
            numpy_helper.from_array(np.array(0.05, np.float32), "s_act"),
            numpy_helper.from_array(np.array(0, np.int8), "zp_act"),
        ],
    )
    x, ch, macs = "x", cin, 0
    for i in range(n):
        co = cout if i % 2 == 0 else cin
        inits += [
            numpy_helper.from_array(rng.integers(-127, 128, (co, ch, k, k)).astype(np.int8), f"w{i}"),
            numpy_helper.from_array(np.full(co, 0.002, np.float32), f"ws{i}"),
            numpy_helper.from_array(np.zeros(co, np.int8), f"wz{i}"),
            numpy_helper.from_array(np.zeros(co, np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", [x, "s_act", "zp_act"], [f"q{i}"]),
            helper.make_node("DequantizeLinear", [f"q{i}", "s_act", "zp_act"], [f"dq{i}"]),
            helper.make_node("DequantizeLinear", [f"w{i}", f"ws{i}", f"wz{i}"], [f"wf{i}"], axis=0),
            helper.make_node("Conv", [f"dq{i}", f"wf{i}", f"b{i}"], [f"c{i}"], pads=[k // 2] * 4),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        ]
        macs += co * ch * k * k * hw * hw
        x, ch = f"r{i}", co
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, hw, hw])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, ch, hw, hw])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model, macs


def conv_rate(model, macs: int, threads: int, seconds: float) -> float:
    """GMAC/s of the Convolution nodes of `model` (PERF_COUNT time, median of runs)."""
    import openvino as ov

    core = ov.Core()
    ov_model = core.read_model(model.SerializeToString(), ov.Tensor(np.empty(0, np.uint8)))
    compiled = core.compile_model(
        ov_model,
        "CPU",
        {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": "f32",
            "PERF_COUNT": True,
        },
    )
    request = compiled.create_infer_request()
    x = np.random.default_rng(1).standard_normal(tuple(ov_model.inputs[0].shape)).astype(np.float32)
    conv_times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(conv_times) < 5:
        request.infer({0: x})
        conv_times.append(
            sum(
                p.real_time.total_seconds()
                for p in request.get_profiling_info()
                if p.status.name == "EXECUTED" and p.node_type == "Convolution"
            )
        )
    return macs / statistics.median(conv_times) / 1e9


def ceiling(threads: int, seconds: float) -> dict:
    shapes = densenet121_shapes()
    rates = {}
    for family in dict.fromkeys((cin_bucket(cin), cout, k, hw) for _, cin, cout, k, hw, _ in shapes):
        cin, cout, k, hw = family
        model, macs = conv_chain(cin, cout, k, hw, n=4)
        rates[family] = conv_rate(model, macs, threads, seconds)
        print(f"int8 conv {k}x{k} {cin:>4}->{cout:<4} @{hw:<3} {rates[family]:7.0f} GMAC/s", flush=True)
    big, big_macs = conv_chain(1024, 1024, 1, 56, n=4)
    peak = conv_rate(big, big_macs, threads, seconds)
    print(f"int8 conv 1x1 1024->1024 @56  {peak:7.0f} GMAC/s (large-GEMM peak)")
    floor = sum(macs / rates[(cin_bucket(cin), cout, k, hw)] for _, cin, cout, k, hw, macs in shapes) / 1e6
    total_macs = 2_834_161_664  # densenet121, `dnx info densenet121`
    stem_and_rest = total_macs - sum(s[-1] for s in shapes)
    floor += stem_and_rest / peak / 1e6  # the stem and classifier at the peak rate: a lower bound
    print(
        f"densenet121: {total_macs / 1e9:.3f} G MACs; at the peak rate {total_macs / peak / 1e6:.2f} ms; "
        f"at its own layer shapes {floor:.2f} ms of convolution alone"
    )
    return {
        "peak_gmacs": round(peak),
        "rates": {f"{k}x{k} {cin}->{cout} @{hw}": round(r) for (cin, cout, k, hw), r in rates.items()},
        "floor_ms_peak": round(total_macs / peak / 1e6, 2),
        "floor_ms_shapes": round(floor, 2),
    }


def cin_bucket(cin: int) -> int:
    """Input channels rounded to a multiple of 128, so a few chains stand for the 58 different 1x1 widths."""
    return max(128, int(round(cin / 128)) * 128)


def profile(path: str, threads: int, runs: int = 200) -> dict:
    import openvino as ov

    sidecar = path + ".json"
    hint = None
    if os.path.isfile(sidecar):
        with open(sidecar) as f:
            hint = json.load(f).get("openvino", {}).get("inference_precision")
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True}
    if hint and hint != "default":
        config["INFERENCE_PRECISION_HINT"] = hint
    core = ov.Core()
    model = core.read_model(path)
    model.reshape({model.inputs[0].get_any_name(): [1, *list(model.inputs[0].get_partial_shape())[1:]]})
    request = core.compile_model(model, "CPU", config).create_infer_request()
    x = np.random.default_rng(0).standard_normal(tuple(model.inputs[0].shape)).astype(np.float32)
    for _ in range(20):
        request.infer({0: x})
    per_type, count, walls = collections.defaultdict(float), collections.Counter(), []
    for i in range(runs):
        t0 = time.perf_counter()
        request.infer({0: x})
        walls.append(time.perf_counter() - t0)
        for p in request.get_profiling_info():
            if p.status.name == "EXECUTED":
                per_type[p.node_type] += p.real_time.total_seconds() / runs
                count[p.node_type] += i == 0
    nodes_ms = sum(per_type.values()) * 1e3
    print(f"{path}: wall median {statistics.median(walls) * 1e3:.2f} ms (with PERF_COUNT), node time {nodes_ms:.2f} ms")
    for node_type, seconds in sorted(per_type.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {node_type:<20} {count[node_type]:4d} nodes {seconds * 1e3:7.3f} ms {seconds * 1e3 / nodes_ms:6.1%}")
    return {
        "wall_ms": round(statistics.median(walls) * 1e3, 3),
        "node_ms": round(nodes_ms, 3),
        "by_type_ms": {k: round(v * 1e3, 3) for k, v in per_type.items()},
        "nodes": dict(count),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", nargs="*", default=[], metavar="IR", help="OpenVINO IR files to profile")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per conv chain")
    parser.add_argument("--skip-ceiling", action="store_true")
    parser.add_argument("--json-out")
    args = parser.parse_args(argv)
    result = {"threads": args.threads}
    if not args.skip_ceiling:
        result["ceiling"] = ceiling(args.threads, args.seconds)
    result["profiles"] = {path: profile(path, args.threads) for path in args.profile}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
