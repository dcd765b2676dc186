"""Turning user inputs (torch tensors, numpy arrays, lists) into validated numpy arrays.

torch is never imported here: a tensor can only exist if the caller already imported
torch, so it is looked up in ``sys.modules``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..minmax import minmax_normalize

# Float images slightly outside [0, 1] (resampling overshoot, float error) are clipped,
# anything further out is almost certainly still normalised and is rejected.
_RANGE_TOLERANCE = 1e-3


def is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x: Any, name: str) -> np.ndarray:
    """A numpy view of a tensor or array-like; TypeError for anything non-numeric."""
    if is_tensor(x):
        x = x.detach().cpu()
        if x.is_floating_point():
            x = x.float()  # numpy has no bfloat16
        return x.numpy()
    try:
        array = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}") from exc
    if array.dtype == bool:
        array = array.astype(np.float32)
    if not (np.issubdtype(array.dtype, np.number)):
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype} ({type(x).__name__})")
    return array


def _channels_last(array: np.ndarray, channels_first_hint: bool, name: str) -> np.ndarray:
    """(H, W), (H, W, C) or (C, H, W) with C in {1, 3} -> (H, W, 3)."""
    if array.ndim == 2:
        array = array[..., None]
    elif array.ndim != 3:
        extra = " (index the batch: images[i])" if array.ndim == 4 else ""
        raise ValueError(
            f"{name} must be one image of shape (3, H, W), (H, W, 3) or (H, W), got shape {tuple(array.shape)}{extra}"
        )
    else:
        first, last = array.shape[0] in (1, 3), array.shape[-1] in (1, 3)
        # A (3, H, 3) image is ambiguous: tensors follow torch's CHW, arrays numpy's HWC.
        if first and (not last or channels_first_hint):
            array = np.moveaxis(array, 0, -1)
        elif not last:
            raise ValueError(
                f"{name} has shape {tuple(array.shape)}: expected 3 colour channels (or 1 for "
                "grey) first (C, H, W) or last (H, W, C); drop an alpha channel with image[..., :3]"
            )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(array.shape)})")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def _channel_stats(value: Any, name: str) -> np.ndarray:
    stats = to_numpy(value, name).astype(np.float32).reshape(-1)
    if stats.size not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 values (one per channel), got {stats.size}")
    return stats


def image_to_rgb01(
    image: Any,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    *,
    name: str = "image",
) -> np.ndarray:
    """Any supported image -> float32 (H, W, 3) RGB in [0, 1].

    Supported: a normalised float tensor/array with ``mean``/``std`` (undone, then clipped),
    a float image in [0, 1], or uint8 in [0, 255]; channels first or last; grey repeated to RGB.
    """
    channels_first_hint = is_tensor(image)
    array = _channels_last(to_numpy(image, name), channels_first_hint, name)
    if (mean is None) != (std is None):
        raise ValueError("pass both mean and std (the normalisation to undo) or neither")
    if array.dtype == np.uint8:
        if mean is not None:
            raise ValueError(
                f"{name} is uint8 (already in [0, 255]); mean/std only apply to normalised float images, so drop them"
            )
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if mean is not None:
        std_values = _channel_stats(std, "std")
        if np.any(std_values <= 0):
            raise ValueError(f"std must be positive, got {std_values.tolist()}")
        array = array * std_values + _channel_stats(mean, "mean")
        return np.clip(array, 0.0, 1.0)
    low, high = float(array.min()), float(array.max())
    if low < -_RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
        hint = (
            "it looks like 0-255 data: cast it to uint8 or divide by 255"
            if high > 1.5 and low >= 0
            else "it looks normalised: pass mean= and std= (e.g. the ImageNet statistics)"
        )
        raise ValueError(f"{name} values span [{low:.3g}, {high:.3g}], outside [0, 1]; {hint}")
    return np.clip(array, 0.0, 1.0)


def saliency_to_unit(saliency: Any, size: tuple[int, int], *, name: str = "saliency") -> np.ndarray:
    """A saliency map of any resolution and range -> float32 (H, W) in [0, 1] at ``size``.

    Min-max normalised (a constant map becomes zeros: it ranks no pixel above another), then
    resized bilinearly to ``size = (H, W)``. (1, h, w) is accepted as one map.
    """
    import cv2

    array = to_numpy(saliency, name).astype(np.float32)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"{name} must be one map of shape (h, w), got shape {tuple(array.shape)}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(array.shape)})")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    array = minmax_normalize(array)
    height, width = size
    if array.shape != (height, width):
        array = cv2.resize(array, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(array, 0.0, 1.0)


def split_images(images: Any, name: str = "images") -> list[Any]:
    """A batch (B, C, H, W) / (B, H, W, C) or a sequence of single images -> list of images."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"{name} is empty: pass at least one image")
        return list(images)
    if not (is_tensor(images) or isinstance(images, np.ndarray)):
        raise TypeError(
            f"{name} must be a batch tensor/array (B, 3, H, W) or (B, H, W, 3), or a list of "
            f"images, got {type(images).__name__}"
        )
    if images.ndim != 4:
        raise ValueError(
            f"{name} must be a batch of shape (B, 3, H, W) or (B, H, W, 3), got shape "
            f"{tuple(images.shape)}; for one image use images[None] or [image]"
        )
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty: pass at least one image")
    return [images[i] for i in range(images.shape[0])]


def split_maps(maps: Any, count: int, name: str) -> list[np.ndarray]:
    """Maps for ``count`` images -> list of (h, w) arrays.

    Accepts (B, h, w), (B, heads, h, w) (heads averaged: the summary of a multi-head block),
    or a sequence of B maps; the batch size must equal ``count``.
    """
    if isinstance(maps, (list, tuple)):
        items = [to_numpy(m, f"{name}[{i}]") for i, m in enumerate(maps)]
    else:
        array = to_numpy(maps, name)
        if array.ndim == 4:
            array = array.astype(np.float32).mean(axis=1)
        if array.ndim != 3:
            raise ValueError(f"{name} must have shape (B, h, w) or (B, heads, h, w), got shape {tuple(array.shape)}")
        items = list(array)
    if len(items) != count:
        raise ValueError(f"{name} holds {len(items)} maps but there are {count} images; pass one map per image")
    return items
