"""`dnx`: a thin click layer over the Python API (main: the group; output: shared options and printing;
commands: one module per command)."""

from densenet_deploy.cli.main import cli, main

__all__ = ["cli", "main"]
