"""The one tolerance table: its values, how a gate judges, that no gate keeps thresholds of its own, and that a
build step's check and `dnx verify` give the same verdict on the same data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from densenet_deploy.cli.main import cli
from densenet_deploy.core.policy import POLICY, GateOptions, gate_for, lower_precision
from densenet_deploy.verify.compare import compare_outputs

ROOT = Path(__file__).resolve().parent.parent


def test_the_table_loosens_with_precision_and_overrides_copy():
    fp32, fp16, bf16, int8 = (gate_for(p) for p in ("fp32", "fp16", "bf16", "int8"))
    assert fp32.rel_atol == 1e-3 and fp32.max_rel_l2 == 1e-3 and fp32.agreement_on_random
    assert fp32.max_rel_l2 < fp16.max_rel_l2 < bf16.max_rel_l2 < int8.max_rel_l2
    assert all(g.max_accuracy_drop == 1.0 and g.min_agreement == 0.98 for g in (fp16, bf16, int8))
    changed = GateOptions(min_agreement=0.5, max_accuracy_drop=None).apply(int8)
    assert changed.min_agreement == 0.5 and changed.max_accuracy_drop == 1.0 and gate_for("int8").min_agreement == 0.98
    assert gate_for("unknown") == int8 and lower_precision("fp32", "int8", "fp16") == "int8"
    assert set(POLICY) == {"parity", "rewrite"} and gate_for("fp16", "rewrite").rel_atol == 2e-2


def test_agreement_and_accuracy_are_gated_on_real_data_only_below_fp32():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((50, 10))
    flipped = ref.copy()
    flipped[:5] = flipped[:5, ::-1]  # 5 of 50 argmaxes change: agreement 90 %
    labels = ref.argmax(1)
    real = compare_outputs(ref, flipped, labels=labels, gate=gate_for("int8"), real_data=True)
    assert (
        not real and any("agreement" in f for f in real.failures) and any("accuracy drop" in f for f in real.failures)
    )
    random = compare_outputs(
        ref, flipped, labels=labels, gate=gate_for("int8").overridden(max_rel_l2=10.0), real_data=False
    )
    assert random.passed, random.failures
    fp32 = compare_outputs(
        ref, flipped, gate=gate_for("fp32").overridden(max_rel_l2=10.0, rel_atol=10.0), real_data=False
    )
    assert not fp32 and any("agreement" in f for f in fp32.failures)
    assert not compare_outputs(ref, ref * np.nan, gate=None)  # NaN fails whatever the gate


GATE_FIELDS = r"(min_agreement|max_rel_l2|max_accuracy_drop|min_centered_cosine|rel_atol|atol)"


def test_no_gate_keeps_thresholds_of_its_own():
    offenders = []
    for path in sorted(
        list((ROOT / "densenet_deploy").rglob("*.py"))
        + list((ROOT / "exporters").rglob("*.py"))
        + list((ROOT / "calibration").rglob("*.py"))
    ):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("densenet_deploy/exporters/", "densenet_deploy/calibration/")) or rel.endswith(
            "core/policy.py"
        ):
            continue
        text = path.read_text()
        for n, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            if (
                re.search(GATE_FIELDS + r"\s*[=:]\s*[-+]?(\d|math\.inf|float\()", code)
                or re.search(r"\b(Gate|Thresholds|VerifyThresholds)\(", code)
                or re.search(
                    r"\b[A-Z_]*(AGREEMENT|REL_L2|"
                    r"ACCURACY_DROP|COSINE)\s*=",
                    code,
                )
            ):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "thresholds outside core/policy.py:\n" + "\n".join(offenders)


def _dnx(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.slow
def test_openvino_int8_build_check_and_verify_give_the_same_verdict(digits_onnx, tmp_path):
    """The case that used to disagree: an OpenVINO INT8 IR passed its pre-write check and then failed
    `dnx verify` on the same images. Same data, same samples, same gate -> same verdict, both ways."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    out = tmp_path / "m.int8.xml"
    built = _dnx(
        "build-engine",
        digits_onnx,
        "--target",
        "openvino",
        "--precision",
        "int8",
        "--data",
        "digits",
        "--samples",
        128,
        "-o",
        out,
        "--json",
    )
    assert built.exit_code == 0, built.output
    check = json.loads(built.stdout)["openvino"]["parity"]
    assert check["passed"] and check["data"] == "digits (val split)"
    samples = check["samples"]
    verified = _dnx("verify", digits_onnx, out, "--data", "digits", "--samples", samples, "--json")
    assert verified.exit_code == 0, verified.output
    doc = json.loads(verified.stdout)
    assert doc["passed"] and doc["samples"] == samples
    assert doc["top1_agreement"] == pytest.approx(check["top1_agreement"])
    assert doc["rel_l2"] == pytest.approx(check["rel_l2"], rel=1e-3)
    assert doc["thresholds"] == check["gate"]

    # A gate this model cannot meet: the build refuses to write, and verify fails the written IR alike.
    strict = ("--max-rel-l2", check["rel_l2"] / 2)
    refused = _dnx(
        "build-engine",
        digits_onnx,
        "--target",
        "openvino",
        "--precision",
        "int8",
        "--data",
        "digits",
        "--samples",
        128,
        "-o",
        tmp_path / "strict.xml",
        *strict,
    )
    assert refused.exit_code == 1 and not (tmp_path / "strict.xml").exists(), refused.output
    failed = _dnx("verify", digits_onnx, out, "--data", "digits", "--samples", samples, *strict)
    assert failed.exit_code == 1 and "rel L2" in failed.output


def test_the_policy_page_shows_the_table_values():
    page = (ROOT / "docs" / "policy.md").read_text()
    rows = {}
    for line in page.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[0] in POLICY:
            for precision in cells[1].split(", "):
                rows[(cells[0], precision)] = cells

    def number(cell):
        found = re.findall(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", cell)
        return None if cell == "-" else float(found[0])

    for check, table in POLICY.items():
        for precision, gate in table.items():
            cells = rows[(check, precision)]
            agreement = None if gate.min_agreement is None else gate.min_agreement * 100
            shown = [number(c) for c in cells[2:7]]
            wanted = [gate.rel_atol, gate.max_rel_l2, gate.min_centered_cosine, agreement, gate.max_accuracy_drop]
            assert shown == [pytest.approx(w) if w is not None else None for w in wanted], cells
            if gate.min_agreement is not None:
                assert cells[7] == ("gated" if gate.agreement_on_random else "not gated"), cells
