"""`dnx models`: list the zoo with params, MACs and input size."""

import click

from densenet_deploy.cli.options import json_option
from densenet_deploy.cli.output import emit
from densenet_deploy.reports.zoo_listing import list_models


@click.command("models")
@click.option("--macs/--no-macs", default=True, show_default=True, help="Count MACs (a few seconds).")
@json_option
def command(macs, as_json):
    """List the zoo: params, MACs (multiply-accumulates) and input size of each model."""
    rows = list_models(with_macs=macs)
    lines = [f"{'model':<22}{'params':>14}{'MACs':>16}  input   paper name"]
    for r in rows:
        mac = f"{r['macs'] / 1e9:.3f} G" if r.get("macs") is not None else "-"
        lines.append(
            f"{r['name']:<22}{r['params']:>14,}{mac:>16}  {'x'.join(map(str, r['input_size'])):<7} {r['paper_name']}"
        )
    lines.append(
        "MACs = multiply-accumulates (the paper's 'FLOPs'). CIFAR names follow densenet{L}_k{k} / "
        "densenet_bc{L}_k{k} for any valid depth."
    )
    emit({"models": rows}, as_json, "\n".join(lines))
