"""Embedded models: :func:`shapes_resnet`, the GAP classifier for ShapesScenes, and its trainer.

``shapes_resnet()`` loads weights shipped inside the package (no download).
:func:`train_gap_classifier` retrains it (or any GAP classifier) from scratch.
"""

from __future__ import annotations

from .shapes_net import WEIGHTS_PATH, BasicBlock, ShapesResNet, shapes_resnet
from .train_gap import EpochStats, TrainHistory, evaluate_accuracy, train_gap_classifier

__all__ = [
    "WEIGHTS_PATH",
    "BasicBlock",
    "ShapesResNet",
    "shapes_resnet",
    "EpochStats",
    "TrainHistory",
    "evaluate_accuracy",
    "train_gap_classifier",
]
