"""Check that a tapped feature's positions follow the image: no scrambled or transposed grid.

Shapes cannot tell a raster-ordered token sequence from an unrolled one (Hiera's mask-unit
order), nor a (B, C, h, w) map from a (B, C, w, h) one on a square input. Values can: the
model runs on four copies of the probe batch, each with a bump over one quadrant of the image
(top-left, top-right, bottom-left, bottom-right), and in every tapped feature, read in its
layout, the changes must line up with the bumped quadrants better than they do after any of
200 random shuffles of the grid (a permutation test, :func:`follows_image`). A transposed grid
swaps the off-diagonal quadrants and a scrambled one lines up no better than a shuffle; models
that mix all positions (global attention) still pass, because the residual path keeps each
change strongest where it entered. Grids smaller than 3x3, and grids whose change is nearly
uniform (a receptive field larger than the probe image), carry too little order to test:
they are kept, since nothing speaks against them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .layout import TapLayout

__all__ = ["QUADRANTS", "bumped", "change_map", "quadrant_masks", "follows_image", "run_with_bumps"]

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


def change_map(clean: Tensor, changed: Tensor, layout: TapLayout, image_size: tuple[int, int]) -> Tensor:
    """Mean absolute change per grid position (h, w), the feature read in ``layout``."""
    a = layout.to_nchw(clean, image_size).float()
    b = layout.to_nchw(changed, image_size).float()
    return (a - b).abs().mean(dim=(0, 1))


def quadrant_masks(h: int, w: int) -> Tensor:
    """(4, h, w) indicator of each quadrant (the middle row/column of odd sizes counts half)."""
    rows = torch.linspace(0.5 / h, 1 - 0.5 / h, h)
    cols = torch.linspace(0.5 / w, 1 - 0.5 / w, w)
    top = torch.where(rows < 0.5, 1.0, torch.where(rows > 0.5, 0.0, 0.5))
    left = torch.where(cols < 0.5, 1.0, torch.where(cols > 0.5, 0.0, 0.5))
    parts = [(top, left), (top, 1 - left), (1 - top, left), (1 - top, 1 - left)]
    return torch.stack([r[:, None] * c[None, :] for r, c in parts])


def _correlations(responses: Tensor, masks: Tensor) -> Tensor:
    """Correlation of each change map with its bumped quadrant: (..., 4)."""
    r = responses - responses.mean(dim=-1, keepdim=True)
    m = masks - masks.mean(dim=-1, keepdim=True)
    return (r * m).sum(dim=-1) / (r.norm(dim=-1) * m.norm(dim=-1) + 1e-12)


def follows_image(
    clean: Tensor,
    changed: Sequence[Tensor],
    layout: TapLayout,
    image_size: tuple[int, int],
    *,
    permutations: int = 200,
    flat_response: float = 0.3,
) -> bool:
    """True if the feature's changes line up with the bumped quadrants better than any shuffled grid does.

    Each change map must correlate positively with its own quadrant, and the mean correlation
    must beat its value after every one of ``permutations`` random shuffles of the grid
    positions (the same shuffle for the four maps, as a wrong token order would do).
    Grids of fewer than 3x3 positions carry too little order to test and pass, and so do
    grids whose change is nearly uniform (coefficient of variation under ``flat_response``: a
    receptive field larger than the probe image leaves no position information to check).
    Measured: Hiera's unrolled tokens change with a coefficient of variation of 1.2-1.7 and a
    correlation near 0 (refused); EfficientNet's stride-16 stage at 64 px, 0.1 (kept).

    Args:
        clean: the feature on the probe batch.
        changed: the feature on the four bumped copies, in :data:`QUADRANTS` order.
        layout: how to read the feature.
        image_size: (H, W) of the probe images.
        permutations: shuffles in the null distribution (a fixed seed: the answer is reproducible).
        flat_response: the coefficient of variation under which a change map counts as uniform.
    """
    maps = torch.stack([change_map(clean, feature, layout, image_size) for feature in changed])  # (4, h, w)
    _, h, w = maps.shape
    if h < 3 or w < 3:
        return True
    masks = quadrant_masks(h, w).flatten(1)
    flat = maps.flatten(1)
    if float((flat.std(dim=1) / (flat.mean(dim=1) + 1e-12)).mean()) < flat_response:
        return True  # the change is nearly the same everywhere (receptive field > image): no evidence either way
    observed = _correlations(flat, masks)  # (4,)
    if bool((observed <= 0).any()):
        return False  # a bump shows up away from its quadrant (a transposed grid fails here)
    generator = torch.Generator().manual_seed(0)
    order = torch.stack([torch.randperm(h * w, generator=generator) for _ in range(permutations)])
    null = _correlations(flat[:, order].transpose(0, 1), masks[None]).mean(dim=-1)  # (permutations,)
    return bool(observed.mean() > null.max())


def run_with_bumps(model: nn.Module, images: Tensor, modules: Sequence[str]) -> dict[str, list[object]]:
    """For each module: its output (and, keyed ``"<name>:in"``, its input) on the four bumped copies.

    The four copies run as one batch; the lists hold one slice of the batch per quadrant.
    """
    batch = images.shape[0]
    found: dict[str, object] = {}
    handles = []

    def make(name: str) -> Callable[[nn.Module, tuple, object], None]:
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
