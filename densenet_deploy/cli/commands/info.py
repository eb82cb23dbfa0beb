"""`dnx info MODEL`: params, MACs, the paper's figures and ratios (zoo name, checkpoint or artifact)."""

import click

from densenet_deploy.cli.options import json_option
from densenet_deploy.cli.output import emit
from densenet_deploy.reports.info import describe


@click.command("info")
@click.argument("model")
@click.option("--weights", type=click.Path(), help="State dict to load into a zoo model.")
@click.option("--input-size", type=click.IntRange(8, 4096), help="Square input size (default: the model's).")
@click.option("--num-classes", type=click.IntRange(1), help="Classifier size (default: zoo or checkpoint).")
@json_option
def command(model, weights, input_size, num_classes, as_json):
    """Show params, MACs and the paper's reported figures for MODEL.

    MODEL is a zoo name (see `dnx models`), a dnx checkpoint, an exported .onnx (counted from its graph)
    or a built artifact (.plan, .xml, .ort.onnx: counted from the model its sidecar describes).
    """
    result = describe(model, weights=weights, input_size=input_size, num_classes=num_classes)
    emit(result, as_json, format_info(result))


def format_info(r: dict) -> str:
    lines = [f"model       {r['model']}"]
    for key in ("source", "target", "precision", "opset"):
        if r.get(key):
            lines.append(f"{key:<12}{r[key]}")
    lines.append(f"input       {'x'.join(map(str, r['input_size']))}")
    lines.append(f"params      {r['params']:,}")
    lines.append(f"MACs        {r['macs'] / 1e9:.3f} G (multiply-accumulates; the paper's 'FLOPs')")
    if r.get("counted_from"):  # a built artifact: its weights are fused or compiled, the model is counted
        lines.append(f"counted     from {r['counted_from']}")
    if r.get("torch_params") is not None:  # an ONNX artifact: its graph counts beside PyTorch's
        verdict = "match" if r.get("counts_match") else "DIFFER"
        lines.append(f"PyTorch     {r['torch_params']:,} params, {r['torch_macs'] / 1e9:.3f} G MACs ({verdict})")
    paper = r.get("paper") or {}
    if paper:
        lines.append(f"paper       {paper.get('label', '')}")
        if paper.get("params"):
            match = {True: "matches", False: "DIFFERS", None: "n/a (other class count)"}[paper.get("params_match")]
            lines.append(f"  params    {paper['params']:,} (ratio {paper.get('params_ratio')}; {match})")
        if paper.get("macs"):
            ratio = paper.get("macs_note") or f"ratio {paper.get('macs_ratio')}"
            lines.append(f"  MACs      {paper['macs'] / 1e9:.3f} G ({ratio})")
        if paper.get("top1_error") is not None:
            lines.append(f"  top-1 err {paper['top1_error']:.2f} % (ImageNet, single crop)")
        for ds, err in (paper.get("cifar_error") or {}).items():
            lines.append(f"  {ds:<9} {err:.2f} % error")
    return "\n".join(lines)
