"""Localisation metrics: pointing game (Zhang et al.) and energy-based pointing game (Score-CAM).

Both compare the normalised map S (see :mod:`xai_pool.metrics.maps`) with a boolean object
mask at the image resolution.

- Pointing game: the point is the maximum of S. A point hits when a mask pixel lies within
  ``tolerance`` pixels (Euclidean distance) of it; ``tolerance=0`` asks for the point itself
  to be in the mask (Zhang et al. use 15 px at ImageNet scale). When several pixels share
  the maximum, ``ties`` decides:

  - ``"first"`` (default): the first maximum in raster order (row by row, left to right;
    the pixel ranked first by insertion/deletion, and what ``argmax`` returns) is the point:
    100 for a hit, else 0;
  - ``"fraction"``: every maximal pixel is a point and the score is 100 times the fraction
    of them that hit (with one maximum, the same as ``"first"``).

  Quantus's ``PointingGame`` counts a hit when ANY maximal pixel hits; neither rule here does,
  so a map cannot score by being flat.
- Energy-based pointing game: 100 sum(S mask) / sum(S).

A constant map has no peak and no mass (S = 0): it scores 0 on both, whatever ``ties`` is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["POINTING_TIES", "energy_pointing_game", "pointing_game"]

#: Tie rules of :func:`pointing_game`.
POINTING_TIES: tuple[str, ...] = ("first", "fraction")


def pointing_game(
    scores: torch.Tensor,
    masks: torch.Tensor,
    constant: torch.Tensor,
    tolerance: float = 0.0,
    *,
    ties: str = "first",
) -> torch.Tensor:
    """Per-image pointing game, in percent.

    Args:
        scores: (B, H, W) maps (their maximum is the point; any monotone version of S works).
        masks: (B, H, W) bool object masks.
        constant: (B,) bool, True for maps that count as a miss.
        tolerance: radius in pixels around the point.
        ties: ``"first"`` (the first maximum in raster order is the point: 0 or 100) or
            ``"fraction"`` (100 times the fraction of the maximal pixels that hit).

    Returns:
        (B,) float64: 100 for a hit, 0 for a miss; with ``ties="fraction"`` any value in [0, 100].

    Raises:
        ValueError: ``tolerance`` is negative or ``ties`` is unknown.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels; got {tolerance}")
    if ties not in POINTING_TIES:
        raise ValueError(
            f"ties must be one of {POINTING_TIES} (the pointing game's rule for tied maxima); got {ties!r}"
        )
    batch = scores.shape[0]
    # a point hits exactly when it lies in the mask dilated by a disc of radius `tolerance`
    reach = _dilate(masks.to(scores.device), tolerance).flatten(1)
    flat = scores.reshape(batch, -1)
    if ties == "first":
        hit = reach.gather(1, flat.argmax(dim=1, keepdim=True)).squeeze(1).to(torch.float64)
    else:
        maximal = flat == flat.amax(dim=1, keepdim=True)
        hit = (maximal & reach).sum(dim=1).to(torch.float64) / maximal.sum(dim=1)
    return 100 * torch.where(constant.to(scores.device), torch.zeros_like(hit), hit)


def _dilate(masks: torch.Tensor, radius: float) -> torch.Tensor:
    """Pixels within Euclidean distance ``radius`` of a mask pixel, (B, H, W) bool."""
    if radius < 1:
        return masks.bool()
    # Beyond the image diagonal a larger disc reaches no further pixel: clamp the kernel, not the rule.
    r = min(math.floor(radius), math.ceil(math.hypot(masks.shape[-2], masks.shape[-1])))
    offsets = torch.arange(-r, r + 1, device=masks.device, dtype=torch.float64)
    disc = (offsets.view(-1, 1) ** 2 + offsets.view(1, -1) ** 2 <= radius**2).to(torch.float64)
    # counts of mask pixels under the disc; float64 sums of 0/1 are exact
    counts = F.conv2d(masks.to(torch.float64).unsqueeze(1), disc[None, None], padding=r)
    return counts.squeeze(1) > 0.5


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
