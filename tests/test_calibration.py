"""INT8 calibration on the digits DenseNet-BC: accuracy gates, Q/DQ placement, caches, CLI errors."""

from __future__ import annotations

import json
import re
import struct

import numpy as np
import pytest
from click.testing import CliRunner

from densenet_deploy.core.policy import GateOptions

# Tests of mechanics, not of accuracy: any agreement passes (the accuracy tests use the policy's gate).
ANY_AGREEMENT = GateOptions(min_agreement=0.0, max_accuracy_drop=100.0)

SAMPLES, EVAL = 256, 300


@pytest.fixture(scope="module")
def int8_models(digits_onnx, tmp_path_factory):
    """entropy and percentile INT8 models of the digits fixture, with their CalibrationResults."""
    from densenet_deploy.calibration import CalibrationOptions, quantize_int8

    out = tmp_path_factory.mktemp("int8")
    results = {}
    for method in ("entropy", "percentile"):
        options = CalibrationOptions(method=method, samples=SAMPLES, eval_samples=EVAL)
        results[method] = quantize_int8(digits_onnx, str(out / f"{method}.onnx"), "digits", options)
    return results


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_int8_accuracy_within_one_point(int8_models, method):
    result = int8_models[method]
    parity = result.parity
    assert result.passed and result.samples == SAMPLES and parity["samples"] == EVAL
    drop = (parity["accuracy"]["ref"] - parity["accuracy"]["cand"]) * 100
    assert drop <= 1.0, f"{method}: accuracy {parity['accuracy']}"
    assert parity["top1_agreement"] >= 0.98
    assert 0 < parity["rel_l2"] < 0.3  # INT8 logits move, but not wildly
    print(f"{method}: acc {parity['accuracy']}, agreement {parity['top1_agreement']}, rel L2 {parity['rel_l2']:.4f}")


