"""What to explain: turn user-friendly targets into pytorch-grad-cam target callables.

Accepted forms, for a batch of B images:

- ``None``: the class each image is predicted as, with the pooling in use (every
  registered method computes it from its own forward pass: no extra pass);
- an int (or 0-d tensor): the same class for every image;
- a sequence, 1-D tensor or 1-D integer array of B class indices: one class per image;
- a pytorch-grad-cam target object (any callable mapping one sample's output to a scalar,
  e.g. ``ClassifierOutputSoftmaxTarget(3)``), alone (used for every image) or in a sequence
  of B, freely mixed with ints.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, Callable, Sequence

import numpy as np
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

__all__ = ["resolve_targets", "TargetSpec"]

TargetSpec = Any  # None | int | Sequence[int | Callable] | Callable | Tensor | np.ndarray


def _is_index(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _class_target(index: Any, num_classes: int | None) -> ClassifierOutputTarget:
    index = int(index)
    if num_classes is not None and not 0 <= index < num_classes:
        raise ValueError(
            f"target class {index} is out of range: the model has {num_classes} classes (0..{num_classes - 1})"
        )
    return ClassifierOutputTarget(index)


def resolve_targets(targets: TargetSpec, batch_size: int, *, num_classes: int | None = None) -> list[Callable] | None:
    """One pytorch-grad-cam target per image, or None for the predicted classes.

    Args:
        targets: see the module docstring.
        batch_size: number of images B.
        num_classes: if known, class indices are checked against it.

    Returns:
        None, or a list of B callables.

    Raises:
        TypeError: an element is neither a class index nor a callable.
        ValueError: the number of targets is not B, or a class index is out of range.
    """
    if targets is None:
        return None
    if isinstance(targets, (torch.Tensor, np.ndarray)):
        if targets.ndim == 0:
            targets = targets.item()
        elif targets.ndim == 1 and not (
            targets.dtype.is_floating_point
            if isinstance(targets, torch.Tensor)
            else np.issubdtype(targets.dtype, np.floating)
        ):
            targets = [int(t) for t in targets.tolist()]
        else:
            raise ValueError(
                f"a target tensor/array must hold integer class indices with shape () or (B,), got "
                f"dtype {targets.dtype} shape {tuple(targets.shape)}"
            )
    if _is_index(targets):
        return [_class_target(targets, num_classes)] * batch_size
    if callable(targets):
        return [targets] * batch_size
    if isinstance(targets, (str, bytes)) or not isinstance(targets, Sequence):
        raise TypeError(
            "targets must be None, a class index, a pytorch-grad-cam target or a sequence of them, "
            f"got {type(targets).__name__}"
        )
    if len(targets) != batch_size:
        raise ValueError(
            f"got {len(targets)} targets for a batch of {batch_size} images: pass one target per image, "
            "a single class index for all of them, or None for the predicted classes"
        )
    resolved: list[Callable] = []
    for i, item in enumerate(targets):
        if _is_index(item):
            resolved.append(_class_target(item, num_classes))
        elif callable(item):
            resolved.append(item)
        else:
            raise TypeError(f"targets[{i}] must be a class index or a pytorch-grad-cam target callable, got {item!r}")
    return resolved
