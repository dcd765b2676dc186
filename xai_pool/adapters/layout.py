"""Feature layouts: how a tapped tensor holds its spatial grid, and its conversion to (B, C, h, w).

A CA block attends over the ``h * w`` positions of a (B, C, h, w) map. Models hand their
features over in three layouts, each recorded per tap in the model profile:

- ``"nchw"``: (B, C, h, w), the layout of torchvision and timm CNNs;
- ``"nhwc"``: (B, h, w, C), channels last (timm Swin, MambaOut, samvit blocks, torchvision Swin);
- ``"tokens"``: (B, N, C) with ``N = prefix + h * w``: ``prefix`` class/register tokens, then
  the patch tokens in raster order (ViT, BEiT, mixers...). Only the patch tokens are
  attended over; the grid side is the input side divided by ``reduction`` (the patch size).

The layout of a tap is measured, never guessed: :mod:`xai_pool.adapters.probe` runs the model at
two input sizes and finds the dimensions that scale with the image (spatial) and the one that
does not (channels). A tap whose layout cannot be determined is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

__all__ = ["Layout", "LAYOUTS", "TapLayout", "grid_from_tokens"]

Layout = Literal["nchw", "nhwc", "tokens"]
LAYOUTS: tuple[str, ...] = ("nchw", "nhwc", "tokens")


def grid_from_tokens(patches: int, image_size: tuple[int, int], reduction: int) -> tuple[int, int]:
    """The (h, w) patch grid holding ``patches`` tokens for an input of ``image_size`` (H, W).

    Patch embeddings floor or ceil ``H / reduction`` depending on their padding; the grid is
    the one of those candidates whose product is the token count.

    Raises:
        ValueError: no grid of that input size holds ``patches`` tokens.
    """
    height, width = image_size
    candidates = {(height // reduction, width // reduction), (-(-height // reduction), -(-width // reduction))}
    for h, w in sorted(candidates):
        if h * w == patches:
            return h, w
    raise ValueError(
        f"{patches} patch tokens do not form the grid of a {height}x{width} input with {reduction}-pixel patches; "
        "feed the model the input size it was built for"
    )


@dataclass(frozen=True)
class TapLayout:
    """How one tapped tensor holds its features.

    Args:
        kind: ``"nchw"``, ``"nhwc"`` or ``"tokens"``.
        channels: the feature width C.
        prefix_tokens: tokens layout only: class/register tokens before the patch tokens.
        reduction: tokens layout only: input pixels per patch side (the grid is H/reduction x W/reduction).
    """

    kind: Layout = "nchw"
    channels: int = 0
    prefix_tokens: int = 0
    reduction: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.kind!r}")
        if self.kind == "tokens" and not self.reduction:
            raise ValueError("a tokens layout needs reduction (the patch size in input pixels) to find the grid")
        if self.prefix_tokens < 0:
            raise ValueError(f"prefix_tokens must be >= 0, got {self.prefix_tokens}")

    @property
    def rank(self) -> int:
        """The number of dimensions of a tensor in this layout (batch included)."""
        return 3 if self.kind == "tokens" else 4

    def channels_of(self, tensor: Tensor) -> int:
        """The channel width of ``tensor`` read in this layout."""
        return int(tensor.shape[1] if self.kind == "nchw" else tensor.shape[-1])

    def to_nchw(self, tensor: Tensor, image_size: tuple[int, int]) -> Tensor:
        """``tensor`` as a (B, C, h, w) view (a copy only for token sequences).

        Args:
            tensor: a feature tensor in this layout.
            image_size: (H, W) of the network input, needed to unflatten token sequences.

        Raises:
            ValueError: the tensor's rank or width does not match this layout.
        """
        if tensor.ndim != self.rank or (self.channels and self.channels_of(tensor) != self.channels):
            raise ValueError(
                f"expected a {self.kind} feature tensor with {self.channels} channels, got shape "
                f"{tuple(tensor.shape)}; the model's layout differs from its profile"
            )
        if self.kind == "nchw":
            return tensor
        if self.kind == "nhwc":
            return tensor.permute(0, 3, 1, 2)
        patches = tensor[:, self.prefix_tokens :]
        h, w = grid_from_tokens(patches.shape[1], image_size, int(self.reduction or 1))
        return patches.transpose(1, 2).reshape(tensor.shape[0], tensor.shape[2], h, w)

    def describe(self) -> str:
        """A short human-readable description, e.g. ``tokens (1 prefix, 16 px patches)``."""
        if self.kind == "tokens":
            return f"tokens ({self.prefix_tokens} prefix, {self.reduction} px patches)"
        return self.kind
