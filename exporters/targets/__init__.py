"""Deployment targets of `dnx build-engine`: the target table and build (build), one module per backend."""

from densenet_deploy.exporters.targets.build import TARGETS, BuildOptions, Target, build_deployment

__all__ = ["TARGETS", "BuildOptions", "Target", "build_deployment"]
