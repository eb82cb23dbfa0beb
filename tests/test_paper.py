"""dnx paper: every table model's params at the paper's rounding, claims with verdicts, report files."""

import json

import pytest
from click.testing import CliRunner

from densenet_deploy.cli.main import cli
from densenet_deploy.reports.paper import CIFAR_MODELS, IMAGENET_MODELS, check_paper

VERDICTS = {"holds", "does not hold", "consistent", "follows MACs", "does not follow MACs", "inconclusive"}


@pytest.fixture(scope="module")
def paper_json(tmp_path_factory):
    report = tmp_path_factory.mktemp("paper_report")
    out = CliRunner().invoke(cli, ["paper", "--no-latency", "--json", "--report", str(report)])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout), report


def test_paper_reproduces_params_for_every_table_model(paper_json):
    doc, _ = paper_json
    models = {m["name"]: m for m in doc["models"]}
    assert set(models) == set(IMAGENET_MODELS + CIFAR_MODELS)
    for name, m in models.items():
        assert {"params", "macs", "paper", "params_match", "latency_ms"} <= set(m)
        if name == "preact_resnet1001":
            # He et al.'s 10.2M leaves out BatchNorm; the report says so instead of claiming a match.
            assert m["params_match"] is False and "BN parameters" in m["params_note"]
        else:
            assert m["params_match"] is True, (name, m["params"], m["paper"])
        assert m["latency_ms"] is None
    assert models["resnet50"]["params"] == 25_557_032 and models["densenet121"]["params"] == 7_978_856
    assert models["densenet121"]["macs_ratio"] == pytest.approx(1.0, abs=0.01)
    assert models["resnet101"]["top1_error"] == 22.44 and "fb.resnet.torch" in models["resnet101"]["top1_error_source"]
    assert models["densenet_bc100_k12"]["cifar_error"]["C10+"] == 4.51


def test_paper_claims_have_verdicts_from_measurements(paper_json):
    doc, _ = paper_json
    claims = doc["claims"]
    assert len(claims) == 5
    for c in claims:
        assert {"claim", "measured", "verdict"} <= set(c) and c["verdict"] in VERDICTS
    first = claims[0]
    assert "DenseNet-201" in first["claim"] and "0.45x" in first["measured"] and first["verdict"] == "holds"
    assert first["figures"]["params_ratio"] == pytest.approx(20_013_928 / 44_549_160, abs=1e-4)
    steady = claims[-1]
    assert steady["figures"]["exceptions"] and all(" C10:" in e for e in steady["figures"]["exceptions"])


