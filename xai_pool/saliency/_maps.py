"""Map post-processing with pytorch-grad-cam's conventions, in torch (so it runs on the device).

pytorch-grad-cam turns a layer's map into its output with ``scale_cam_image`` twice:
min-max per image (``(m - min) / (max - min + 1e-7)``), bilinear resize to the input
(``cv2.resize``, half-pixel centres), then min-max again after averaging layers.
:func:`scale_to_input` does the same with ``F.interpolate(align_corners=False)``, which
samples the same points. A constant map becomes all zeros (0 / 1e-7), never 0/0.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..minmax import minmax_normalize

__all__ = ["minmax_scale", "upsample", "scale_to_input"]

_EPS = 1e-7  # pytorch-grad-cam's scale_cam_image


def minmax_scale(maps: Tensor) -> Tensor:
    """Per-map min-max scaling of (B, h, w) maps to [0, 1] as ``scale_cam_image`` does; constant maps become 0.

    Args:
        maps: (B, h, w) floating maps.

    Returns:
        ``(m - min) / (max - min + 1e-7)`` per map (see :func:`xai_pool.minmax.minmax_normalize`).
    """
    return minmax_normalize(maps, eps=_EPS)


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of (B, h, w) maps to ``size`` (H, W) in float32."""
    return F.interpolate(maps[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def scale_to_input(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Min-max, upsample to ``size``, min-max again: a map at input resolution in [0, 1]."""
    return minmax_scale(upsample(minmax_scale(maps.float()), size))
