"""`dnx cpp-header ARTIFACT -o H`: a C++ header with the artifact's I/O names, shapes and normalisation."""

import click

from densenet_deploy.cli.options import json_option, output_option
from densenet_deploy.cli.output import emit
from densenet_deploy.exporters.cpp_header import write_cpp_header


@click.command("cpp-header")
@click.argument("artifact", type=click.Path(dir_okay=False))
@output_option(help="Header file to write (e.g. model_info.hpp).")
@click.option("--namespace", default="dnx_model", show_default=True, help="C++ namespace of the constants.")
@json_option
def command(artifact, output, namespace, as_json):
    """Write a header for C++ users who compile the model's constants in (see `cpp/`)."""
    result = write_cpp_header(artifact, output, namespace=namespace)
    emit(result.as_dict(), as_json, str(result))
