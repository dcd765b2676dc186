"""Check that a tapped feature's positions follow the image: no scrambled or transposed grid.

Shapes cannot tell a raster-ordered token sequence from an unrolled one (Hiera's mask-unit
order), nor a (B, C, h, w) map from a (B, C, w, h) one on a square input. Values can: the
model runs on four copies of the probe batch, each with a bump over one quadrant of the image
(top-left, top-right, bottom-left, bottom-right), and in every tapped feature, read in its
layout, the change must be largest in the same quadrant of the grid, for all four. A
transposed grid swaps the off-diagonal quadrants, a scrambled one picks quadrants at random
(all four right by chance: 1 in 256). Models that mix all positions (global attention) still
pass: the residual path keeps each change strongest where it entered. Features whose grid is
smaller than 2x2 carry no order and are not checked.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .layout import TapLayout

__all__ = ["QUADRANTS", "bumped", "quadrant_response", "follows_image", "run_with_bumps"]

QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
_BUMP = 4.0


def bumped(images: Tensor, quadrant: int) -> Tensor:
    """``images`` plus a strong bump over one quadrant (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)."""
    out = images.clone()
    height, width = images.shape[-2:]
    rows = slice(0, height // 2) if quadrant < 2 else slice(height - height // 2, height)
    cols = slice(0, width // 2) if quadrant % 2 == 0 else slice(width - width // 2, width)
    out[..., rows, cols] += _BUMP
    return out


def quadrant_response(clean: Tensor, changed: Tensor, layout: TapLayout, image_size: tuple[int, int]) -> Tensor | None:
    """Mean absolute change per grid quadrant (in :data:`QUADRANTS` order), or None if the grid is under 2x2."""
    a = layout.to_nchw(clean, image_size).float()
    b = layout.to_nchw(changed, image_size).float()
    delta = (a - b).abs().mean(dim=(0, 1))  # (h, w)
    h, w = delta.shape
    if h < 2 or w < 2:
        return None
    # Odd sizes: the middle row/column belongs to no quadrant.
    top, left, bottom, right = h // 2, w // 2, h - h // 2, w - w // 2
    return torch.stack(
        [
            delta[:top, :left].mean(),
            delta[:top, right:].mean(),
            delta[bottom:, :left].mean(),
            delta[bottom:, right:].mean(),
        ]
    )


def follows_image(clean: Tensor, changed: Sequence[Tensor], layout: TapLayout, image_size: tuple[int, int]) -> bool:
    """True if, for each bumped quadrant, the feature changed most in that quadrant.

    Args:
        clean: the feature on the probe batch.
        changed: the feature on the four bumped copies, in :data:`QUADRANTS` order.
        layout: how to read the feature.
        image_size: (H, W) of the probe images.
    """
    for quadrant, feature in enumerate(changed):
        response = quadrant_response(clean, feature, layout, image_size)
        if response is None:
            return True
        if int(response.argmax()) != quadrant:
            return False
    return True


def run_with_bumps(model: nn.Module, images: Tensor, modules: Sequence[str]) -> dict[str, list[object]]:
    """For each module: its output (and, keyed ``"<name>:in"``, its input) on the four bumped copies.

    The four copies run as one batch; the lists hold one slice of the batch per quadrant.
    """
    batch = images.shape[0]
    found: dict[str, object] = {}
    handles = []

    def make(name: str):
        def hook(_module: nn.Module, inputs: tuple, output: object) -> None:
            found.setdefault(name, output)
            found.setdefault(f"{name}:in", inputs[0] if inputs else None)

        return hook

    try:
        for name in dict.fromkeys(modules):
            handles.append(model.get_submodule(name).register_forward_hook(make(name)))
        with torch.no_grad():
            model(torch.cat([bumped(images, q) for q in range(4)]))
    finally:
        for handle in handles:
            handle.remove()
    return {key: [_slice(value, q * batch, (q + 1) * batch) for q in range(4)] for key, value in found.items()}


def _slice(value: object, start: int, stop: int) -> object:
    if isinstance(value, Tensor):
        return value[start:stop]
    if isinstance(value, (tuple, list)):
        return [_slice(v, start, stop) for v in value]
    return value
