"""dnx bench: JSON shape, parity beside speed (a wrong artifact shows), report files, CLI errors."""

import json

import pytest
from click.testing import CliRunner

from densenet_deploy.bench.timing import BenchOptions, BenchTarget, bench, latency_stats, parse_batches, timed_loop
from densenet_deploy.cli.main import cli
from densenet_deploy.core.errors import DnxError

LATENCY_KEYS = {"p50", "p90", "p99", "mean", "min", "max", "iqr"}


@pytest.fixture(scope="module")
def wrong_onnx(tmp_path_factory):
    """Same architecture as tiny_onnx, different random weights: fast, valid, and wrong."""
    from densenet_deploy.exporters.onnx import export_onnx

    path = tmp_path_factory.mktemp("bench") / "other_seed.onnx"
    export_onnx("densenet_bc22_k8", str(path), seed=1, samples=2)
    return str(path)


@pytest.fixture(scope="module")
def bench_json(tiny_onnx, wrong_onnx, tmp_path_factory):
    report = tmp_path_factory.mktemp("bench_report")
    out = CliRunner().invoke(
        cli,
        [
            "bench",
            "densenet_bc22_k8",
            tiny_onnx,
            wrong_onnx,
            "--batch",
            "1,2",
            "--iters",
            "3",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--json",
            "--report",
            str(report),
        ],
    )
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout), report


def test_bench_json_has_rows_for_every_artifact_and_batch(bench_json):
    doc, _ = bench_json
    rows = doc["results"]
    assert len(rows) == 6
    assert [r["backend"] for r in rows[:3]] == ["torch", "onnxruntime", "onnxruntime"]
    for r in rows:
        assert {
            "artifact",
            "backend",
            "precision",
            "device",
            "batch",
            "latency_ms",
            "throughput",
            "load_rss_mb",
            "parity",
        } <= set(r)
        assert LATENCY_KEYS <= set(r["latency_ms"])
        assert r["iterations"] == 3 and r["latency_ms"]["min"] <= r["latency_ms"]["p50"] <= r["latency_ms"]["max"]
        assert r["throughput"] == pytest.approx(r["batch"] * 1e3 / r["latency_ms"]["p50"])
        assert "peak_rss_mb" not in r and isinstance(r["load_rss_mb"], float)
    assert {"cpu", "cores", "versions", "threads"} <= set(doc["env"]) and doc["env"]["threads"] == 1
    assert "onnxruntime" in doc["env"]["versions"]


def test_bench_parity_shows_the_wrong_artifact(bench_json):
    doc, _ = bench_json
    for b in (1, 2):
        ref, good, bad = [r for r in doc["results"] if r["batch"] == b]
        assert ref["parity"] is None  # the reference itself
        assert good["parity"]["ok"] and good["parity"]["rel_l2"] < 1e-4
        assert good["parity"]["centered_cosine_min"] > 0.999
        assert not bad["parity"]["ok"]
        assert bad["parity"]["rel_l2"] > 0.3 and bad["parity"]["centered_cosine_min"] < 0.9


