"""`dnx paper`: measured params/MACs (and latency) of the paper's models against its figures and claims.

Error rates are the reported ones (nothing is trained here): DenseNet from the paper (Tables 2-3);
ImageNet ResNets from fb.resnet.torch, the Torch ResNets the paper compares against in Figure 3, with
torchvision's V1 figures alongside. Params and MACs are measured from our models, latency on this machine.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from dataclasses import dataclass

from densenet_deploy.bench.timing import BenchOptions, bench
from densenet_deploy.core.errors import DnxError
from densenet_deploy.core.io import check_report_outputs
from densenet_deploy.core.results import Result
from densenet_deploy.exporters.onnx import export_onnx
from densenet_deploy.models import get_spec
from densenet_deploy.models.counting import spec_counts
from densenet_deploy.reports.claims import MIN_LATENCY_SAMPLES, efficiency_claims, latency_claims
from densenet_deploy.reports.paper_facts import paper_entry, paper_figures
from densenet_deploy.reports.paper_report import PAPER_REPORT_FILES, format_paper, write_paper_report

log = logging.getLogger(__name__)

IMAGENET_MODELS = ("densenet121", "densenet169", "densenet201", "densenet264", "resnet50", "resnet101", "resnet152")
CIFAR_MODELS = (
    "densenet40_k12",
    "densenet100_k12",
    "densenet100_k24",
    "densenet_bc100_k12",
    "densenet_bc250_k24",
    "densenet_bc190_k40",
    "preact_resnet164",
    "preact_resnet1001",
)
FB_RESNET_TORCH = "fb.resnet.torch README, single-crop 224 top-1 (the Torch ResNets of the paper's Figure 3)"
# Single-crop top-1 error % as published in facebook/fb.resnet.torch's README (ResNet-50/101/152).
FB_RESNET_TOP1 = {"resnet50": 24.01, "resnet101": 22.44, "resnet152": 22.16}
PAPER_TABLE3 = "Huang et al. 2017, Table 3"


def count_model(name: str) -> dict:
    """params, MACs and BN params of a zoo model, counted from its spec (no model is built)."""
    spec = get_spec(name)
    counts = spec_counts(spec)
    return {"params": counts.params, "macs": counts.macs, "bn_params": counts.bn_params, "spec": spec}


def _family_label(spec) -> str:
    if spec.family == "densenet":
        return "DenseNet-BC" if spec.arch.get("bn_size") else "DenseNet"
    return {"resnet": "ResNet", "preact_resnet": "pre-activation ResNet"}.get(spec.family, spec.family)


def model_row(name: str) -> dict:
    """One table row: measured params/MACs, the reported figures, ratios and the rounding check."""
    counted = count_model(name)
    spec, params, macs = counted["spec"], counted["params"], counted["macs"]
    paper = paper_figures(name, params, macs)
    entry = paper_entry(name)
    row = {
        "name": name,
        "paper_label": entry.label if entry else spec.paper_name,
        "dataset": spec.dataset,
        "family_label": _family_label(spec),
        "params": params,
        "macs": macs,
        "paper": paper,
        "params_ratio": paper.get("params_ratio"),
        "macs_ratio": paper.get("macs_ratio"),
        "params_match": paper.get("params_match"),
        "latency_ms": None,
    }
    if spec.dataset == "imagenet":
        # One figure per model, from one named source, in the row and in its `paper` block alike
        # (torchvision's figure for the ResNets is kept beside it, named as such).
        if name in FB_RESNET_TOP1:
            row["top1_error"], row["top1_error_source"] = FB_RESNET_TOP1[name], FB_RESNET_TORCH
            row["top1_error_torchvision"] = paper.get("top1_error")
            if paper:
                paper["top1_error_torchvision"] = paper.get("top1_error")
                paper["sources"] = [*paper.get("sources", []), FB_RESNET_TORCH]
        else:
            row["top1_error"], row["top1_error_source"] = paper.get("top1_error"), PAPER_TABLE3
        if paper:
            paper["top1_error"], paper["top1_error_source"] = row["top1_error"], row["top1_error_source"]
    else:
        row["cifar_error"] = dict(entry.cifar_error) if entry else {}
    if row["params_match"] is False and entry and entry.params_m is not None:
        without_bn = params - counted["bn_params"]
        if round(without_bn / 1e6, 1) == entry.params_m:
            row["params_note"] = (
                f"{params / 1e6:.2f}M counted with BatchNorm; without its {counted['bn_params']:,} "
                f"BN parameters {without_bn:,} = {entry.params_m}M as reported"
            )
    return row


def check_paper(
    report: str | None = None,
    backend: str = "onnxruntime",
    batch: int = 1,
    latency: bool = True,
    iters: int = 5,
    models=None,
    progress: bool = False,
) -> PaperResult:
    """Rows for every model in the paper's comparisons, the paper's efficiency claims with verdicts, and
    (with `latency`) measured latency at `batch` on `backend` plus the latency claims.
    """
    from tqdm import tqdm

    if backend not in ("torch", "onnxruntime"):
        raise DnxError(f"--backend must be torch or onnxruntime, got {backend!r}")
    if batch < 1 or iters < 1:
        raise DnxError("--batch and --iters must be >= 1")
    names = list(models) if models else list(IMAGENET_MODELS + CIFAR_MODELS)
    if report:  # every report file, before any work
        check_report_outputs(report, PAPER_REPORT_FILES)
    rows = [model_row(n) for n in tqdm(names, desc="counting", disable=not progress, leave=False)]
    by_name = {r["name"]: r for r in rows}
    passes = min(LATENCY_PASSES, iters)
    if latency:
        _measure_latency(rows, backend, batch, iters, passes, progress)

    claims = efficiency_claims(by_name)
    if latency:
        claims += latency_claims(by_name, backend, batch)
    result = {
        "models": rows,
        "claims": claims,
        "sources": {
            "densenet": "Huang et al., CVPR 2017 (arXiv:1608.06993), Tables 1-3",
            "resnet_imagenet_error": FB_RESNET_TORCH,
            "resnet_imagenet_error_alt": "torchvision IMAGENET1K_V1 acc@1 (top1_error_torchvision)",
            "preact_resnet": "He et al., ECCV 2016, as quoted in the paper's Table 2",
            "macs": "measured; MACs = multiply-accumulates, what the paper calls FLOPs",
        },
        "latency": {
            "backend": backend,
            "batch": batch,
            "iters": iters,
            "passes": passes,
            "min_samples_for_verdict": MIN_LATENCY_SAMPLES,
        }
        if latency
        else None,
    }
    result = PaperResult(**_rounded(result))
    if report:
        result.report = write_paper_report(result.as_dict(), report)
    return result


@dataclass
class PaperResult(Result):
    """`dnx paper`: a row per model (measured params/MACs/latency, the reported figures), the claims with their
    verdicts, the sources, how latency was measured (None: not measured), and the report files."""

    models: list[dict]
    claims: list[dict]
    sources: dict
    latency: dict | None
    report: dict | None = None

    def as_dict(self) -> dict:
        doc = dataclasses.asdict(self)
        if self.report is None:
            del doc["report"]
        return doc

    def __str__(self) -> str:
        text = format_paper(self.as_dict())
        return text + ("\nreport: " + ", ".join(self.report.values()) if self.report else "")


def _rounded(value, digits: int = 4):
    """Floats rounded for the JSON and the report (ratios, errors in %, ms): 0.4493, not 0.44925489055236956."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    return value