def test_paper_report_files(paper_json):
    doc, report = paper_json
    assert json.loads((report / "results.json").read_text())["claims"] == doc["claims"]
    md = (report / "report.md").read_text()
    assert "## Claims" in md and "DenseNet-201" in md and "**holds**" in md
    pytest.importorskip("matplotlib")
    for name in ("imagenet_error_vs_params_macs.png", "cifar10_error_vs_params.png"):
        data = (report / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_paper_latency_path_on_small_models():
    result = check_paper(
        backend="torch", latency=True, iters=2, batch=1, models=["densenet_bc100_k12", "preact_resnet164"]
    )
    rows = {m["name"]: m for m in result.models}
    assert all(m["latency_ms"] > 0 and m["latency_label"].startswith("torch") for m in rows.values())
    assert {"backend": "torch", "batch": 1, "iters": 2, "passes": 2}.items() <= result.latency.items()
    # Only the claims whose models are present: here only "about 1/3 of the params" (BC-100 vs ResNet-164).
    assert [c["verdict"] for c in result.claims] == ["consistent"]
    assert result.claims[0]["figures"]["ratios"] == [pytest.approx(769_162 / 1_703_258, abs=1e-4)]


def test_paper_latency_on_onnxruntime_exports_the_deepest_model(tmp_path):
    """The default backend exports each model: an untrained ResNet-1001 must export and verify."""
    result = check_paper(
        backend="onnxruntime",
        latency=True,
        iters=1,
        batch=1,
        models=["densenet_bc100_k12", "preact_resnet1001"],
        report=str(tmp_path),
    )
    rows = {m["name"]: m for m in result.models}
    assert rows["preact_resnet1001"]["latency_ms"] > rows["densenet_bc100_k12"]["latency_ms"] > 0
    assert rows["preact_resnet1001"]["latency_label"].startswith("onnxruntime")
    # One timed run per model: no spread, so no latency verdict, and the text says what was run.
    assert result.latency["passes"] == 1 and rows["preact_resnet1001"]["latency_samples"] == 1
    latency = [c for c in result.claims if "latency" in c["claim"]]
    assert [c["verdict"] for c in latency] == ["inconclusive"]
    md = (tmp_path / "report.md").read_text()
    assert "1 timed run per model in 1 pass" in md and "interleaved" not in md and "**inconclusive**" in md
    # The latency run adds the Figure 3 style plot of latency against MACs and params (matplotlib installed).
    assert "latency_plot" in result.report and "(latency_vs_macs_params.png)" in md
    assert (tmp_path / "latency_vs_macs_params.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert "1 timed run per model in 1 pass" in str(result)


def test_paper_rejects_bad_backend():
    out = CliRunner().invoke(cli, ["paper", "--backend", "tensorrt", "--no-latency"])
    assert out.exit_code == 2


def _floats(value):
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _floats(v)
    elif isinstance(value, list):
        for v in value:
            yield from _floats(v)


def test_paper_json_names_one_error_source_and_rounds_floats(paper_json):
    doc, _ = paper_json
    for m in doc["models"]:
        if m.get("top1_error") is not None:
            # The row and its `paper` block give the same figure, from the same named source.
            assert m["paper"]["top1_error"] == m["top1_error"], m["name"]
            assert m["paper"]["top1_error_source"] == m["top1_error_source"]
    r50 = {m["name"]: m for m in doc["models"]}["resnet50"]
    assert r50["paper"]["top1_error"] == 24.01 and r50["top1_error_torchvision"] == 23.87
    assert r50["paper"]["top1_error_torchvision"] == 23.87
    assert all(round(x, 4) == x for x in _floats(doc)), [x for x in _floats(doc) if round(x, 4) != x][:5]


def test_paper_no_latency_refuses_latency_options():
    for extra in (["--backend", "torch"], ["--batch", "4"], ["--iters", "3"]):
        out = CliRunner().invoke(cli, ["paper", "--no-latency", *extra])
        assert out.exit_code == 2, (extra, out.output)
        lines = out.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        assert extra[0] in lines[0] and "--no-latency" in lines[0]


def test_paper_report_outputs_are_checked_before_counting(tmp_path):
    report = tmp_path / "rep"
    (report / "results.json").mkdir(parents=True)
    out = CliRunner().invoke(cli, ["paper", "--no-latency", "--report", str(report)])
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "results.json" in lines[0]
    assert sorted(p.name for p in report.iterdir()) == ["results.json"]


def _latency_rows(a_ms, b_ms, samples=5):
    """Real counted rows of two CIFAR models with given latency figures: (p25, p50, p75) in ms."""
    from densenet_deploy.reports.paper import model_row

    rows = {n: model_row(n) for n in ("densenet_bc100_k12", "preact_resnet1001")}
    for row, (p25, p50, p75) in zip(rows.values(), (a_ms, b_ms)):
        row.update(
            latency_ms=p50, latency_p25_ms=p25, latency_p75_ms=p75, latency_iqr_ms=p75 - p25, latency_samples=samples
        )
    return rows


def test_paper_latency_verdicts_are_inconclusive_when_spread_or_samples_do_not_decide():
    from densenet_deploy.reports.claims import latency_claims

    rows = _latency_rows((1.0, 1.0, 1.0), (5.0, 5.0, 5.0))
    macs_ratio = rows["densenet_bc100_k12"]["macs"] / rows["preact_resnet1001"]["macs"]
    # Clearly separated, enough samples: a verdict either way.
    (c,) = latency_claims(rows, "torch", 1)
    assert c["verdict"] in ("follows MACs", "does not follow MACs")
    exact = _latency_rows((0.99 * macs_ratio, macs_ratio, 1.01 * macs_ratio), (0.99, 1.0, 1.01))
    assert latency_claims(exact, "torch", 1)[0]["verdict"] == "follows MACs"
    # One sample per model: no spread to judge by.
    (c,) = latency_claims(_latency_rows((1.0, 1.0, 1.0), (5.0, 5.0, 5.0), samples=1), "torch", 1)
    assert c["verdict"] == "inconclusive" and "1 timed run" in c["measured"]
    # Medians apart but the IQR ranges overlap (a loaded machine): no verdict from the medians.
    (c,) = latency_claims(_latency_rows((0.5, 1.0, 4.0), (3.0, 5.0, 9.0)), "torch", 1)
    assert c["verdict"] == "inconclusive" and "overlap" in c["measured"]
    assert c["figures"]["inconclusive"] and c["figures"]["latency_ms"] == [1.0, 5.0]
    # Separate, but the spread straddles the follows/does-not-follow boundary.
    (c,) = latency_claims(
        _latency_rows((0.7 * macs_ratio, macs_ratio, 1.3 * macs_ratio), (0.98, 1.0, 1.02)), "torch", 1
    )
    assert c["verdict"] == "inconclusive" and "IQR" in c["measured"]
