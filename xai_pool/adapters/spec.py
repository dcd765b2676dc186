"""StreamSpec: the user's word on where a stream attaches, for models discovery cannot read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import nn

from .layout import LAYOUTS

__all__ = ["StreamSpec", "resolve_module"]


@dataclass(frozen=True)
class StreamSpec:
    """Where the stream attaches in a model (module paths as in ``model.named_modules()``).

    Most models need no spec: :func:`~xai_pool.adapters.resolve_profile` finds the pooling and
    the stages itself. A spec is for models it refuses or places differently from your wish.

    Args:
        taps: modules whose outputs feed blocks 0..n-2, in forward order (the last block always
            reads the map that the global average pooling averages).
        pool: the global-average-pooling module; its input is the pooled map and its output
            is replaced by the stream's vector. Give ``pool`` *or* ``head``.
        target_layer: the default CAM target layer (default: the module producing the pooled map).
        family: a label for messages and docs.
        head: for pooling written as a function (``x.mean((2, 3))``, ``F.adaptive_avg_pool2d``):
            the classifier's first module; its input (the pooled vector) is replaced.
        pooled: with ``head``: the module whose output the model averages.
        layouts: per-module layout when it cannot be measured (``{"blocks.3": "nhwc"}``); values
            ``"nchw"``, ``"nhwc"`` or ``"tokens"``. Measured layouts must agree.
        prefix_tokens: for ``"tokens"`` layouts: class/register tokens before the patch tokens.

    Example:
        >>> StreamSpec(taps=("stem", "stage1"), pool="pool", target_layer="stage2")  # doctest: +SKIP
        >>> StreamSpec(taps=("stem",), head="fc", pooled="stage2")                  # functional GAP
    """

    taps: tuple[str, ...] = ()
    pool: str | None = None
    target_layer: str | None = None
    family: str = "custom"
    head: str | None = None
    pooled: str | None = None
    layouts: Mapping[str, str] = field(default_factory=dict)
    prefix_tokens: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.taps, str):
            raise TypeError(f"StreamSpec.taps must be a sequence of module paths, got the string {self.taps!r}")
        object.__setattr__(self, "taps", tuple(self.taps))
        if not all(isinstance(t, str) and t for t in self.taps):
            raise TypeError(f"StreamSpec.taps must hold non-empty module path strings, got {self.taps!r}")
        if (self.pool is None) == (self.head is None):
            raise ValueError(
                "StreamSpec needs exactly one of pool= (the global-average-pooling module) or head= (the "
                "classifier's first module, for pooling written as a function, with pooled= the averaged module)"
            )
        if self.pool is not None and (not isinstance(self.pool, str) or not self.pool):
            raise TypeError(f"StreamSpec.pool must be a module path string, got {self.pool!r}")
        if self.head is not None and (not isinstance(self.pooled, str) or not self.pooled):
            raise ValueError("StreamSpec(head=...) needs pooled= the module whose output the model averages")
        bad = {k: v for k, v in dict(self.layouts).items() if v not in LAYOUTS}
        if bad:
            raise ValueError(f"StreamSpec.layouts values must be one of {', '.join(LAYOUTS)}, got {bad}")
        object.__setattr__(self, "layouts", dict(self.layouts))


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    """Return the submodule at dotted ``path`` with an error that lists valid names."""
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n][:40]
        raise ValueError(f"the model has no submodule {path!r}; some valid names are: {', '.join(names)}") from None
