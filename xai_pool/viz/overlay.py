"""Saliency heat-map overlays, RGB-correct, built on pytorch-grad-cam's ``show_cam_on_image``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._arrays import image_to_rgb01, saliency_to_unit
from ._style import COLORMAP_JET

__all__ = ["overlay"]


def overlay(
    image: Any,
    saliency: Any,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    image_weight: float = 0.5,
    colormap: int = COLORMAP_JET,
) -> np.ndarray:
    """Blend a saliency map, coloured with an OpenCV colormap, over an RGB image.

    The heat map is converted to RGB before blending (``use_rgb=True``), so with the default
    JET colormap high saliency is red and low saliency is blue in the returned RGB array.

    Args:
        image: one image, either a normalised float tensor/array (3, H, W) or (H, W, 3) with
            ``mean``/``std`` given (the normalisation is undone and the result clipped to
            [0, 1]), a float image in [0, 1], or a uint8 image in [0, 255]. Channels may be
            first or last; a grey image (H, W) or 1-channel image is repeated to RGB.
        saliency: a map (h, w) or (1, h, w) of any resolution and range; it is min-max
            normalised to [0, 1] (a constant map becomes all zeros) and resized bilinearly
            to (H, W).
        mean: per-channel mean of the normalisation applied to ``image`` (e.g. ImageNet's).
        std: per-channel standard deviation of that normalisation.
        image_weight: weight of the image in the blend, in [0, 1]; the heat map gets
            ``1 - image_weight``.
        colormap: an OpenCV colormap id; the default is ``cv2.COLORMAP_JET``.

    Returns:
        uint8 array (H, W, 3), RGB.

    Raises:
        TypeError: ``image`` or ``saliency`` is not numeric, or ``colormap`` is not an int.
        ValueError: wrong shapes or channel count, a float image outside [0, 1] without
            ``mean``/``std``, non-finite values, or ``image_weight`` outside [0, 1].

    Example:
        >>> rgb = overlay(x[0], cam[0], mean=IMAGENET_MEAN, std=IMAGENET_STD)  # doctest: +SKIP
    """
    if not isinstance(colormap, (int, np.integer)) or isinstance(colormap, bool):
        raise TypeError(f"colormap must be an OpenCV colormap id such as cv2.COLORMAP_JET, got {colormap!r}")
    if not 0.0 <= float(image_weight) <= 1.0:
        raise ValueError(f"image_weight must be in [0, 1] (the image's share of the blend), got {image_weight}")
    rgb = image_to_rgb01(image, mean, std)
    mask = saliency_to_unit(saliency, rgb.shape[:2])
    if rgb.max() == 0 and (image_weight == 1 or _heat_is_black(mask, int(colormap))):
        # show_cam_on_image divides by the blend's maximum, which is 0 here: NaN pixels.
        return np.zeros((*rgb.shape[:2], 3), dtype=np.uint8)
    # Imported here: pytorch_grad_cam.utils.image pulls in torch, torchvision and pyplot.
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(rgb, mask, use_rgb=True, colormap=int(colormap), image_weight=float(image_weight))


def _heat_is_black(mask: np.ndarray, colormap: int) -> bool:
    import cv2

    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(-1, 1), colormap)[:, 0]
    return not lut[np.unique(np.uint8(255 * mask))].any()
