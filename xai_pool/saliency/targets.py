"""What to explain: turn user-friendly targets into pytorch-grad-cam target callables.

Accepted forms, for a batch of B images:

- ``None``: the class each image is predicted as, with the pooling in use (every
  registered method computes it from its own forward pass: no extra pass);
- an int (or 0-d tensor): the same class for every image (indices start at 0; negative
  indices are refused, they do not count from the end);
- a sequence, 1-D tensor or 1-D integer array of B class indices: one class per image;
- a pytorch-grad-cam target object (any callable mapping one sample's output to a scalar,
  e.g. ``ClassifierOutputSoftmaxTarget(3)``), alone (used for every image) or in a sequence
  of B, freely mixed with ints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from ..validation import check_targets

__all__ = ["resolve_targets", "TargetSpec", "ClassTarget"]

TargetSpec = Any  # None | int | Sequence[int | Callable] | Callable | Tensor | np.ndarray


class ClassTarget(ClassifierOutputTarget):
    """pytorch-grad-cam's ``ClassifierOutputTarget`` that checks its class against the logits.

    A plain classifier does not say how many classes it has; this target compares the index
    with the width of the logits when the method calls it, so an index past the last class
    is a ValueError naming both numbers instead of an IndexError deep in pytorch-grad-cam.
    """

    def __call__(self, model_output: Any) -> Any:
        """The target class's logit(s) of ``model_output``.

        Raises:
            ValueError: the class index is not below the number of logits.
        """
        width = model_output.shape[-1]
        if self.category >= width:
            raise ValueError(
                f"target class {self.category} is out of range: the model returns {width} logits "
                f"(classes 0..{width - 1}); pass a class index below {width}"
            )
        return super().__call__(model_output)


def resolve_targets(targets: TargetSpec, batch_size: int, *, num_classes: int | None = None) -> list[Callable] | None:
    """One pytorch-grad-cam target per image, or None for the predicted classes.

    Class indices are checked by :func:`xai_pool.validation.check_targets` (count, type,
    negative indices, ``num_classes`` when known) and become :class:`ClassTarget` objects,
    which also check the index against the logits when called.

    Args:
        targets: see the module docstring.
        batch_size: number of images B.
        num_classes: if known, class indices are checked against it now.

    Returns:
        None, or a list of B callables.

    Raises:
        TypeError: an element is neither a class index nor a callable.
        ValueError: the number of targets is not B, or a class index is negative or out of range.
    """
    checked = check_targets(targets, batch_size, num_classes=num_classes)
    if checked is None:
        return None
    made: dict[int, ClassTarget] = {}
    return [made.setdefault(t, ClassTarget(t)) if isinstance(t, int) else t for t in checked]
