"""dnx paper: every table model's params at the paper's rounding, claims with verdicts, report files."""

import json

import pytest
from click.testing import CliRunner

from densenet_deploy.cli import cli
from densenet_deploy.paper_report import CIFAR_MODELS, IMAGENET_MODELS, check_paper

VERDICTS = {"holds", "does not hold", "consistent", "follows MACs", "does not follow MACs"}


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
    assert first["figures"]["params_ratio"] == pytest.approx(20_013_928 / 44_549_160)
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
    result = check_paper(backend="torch", latency=True, iters=2, batch=1,
                         models=["densenet_bc100_k12", "preact_resnet164"])
    rows = {m["name"]: m for m in result["models"]}
    assert all(m["latency_ms"] > 0 and m["latency_label"].startswith("torch") for m in rows.values())
    assert result["latency"] == {"backend": "torch", "batch": 1, "iters": 2}
    # Only the claims whose models are present: here only "about 1/3 of the params" (BC-100 vs ResNet-164).
    assert [c["verdict"] for c in result["claims"]] == ["consistent"]
    assert result["claims"][0]["figures"]["ratios"] == [pytest.approx(769_162 / 1_703_258)]


def test_paper_latency_on_onnxruntime_exports_the_deepest_model():
    """The default backend exports each model: an untrained ResNet-1001 must export and verify."""
    result = check_paper(backend="onnxruntime", latency=True, iters=1, batch=1,
                         models=["densenet_bc100_k12", "preact_resnet1001"])
    rows = {m["name"]: m for m in result["models"]}
    assert rows["preact_resnet1001"]["latency_ms"] > rows["densenet_bc100_k12"]["latency_ms"] > 0
    assert rows["preact_resnet1001"]["latency_label"].startswith("onnxruntime")


def test_paper_rejects_bad_backend():
    out = CliRunner().invoke(cli, ["paper", "--backend", "tensorrt", "--no-latency"])
    assert out.exit_code == 2
