"""Sparsity and complexity of saliency maps (model-free, computed on S at image resolution).

- Sparsity (Chalasani et al., 2020): Gini index of the map's values (Hurley & Rickard's
  form). With v sorted ascending, n values and ||v||_1 > 0,
  G = 1 - 2 sum_k (v_k / ||v||_1) (n - k + 1/2) / n, k = 1..n.
  0 for a uniform map, 1 - 1/n for a single hot pixel. Reported as 100 G.
- Complexity (Bhatt et al., 2020): entropy of the fractional contributions
  P = S / sum(S), divided by its maximum log(n) so that it lies in [0, 1]. Reported in
  percent: 0 for a single hot pixel, 100 for a uniform map. Higher is more complex.

A constant map (S = 0, see :mod:`xai_pool.metrics.maps`) is treated as uniform: sparsity 0,
complexity 100, the values of a map that attributes equally everywhere.
"""

from __future__ import annotations

import math

import torch

__all__ = ["complexity", "sparsity"]


def sparsity(normalized: torch.Tensor) -> torch.Tensor:
    """Per-image Gini index of the map, in percent.

    Args:
        normalized: (B, H, W) non-negative maps.

    Returns:
        (B,) float64 values in [0, 100).
    """
    v = torch.sort(normalized.to(torch.float64).flatten(1), dim=1).values
    n = v.shape[1]
    total = v.sum(dim=1, keepdim=True)
    share = v / torch.where(total > 0, total, torch.ones_like(total))
    k = torch.arange(1, n + 1, dtype=torch.float64, device=v.device)
    # clamp: rounding can leave a uniform map at -1e-16
    gini = torch.clamp(1 - 2 * (share * (n - k + 0.5) / n).sum(dim=1), min=0)
    return torch.where(total.squeeze(1) > 0, 100 * gini, torch.zeros_like(gini))


def complexity(normalized: torch.Tensor) -> torch.Tensor:
    """Per-image entropy of the map's fractional contributions, normalised by log(n), in percent.

    Args:
        normalized: (B, H, W) non-negative maps.

    Returns:
        (B,) float64 values in [0, 100].
    """
    s = normalized.to(torch.float64).flatten(1)
    n = s.shape[1]
    if n == 1:
        return torch.zeros(s.shape[0], dtype=torch.float64, device=s.device)
    total = s.sum(dim=1, keepdim=True)
    p = s / torch.where(total > 0, total, torch.ones_like(total))
    entropy = torch.clamp(-torch.special.xlogy(p, p).sum(dim=1), 0, math.log(n))
    return torch.where(total.squeeze(1) > 0, 100 * entropy / math.log(n), torch.full_like(entropy, 100.0))
