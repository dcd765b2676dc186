"""Raw attention from a model's own attention pooling, as a pytorch-grad-cam style method.

For classifiers that already pool by attention (a class token read after the last block:
ViT, DeiT, EVA, BEiT, torchvision's ViT; class attention: CaiT, XCiT; timm's
``AttentionPoolLatent``, ``AttentionPool2d``, ``SimPool2d``) the pooling query's attention
over the patches is the paper's raw-attention saliency, with no training: ``xai_pool.explain(
model, x, "raw_attention")`` on the unwrapped model uses this class. The weights are read during
the model's own forward pass (see :mod:`xai_pool.adapters.attention`); the model is not changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from ..adapters import resolve_attention_pooling
from ..adapters.attention import capture_attention
from ..runtime import eval_mode, model_device
from ._maps import scale_to_input

__all__ = ["OwnAttention", "attention_rollout"]


def attention_rollout(blocks: Sequence[Tensor]) -> Tensor:
    """Attention rollout (Abnar & Zuidema, 2020) of self-attention maps (B, heads, N, N), first to last.

    Heads are averaged, the residual connection is modelled as ``0.5 A + 0.5 I`` with rows
    renormalised, and the layers are composed: ``R = A_L ... A_1``. Returns R (B, N, N).
    """
    rollout = None
    for weights in blocks:
        a = weights.mean(dim=1)
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    if rollout is None:
        raise ValueError("attention rollout needs at least one self-attention block")
    return rollout


class OwnAttention:
    """A classifier's own pooling attention over its patches, called like a pytorch-grad-cam method.

    ``cam(input_tensor, targets=None)`` returns float32 (B, H, W) in [0, 1]: the pooling
    query's attention over the patch tokens (class token row, or all latent/class-attention
    queries averaged), heads reduced, min-max scaled, upsampled bilinearly and min-max scaled
    again, like every map of pytorch-grad-cam. ``targets`` is ignored: the map is class-agnostic.

    Args:
        model: a classifier that pools by attention (see the module docstring).
        rollout: attention rollout through every self-attention block instead of the last
            attention alone (class-token models only).
        head_reduction: ``"mean"`` (default), ``"max"`` or a head index.
        target_layers: ignored (pytorch-grad-cam's constructor convention).
        reshape_transform: ignored, likewise.

    Raises:
        ProfileError (a ValueError): the model computes no attention pooling over its patches.
        ValueError: ``rollout`` on a model whose pooling is not a class token of a self-attention.
    """

    uses_gradients = False

    def __init__(
        self,
        model: nn.Module,
        *,
        rollout: bool = False,
        head_reduction: Literal["mean", "max"] | int = "mean",
        target_layers: Any = None,
        reshape_transform: Any = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        valid = head_reduction in ("mean", "max") or isinstance(head_reduction, int)
        if isinstance(head_reduction, bool) or not valid:
            raise ValueError(f"head_reduction must be 'mean', 'max' or a head index (int), got {head_reduction!r}")
        self.model = model
        self.pooling = resolve_attention_pooling(model)
        if rollout and not self.pooling.blocks:
            raise ValueError(
                f"rollout needs a class token read after self-attention blocks; {type(model).__name__} pools with "
                f"{self.pooling.path!r} ({'class attention or latent queries' if self.pooling.rows == 'mean' else ''})"
            )
        self.rollout = rollout
        self.head_reduction = head_reduction
        self.outputs: Tensor | None = None

    def __enter__(self) -> OwnAttention:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.outputs = None  # no hook outlives a call

    def __call__(
        self,
        input_tensor: Tensor,
        targets: Sequence[Any] | None = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ) -> np.ndarray:
        """Attention maps (B, H, W), float32 in [0, 1]; ``targets`` is ignored."""
        if aug_smooth or eigen_smooth:
            raise ValueError("raw attention has no aug_smooth/eigen_smooth: the attention is already one map per image")
        return self.forward(input_tensor).cpu().numpy()

    def attention(self, input_tensor: Tensor) -> Tensor:
        """(B, heads, h, w): the pooling attention over the patch grid (or the rollout, heads = 1)."""
        pooling = self.pooling
        device = model_device(self.model, input_tensor.device)
        paths = list(dict.fromkeys([pooling.path, *(pooling.blocks if self.rollout else ())]))
        sizes: list[tuple[int, int]] = []
        pooled = self.model.get_submodule(pooling.path)

        def read_grid(_module: nn.Module, args: tuple) -> None:
            source = args[0] if args else None
            if isinstance(source, Tensor) and pooling.grid.kind != "tokens":
                sizes.append(tuple(pooling.grid.to_nchw(source, tuple(input_tensor.shape[-2:])).shape[-2:]))

        handle = pooled.register_forward_pre_hook(read_grid)
        try:
            with eval_mode(self.model), torch.no_grad(), capture_attention(self.model, paths) as seen:
                self.outputs = self.model(input_tensor.to(device))
        finally:
            handle.remove()
        last = [s.weights for s in seen if s.module == pooling.path]
        if not last:
            raise RuntimeError(f"the pooling attention {pooling.path!r} did not run")
        image_size = (int(input_tensor.shape[-2]), int(input_tensor.shape[-1]))
        grid = sizes[-1] if sizes else None
        if not self.rollout:
            return pooling.saliency(last[-1], image_size, grid)
        blocks = [s.weights for s in seen if s.module in pooling.blocks]
        rollout = attention_rollout(blocks)[:, None]  # (B, 1, N, N)
        return pooling.saliency(rollout, image_size, grid)

    def forward(self, input_tensor: Tensor) -> Tensor:
        """Like ``__call__`` but returns a float32 tensor on the model's device."""
        if not isinstance(input_tensor, Tensor) or input_tensor.ndim != 4:
            shape = tuple(input_tensor.shape) if isinstance(input_tensor, Tensor) else type(input_tensor).__name__
            raise ValueError(f"input_tensor must be a 4-D image batch (B, C, H, W), got {shape}")
        maps = self.attention(input_tensor)
        if isinstance(self.head_reduction, int):
            if not -maps.shape[1] <= self.head_reduction < maps.shape[1]:
                raise ValueError(f"head_reduction={self.head_reduction} is out of range for {maps.shape[1]} head(s)")
            reduced = maps[:, self.head_reduction]
        elif self.head_reduction == "max":
            reduced = maps.amax(dim=1)
        else:
            reduced = maps.mean(dim=1)
        return scale_to_input(reduced.float(), tuple(input_tensor.shape[-2:]))
