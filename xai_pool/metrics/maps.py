"""Saliency map preprocessing: upsampling, per-image min-max normalisation, invalid maps.

All metrics see the same map S, built here:

1. the raw map (B, h, w) is upsampled bilinearly (``align_corners=False``) to the image
   size (H, W);
2. each map is min-max normalised to [0, 1].

A *constant* map (max == min on the raw map, before upsampling) carries no ranking and
min-max would divide 0 by 0. It is mapped to S = 0 everywhere: it explains nothing, so it
can never score better than an informative map on a metric where S masks the image, and its
pixel ranking for insertion/deletion is plain raster order (the stable tie-break).
The check is done on the raw map because bilinear weights can turn an exactly constant map
into one with rounding noise, which min-max would then blow up to [0, 1].

A map with NaN or inf is either rejected (``on_invalid="raise"``) or flagged invalid
(``on_invalid="skip"``), in which case its image gets NaN for every metric.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..minmax import minmax_normalize

__all__ = ["PreparedMaps", "prepare_maps"]


@dataclass(frozen=True)
class PreparedMaps:
    """Maps ready for the metrics.

    Attributes:
        scores: (B, H, W) float64 upsampled maps before normalisation. Ranking and argmax
            use these, so that rounding in the min-max shift cannot create ties. Zero for
            constant maps.
        normalized: (B, H, W) float64 maps min-max normalised to [0, 1] (the S of the
            definitions).
        constant: (B,) bool, True where the map was constant (before or after resizing).
        valid: (B,) bool, False where the raw map held NaN or inf.
    """

    scores: torch.Tensor
    normalized: torch.Tensor
    constant: torch.Tensor
    valid: torch.Tensor


def prepare_maps(saliency: torch.Tensor, size: tuple[int, int], *, on_invalid: str = "raise") -> PreparedMaps:
    """Upsample and min-max normalise a batch of maps (see the module docstring).

    Args:
        saliency: (B, h, w) floating tensor.
        size: the target (H, W), the images' size.
        on_invalid: ``"raise"`` to reject maps with NaN/inf, ``"skip"`` to flag them.

    Returns:
        The prepared maps; invalid maps are returned as zeros and flagged in ``valid``.

    Raises:
        ValueError: a map holds NaN or inf and ``on_invalid="raise"``, or ``on_invalid`` is unknown.
    """
    if on_invalid not in ("raise", "skip"):
        raise ValueError(f"on_invalid must be 'raise' or 'skip'; got {on_invalid!r}")
    # float64 so that the normalisation of any finite map stays finite (max - min of a
    # float32 map can overflow float32)
    saliency = saliency.to(torch.float64)
    flat = saliency.flatten(1)
    valid = torch.isfinite(flat).all(dim=1)
    if not bool(valid.all()):
        bad = torch.nonzero(~valid).flatten().tolist()
        if on_invalid == "raise":
            raise ValueError(
                f"saliency maps {bad[:10]} contain NaN or inf; fix the explainer, or pass "
                f"on_invalid='skip' to give those images NaN and count them"
            )
        saliency = torch.where(valid.view(-1, 1, 1), saliency, torch.zeros_like(saliency))
        flat = saliency.flatten(1)
    low = flat.amin(dim=1)
    high = flat.amax(dim=1)
    constant = high == low
    if tuple(saliency.shape[1:]) != tuple(size):
        up = F.interpolate(saliency.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
    else:
        up = saliency.clone()
    up_flat = up.flatten(1)
    # downsampling can also flatten a map (e.g. a checkerboard): treat it as constant too
    constant = constant | (up_flat.amax(dim=1) == up_flat.amin(dim=1))
    up[constant] = 0
    # min-max is scale invariant; dividing by the largest magnitude first keeps max - min
    # finite even for float64 maps near the overflow limit
    magnitude = up_flat.abs().amax(dim=1).view(-1, 1, 1)
    scaled = up / torch.where(magnitude > 0, magnitude, torch.ones_like(magnitude))
    # exact min-max (no eps); it maps the constant maps zeroed above to 0
    normalized = minmax_normalize(scaled)
    return PreparedMaps(scores=up, normalized=normalized, constant=constant, valid=valid)
