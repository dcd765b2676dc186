"""Average Drop, Average Gain and Average Increase (Grad-CAM++, Opti-CAM).

p is the softmax probability of class c on the image x, o the same on the explanation
image E (x masked by the saliency map S, see :func:`explanation_images`). Per image, in percent:

- AD = 100 max(0, p - o) / p
- AG = 100 max(0, o - p) / (1 - p)
- AI = 100 [p < o]

The averages over images are what the papers report (:func:`xai_pool.metrics.summarize`).
Two limits are made explicit so that no finite input produces NaN:

- p == 1 (common in float32 and even in float64 for confident models): no gain is possible,
  AG = 0.
- p == 0 (float64 underflow, logit gap above ~745): no drop is possible, AD = 0.
"""

from __future__ import annotations

import torch

__all__ = [
    "average_drop",
    "average_gain",
    "average_increase",
    "explanation_images",
    "probabilities",
]


def probabilities(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Softmax probability of ``classes`` computed in float64 from ``logits`` (B, K)."""
    probs = torch.softmax(logits.to(torch.float64), dim=1)
    return probs.gather(1, classes.view(-1, 1).to(probs.device)).squeeze(1)


def average_drop(p: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """Per-image drop in percent, 100 max(0, p - o) / p, and 0 where p == 0."""
    drop = torch.clamp(p - o, min=0)
    return torch.where(p > 0, 100 * drop / torch.where(p > 0, p, torch.ones_like(p)), torch.zeros_like(p))


def average_gain(p: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """Per-image gain in percent, 100 max(0, o - p) / (1 - p), and 0 where p == 1."""
    room = 1 - p
    gain = torch.clamp(o - p, min=0)
    return torch.where(
        room > 0,
        100 * gain / torch.where(room > 0, room, torch.ones_like(room)),
        torch.zeros_like(p),
    )


def average_increase(p: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """Per-image increase indicator in percent: 100 where p < o, else 0."""
    return 100 * (p < o).to(torch.float64)


def explanation_images(
    images: torch.Tensor,
    maps: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    space: str = "pixel",
) -> torch.Tensor:
    """Mask images by their normalised maps.

    Args:
        images: (N, C, H, W) images in the model's input space.
        maps: (N, H, W) maps in [0, 1].
        mean: (1, C, 1, 1) normalisation mean (used for ``space="pixel"``).
        std: (1, C, 1, 1) normalisation std (used for ``space="pixel"``).
        space: ``"pixel"`` for normalize(denormalize(x) * S), the masking in [0, 1] RGB of the
            Grad-CAM++/Opti-CAM protocols; ``"input"`` for x * S in the model's input space.

    Returns:
        (N, C, H, W) explanation images in the model's input space, in ``images.dtype``.
    """
    s = maps.unsqueeze(1).to(images.dtype)
    if space == "input":
        return images * s
    mean = mean.to(images.device, images.dtype)
    std = std.to(images.device, images.dtype)
    return ((images * std + mean) * s - mean) / std
