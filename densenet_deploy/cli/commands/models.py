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
    listing = list_models(with_macs=macs)
    emit(listing.as_dict(), as_json, str(listing))
