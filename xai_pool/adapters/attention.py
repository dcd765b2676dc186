"""A model's own attention pooling: find it, and read its attention weights without changing the model.

Many classifiers already pool by attention: a class token read after the last self-attention
block (ViT, DeiT, EVA, BEiT with ``global_pool='token'``, torchvision's ViT), class-attention
blocks (CaiT, XCiT), timm's ``AttentionPoolLatent`` (``global_pool='map'``), ``AttentionPool2d``
(CLIP ResNets) and ``SimPool2d``. The attention of the pooling query over the patch tokens is
the raw-attention saliency of the paper (its eq. 5), with no training at all.

How the weights are read: during the attention module's own forward pass, a
``TorchFunctionMode`` sees the arguments of ``F.scaled_dot_product_attention`` (the q and k the
module computed, with its q/k norms, rotary embeddings and scale) or the output of its softmax
(modules that do not use the fused kernel), and the weights are recomputed from them:
``softmax(q k^T * scale + mask)``. Nothing in the model changes (no switch of timm's global
``fused_attn`` setting), and the model's output is the same as without the capture.

Which call is the pooling, and which of its rows and columns matter, is found from one probe
forward pass, not from class names: the pooling attention is the last attention computed before
the classifier; with as many queries as keys (self-attention) the pooling query is the first
token (the class token, or ``AttentionPool2d``'s mean token); with fewer queries (class
attention, latent queries, SimPool) all queries are averaged. The keys that are patches are the
last ``h * w``, where the patch grid comes from the layout of the tensor the attention module
reads (tokens with a measured patch size, or an NCHW map).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .discovery import LayoutOracle, canonical_producer, view_producer
from .layout import TapLayout
from .probe import Recording, layout_from_one_shape

__all__ = ["AttentionPooling", "AttentionCapture", "capture_attention", "find_attention_pooling"]

_SOFTMAXES = (torch.softmax, torch.Tensor.softmax, F.softmax)


@dataclass
class _Seen:
    module: str
    weights: Tensor  # (B, heads, queries, keys), float32 or wider


class AttentionCapture(TorchFunctionMode):
    """Records the attention weights computed inside given modules (by path), while they run.

    Use :func:`capture_attention`, which installs the hooks that tell this mode which module
    is running and removes them afterwards.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[_Seen] = []

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if self.stack and func is F.scaled_dot_product_attention:
            self.seen.append(_Seen(self.stack[-1], _sdpa_weights(*args, **kwargs)))
            return func(*args, **kwargs)
        if self.stack and func is F.multi_head_attention_forward:
            # nn.MultiheadAttention: the same call with its weights returned, per head.
            _, weights = func(*args, **{**kwargs, "need_weights": True, "average_attn_weights": False})
            self.seen.append(_Seen(self.stack[-1], weights.detach()[None] if weights.ndim == 3 else weights.detach()))
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        if self.stack and func in _SOFTMAXES and isinstance(out, Tensor) and out.ndim == 4:
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            if dim in (-1, 3):
                self.seen.append(_Seen(self.stack[-1], out.detach()))
        return out


