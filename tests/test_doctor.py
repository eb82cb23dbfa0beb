"""`dnx doctor`: backend versions, providers, CUDA and CPU features, as one JSON object."""

from __future__ import annotations

import json

from click.testing import CliRunner

from densenet_deploy.cli.main import cli
from densenet_deploy.core.host import cpu_info


def test_doctor_json_reports_every_backend():
    result = CliRunner().invoke(cli, ["doctor", "--json"], catch_exceptions=False)
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    backends = doc["backends"]
    assert {"torch", "onnxruntime", "tensorrt", "cuda", "openvino"} <= set(backends)
    assert backends["torch"]["available"] and backends["torch"]["version"].startswith("2.")
    assert "CPUExecutionProvider" in backends["onnxruntime"]["providers"]
    assert isinstance(backends["cuda"]["devices"], list)
    if not backends["tensorrt"]["available"]:
        assert "pip install" in backends["tensorrt"]["reason"]
    assert {"avx2", "avx512", "vnni", "amx"} <= set(doc["cpu"]) and doc["cpu"]["usable_cores"] >= 1
    assert "torch" in doc["usable"] and "onnxruntime" in doc["usable"]


def test_doctor_text_report():
    result = CliRunner().invoke(cli, ["doctor"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout.startswith("torch") and "usable" in result.stdout and "cpu " in result.stdout


def test_cpu_features_come_from_cpuinfo_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
        "flags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n\n"
        "processor\t: 1\nflags\t\t: fpu\n"
    )
    cpu = cpu_info(str(info))
    assert cpu["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu["avx512"] and cpu["vnni"] and cpu["amx"] and cpu["amx_int8"] and cpu["avx512_bf16"]
    info.write_text("flags\t\t: fpu sse avx2 avx_vnni\n")
    cpu = cpu_info(str(info))
    assert cpu["avx2"] and cpu["vnni"] and not cpu["avx512"] and not cpu["amx"]


def test_doctor_reports_nncf_next_to_openvino():
    """NNCF runs the default `--target openvino --int8` recipe: doctor says whether it is there."""
    from importlib import metadata

    from densenet_deploy.reports.doctor import optional_package

    result = CliRunner().invoke(cli, ["doctor", "--json"], catch_exceptions=False)
    backends = json.loads(result.stdout)["backends"]
    names = list(backends)
    assert names.index("nncf") == names.index("openvino") + 1
    nncf = backends["nncf"]
    try:
        version = metadata.version("nncf")
    except metadata.PackageNotFoundError:
        assert not nncf["available"] and "pip install 'densenet-deploy[openvino]'" in nncf["reason"]
    else:
        assert nncf["available"] and nncf["version"] == version
    assert "nncf" not in json.loads(result.stdout)["usable"]  # a quantizer, not a backend
    text = CliRunner().invoke(cli, ["doctor"], catch_exceptions=False).stdout.splitlines()
    assert [line.split()[0] for line in text].index("nncf") == [line.split()[0] for line in text].index("openvino") + 1
    # A package that is not installed is reported with the pip extra that installs it.
    missing = optional_package("dnx_not_a_module", "pip install 'densenet-deploy[openvino]'", "needed by --int8")
    assert missing == {
        "available": False,
        "reason": "not installed (pip install 'densenet-deploy[openvino]'); needed by --int8",
    }