def test_every_conv_has_symmetric_int8_qdq(int8_models, digits_onnx):
    import onnx
    from onnx import numpy_helper

    fp32 = onnx.load(digits_onnx)
    convs = [n.name for n in fp32.graph.node if n.op_type == "Conv"]
    model = onnx.load(int8_models["entropy"].output)
    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    checked = 0
    for node in (n for n in model.graph.node if n.op_type == "Conv"):
        act, weight = producers[node.input[0]], producers[node.input[1]]
        assert act.op_type == "DequantizeLinear" and producers[act.input[0]].op_type == "QuantizeLinear"
        assert weight.op_type == "DequantizeLinear" and inits[weight.input[0]].dtype == np.int8
        assert inits[weight.input[1]].size == inits[weight.input[0]].shape[0]  # per output channel
        assert len(node.input) < 3 or node.input[2] in inits and inits[node.input[2]].dtype == np.float32
        checked += 1
    assert checked == len(convs) > 0
    for node in (n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")):
        zp = inits[node.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), f"{node.name}: zero point {zp}"
    meta = json.loads({p.key: p.value for p in model.metadata_props}["dnx.calibration"])
    assert meta["method"] == "entropy" and meta["samples"] == SAMPLES and meta["data_fingerprint"]


def test_entropy_ranges_differ_from_minmax(digits_onnx):
    from densenet_deploy.calibration.ranges import RangeSettings, compute_ranges
    from densenet_deploy.core.metadata import read_onnx_meta
    from densenet_deploy.data.loading import load_data_for

    meta = read_onnx_meta(digits_onnx)
    images = load_data_for("digits", meta, split="train", limit=128).images
    mm = compute_ranges(digits_onnx, images, meta.input_name, RangeSettings(method="minmax"))
    kl = compute_ranges(digits_onnx, images, meta.input_name, RangeSettings(method="entropy"))
    assert mm.values.keys() == kl.values.keys()
    clipped = [t for t in mm.values if kl.amax(t) < mm.amax(t) * 0.99]
    assert len(clipped) >= 5, "KL should clip activation ranges below their observed max"
    assert all(kl.amax(t) <= mm.amax(t) * 1.001 for t in mm.values)


def test_fast_entropy_threshold_matches_onnxruntime():
    from onnxruntime.quantization.calibrate import HistogramCollector

    from densenet_deploy.calibration.ranges import entropy_threshold

    rng = np.random.default_rng(0)
    for data, bins, qbins in [
        (np.maximum(rng.normal(size=20000), 0) ** 2, 512, 128),
        (rng.laplace(size=20000), 256, 64),
    ]:
        collector = HistogramCollector("entropy", True, bins, qbins, None, None)
        collector.collect({"t": data.astype(np.float32)})
        hist = collector.histogram_dict["t"]
        assert entropy_threshold(hist, qbins) == collector.get_entropy_threshold(hist, qbins)


def test_cache_reuse_skips_calibration(digits_onnx, tmp_path):
    """The second run takes ranges from the cache: an edited cache range shows up in the model's scale."""
    import onnx
    from onnx import numpy_helper

    from densenet_deploy.calibration import CalibrationOptions, quantize_int8

    cache = tmp_path / "ranges.json"
    kw = dict(
        method="minmax", samples=64, eval_samples=100, cache=str(cache), concat_scales="float", gate=ANY_AGREEMENT
    )
    first = quantize_int8(digits_onnx, str(tmp_path / "a.onnx"), "digits", CalibrationOptions(**kw))
    assert first.ranges_from == "calibration" and cache.is_file()
    doc = json.loads(cache.read_text())
    tensor = onnx.load(digits_onnx).graph.input[0].name  # the first conv's input
    doc["ranges"][tensor] = [-12.7, 12.7]
    cache.write_text(json.dumps(doc))
    second = quantize_int8(digits_onnx, str(tmp_path / "b.onnx"), "digits", CalibrationOptions(**kw))
    assert second.ranges_from == "cache"
    model = onnx.load(str(tmp_path / "b.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor)
    assert float(inits[q.input[1]]) == pytest.approx(0.1)
    # Other data (another sample count) does not match the key: calibrated again.
    third = quantize_int8(digits_onnx, str(tmp_path / "c.onnx"), "digits", CalibrationOptions(**{**kw, "samples": 32}))
    assert third.ranges_from == "calibration"


def test_trt_cache_round_trip(digits_onnx, tmp_path):
    import onnx
    from onnx import numpy_helper

    from densenet_deploy.calibration import CalibrationOptions, quantize_int8
    from densenet_deploy.calibration.cache import read_trt_cache

    trt = tmp_path / "calib.cache"
    kw = dict(method="minmax", samples=64, eval_samples=100, gate=ANY_AGREEMENT)
    quantize_int8(digits_onnx, str(tmp_path / "a.onnx"), "digits", CalibrationOptions(write_trt_cache=str(trt), **kw))
    lines = trt.read_text().splitlines()
    assert re.fullmatch(r"TRT-\d+-EntropyCalibration2", lines[0])
    assert all(re.fullmatch(r".+: [0-9a-f]{8}", line) for line in lines[1:]) and len(lines) > 10
    ranges = read_trt_cache(str(trt))
    model = onnx.load(str(tmp_path / "a.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in (n for n in model.graph.node if n.op_type == "QuantizeLinear"):
        scale = float(inits[node.input[1]])
        assert ranges.amax(node.input[0]) / 127 == pytest.approx(scale, rel=1e-6)
        name, hexval = next(line.split(": ") for line in lines[1:] if line.startswith(node.input[0] + ":"))
        assert struct.unpack(">f", bytes.fromhex(hexval))[0] == pytest.approx(scale, rel=1e-6)
    imported = quantize_int8(
        digits_onnx, str(tmp_path / "b.onnx"), "digits", CalibrationOptions(from_trt_cache=str(trt), **kw)
    )
    assert imported.ranges_from == "trt-cache"
    assert imported.parity["top1_agreement"] >= 0.98


def test_keep_ends_float_and_exclude(digits_onnx, tmp_path):
    from densenet_deploy.calibration import CalibrationOptions, quantize_int8
    from densenet_deploy.calibration.qdq import end_nodes
    from densenet_deploy.core.metadata import load_onnx

    model = load_onnx(digits_onnx)
    weighted = [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    ends = end_nodes(model)
    assert ends[0] == weighted[0] and ends[-1] == weighted[-1]
    options = CalibrationOptions(
        method="minmax",
        samples=64,
        eval_samples=100,
        keep_ends_float=True,
        exclude_nodes=(weighted[3],),
        gate=ANY_AGREEMENT,
    )
    r = quantize_int8(digits_onnx, str(tmp_path / "a.onnx"), "digits", options)
    assert r.quantized_nodes == len(weighted) - 3 and set(r.qdq["float_nodes"]) == {*ends, weighted[3]}


def _cli(args):
    from densenet_deploy.cli.main import cli

    return CliRunner().invoke(cli, args)


def test_cli_json(digits_onnx, tmp_path):
    out = tmp_path / "q.onnx"
    res = _cli(
        [
            "calibrate",
            digits_onnx,
            "--data",
            "digits",
            "-o",
            str(out),
            "--method",
            "percentile",
            "--samples",
            "64",
            "--eval-samples",
            "100",
            "--json",
        ]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    for key in ("output", "method", "samples", "quantized_nodes", "parity", "excluded", "seconds"):
        assert key in doc
    assert doc["method"] == "percentile" and doc["samples"] == 64 and out.is_file()
    assert {"top1_agreement", "cosine_min", "rel_l2", "accuracy"} <= doc["parity"].keys()


def test_cli_gate_failure_writes_nothing(digits_onnx, tmp_path):
    out = tmp_path / "q.onnx"
    # Ranges clipped at the 50th percentile really do wreck the model: the gate must catch it.
    res = _cli(
        [
            "calibrate",
            digits_onnx,
            "--data",
            "digits",
            "-o",
            str(out),
            "--method",
            "percentile",
            "--percentile",
            "50",
            "--samples",
            "32",
            "--eval-samples",
            "100",
        ]
    )
    assert res.exit_code == 1 and not out.exists(), res.output
    assert "accuracy drop" in res.output or "agreement" in res.output


def _bad_sources(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("not an image")
    (texts / "b.csv").write_text("1,2,3")
    shape = tmp_path / "shape.npy"
    np.save(shape, np.zeros((4, 3, 8, 8), np.float32))
    nan = tmp_path / "nan.npz"
    arr = np.zeros((20, 1, 16, 16), np.float32)
    arr[3, 0, 2, 2] = np.nan
    np.savez(nan, images=arr, labels=np.zeros(20, np.int64))
    return {"empty": str(empty), "texts": str(texts), "shape": str(shape), "nan": str(nan)}


@pytest.mark.parametrize(
    "case, pattern", [("empty", r"empty|no .*image"), ("texts", r"image"), ("shape", r"shape"), ("nan", r"NaN")]
)
def test_cli_bad_data_exit_2(digits_onnx, tmp_path, case, pattern):
    src = _bad_sources(tmp_path)[case]
    out = tmp_path / "q.onnx"
    res = _cli(["calibrate", digits_onnx, "--data", src, "-o", str(out), "--samples", "8"])
    assert res.exit_code == 2, res.output
    message = res.stderr.strip().splitlines()
    assert len(message) == 1 and message[0].startswith("error:") and re.search(pattern, message[0], re.I), message
    assert not out.exists()


def test_auto_exclude_keeps_the_broken_layer_float(digits_onnx, tmp_path):
    """A crippled range on the first conv's input fails the gate; auto mode finds that layer by SQNR."""
    from densenet_deploy.calibration import CalibrationOptions, quantize_int8
    from densenet_deploy.core.errors import VerificationFailed
    from densenet_deploy.core.metadata import load_onnx

    model = load_onnx(digits_onnx)
    first = next(n for n in model.graph.node if n.op_type == "Conv")
    cache = tmp_path / "ranges.json"
    kw = dict(method="minmax", samples=64, eval_samples=200, cache=str(cache), concat_scales="float")
    quantize_int8(digits_onnx, str(tmp_path / "a.onnx"), "digits", CalibrationOptions(**kw, gate=ANY_AGREEMENT))
    doc = json.loads(cache.read_text())
    doc["ranges"][first.input[0]] = [-0.01, 0.01]
    cache.write_text(json.dumps(doc))
    with pytest.raises(VerificationFailed, match="not written"):
        quantize_int8(digits_onnx, str(tmp_path / "b.onnx"), "digits", CalibrationOptions(**kw))
    assert not (tmp_path / "b.onnx").exists()
    result = quantize_int8(digits_onnx, str(tmp_path / "c.onnx"), "digits", CalibrationOptions(auto_exclude=True, **kw))
    assert result.passed and result.auto_excluded[0] == first.name and first.name in result.excluded


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_sample_counts_that_do_not_fill_the_last_batch(digits_onnx, tmp_path, method):
    """ORT's histogram collectors stack per-batch outputs: a short last batch used to crash them."""
    from densenet_deploy.calibration import CalibrationOptions, quantize_int8

    options = CalibrationOptions(method=method, samples=37, eval_samples=100, gate=ANY_AGREEMENT)
    result = quantize_int8(digits_onnx, str(tmp_path / "a.onnx"), "digits", options)
    assert result.samples == 37 and (tmp_path / "a.onnx").is_file()


def test_fixed_batch_exports_and_ort_deployments_are_refused(tmp_path, tiny_onnx):
    """Calibration takes the plain dynamic-batch export; anything else is a one-line error, no file."""
    from densenet_deploy.calibration import CalibrationOptions, quantize_int8
    from densenet_deploy.core.errors import ArtifactError
    from densenet_deploy.exporters.onnx import export_onnx
    from densenet_deploy.exporters.targets.onnxruntime import build_ort_deployment

    fixed = str(tmp_path / "b2.onnx")
    export_onnx("densenet_bc22_k8", fixed, batch=2, samples=2)
    deployment = str(tmp_path / "m.ort.onnx")
    build_ort_deployment(tiny_onnx, deployment)
    for source, pattern in ((fixed, "fixed batch of 2"), (deployment, "com.microsoft")):
        with pytest.raises(ArtifactError, match=pattern):
            quantize_int8(source, str(tmp_path / "out.onnx"), "random", CalibrationOptions(samples=8, eval_samples=8))
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize(
    "case",
    [
        "trt-cache-is-output",
        "trt-cache-is-input",
        "cache-is-output",
        "cache-is-input",
        "cache-is-trt-cache",
        "trt-caches-same",
        "output-is-input",
    ],
)
def test_colliding_paths_are_refused_before_work(digits_onnx, tmp_path, case):
    """No two of -o, the input model, --cache, --write-trt-cache and --from-trt-cache may be one file."""
    import shutil

    model = str(tmp_path / "in.onnx")
    shutil.copy(digits_onnx, model)
    out, cache, trt = str(tmp_path / "q.onnx"), str(tmp_path / "c.json"), str(tmp_path / "t.cache")
    args = {
        "trt-cache-is-output": ["-o", out, "--write-trt-cache", out],
        "trt-cache-is-input": ["-o", out, "--write-trt-cache", model],
        "cache-is-output": ["-o", out, "--cache", out],
        "cache-is-input": ["-o", out, "--cache", model],
        "cache-is-trt-cache": ["-o", out, "--cache", cache, "--write-trt-cache", cache],
        "trt-caches-same": ["-o", out, "--from-trt-cache", trt, "--write-trt-cache", trt],
        "output-is-input": ["-o", model],
    }[case]
    before = open(model, "rb").read()
    res = _cli(["calibrate", model, "--data", "digits", *args])
    assert res.exit_code == 2, res.output
    message = res.stderr.strip().splitlines()
    assert len(message) == 1 and message[0].startswith("error:") and "Traceback" not in res.output, message
    assert re.search(r"same file|input model", message[0]), message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx"] and open(model, "rb").read() == before


def _broken_caches(digits_onnx, tmp_path):
    """A valid range cache, then copies with a broken structure or broken values under the same key."""
    from densenet_deploy.calibration.quantize import CalibrationOptions, quantize_int8

    good = tmp_path / "good.json"
    options = CalibrationOptions(
        method="minmax", samples=32, eval_samples=50, cache=str(good), concat_scales="float", gate=ANY_AGREEMENT
    )
    quantize_int8(digits_onnx, str(tmp_path / "q0.onnx"), "digits", options)
    doc = json.loads(good.read_text())
    name = next(iter(doc["ranges"]))

    def with_range(value):
        changed = json.loads(good.read_text())
        changed["ranges"][name] = value
        return json.dumps(changed)  # NaN is written as the bare NaN token, which json.load reads back

    return {
        "list": "[]",
        "binary": b"\x80\xff\xfe\x00binary",
        "text-range": with_range("x"),
        "nan-range": with_range([0, float("nan")]),
        "inverted-range": with_range([2.0, 1.0]),
        "bool-range": with_range([0, True]),
        "no-ranges": json.dumps({**doc, "ranges": {}}),
        "bad-key": json.dumps({**doc, "key": 5}),
    }


def test_malformed_range_caches_are_one_line_errors(digits_onnx, tmp_path):
    caches = _broken_caches(digits_onnx, tmp_path)
    for case, content in caches.items():
        cache = tmp_path / f"{case}.json"
        cache.write_bytes(content if isinstance(content, bytes) else content.encode())
        out = tmp_path / f"{case}.onnx"
        res = _cli(
            [
                "calibrate",
                digits_onnx,
                "--data",
                "digits",
                "-o",
                str(out),
                "--cache",
                str(cache),
                "--method",
                "minmax",
                "--samples",
                "32",
                "--eval-samples",
                "50",
                "--concat-scales",
                "float",
            ]
        )
        assert res.exit_code == 2, (case, res.output)
        message = res.stderr.strip().splitlines()
        assert len(message) == 1 and message[0].startswith("error:") and "cache" in message[0], (case, message)
        assert not out.exists(), case
