"""Per-map min-max normalisation: the one home of ``(m - min) / (max - min)`` in xai_pool.

Four paths normalise saliency maps, each with its own reference convention (which is why
their *order* of operations differs, and must stay as it is for their numbers to stay):

- saliency methods (:mod:`xai_pool.saliency`): pytorch-grad-cam's ``scale_cam_image``, min-max
  with ``eps=1e-7`` in the denominator, resize, min-max again;
- Score-CAM masks: pytorch-grad-cam's ``ScoreCAM``, resize then min-max with ``eps=1e-8``;
- metrics (:mod:`xai_pool.metrics.maps`, docs/metrics.md): resize, then exact min-max in
  float64 after dividing by the largest magnitude (overflow guard);
- figures (:mod:`xai_pool.viz`): exact min-max of the raw map, then resize.

They all call :func:`minmax_normalize`. numpy arrays and torch tensors alike are accepted
(``viz`` never imports torch), and the result has the input's type and dtype.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

__all__ = ["minmax_normalize"]

Maps = TypeVar("Maps")


def minmax_normalize(maps: Maps, *, eps: float = 0.0) -> Maps:
    """Min-max normalise each map over its last two dimensions: ``(m - min) / (max - min + eps)``.

    With ``eps=0`` the scaling is exact and a constant map (``max == min``) becomes all zeros
    instead of 0/0. With ``eps > 0`` (pytorch-grad-cam's conventions) the denominator is
    ``max - min + eps``, which also maps a constant map to zeros.

    Args:
        maps: (..., H, W) numpy array or torch tensor of finite floating values.
        eps: added to every denominator.

    Returns:
        The normalised maps, same type, shape and dtype, in [0, 1] (the maximum is slightly
        below 1 when ``eps`` is not negligible next to ``max - min``).

    Example:
        >>> minmax_normalize(np.array([[1.0, 3.0], [2.0, 5.0]]))
        array([[0.  , 0.5 ],
               [0.25, 1.  ]])
    """
    low = _reduce(maps, "min")
    span = _reduce(maps, "max") - low
    # span == 0: (m - low) is 0 everywhere, and dividing by 1 keeps it 0. Adding the boolean
    # mask changes no other denominator (x + 0 == x), so the numbers are those of the plain formula.
    denominator = span + eps if eps else span + (span == 0)
    return (maps - low) / denominator


def _reduce(maps: Any, op: str) -> Any:
    if isinstance(maps, np.ndarray):
        return getattr(maps, op)(axis=(-2, -1), keepdims=True)
    return getattr(maps, "a" + op)(dim=(-2, -1), keepdim=True)  # torch: amin / amax
