"""The model profile as data: :class:`ModelProfile`, its :class:`Tap` and :class:`PoolSite`.

How a profile is found is :func:`xai_pool.adapters.resolve_profile` (profile.py); this module
only holds what it finds, so that every part of the package can read it without importing the
machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor

from .layout import TapLayout
from .preprocessing import Preprocessing
from .spec import StreamSpec

__all__ = ["ModelProfile", "Tap", "PoolSite", "ProfileError", "PoolKind"]

PoolKind = Literal["module", "head_input"]


class ProfileError(ValueError):
    """A model cannot be profiled: the message says why and what to pass."""


@dataclass(frozen=True)
class Tap:
    """One stage output read by a stream block.

    Args:
        path: the module whose output is read.
        layout: how that output holds its grid (see :class:`~xai_pool.adapters.layout.TapLayout`).
        clone: the model modifies this output in place later in its forward pass, so the stream
            keeps a copy taken when the module returns.
        index: for a module that returns a tuple or list: the element holding the feature map.
    """

    path: str
    layout: TapLayout
    clone: bool = False
    index: int | None = None

    def select(self, output: Any) -> Tensor:
        """The feature tensor in a module's output."""
        return output if self.index is None else output[self.index]


@dataclass(frozen=True)
class PoolSite:
    """The global average pooling the stream replaces.

    Args:
        kind: ``"module"``: ``path`` is the GAP module, its input is the pooled map and its output
            is replaced; ``"head_input"``: the model pools with a function, ``path`` is the
            classifier's first module, whose input (the pooled vector) is replaced, and the
            pooled map is the output of ``pooled_path``.
        path: see ``kind``.
        layout: the layout of the pooled map.
        pooled_path: the module whose output is the pooled map ("" if a function makes it).
    """

    kind: PoolKind
    path: str
    layout: TapLayout
    pooled_path: str = ""


@dataclass(frozen=True)
class ModelProfile:
    """What xai_pool knows about one classifier (see :func:`resolve_profile`).

    ``input_size`` is the only input size the model accepts (None: any); ``probe_size`` the
    size it was measured at (a size known to work, for tests and smoke runs).
    """

    taps: tuple[Tap, ...]
    pool: PoolSite
    target_layer: str | None
    target_layout: TapLayout | None
    in_channels: int
    num_classes: int
    preprocessing: Preprocessing
    input_size: tuple[int, int] | None = None
    probe_size: tuple[int, int] = (64, 64)
    logits: int | str | None = None
    family: str = "custom"
    source: str = "discovered"
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def widths(self) -> tuple[int, ...]:
        """Channel widths of every block's input: the taps, then the pooled map."""
        return tuple(t.layout.channels for t in self.taps) + (self.pool.layout.channels,)

    @property
    def spec(self) -> StreamSpec:
        """The placement as a :class:`StreamSpec` (what a user would pass to reproduce it)."""
        layouts = {t.path: t.layout.kind for t in self.taps if t.layout.kind != "nchw"}
        if self.pool.kind == "module":
            return StreamSpec(
                tuple(t.path for t in self.taps), self.pool.path, self.target_layer, self.family, layouts=layouts
            )
        return StreamSpec(
            tuple(t.path for t in self.taps),
            None,
            self.target_layer,
            self.family,
            head=self.pool.path,
            pooled=self.pool.pooled_path,
            layouts=layouts,
        )

    def describe(self) -> str:
        """A few lines: where the stream reads, what it replaces, the preprocessing."""
        taps = ", ".join(f"{t.path} ({t.layout.channels} ch, {t.layout.describe()})" for t in self.taps) or "none"
        if self.pool.kind == "module":
            pool = f"module {self.pool.path!r} (input: {self.pool.layout.channels} ch, {self.pool.layout.describe()})"
        else:
            pool = (
                f"functional: the input of {self.pool.path!r} = mean of {self.pool.pooled_path!r} "
                f"({self.pool.layout.channels} ch, {self.pool.layout.describe()})"
            )
        size = "any" if self.input_size is None else f"{self.input_size[0]}x{self.input_size[1]} only"
        lines = [
            f"{self.family} [{self.source}]: {self.in_channels} input channels, input size {size}, "
            f"{self.num_classes} classes",
            f"  taps: {taps}",
            f"  pooling replaced: {pool}",
            f"  CAM target layer: {self.target_layer}",
            f"  preprocessing: {self.preprocessing.describe()}",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly summary for run metadata."""
        return {
            "family": self.family,
            "source": self.source,
            "taps": [{"path": t.path, "layout": t.layout.kind, "channels": t.layout.channels} for t in self.taps],
            "pool": {
                "kind": self.pool.kind,
                "path": self.pool.path,
                "pooled": self.pool.pooled_path,
                "layout": self.pool.layout.kind,
                "channels": self.pool.layout.channels,
            },
            "target_layer": self.target_layer,
            "in_channels": self.in_channels,
            "num_classes": self.num_classes,
            "input_size": list(self.input_size) if self.input_size else None,
            "preprocessing": self.preprocessing.to_dict(),
        }

    def reshape_transform(self, image_size: tuple[int, int]) -> Callable[[Tensor], Tensor] | None:
        """pytorch-grad-cam's ``reshape_transform`` for the default target layer (None for NCHW)."""
        layout = self.target_layout
        if layout is None or layout.kind == "nchw":
            return None
        return lambda tensor: layout.to_nchw(tensor, image_size)
