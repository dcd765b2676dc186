"""Raw attention: the CA-Stream's own softmax map, as a pytorch-grad-cam style method.

The attention ``a = softmax(F q / sqrt(d))`` of a CA block is a class-agnostic CAM (paper
eq. 5): the features weighted by the query. It comes with the CA forward pass, so this
method costs one forward pass of the model (no backward, no extra passes) plus a resize.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from ..model import CAModel
from ..runtime import eval_mode, model_device
from ._maps import minmax_scale, scale_to_input, upsample

__all__ = ["RawAttention"]

HeadReduction = Literal["mean", "max"]
Fuse = Literal["mean", "max", "product"]
_FUSES = ("mean", "max", "product")


class RawAttention:
    """The CA-Stream's attention map, called like a pytorch-grad-cam method.

    ``cam(input_tensor, targets=None)`` returns a float32 numpy array (B, H, W) with values in
    [0, 1] at the input resolution: the chosen block's softmax attention, heads reduced,
    min-max scaled, resized bilinearly (``align_corners=False``) and min-max scaled again,
    exactly as pytorch-grad-cam post-processes its maps. A constant map (a 1x1 final feature
    map, or a uniform attention) carries no spatial information and becomes all zeros.

    ``targets`` is accepted for drop-in compatibility and ignored: the map is class-agnostic.
    (A class-specific stream picks its query as the model does: by the GAP prediction.)

    Args:
        model: a :class:`~xai_pool.CAModel`; the map is always computed with CA pooling,
            whatever ``model.pooling`` is (it is restored afterwards).
        block: index of the stream block whose attention is returned; ``-1`` (default) is the
            last block, the one that pools the features the classifier sees. A sequence of
            indices fuses several blocks.
        head_reduction: how the heads of a multi-head block are combined: ``"mean"``
            (default; the mean of softmax maps is itself a distribution), ``"max"``, or an
            int selecting one head.
        use_all_blocks: fuse the maps of every block (overrides ``block``).
        fuse: how several blocks are combined: ``"mean"`` (default) or ``"max"`` of the
            per-block scaled maps, or ``"product"`` of the per-block attention probabilities
            (a soft AND across scales, computed in log space).
        target_layers: ignored; accepted so that ``RawAttention(model=m, target_layers=l)``
            works like every pytorch-grad-cam method.
        reshape_transform: ignored, for the same reason.

    Example:
        >>> with RawAttention(model) as cam:                       # doctest: +SKIP
        ...     maps = cam(input_tensor=images)                    # (B, H, W) in [0, 1]
    """

    uses_gradients = False

    def __init__(
        self,
        model: CAModel,
        *,
        block: int | Sequence[int] = -1,
        head_reduction: HeadReduction | int = "mean",
        use_all_blocks: bool = False,
        fuse: Fuse = "mean",
        target_layers: Any = None,
        reshape_transform: Any = None,
    ) -> None:
        if not isinstance(model, CAModel):
            raise TypeError(
                f"RawAttention needs a CAModel (the attention comes from its CA-Stream), got "
                f"{type(model).__name__}; wrap the classifier with xai_pool.attach_stream(model) first, or, for a "
                "model that pools by attention itself (class-token ViT, CaiT, attention pools), use "
                "xai_pool.saliency.OwnAttention(model) (xai_pool.explain(model, x, 'raw_attention') picks it)"
            )
        if fuse not in _FUSES:
            raise ValueError(f"fuse must be one of {', '.join(_FUSES)}, got {fuse!r}")
        valid = head_reduction in ("mean", "max") or isinstance(head_reduction, int)
        if isinstance(head_reduction, bool) or not valid:
            raise ValueError(f"head_reduction must be 'mean', 'max' or a head index (int), got {head_reduction!r}")
        heads = model.stream.config.heads
        if isinstance(head_reduction, int) and not -heads <= head_reduction < heads:
            raise ValueError(f"head_reduction={head_reduction} is out of range for a stream with {heads} head(s)")
        self.model = model
        self.blocks = self._check_blocks(block, model.stream.num_blocks, use_all_blocks)
        self.head_reduction = head_reduction
        self.fuse = fuse
        self.outputs: Tensor | None = None  # logits of the last call (detached), as BaseCAM keeps them

    @staticmethod
    def _check_blocks(block: int | Sequence[int], n_blocks: int, use_all: bool) -> list[int]:
        if use_all:
            return list(range(n_blocks))
        indices = [block] if isinstance(block, int) else list(block)
        if not indices or not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
            raise TypeError(f"block must be an int or a non-empty sequence of ints, got {block!r}")
        bad = [i for i in indices if not -n_blocks <= i < n_blocks]
        if bad:
            raise ValueError(
                f"block index {bad[0]} is out of range: the stream has {n_blocks} blocks (use 0..{n_blocks - 1} or -1)"
            )
        return sorted({i % n_blocks for i in indices})

    # ------------------------------------------------------------------ pytorch-grad-cam protocol
    def __enter__(self) -> RawAttention:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.outputs = None  # nothing else to release: no hooks are ever left on the model

    def __call__(
        self,
        input_tensor: Tensor,
        targets: Sequence[Any] | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """Attention maps (B, H, W), float32 in [0, 1]; ``targets`` is ignored.

        Raises:
            ValueError: ``aug_smooth`` or ``eigen_smooth`` was requested (not defined for a
                single softmax map), or the input is not a 4-D image batch.
        """
        if aug_smooth or eigen_smooth:
            raise ValueError("RawAttention has no aug_smooth/eigen_smooth: the attention is already one map per image")
        return self.forward(input_tensor).cpu().numpy()

    def forward(self, input_tensor: Tensor) -> Tensor:
        """Like ``__call__`` but returns a float32 tensor on the model's device."""
        if not isinstance(input_tensor, Tensor) or input_tensor.ndim != 4:
            shape = tuple(input_tensor.shape) if isinstance(input_tensor, Tensor) else type(input_tensor).__name__
            raise ValueError(f"input_tensor must be a 4-D image batch (B, C, H, W), got {shape}")
        device = model_device(self.model, input_tensor.device)
        with eval_mode(self.model), torch.inference_mode():
            logits, attentions = self.model.forward_with_attention(input_tensor.to(device))
            self.outputs = logits.detach()
            maps = [self._reduce_heads(attentions[i]) for i in self.blocks]
            return self._fuse(maps, tuple(input_tensor.shape[-2:]))

    def _reduce_heads(self, attention: Tensor) -> Tensor:
        if isinstance(self.head_reduction, int):
            return attention[:, self.head_reduction]
        if self.head_reduction == "max":
            return attention.amax(dim=1)
        return attention.mean(dim=1)

    def _fuse(self, maps: list[Tensor], size: tuple[int, int]) -> Tensor:
        if len(maps) == 1:
            return scale_to_input(maps[0], size)
        if self.fuse == "product":
            # Sum of logs: a product of a dozen probabilities ~1e-4 would underflow float32.
            log_sum = sum(upsample(m, size).clamp_min(1e-30).log() for m in maps)
            return minmax_scale(torch.exp(log_sum - log_sum.flatten(1).amax(dim=1)[:, None, None]))
        stacked = torch.stack([scale_to_input(m, size) for m in maps])
        fused = stacked.mean(dim=0) if self.fuse == "mean" else stacked.amax(dim=0)
        return minmax_scale(fused)