def test_bench_report_files(bench_json):
    doc, report = bench_json
    assert json.loads((report / "results.json").read_text())["results"][0]["artifact"] == "densenet_bc22_k8"
    md = (report / "report.md").read_text()
    assert "| artifact |" in md and "POOR" in md
    pytest.importorskip("matplotlib")
    png = (report / "latency_vs_batch.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_bench_table_and_target_syntax(tiny_onnx):
    result = bench([f"{tiny_onnx}@onnxruntime"], BenchOptions(batch="2", iters=2, warmup=0, passes=2, threads=1))
    assert result.results[0]["parity"] is None and result.results[0]["iterations"] == 2
    assert len(result.results[0]["pass_p50_ms"]) == 2

    assert "reference" in str(result) and "onnxruntime-cpu fp32" in str(result)
    assert BenchTarget.parse("a@b.onnx") == BenchTarget("a@b.onnx", None)
    assert BenchTarget.parse("m.onnx@openvino") == BenchTarget("m.onnx", "openvino")


def test_timing_helpers():
    class Counter:
        calls = syncs = 0

        def run(self, x):
            self.calls += 1

        def synchronize(self):
            self.syncs += 1

    c = Counter()
    assert len(timed_loop(c, None, iters=4)) == 4 and c.calls == c.syncs == 4
    assert len(timed_loop(c, None, seconds=0.01)) >= 1
    stats = latency_stats([0.001, 0.002, 0.003, 0.004])
    assert stats["p50"] == pytest.approx(2.5) and stats["min"] == pytest.approx(1.0) and stats["iqr"] > 0
    assert parse_batches("1, 8,8,32") == (1, 8, 32) and parse_batches(4) == (4,)
    for bad in ("0", "a", ""):
        with pytest.raises(DnxError, match="batch"):
            parse_batches(bad)


def test_bench_cli_errors(tiny_onnx, tmp_path):
    runner = CliRunner()
    out = runner.invoke(cli, ["bench", tiny_onnx, "--iters", "2", "--seconds", "1"])
    assert out.exit_code == 2 and "either --seconds or --iters" in out.output
    out = runner.invoke(cli, ["bench", str(tmp_path / "missing.onnx"), "--iters", "1"])
    assert out.exit_code == 2 and "no such file" in out.output
    f = tmp_path / "file"
    f.write_text("x")
    out = runner.invoke(cli, ["bench", tiny_onnx, "--iters", "1", "--report", str(f)])
    assert out.exit_code == 2


@pytest.fixture(scope="module")
def digits_int8(digits_onnx, tmp_path_factory):
    """A correctly calibrated INT8 copy of the trained digits model."""
    from densenet_deploy.calibration import CalibrationOptions, quantize_int8

    path = tmp_path_factory.mktemp("bench_int8") / "digits.int8.onnx"
    quantize_int8(digits_onnx, str(path), "digits", CalibrationOptions(samples=64, eval_samples=100))
    return str(path)


def test_bench_parity_on_real_data(digits_onnx, digits_int8):
    out = CliRunner().invoke(
        cli,
        [
            "bench",
            digits_onnx,
            digits_int8,
            "--data",
            "digits",
            "--batch",
            "8",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--passes",
            "1",
            "--threads",
            "1",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    settings = doc["settings"]
    assert settings["parity_data"] == "digits" and settings["parity_split"] == "val"
    assert settings["parity_samples"] == 64
    ref, int8 = doc["results"]
    assert ref["parity"] is None and int8["precision"] == "int8"
    p = int8["parity"]
    assert p["samples"] == 64 and p["rel_l2"] < 0.1 and p["top1_agreement"] >= 0.98
    assert p["ok"] and p["status"] == "ok"
    assert ref["accuracy"] > 0.8 and abs(int8["accuracy"] - ref["accuracy"]) <= 0.05
    assert doc["notes"] == []  # always present (README lists it), empty here


def test_bench_random_parity_is_labelled_and_points_to_data(digits_onnx, digits_int8):

    result = bench([digits_onnx, digits_int8], BenchOptions(batch="8", iters=1, warmup=0, passes=1, threads=1))
    assert result.settings["parity_data"] == "random" and result.settings["parity_split"] is None
    int8 = result.results[1]
    assert int8["accuracy"] is None
    # Random inputs say nothing definite about a reduced-precision artifact: never "poor" for a good one.
    assert int8["parity"]["status"] in ("ok", "unverified")
    assert any("--data" in n for n in result.notes)
    table = str(result)
    assert "8 seeded random inputs" in table and "--data" in table
    assert "  POOR" not in table.splitlines()[3]


def test_bench_unknown_backend_names_the_backend(tiny_onnx):
    out = CliRunner().invoke(cli, ["bench", "model.onnx@foo", "--iters", "1"])
    assert out.exit_code == 2
    assert "unknown backend 'foo'" in out.output and "unknown model" not in out.output
    assert "torch, onnxruntime, openvino, tensorrt" in out.output
    with pytest.raises(DnxError, match="did you mean 'openvino'"):
        BenchTarget.parse(f"{tiny_onnx}@openvin")
    out = CliRunner().invoke(cli, ["bench", tiny_onnx, "--data", "nosuchsource", "--iters", "1"])
    assert out.exit_code == 2 and "unknown data source" in out.output


def test_bench_fixed_batch_model_skips_other_batches_or_refuses(tmp_path, caplog):
    from densenet_deploy.exporters.onnx import export_onnx

    fixed = tmp_path / "fixed4.onnx"
    export_onnx("densenet_bc22_k8", str(fixed), batch=4, samples=4)
    # No requested batch can run: a one-line error naming the fixed batch, not exit 0 with an empty table.
    out = CliRunner().invoke(cli, ["bench", str(fixed), "--batch", "1,8", "--iters", "1", "--passes", "1"])
    assert out.exit_code == 2, out.output
    assert "fixed batch 4" in out.output and "--batch 4" in out.output
    assert len(out.output.strip().splitlines()) == 1
    # Some can: those run, the others are skipped with a warning naming the fixed batch.
    with caplog.at_level("WARNING", logger="densenet_deploy.bench"):
        result = bench([str(fixed)], BenchOptions(batch="1,4", iters=1, warmup=0, passes=1, threads=1))
    assert [r["batch"] for r in result.results] == [4]
    assert result.skipped == [{"artifact": str(fixed), "batch": 1, "reason": "fixed batch 4"}]
    assert any("fixed batch 4" in r.getMessage() and "batch 1" in r.getMessage() for r in caplog.records)


def test_bench_throughput_mode_refuses_iters_and_says_what_it_measured(tiny_onnx, tmp_path):

    # --iters used to be swapped silently for a 0.5 s budget: now it is one line on stderr, before any work.
    out = CliRunner().invoke(
        cli, ["bench", tiny_onnx, "--mode", "throughput", "--iters", "3", "--report", str(tmp_path / "report")]
    )
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--seconds" in lines[0] and "--iters" in lines[0]
    assert not (tmp_path / "report").exists()
    with pytest.raises(DnxError, match="time budget"):
        bench([tiny_onnx], BenchOptions(mode="throughput", iters=3))

    pytest.importorskip("openvino", reason="openvino (extra 'openvino') is not installed")
    # ONNX Runtime has no throughput() and falls back to timed runs; OpenVINO is measured through its queue.
    result = bench(
        [tiny_onnx, f"{tiny_onnx}@openvino"],
        BenchOptions(
            batch="2", seconds=0.4, warmup=0, passes=1, threads=1, mode="throughput", report=str(tmp_path / "report")
        ),
    )
    assert [r["mode"] for r in result.results] == ["latency", "throughput"]
    (footer,) = [line for line in str(result).splitlines() if "mode:" in line or "wall time" in line]
    assert footer.startswith("Throughput mode: img/s = images completed per second by an asynchronous queue")
    assert "without throughput support" in footer and "wall time per run()" in footer
    md = (tmp_path / "report" / "report.md").read_text()
    assert "Throughput mode: img/s" in md
    only_async = bench(
        [f"{tiny_onnx}@openvino"],
        BenchOptions(batch="2", seconds=0.2, warmup=0, passes=1, threads=1, mode="throughput"),
    )
    assert "Throughput mode" in str(only_async) and "wall time" not in str(only_async)
    latency = bench([tiny_onnx], BenchOptions(batch="2", iters=1, warmup=0, passes=1, threads=1))
    assert "Latency: wall time per run() incl. synchronize" in str(latency)
    assert "Throughput mode" not in str(latency)


def test_bench_footer_calls_agreement_weak_only_on_random_inputs(digits_onnx, tmp_path):

    real = bench(
        [digits_onnx, f"{digits_onnx}@onnxruntime"],
        BenchOptions(
            batch="8", iters=1, warmup=0, passes=1, threads=1, data="digits", samples=16, report=str(tmp_path / "real")
        ),
    )
    assert "proves little" not in str(real)
    assert "proves little" not in (tmp_path / "real" / "report.md").read_text()
    random = bench(
        [digits_onnx, f"{digits_onnx}@onnxruntime"],
        BenchOptions(batch="8", iters=1, warmup=0, passes=1, threads=1, report=str(tmp_path / "random")),
    )
    assert "on random inputs top-1 agreement proves little" in str(random)
    assert "on random inputs top-1 agreement proves little" in (tmp_path / "random" / "report.md").read_text()


def test_bench_report_outputs_are_checked_before_benching(tiny_onnx, tmp_path):
    """A report path that cannot be written fails in one line before any timing, leaving nothing behind."""
    report = tmp_path / "rep"
    (report / "report.md").mkdir(parents=True)
    out = CliRunner().invoke(cli, ["bench", tiny_onnx, "--iters", "2", "--warmup", "0", "--report", str(report)])
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "report.md" in lines[0]
    assert sorted(p.name for p in report.iterdir()) == ["report.md"]  # no results.json, no plot
    # A run that fails for another reason does not leave the (new) report directory behind either.
    fresh = tmp_path / "new" / "report"
    out = CliRunner().invoke(cli, ["bench", str(tmp_path / "missing.onnx"), "--iters", "1", "--report", str(fresh)])
    assert out.exit_code == 2 and "no such file" in out.output
    assert not (tmp_path / "new").exists()


def test_bench_report_write_failure_leaves_no_report_files(bench_json, tmp_path):
    import copy

    from densenet_deploy.bench.report import write_bench_report

    doc, _ = bench_json
    broken = copy.deepcopy(doc)
    del broken["results"][0]["load_rss_mb"]  # the plot and results.json are fine; report.md cannot be written
    report = tmp_path / "report"
    with pytest.raises(KeyError):
        write_bench_report(broken, str(report))
    assert not report.exists() or list(report.iterdir()) == []
    written = write_bench_report(doc, str(report))
    assert sorted(p.name for p in report.iterdir()) == sorted(
        {"results.json", "report.md"} | ({"latency_vs_batch.png"} if "latency_plot" in written else set())
    )


def test_bench_refuses_empty_batch_items_and_says_when_passes_are_capped(tiny_onnx, caplog):
    for batch in ("1,,2", "1,2,", ","):
        out = CliRunner().invoke(cli, ["bench", tiny_onnx, "--batch", batch, "--iters", "1"])
        assert out.exit_code == 2, (batch, out.output)
        lines = out.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --batch") and "empty" in lines[0]
    with caplog.at_level("WARNING", logger="densenet_deploy.bench"):
        result = bench([tiny_onnx], BenchOptions(batch="1", iters=2, passes=5, warmup=0, threads=1))
    # Each pass needs one timed run: --iters 2 runs 2 passes, and the result says so instead of "5".
    assert result.settings["passes"] == 2 and result.settings["passes_requested"] == 5
    assert len(result.results[0]["pass_p50_ms"]) == 2
    assert any("--passes 5" in n and "2 passes" in n for n in result.notes)
    assert any("--passes 5" in r.getMessage() for r in caplog.records)
    # Without --passes the default (5) quietly becomes --iters when that is smaller: nothing was asked for.
    plain = bench([tiny_onnx], BenchOptions(batch="1", iters=2, warmup=0, threads=1))
    assert plain.notes == [] and "passes_requested" not in plain.settings and plain.settings["passes"] == 2


def test_bench_skips_batches_outside_a_runner_batch_range(tiny_onnx, caplog):
    # What a TensorRT plan built with --min-batch 2 --max-batch 4 looks like to bench: a batch range.
    from densenet_deploy.bench.timing import _check_batches, _measure
    from densenet_deploy.runners import open_runner

    with open_runner(tiny_onnx, threads=1) as runner:
        runner.batch_range = (2, 4)
        with pytest.raises(DnxError, match=r"no requested batch size \(1,8\) can run: .* batch sizes 2\.\.4"):
            _check_batches([runner], (1, 8))
        with caplog.at_level("WARNING", logger="densenet_deploy.bench"):
            _check_batches([runner], (1, 2, 8))
        assert any("batch 1,8" in r.getMessage() and "batch sizes 2..4" in r.getMessage() for r in caplog.records)
        result = _measure([runner], [0.0], (1, 2, 8), None, 1, 0, "latency", 1, 3, 0, False)
    assert [r["batch"] for r in result["results"]] == [2]
    assert result["skipped"] == [{"artifact": tiny_onnx, "batch": b, "reason": "batch sizes 2..4"} for b in (1, 8)]


def test_bench_provider_option(tiny_onnx):
    import onnxruntime as ort

    out = CliRunner().invoke(
        cli, ["bench", tiny_onnx, "--provider", "cpu", "--iters", "1", "--passes", "1", "--warmup", "0", "--json"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["settings"]["provider"] == ["cpu"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA EP")
    refused = CliRunner().invoke(cli, ["bench", tiny_onnx, "--provider", "cuda", "--iters", "1"])
    assert refused.exit_code == 2 and refused.stdout == "" and refused.stderr.count("\n") == 1
    assert "CUDAExecutionProvider is not available" in refused.stderr and "CPUExecutionProvider" in refused.stderr


def test_build_engine_fixed_batch_refusal_gives_advice_for_the_target(tmp_path):
    """(build-engine, kept with the bench tests of fixed-batch exports) The refusal of a fixed-batch export
    for a precision step names what the chosen target can do: only TensorRT has --min/--opt/--max-batch."""
    from densenet_deploy.exporters.onnx import export_onnx

    fixed = tmp_path / "fixed2.onnx"
    export_onnx("densenet_bc22_k8", str(fixed), batch=2, samples=2)
    runner = CliRunner()
    cases = (
        (["--target", "onnxruntime", "--fp16"], "m.ort.onnx"),
        (["--target", "onnxruntime", "--int8", "--calib-data", "random"], "m.ort.onnx"),
        (["--target", "openvino", "--int8", "--recipe", "qdq", "--calib-data", "random"], "m.xml"),
    )
    for options, name in cases:
        out = runner.invoke(cli, ["build-engine", str(fixed), *options, "-o", str(tmp_path / name)])
        assert out.exit_code == 2, (options, out.output)
        lines = out.output.strip().splitlines()
        assert len(lines) == 1 and "fixed batch of 2" in lines[0] and "dynamic-batch export" in lines[0], lines
        assert "--min-batch" not in lines[0] and "--max-batch" not in lines[0], lines[0]
        assert not (tmp_path / name).exists()
    out = runner.invoke(
        cli, ["build-engine", str(fixed), "--target", "tensorrt", "--fp16", "-o", str(tmp_path / "m.plan")]
    )
    assert out.exit_code == 2 and "fixed batch of 2" in out.output and "--min-batch" in out.output, out.output


def test_bench_exits_1_when_a_row_is_poor_on_real_data(digits_onnx, tmp_path):
    """A fast artifact that computes something else fails bench on real data (exit 1, after the table);
    on random inputs the row is flagged POOR but proves too little to fail on."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(digits_onnx)
    conv = next(t for t in model.graph.initializer if len(t.dims) == 4)
    conv.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(conv), conv.name))  # same metadata, wrong math
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    real = CliRunner().invoke(
        cli,
        [
            "bench",
            digits_onnx,
            str(broken),
            "--data",
            "digits",
            "--iters",
            "1",
            "--warmup",
            "0",
            "--samples",
            "32",
            "--json",
        ],
    )
    assert real.exit_code == 1, real.output
    doc = json.loads(real.stdout)
    assert doc["results"][1]["parity"]["status"] == "poor"
    assert "parity is POOR for broken.onnx at batch 1" in real.stderr
    randomly = CliRunner().invoke(cli, ["bench", digits_onnx, str(broken), "--iters", "1", "--warmup", "0"])
    assert randomly.exit_code == 0 and "POOR" in randomly.stdout, randomly.output