LATENCY_PASSES = 3  # passes the --iters budget is split into (fewer when --iters is smaller)


def _measure_latency(rows, backend, batch, iters, passes, progress) -> None:
    """Median latency (and IQR) of every row's model, timed by bench in `passes` round-robin passes (one
    pass: not interleaved), one group per dataset."""
    with tempfile.TemporaryDirectory(prefix="dnx-paper-") as tmp:
        for dataset in ("imagenet", "cifar"):
            group = [r for r in rows if r["dataset"] == dataset]
            if not group:
                continue
            artifacts = [_artifact(r["name"], backend, tmp, progress) for r in group]
            options = BenchOptions(batch=batch, iters=iters, warmup=1, passes=passes, parity_samples=batch)
            result = bench(artifacts, options, progress=progress)
            for r, res in zip(group, result.results):
                r["latency_ms"] = res["latency_ms"]["p50"]
                r["latency_iqr_ms"] = res["latency_ms"]["iqr"]
                r["latency_p25_ms"], r["latency_p75_ms"] = res["latency_ms"]["p25"], res["latency_ms"]["p75"]
                r["latency_samples"] = res["iterations"]
                r["latency_label"] = res["label"]
            for path in artifacts:
                if path.endswith(".onnx"):
                    os.unlink(path)


def _artifact(name: str, backend: str, directory: str, progress: bool) -> str:
    if backend == "torch":
        return f"{name}@torch"

    path = os.path.join(directory, f"{name}.onnx")
    if progress:
        from tqdm import tqdm

        tqdm.write(f"exporting {name} to ONNX for the latency column ...")
    export_onnx(name, path, samples=1)
    return path