def _sdpa_weights(
    query: Tensor,
    key: Tensor,
    value: Tensor | None = None,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    """The attention weights ``F.scaled_dot_product_attention`` applies (without dropout)."""
    q, k = query.detach(), key.detach()
    dtype = torch.promote_types(q.dtype, torch.float32)
    q, k = q.to(dtype), k.to(dtype)
    if enable_gqa and k.shape[-3] != q.shape[-3]:
        k = k.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = (q @ k.transpose(-2, -1)) * scale
    if is_causal:
        causal = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        logits = logits.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        mask = attn_mask.detach()
        logits = logits.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else logits + mask.to(dtype)
    return logits.softmax(dim=-1)


@contextlib.contextmanager
def capture_attention(model: nn.Module, paths: Sequence[str] | None = None) -> Iterator[list[_Seen]]:
    """Inside the block, every attention computed by a module in ``paths`` (all modules if None) is recorded.

    Yields the list of records ``(module path, weights (B, heads, queries, keys))``, filled as
    the model runs. The hooks and the mode are removed on exit, also after an exception.
    """
    mode = AttentionCapture()
    handles = []
    named = dict(model.named_modules())
    watched = list(named) if paths is None else list(paths)

    def make(path: str) -> tuple[Any, Any]:
        def enter(_module: nn.Module, _args: tuple) -> None:
            mode.stack.append(path)

        def leave(_module: nn.Module, _args: tuple, _output: Any) -> None:
            if mode.stack and mode.stack[-1] == path:
                mode.stack.pop()

        return enter, leave

    # nn.MultiheadAttention's inference fast path runs in C++ and never shows its weights:
    # turned off inside the block (same results), restored on exit.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        for path in watched:
            enter, leave = make(path)
            handles.append(named[path].register_forward_pre_hook(enter))
            handles.append(named[path].register_forward_hook(leave, always_call=True))
        torch.backends.mha.set_fastpath_enabled(False)
        with mode:
            yield mode.seen
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class AttentionPooling:
    """Where a model pools by attention, and how to read that attention as a saliency map.

    Args:
        path: the module whose forward computes the pooling attention (``blocks.11.attn``).
        rows: ``"first"`` (the class token's row of a self-attention) or ``"mean"`` (every query).
        key_prefix: keys before the patch tokens (class/register/mean tokens).
        grid: layout of the tensor the attention module reads, to find the patch grid.
        blocks: every self-attention module over the same tokens, in forward order (for rollout).
        target_layer: default CAM layer: the module producing what the pooling attention reads.
        target_layout: that module's output layout (pytorch-grad-cam's ``reshape_transform``).
        probe_size: the input size it was measured at (one the model accepts).
    """

    path: str
    rows: str
    key_prefix: int
    grid: TapLayout
    blocks: tuple[str, ...] = field(default_factory=tuple)
    target_layer: str | None = None
    target_layout: TapLayout | None = None
    probe_size: tuple[int, int] = (224, 224)

    def patch_grid(self, image_size: tuple[int, int], keys: int) -> tuple[int, int]:
        """The (h, w) grid of the patch keys for an input of ``image_size``."""
        if self.grid.kind == "tokens":
            from .layout import grid_from_tokens

            return grid_from_tokens(keys - self.key_prefix, image_size, int(self.grid.reduction or 1))
        raise ValueError("the grid of an NCHW/NHWC pooling input is read from the tensor itself")

    def saliency(self, weights: Tensor, image_size: tuple[int, int], grid: tuple[int, int] | None = None) -> Tensor:
        """(B, heads, h, w): the pooling queries' attention over the patches, rows reduced as configured."""
        rows = weights[:, :, :1] if self.rows == "first" else weights
        patches = rows[..., self.key_prefix :].mean(dim=2)  # (B, heads, patches)
        h, w = grid if grid is not None else self.patch_grid(image_size, weights.shape[-1])
        return patches.reshape(patches.shape[0], patches.shape[1], h, w)


def find_attention_pooling(
    model: nn.Module, recording: Recording, oracle: LayoutOracle, images: Tensor
) -> AttentionPooling:
    """Find the attention that pools the features into the classifier, from a probe pass.

    Args:
        model: the classifier.
        recording: a probe recording of ``model(images)`` (module calls).
        oracle: layouts of the recorded tensors.
        images: the probe batch of ``recording``.

    Raises:
        ValueError: the model computes no attention, or its last attention is not over a grid.
    """
    with torch.no_grad(), capture_attention(model) as seen:
        model(images)
    if not seen:
        raise ValueError("it computes no attention (no scaled_dot_product_attention or softmax over tokens)")
    last = seen[-1]
    call = recording.first(last.module)
    if call is None:
        raise ValueError(f"its last attention ({last.module!r}) runs in a module the probe did not record")
    source = call.input
    layout = oracle.layout(call, "input") if isinstance(source, Tensor) else None
    if layout is None and isinstance(source, Tensor):
        layout = layout_from_one_shape(tuple(source.shape), recording.image_size)
    if layout is None:
        raise ValueError(f"the input of its last attention ({last.module!r}) is not read as a patch grid")
    queries, keys = last.weights.shape[-2:]
    if layout.kind == "tokens":
        key_prefix = keys - (source.shape[1] - layout.prefix_tokens)
    elif layout.kind == "nchw":
        key_prefix = keys - source.shape[2] * source.shape[3]
    else:
        key_prefix = keys - source.shape[1] * source.shape[2]
    if key_prefix < 0:
        raise ValueError(f"its last attention ({last.module!r}) has fewer keys than patches")
    rows = "first" if queries == keys else "mean"
    blocks = tuple(dict.fromkeys(s.module for s in seen if s.weights.shape[-2:] == (keys, keys)))
    producer = canonical_producer(recording, source) or view_producer(recording, source, partial=True)
    target_layout = oracle.layout(producer) if producer is not None else None
    return AttentionPooling(
        path=last.module,
        rows=rows,
        key_prefix=key_prefix,
        grid=layout,
        blocks=blocks if rows == "first" else (),
        target_layer=producer.name if producer is not None else None,
        target_layout=target_layout,
        probe_size=recording.image_size,
    )
