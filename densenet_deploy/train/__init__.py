"""`dnx train`: the paper's training recipes (recipe) and the resumable training loop (loop)."""

from densenet_deploy.train.loop import TrainResult, digits_preset, train
from densenet_deploy.train.recipe import TrainOptions

__all__ = ["TrainOptions", "TrainResult", "digits_preset", "train"]
