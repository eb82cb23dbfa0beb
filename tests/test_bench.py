"""dnx bench: JSON shape, parity beside speed (a wrong artifact shows), report files, CLI errors."""

import json

import pytest
from click.testing import CliRunner

from densenet_deploy.bench import BenchTarget, bench, latency_stats, parse_batches, timed_loop
from densenet_deploy.cli import cli
from densenet_deploy.errors import DnxError

LATENCY_KEYS = {"p50", "p90", "p99", "mean", "min", "max", "iqr"}


@pytest.fixture(scope="module")
def wrong_onnx(tmp_path_factory):
    """Same architecture as tiny_onnx, different random weights: fast, valid, and wrong."""
    from exporters.onnx import export_onnx

    path = tmp_path_factory.mktemp("bench") / "other_seed.onnx"
    export_onnx("densenet_bc22_k8", str(path), seed=1, samples=2)
    return str(path)


@pytest.fixture(scope="module")
def bench_json(tiny_onnx, wrong_onnx, tmp_path_factory):
    report = tmp_path_factory.mktemp("bench_report")
    out = CliRunner().invoke(cli, ["bench", "densenet_bc22_k8", tiny_onnx, wrong_onnx, "--batch", "1,2",
                                   "--iters", "3", "--warmup", "1", "--threads", "1", "--json",
                                   "--report", str(report)])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout), report


def test_bench_json_has_rows_for_every_artifact_and_batch(bench_json):
    doc, _ = bench_json
    rows = doc["results"]
    assert len(rows) == 6
    assert [r["backend"] for r in rows[:3]] == ["torch", "onnxruntime", "onnxruntime"]
    for r in rows:
        assert {"artifact", "backend", "precision", "device", "batch", "latency_ms", "throughput", "peak_rss_mb",
                "parity"} <= set(r)
        assert LATENCY_KEYS <= set(r["latency_ms"])
        assert r["iterations"] == 3 and r["latency_ms"]["min"] <= r["latency_ms"]["p50"] <= r["latency_ms"]["max"]
        assert r["throughput"] == pytest.approx(r["batch"] * 1e3 / r["latency_ms"]["p50"])
        assert r["peak_rss_mb"] > 0
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
    result = bench([f"{tiny_onnx}@onnxruntime"], batch="2", iters=2, warmup=0, passes=2, threads=1)
    assert result["results"][0]["parity"] is None and result["results"][0]["iterations"] == 2
    assert len(result["results"][0]["pass_p50_ms"]) == 2
    from densenet_deploy.bench import format_table

    assert "reference" in format_table(result) and "onnxruntime-cpu fp32" in format_table(result)
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
