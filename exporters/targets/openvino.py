"""ONNX -> OpenVINO IR (.xml/.bin + sidecar) in fp32, bf16 (inference precision hint) or INT8 (NNCF or Q/DQ).

Steps: convert (ov.convert_model), optionally quantize (recipe "nncf": nncf.quantize on the OpenVINO
model, fed by dnx data; recipe "qdq": the calibration package's TensorRT-format Q/DQ ONNX, converted, so
CPU and GPU run the same graph), save into a temporary directory, compile and run it *in a child
process* on held-out data and compare with ONNX Runtime on the source model, and only then move the
.xml/.bin pair and the sidecar into place. Sources: "Conversion API" (ov.convert_model / ov.save_model,
docs.openvino.ai/2025/openvino-workflow/model-preparation/conversion-parameters.html: save_model
compresses weights to fp16 unless compress_to_fp16=False), NNCF post-training quantization
(openvinotoolkit.github.io/nncf: nncf.quantize, QuantizationPreset, AdvancedQuantizationParameters).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field

from densenet_deploy.calibration.quantize import CalibrationOptions, quantize_int8
from densenet_deploy.core.deps import require
from densenet_deploy.core.errors import ArtifactError, DataError, DnxError, VerificationFailed
from densenet_deploy.core.formats import ort_deployment_reason, sidecar_path
from densenet_deploy.core.io import check_output_path, sha256_file
from densenet_deploy.core.metadata import load_onnx, read_onnx_meta
from densenet_deploy.core.policy import GateOptions, gate_for
from densenet_deploy.core.sidecars import write_sidecar
from densenet_deploy.data.loading import held_out_split, load_data_for
from densenet_deploy.exporters.precision import BUILD_CALIBRATION_ADVICE
from densenet_deploy.exporters.targets.artifact import TargetBuild
from densenet_deploy.exporters.targets.openvino_child import run_in_child
from densenet_deploy.exporters.targets.openvino_nncf import quantize_nncf
from densenet_deploy.runners.batches import run_batches
from densenet_deploy.runners.onnxruntime_runner import OnnxRuntimeRunner
from densenet_deploy.runners.openvino import check_qdq_supported, openvino_error_line
from densenet_deploy.verify.compare import compare_outputs

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")
RECIPES = ("nncf", "qdq")
DEFAULT_SAMPLES = 300  # NNCF's default subset_size; calibration cost is linear in it
VERIFY_SAMPLES = 256
MIN_VERIFY_SAMPLES = 20  # fewer: the pre-write check's agreement and accuracy say little (a warning)


@dataclass
class NncfOptions:
    """nncf.quantize settings; `plain()` is NNCF's own defaults (the peer). scripts/bench-openvino.py
    times every option against plain() in one run; keep the defaults in line with its verdicts (the
    first runs were under heavy machine load and did not settle them, see docs/openvino.md)."""

    preset: str = "performance"  # symmetric activations: no zero-point arithmetic in int8 kernels
    target_device: str = "CPU"  # CPU hardware config: Concat inputs share one (unified) scale
    fast_bias_correction: bool = True
    ignored_scope: list[str] = field(default_factory=list)  # node names left in float
    model_type: str | None = None
    inference_precision: str = "bf16"  # float remainder of the INT8 model (BN+ReLU, Concat, pooling)

    @classmethod
    def plain(cls) -> "NncfOptions":
        """What `nncf.quantize(model, dataset, preset=PERFORMANCE)` does, run the way OpenVINO runs a model
        by default (the peer dnx is measured against)."""
        return cls(target_device="ANY", inference_precision="default")


def _ov():
    return require("openvino", purpose="the OpenVINO target")


def build_openvino(
    onnx_path,
    output_xml,
    *,
    precision: str | None = None,
    recipe: str = "nncf",
    calib_data: str | None = None,
    samples: int = DEFAULT_SAMPLES,
    method: str | None = None,
    nncf_options: NncfOptions | None = None,
    inference_precision: str | None = None,
    verify_data: str | None = None,
    verify_samples: int = VERIFY_SAMPLES,
    gate: GateOptions | None = None,
    threads: int | None = None,
    seed: int = 0,
) -> TargetBuild:
    """Build `output_xml` (+ .bin + .xml.json sidecar) from an exported ONNX model.

    precision: fp32 | bf16 | int8 (None: the ONNX model's own; a Q/DQ int8 ONNX is converted as is).
    recipe (int8 from fp32): "nncf" or "qdq". The artifact is verified before anything is written:
    DnxError (exit 2) if OpenVINO fails or crashes, VerificationFailed (exit 1) if it misses the policy's
    parity gate against ONNX Runtime (the gate `dnx verify` applies; `gate` changes it).
    """
    onnx_path = os.fspath(onnx_path)
    output_xml = check_output_path(output_xml)
    if not output_xml.lower().endswith(".xml"):
        raise DnxError(f"OpenVINO IR output must end in .xml (the weights go next to it as .bin), got {output_xml}")
    meta = read_onnx_meta(onnx_path)
    _check_source_graph(onnx_path, meta)
    # Every input graph is inspected, whatever its metadata says: a Q/DQ model with asymmetric
    # activations must be refused before OpenVINO sees it (it crashes compile_model).
    if check_qdq_supported(onnx_path) and meta.precision != "int8":
        log.warning("%s has Q/DQ nodes but says precision %s; treating it as int8", onnx_path, meta.precision)
        precision = "int8" if precision in (None, meta.precision) else precision
        meta = meta.replace(precision="int8")
    precision = precision or meta.precision
    if precision not in PRECISIONS:
        raise DnxError(f"the openvino target builds {', '.join(PRECISIONS)}, not {precision!r}")
    if recipe not in RECIPES:
        raise DnxError(f"unknown int8 recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    if meta.precision != "fp32" and precision != meta.precision:
        raise DnxError(f"{onnx_path} is {meta.precision}; --{precision} needs the fp32 model from `dnx export`")
    quantize = precision == "int8" and meta.precision == "fp32"
    if quantize and not calib_data:
        raise DnxError("--int8 needs calibration data: --calib-data SRC (image dir, .npy/.npz, digits, ...)")
    nncf_options = nncf_options or NncfOptions()
    if quantize and recipe == "nncf":
        require("nncf", purpose="the nncf INT8 recipe (or use --recipe qdq)")
    # A bad data source must stop the build before minutes of conversion and quantization, not after.
    for flag, source in (("--calib-data", calib_data if quantize else None), ("--verify-data", verify_data)):
        if source:
            _check_data_source(flag, source, meta)
    ov = _ov()
    start = time.perf_counter()
    steps: dict = {}

    with tempfile.TemporaryDirectory(prefix=".dnx-ov-", dir=os.path.dirname(os.path.abspath(output_xml))) as tmp:
        reference_onnx = onnx_path
        if meta.precision == "int8":  # an existing (checked) Q/DQ model: run it as is
            model = _convert(ov, onnx_path)
            steps["recipe"] = "qdq (input model)"
        elif quantize and recipe == "qdq":
            qdq_path = os.path.join(tmp, "model.int8.onnx")
            steps["calibration"] = _calibrate_qdq(onnx_path, calib_data, qdq_path, samples, method, gate)
            check_qdq_supported(qdq_path)
            model = _convert(ov, qdq_path)
            steps["recipe"] = "qdq"
        else:
            model = _convert(ov, onnx_path)
            if quantize:
                steps["calibration"] = quantize_nncf(
                    model, onnx_path, meta, calib_data, samples, nncf_options, seed=seed
                )
                model = steps["calibration"].pop("model")
                steps["recipe"] = "nncf"
        hint = inference_precision or _default_hint(precision, steps.get("recipe"), nncf_options)

        out_meta = meta.replace(
            precision=precision,
            extra={**meta.extra, "openvino_recipe": steps.get("recipe")} if steps.get("recipe") else meta.extra,
        )
        if quantize:
            calib = steps["calibration"]
            # The same keys as the calibration package writes, so `dnx verify` finds the held-out data.
            out_meta = out_meta.replace(
                calibration={
                    "method": calib.get("method"),
                    "samples": calib.get("samples"),
                    "recipe": steps.get("recipe"),
                    "data_source": calib.get("source") or calib.get("data_source") or calib_data,
                    "data_fingerprint": calib.get("fingerprint") or calib.get("data_fingerprint"),
                }
            )
        sidecar_doc = {
            "openvino": {
                "version": ov.get_version().split("-")[0],
                "inference_precision": hint,
                "recipe": steps.get("recipe"),
                "nncf": asdict(nncf_options) if steps.get("recipe") == "nncf" else None,
                "fake_quantize_nodes": _count_ops(model, "FakeQuantize"),
            },
            "target": "openvino",
            "precision": precision,
            "source_onnx_sha256": sha256_file(onnx_path),
        }

        tmp_xml = os.path.join(tmp, "model.xml")
        ov.save_model(model, tmp_xml, compress_to_fp16=False)  # keep fp32 weights: precision is the hint's job

        write_sidecar(tmp_xml, out_meta, **sidecar_doc)

        if quantize:
            _warn_fewer_calibration_samples(steps["calibration"].get("samples"), samples, calib_data)
        # --verify-data: the split `dnx verify` checks on (held-out only where the source defines one), but
        # never the calibration images; without it, the held-out (val) split of the calibration data.
        if verify_data:
            split = "val" if quantize and verify_data == calib_data else held_out_split(verify_data)
        else:
            split = "val" if calib_data else "all"
        parity = verify_ir(
            tmp_xml,
            reference_onnx,
            out_meta,
            data=verify_data or calib_data,
            split=split,
            samples=verify_samples,
            gate=gate,
            threads=threads,
            seed=seed,
        )
        sidecar_doc["verification"] = parity.as_dict()
        # What the build machine executed: a bf16 request runs f32 on a CPU without bf16 (the runner asks its
        # own compiled model again wherever the IR is opened).
        sidecar_doc["openvino"]["executed_precision"] = parity.candidate["executed_precision"]
        write_sidecar(tmp_xml, out_meta, **sidecar_doc)
        sidecar = _move_ir(tmp_xml, output_xml)

    return TargetBuild(
        output_xml,
        sidecar,
        precision,
        round(time.perf_counter() - start, 2),
        details={
            "inference_precision": hint,
            "executed_precision": parity.candidate["executed_precision"],
            "recipe": steps.get("recipe"),
            "calibration": steps.get("calibration"),
            "parity": parity.as_dict(),
            "fake_quantize_nodes": sidecar_doc["openvino"]["fake_quantize_nodes"],
        },
    )


def _check_source_graph(onnx_path: str, meta) -> None:
    """Refuse, before any work, the graphs OpenVINO is not built from: a bf16 graph (exporters/bf16.py,
    opset 22 bf16 Conv that ONNX Runtime, the reference of the check, cannot run) and an ONNX Runtime
    deployment (com.microsoft fused/NCHWc ops OpenVINO cannot convert)."""
    if meta.precision == "bf16":
        raise DnxError(
            f"{onnx_path} is a bf16 graph (for TensorRT); the openvino target needs the fp32 export "
            "from `dnx export` and applies bf16 itself as the inference precision (--bf16)"
        )
    reason = ort_deployment_reason(load_onnx(onnx_path, load_weights=False), onnx_path)
    if reason:
        raise ArtifactError(
            f"{onnx_path} is an ONNX Runtime deployment ({reason}), not a model to build from; "
            "build the OpenVINO IR from the plain `dnx export` output instead"
        )


def _warn_fewer_calibration_samples(got: int | None, asked: int | None, source: str) -> None:
    if got is not None and asked is not None and got < asked:
        log.warning(
            "%s has only %d calibration sample%s in its train split, fewer than --samples %d; calibrating on %d",
            source,
            got,
            "" if got == 1 else "s",
            asked,
            got,
        )


def _check_data_source(flag: str, source: str, meta) -> None:
    """Load one image of `source` (DataError naming the flag when it cannot be read at all)."""
    try:
        load_data_for(source, meta, split="all", limit=1)
    except DataError as exc:
        raise DataError(f"{flag}: {exc}" if str(exc).startswith(source) else f"{flag} {source}: {exc}") from exc


def _default_hint(precision: str, recipe: str | None, nncf_options: NncfOptions) -> str:
    if precision == "fp32":
        return "f32"
    if precision == "bf16":
        return "bf16"
    if recipe == "nncf":
        return nncf_options.inference_precision
    return "bf16"  # int8 (qdq): float remainder in bf16, as OpenVINO's own AMX default; see the bench script


def _convert(ov, onnx_path: str):
    try:
        return ov.convert_model(onnx_path)
    except Exception as exc:
        raise DnxError(f"OpenVINO cannot convert {onnx_path}: {openvino_error_line(exc)}") from exc


def _calibrate_qdq(onnx_path, calib_data, output, samples, method, gate=None) -> dict:
    """The calibration package's TensorRT-format (symmetric int8) Q/DQ model."""
    kwargs = {k: v for k, v in (("method", method), ("samples", samples)) if v is not None}
    try:
        options = CalibrationOptions(gate=gate or GateOptions(), **kwargs)
        info = quantize_int8(onnx_path, output, calib_data, options, failure_advice=BUILD_CALIBRATION_ADVICE)
    except DataError as exc:
        if calib_data in str(exc):
            raise
        raise DataError(
            f"--calib-data {calib_data}: {exc}"
            + ("; too few images to hold any out for the check" if "no image" in str(exc) else "")
        ) from exc
    return info.as_dict()


def _count_ops(model, op_type: str) -> int:
    return sum(1 for op in model.get_ops() if op.get_type_name() == op_type)


def verify_ir(
    xml_path: str,
    reference_onnx: str,
    meta,
    *,
    data: str | None,
    samples: int,
    gate: GateOptions | None = None,
    threads: int | None = None,
    seed: int = 0,
    split: str | None = None,
) -> dict:
    """Compare the IR (run by OpenVinoRunner in a child process) with ONNX Runtime on `samples` of `data`.

    `split`: which part of `data` (None: the one `dnx verify` uses, see held_out_split; the builder passes
    "val" for its calibration data, whose "train" split calibrated); without data, seeded random inputs
    (parity only). Raises VerificationFailed (exit 1) when a gate fails; returns the ParityResult.
    """
    data = data or "random"
    split = split or held_out_split(data)
    try:
        dataset = load_data_for(data, meta, split=split, limit=samples, seed=seed)
    except DataError as exc:
        if data in str(exc):
            raise
        raise DataError(
            f"verification data {data} ({split} split): {exc}"
            + (
                "; too few images to hold any out: pass --verify-data SRC with more images"
                if split == "val" and "no image" in str(exc)
                else ""
            )
        ) from exc
    if len(dataset) == 0:
        raise DataError(
            f"verification data {data} ({split} split) gave no readable images to check the OpenVINO model on"
        )
    images, labels = dataset.images, dataset.labels
    if len(images) < min(MIN_VERIFY_SAMPLES, samples):
        log.warning(
            "verifying the OpenVINO model on only %d sample%s of %s: too few for the check to mean much; "
            "pass --verify-data SRC with more images",
            len(images),
            "" if len(images) == 1 else "s",
            data + (" (val split)" if split == "val" else ""),
        )
    with OnnxRuntimeRunner(reference_onnx, providers="cpu", threads=threads) as ort_runner:
        ref = run_batches(ort_runner, images, 32)  # pads to a fixed batch (an export with --batch N)
    cand, executed = run_in_child(xml_path, images, threads=threads)
    checked = (gate or GateOptions()).apply(gate_for(meta.precision))
    parity = compare_outputs(ref, cand, labels=labels, gate=checked, real_data=data != "random")
    parity.data = dataset.source + (" (val split)" if split == "val" else "")
    parity.gate = checked.as_dict()
    parity.candidate = {"executed_precision": executed}
    if not parity:
        raise VerificationFailed(
            f"OpenVINO's {meta.precision} model disagrees with ONNX Runtime on {len(images)} held-out samples of "
            f"{dataset.source} ({'; '.join(parity.failures)}); nothing was written",
            parity,
        )
    log.info("verified against ONNX Runtime: rel L2 %.3g, agreement %.4f", parity.rel_l2, parity.top1_agreement)
    return parity


def _move_ir(tmp_xml: str, output_xml: str) -> str:
    """Move model.xml/.bin/.xml.json from the temp dir onto output_xml (bin first: an .xml is never
    visible without its weights); on failure remove whatever was moved."""
    stem = os.path.splitext(output_xml)[0]
    moves = [
        (os.path.splitext(tmp_xml)[0] + ".bin", stem + ".bin"),
        (tmp_xml, output_xml),
        (sidecar_path(tmp_xml), sidecar_path(output_xml)),
    ]
    done = []
    try:
        for src, dst in moves:
            os.replace(src, dst)
            done.append(dst)
    except OSError as exc:
        for path in done:
            if os.path.exists(path):
                os.unlink(path)
        raise DnxError(f"cannot write {output_xml}: {exc}") from exc
    return sidecar_path(output_xml)


def ir_size_bytes(output_xml: str) -> int:
    stem = os.path.splitext(output_xml)[0]
    return sum(os.path.getsize(p) for p in (output_xml, stem + ".bin") if os.path.exists(p))


__all__ = ["build_openvino", "verify_ir", "NncfOptions", "PRECISIONS", "RECIPES"]
