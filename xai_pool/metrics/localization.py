"""Localisation metrics: pointing game (Zhang et al.) and energy-based pointing game (Score-CAM).

Both compare the normalised map S (see :mod:`xai_pool.metrics.maps`) with a boolean object
mask at the image resolution.

- Pointing game: the point is the maximum of S; when several pixels share the maximum, the
  first in raster order (the pixel ranked first by insertion/deletion, and what
  ``argmax`` returns). Hit (100) when a mask pixel lies within ``tolerance`` pixels
  (Euclidean distance) of the point, else 0. ``tolerance=0`` asks for the point itself to be
  in the mask; Zhang et al. use 15 px at ImageNet scale.
- Energy-based pointing game: 100 sum(S mask) / sum(S).

A constant map has no peak and no mass (S = 0): it scores 0 on both.
"""

from __future__ import annotations

import torch

__all__ = ["energy_pointing_game", "pointing_game"]


def pointing_game(
    scores: torch.Tensor, masks: torch.Tensor, constant: torch.Tensor, tolerance: float = 0.0
) -> torch.Tensor:
    """Per-image pointing game hit, in percent.

    Args:
        scores: (B, H, W) maps (their argmax is the point; any monotone version of S works).
        masks: (B, H, W) bool object masks.
        constant: (B,) bool, True for maps that count as a miss.
        tolerance: radius in pixels around the point.

    Returns:
        (B,) float64: 100 for a hit, 0 for a miss.

    Raises:
        ValueError: ``tolerance`` is negative.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels; got {tolerance}")
    batch, height, width = scores.shape
    point = scores.reshape(batch, -1).argmax(dim=1)
    py = (point // width).view(-1, 1, 1)
    px = (point % width).view(-1, 1, 1)
    ys = torch.arange(height, device=scores.device).view(1, -1, 1)
    xs = torch.arange(width, device=scores.device).view(1, 1, -1)
    near = (ys - py) ** 2 + (xs - px) ** 2 <= tolerance**2
    hit = (near & masks.to(scores.device)).flatten(1).any(dim=1) & ~constant.to(scores.device)
    return 100 * hit.to(torch.float64)


def energy_pointing_game(normalized: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per-image share of the map's mass inside the mask, in percent (0 for an all-zero map).

    Args:
        normalized: (B, H, W) maps in [0, 1].
        masks: (B, H, W) bool object masks.

    Returns:
        (B,) float64 values in [0, 100].
    """
    s = normalized.to(torch.float64).flatten(1)
    inside = (s * masks.to(s.device).flatten(1)).sum(dim=1)
    total = s.sum(dim=1)
    return torch.where(
        total > 0,
        100 * inside / torch.where(total > 0, total, torch.ones_like(total)),
        torch.zeros_like(total),
    )
