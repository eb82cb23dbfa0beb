"""`dnx demo`: the main job end to end on built-in digits (pipeline) and its summary (report)."""

from densenet_deploy.demo.pipeline import DemoResult, Stage, run_demo

__all__ = ["DemoResult", "Stage", "run_demo"]
