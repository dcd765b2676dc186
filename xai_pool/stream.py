"""The Cross-Attention Stream (CA-Stream) of Torres et al., section 3.3 and appendix E.

A :class:`CABlock` implements eq. (6) and (10): a query ``q`` of width ``d`` attends over the
``p = h*w`` tokens of a feature map ``F`` (B, d, h, w); the attention
``a = softmax(F^T q / sqrt(d))`` is a class-agnostic CAM (eq. 5); the pooled vector is the
attention-weighted sum of the tokens (eq. 6); a Linear maps it to the next query width
(eq. 10). A uniform attention makes the pooled vector exactly GAP.

:class:`CAStream` chains one block per tapped stage. It is a pure function of the list of
stage features, so it knows nothing about the backbone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CABlock", "CAStream", "StreamConfig"]


class CABlock(nn.Module):
    """One cross-attention block: attention pooling of ``F`` by ``q``, then a Linear.

    Args:
        dim: channel width ``d`` of the features (and of the incoming query).
        out_dim: width of the next query (the next stage's width, or the classifier's input).
        heads: number of heads; the channels are split into ``heads`` groups of ``d/heads``
            and each group has its own attention (scale ``1/sqrt(d/heads)``). 1 is the paper.
        project_kv: the paper's 'projca' variant (eq. 11): keys and values are linear
            projections (with bias) of the tokens instead of the tokens themselves.
    """

    def __init__(self, dim: int, out_dim: int, *, heads: int = 1, project_kv: bool = False) -> None:
        super().__init__()
        if heads < 1 or dim % heads:
            raise ValueError(
                f"heads={heads} must be a positive divisor of the block width {dim}; "
                f"choose heads among the divisors of every stage width"
            )
        self.dim, self.out_dim, self.heads = dim, out_dim, heads
        self.project_kv = project_kv
        self.key = nn.Linear(dim, dim) if project_kv else None
        self.value = nn.Linear(dim, dim) if project_kv else None
        self.proj = nn.Linear(dim, out_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The authors' initialisation: xavier-uniform weights, PyTorch's default biases.

        The authors' block builds its Linears with PyTorch's default initialisation and then
        re-initialises only the weights (xavier-uniform); the biases keep the default
        ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``. ``nn.Linear.reset_parameters`` redraws both, so
        calling this method again (e.g. in the randomisation sanity check) also redraws the biases.
        """
        for linear in (self.key, self.value, self.proj):
            if linear is not None:
                linear.reset_parameters()
                nn.init.xavier_uniform_(linear.weight)

    def attention_logits(self, query: Tensor, features: Tensor) -> Tensor:
        """Attention logits ``F^T q / sqrt(d_head)`` of shape (B, heads, h*w) (eq. 5)."""
        keys = self._tokens(features, self.key)  # (B, heads, p, dh)
        q = query.to(keys.dtype).reshape(query.shape[0], self.heads, 1, self.dim // self.heads)
        scale = 1.0 / math.sqrt(self.dim // self.heads)
        return (keys @ q.transpose(-1, -2)).squeeze(-1) * scale

    def forward(self, query: Tensor, features: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Pool ``features`` with ``query``.

        Args:
            query: (B, d).
            features: (B, d, h, w).

        Returns:
            ``(next_query, attention, pooled)``: next_query (B, out_dim) is the Linear of the
            pooled vector; attention (B, heads, h, w) sums to 1 over (h, w); pooled (B, d).
        """
        batch, dim, height, width = features.shape
        if dim != self.dim:
            raise ValueError(f"CABlock expects {self.dim} channels, got features of shape {tuple(features.shape)}")
        logits = self.attention_logits(query, features)
        # Softmax in at least float32: exp() of large fp16/bf16 logits would overflow, and a
        # float64 model keeps float64 (float32 would cost it 9 digits).
        attention = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(dim=-1)
        values = self._tokens(features, self.value)  # (B, heads, p, dh)
        pooled = (attention.to(values.dtype).unsqueeze(-2) @ values).reshape(batch, dim)
        next_query = self.proj(pooled)
        return next_query, attention.reshape(batch, self.heads, height, width), pooled

    def _tokens(self, features: Tensor, projection: nn.Linear | None) -> Tensor:
        batch, dim, height, width = features.shape
        tokens = features.flatten(2).transpose(1, 2)  # (B, p, d)
        if projection is not None:
            tokens = projection(tokens)
        return tokens.reshape(batch, height * width, self.heads, dim // self.heads).transpose(1, 2)

    def extra_repr(self) -> str:
        """The sizes shown by ``print(block)``."""
        return f"dim={self.dim}, out_dim={self.out_dim}, heads={self.heads}, project_kv={self.project_kv}"


@dataclass(frozen=True)
class StreamConfig:
    """Everything needed to rebuild a stream (stored in stream checkpoints).

    ``widths`` are the channel widths of the tapped stages the stream uses (after
    ``start_stage``); ``out_dim`` is the classifier's input width.
    """

    widths: tuple[int, ...]
    out_dim: int
    heads: int = 1
    project_kv: bool = False
    class_specific: bool = False
    num_classes: int | None = None
    start_stage: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A JSON-ready dict (``widths`` as a list), the inverse of :meth:`from_dict`."""
        data = asdict(self)
        data["widths"] = list(self.widths)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> StreamConfig:
        """The configuration stored by :meth:`to_dict` (``data`` is not modified)."""
        data = dict(data)
        data["widths"] = tuple(int(w) for w in data["widths"])
        return cls(**data)


class CAStream(nn.Module):
    """A stream of :class:`CABlock`: one block per stage feature, from a learned query.

    Block ``i`` attends over stage feature ``i`` and maps to the width of stage ``i+1``;
    the last block maps to ``out_dim`` and its output replaces GAP.
    """

    def __init__(self, config: StreamConfig) -> None:
        super().__init__()
        if not config.widths:
            raise ValueError("a stream needs at least one stage width")
        if config.class_specific and not config.num_classes:
            raise ValueError("class_specific=True needs num_classes (the classifier's output count)")
        self.config = config
        widths = list(config.widths)
        out_widths = widths[1:] + [config.out_dim]
        self.blocks = nn.ModuleList(
            CABlock(w_in, w_out, heads=config.heads, project_kv=config.project_kv)
            for w_in, w_out in zip(widths, out_widths, strict=True)
        )
        n_queries = config.num_classes if config.class_specific else 1
        # The authors draw the initial CLS token from N(1, 1).
        self.query = nn.Parameter(torch.empty(n_queries, widths[0]))
        nn.init.normal_(self.query, mean=1.0, std=1.0)

    @property
    def num_blocks(self) -> int:
        """The number of cross-attention blocks (one per tapped stage)."""
        return len(self.blocks)

    def initial_query(self, batch: int, class_index: Tensor | None = None) -> Tensor:
        """The initial query (B, d0); chosen per sample by ``class_index`` when class-specific."""
        if self.config.class_specific:
            if class_index is None:
                raise ValueError("a class-specific stream needs a class index per sample")
            return self.query[class_index.long()]
        return self.query.expand(batch, -1)

    def forward(self, features: list[Tensor], class_index: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """Run the stream over ``features`` (one tensor per block, (B, d_i, h_i, w_i)).

        Returns:
            ``(pooled, attentions)``: pooled (B, out_dim) replaces GAP; attentions is one
            (B, heads, h_i, w_i) softmax map per block.
        """
        if len(features) != self.num_blocks:
            raise ValueError(f"the stream has {self.num_blocks} blocks but got {len(features)} feature maps")
        query = self.initial_query(features[0].shape[0], class_index)
        attentions = []
        for block, feature in zip(self.blocks, features, strict=True):
            query, attention, _ = block(query, feature)
            attentions.append(attention)
        return query, attentions


def uniform_pool(features: Tensor) -> Tensor:
    """GAP written as attention pooling with a uniform attention (used by tests and docs)."""
    return F.adaptive_avg_pool2d(features, 1).flatten(1)
