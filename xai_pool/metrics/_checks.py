"""Input validation and conversion shared by the metric functions.

Every public metric entry point goes through these helpers so that a wrong input fails
early with a message naming the argument and the fix, never deep inside a forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..validation import check_finite

__all__ = [
    "as_images",
    "as_labels",
    "as_masks",
    "as_maps",
    "as_channel_stats",
    "check_label_range",
    "check_probabilities",
]


def _to_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (list, tuple)):
        try:
            return torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a tensor or numpy array; got a ragged {type(value).__name__}") from err
    raise TypeError(f"{name} must be a torch.Tensor or numpy array; got {type(value).__name__}")


def as_images(images: Any) -> torch.Tensor:
    """Check the normalised image batch: a floating (B, C, H, W) tensor."""
    x = _to_tensor(images, "images")
    if not x.is_floating_point():
        raise TypeError(
            f"images must be a floating-point tensor normalised exactly as the model expects; got "
            f"{x.dtype}. Convert uint8 images with x.float() / 255 and normalise with "
            f"mean/std first."
        )
    if x.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W); got shape {tuple(x.shape)}")
    # NaN/inf pixels would turn every probability, hence every score, into NaN.
    check_finite(x, "images", fix="metrics need finite images: fix the preprocessing or drop those images")
    return x


def as_maps(saliency: Any, batch: int) -> torch.Tensor:
    """Check the saliency maps: a real-valued (B, h, w) array at any resolution."""
    s = _to_tensor(saliency, "saliency")
    if s.is_complex() or s.dtype == torch.bool:
        raise TypeError(f"saliency must hold real numbers; got {s.dtype}")
    if s.ndim == 4 and s.shape[1] == 1:
        raise ValueError(
            f"saliency must have shape (B, h, w); got {tuple(s.shape)}. Drop the channel axis with saliency[:, 0]."
        )
    if s.ndim != 3:
        raise ValueError(f"saliency must have shape (B, h, w); got shape {tuple(s.shape)}")
    if s.shape[0] != batch:
        raise ValueError(f"saliency has {s.shape[0]} maps but images has {batch} images; pass one map per image")
    if s.shape[1] == 0 or s.shape[2] == 0:
        raise ValueError(f"saliency maps must not be empty; got shape {tuple(s.shape)}")
    if not s.is_floating_point() or s.dtype in (torch.float16, torch.bfloat16):
        s = s.float()
    return s


def as_labels(labels: Any, batch: int) -> torch.Tensor | None:
    """Check the class indices: an integer (B,) array of non-negative values, or None."""
    if labels is None:
        return None
    y = _to_tensor(labels, "labels")
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise TypeError(f"labels must be integer class indices; got {y.dtype}. Use labels.long().")
    if y.ndim != 1 or y.shape[0] != batch:
        raise ValueError(f"labels must have shape ({batch},), one class index per image; got shape {tuple(y.shape)}")
    if batch and int(y.min()) < 0:
        raise ValueError(f"labels must be class indices >= 0; got {int(y.min())}")
    return y.long()


def check_probabilities(probs: np.ndarray, what: str) -> None:
    """Raise when the model gave non-finite scores (finite images, non-finite logits or substrates)."""
    if not np.isfinite(probs).all():
        bad = int((~np.isfinite(probs)).sum())
        raise ValueError(
            f"the model returned non-finite logits for {bad} of {probs.size} {what}: its weights or outputs hold "
            "NaN/inf, or an insertion/deletion substrate does; check model(images) and the substrates are finite"
        )


def check_label_range(labels: torch.Tensor, num_classes: int) -> None:
    """Raise when a label is not a valid index into the model's ``num_classes`` outputs."""
    if labels.numel() and int(labels.max()) >= num_classes:
        raise ValueError(f"labels must be < {num_classes}, the number of model outputs; got {int(labels.max())}")


def as_masks(masks: Any, batch: int, size: tuple[int, int]) -> torch.Tensor | None:
    """Check object masks: (B, H, W) bool; 0/1 integer or float masks are accepted as well."""
    if masks is None:
        return None
    m = _to_tensor(masks, "masks")
    expected = (batch, *size)
    if tuple(m.shape) != expected:
        raise ValueError(
            f"masks must have shape (B, H, W) = {expected}, the images' batch and size; got {tuple(m.shape)}"
        )
    if m.dtype == torch.bool:
        return m
    if m.is_complex():
        raise TypeError(f"masks must be bool (or 0/1 numbers); got {m.dtype}")
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError("masks must be bool or contain only 0 and 1; threshold soft masks first (e.g. masks > 0.5)")
    return m != 0


def as_channel_stats(value: Sequence[float] | torch.Tensor, name: str, channels: int) -> torch.Tensor:
    """Turn ``mean``/``std`` into a (1, C, 1, 1) float64 tensor."""
    t = torch.as_tensor(value, dtype=torch.float64).flatten()
    if t.numel() == 1:
        t = t.expand(channels)
    if t.numel() != channels:
        raise ValueError(
            f"{name} has {t.numel()} values but images have {channels} channels; "
            f"pass {name}= with the "
            f"per-channel {name} of the images' normalisation"
        )
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite")
    if name == "std" and bool((t == 0).any()):
        raise ValueError("std must be non-zero")
    return t.view(1, channels, 1, 1)
