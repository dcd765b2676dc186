"""Probe forward passes: record what every module of a model receives and returns.

Model profiles are measured, not assumed: :func:`record_calls` runs the model once on a dummy
batch with a temporary pre- and post-forward hook on every module (all removed before it
returns) and keeps, in call order, each module's first input and its output. Running it at two
input sizes tells spatial dimensions (they scale with the image) from channel dimensions (they
do not): :func:`layout_from_shapes`. A model that only accepts one input size is measured once,
and :func:`layout_from_one_shape` accepts a layout only when the shape admits no other reading.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..runtime import model_device
from .layout import TapLayout

__all__ = [
    "Call",
    "Recording",
    "record_calls",
    "select_output",
    "layout_from_shapes",
    "layout_from_one_shape",
    "MAX_PREFIX_TOKENS",
    "probe_input",
    "probe_plans",
    "probe_runs",
    "did_not_run",
]

#: Class, distillation and register tokens in front of the patch tokens (timm has up to 1 + 1 + 16).
MAX_PREFIX_TOKENS = 32


@dataclass
class Call:
    """One call of one module during a probe forward pass.

    ``pre``/``post`` are positions in one event counter shared by all modules, so
    ``a.post < b.pre`` means ``a`` returned before ``b`` started.
    """

    name: str
    module: nn.Module
    occurrence: int
    pre: int
    post: int = -1
    input: Any = None
    output: Any = None
    version: int = 0  # the output tensor's version counter when the module returned

    @property
    def passthrough(self) -> bool:
        """True when the module returned its input object itself (Identity, in-place activations, eval dropout)."""
        return self.output is self.input


@dataclass
class Recording:
    """All module calls of one probe forward pass, at one input size."""

    image_size: tuple[int, int]
    calls: list[Call]
    output: Any
    counts: dict[str, int] = field(default_factory=dict)

    def by_key(self) -> dict[tuple[str, int], Call]:
        """Calls keyed by (module name, occurrence)."""
        return {(c.name, c.occurrence): c for c in self.calls}

    def first(self, name: str) -> Call | None:
        """The first call of module ``name``, or None if it did not run."""
        return next((c for c in self.calls if c.name == name and c.occurrence == 0), None)


def _first_input(args: tuple, kwargs: dict) -> Any:
    if args:
        return args[0]
    return next(iter(kwargs.values()), None)


def select_output(output: Any, logits: int | str | None) -> Any:
    """Pick the logits out of a model's output: ``logits`` is None, an index or a key/attribute."""
    if logits is None:
        return output
    if isinstance(logits, int) and isinstance(output, (tuple, list)):
        return output[logits]
    if isinstance(logits, str):
        if isinstance(output, dict):
            return output[logits]
        return getattr(output, logits)
    raise TypeError(f"cannot select logits={logits!r} from a model output of type {type(output).__name__}")


@contextlib.contextmanager
def _recording_hooks(model: nn.Module, calls: list[Call], counts: dict[str, int]) -> Iterator[None]:
    counter = [0]
    handles = []
    open_calls: dict[int, list[Call]] = {}

    def make_pre(name: str, module: nn.Module) -> Callable[[nn.Module, tuple, dict], None]:
        def pre(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            occurrence = counts.get(name, 0)
            counts[name] = occurrence + 1
            call = Call(name, module, occurrence, pre=counter[0], input=_first_input(args, kwargs))
            counter[0] += 1
            calls.append(call)
            open_calls.setdefault(id(module), []).append(call)

        return pre

    def post(module: nn.Module, _args: tuple, _kwargs: dict, output: Any) -> None:
        stack = open_calls.get(id(module))
        if stack:
            call = stack.pop()
            call.post = counter[0]
            call.output = output
            call.version = getattr(output, "_version", 0) if isinstance(output, Tensor) else 0
            counter[0] += 1

    try:
        for name, module in model.named_modules():  # a shared module is hooked once, under its first name
            handles.append(module.register_forward_pre_hook(make_pre(name, module), with_kwargs=True))
            handles.append(module.register_forward_hook(post, with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


def record_calls(model: nn.Module, images: Tensor) -> Recording:
    """Run ``model(images)`` under ``no_grad`` and record every module call.

    Every tensor seen stays referenced by the recording, so object identity (``is``) between
    one module's output and another's input is meaningful afterwards. The hooks are removed
    before this returns, also when the forward pass raises.
    """
    calls: list[Call] = []
    counts: dict[str, int] = {}
    with torch.no_grad(), _recording_hooks(model, calls, counts):
        output = model(images)
    return Recording(tuple(images.shape[-2:]), calls, output, counts)


# ---------------------------------------------------------------------------------------- layouts
def _plausible_grid(dims: Sequence[int], image_size: tuple[int, int], slack: int | None = None) -> bool:
    """True if ``dims`` (h, w) can be a grid over an input of ``image_size``.

    With ``slack=None``, any grid no larger than the image (two-size probes check scaling
    separately). Otherwise the grid must be the image divided by one integer stride, give or
    take ``slack`` cells (unpadded convolutions lose a few border cells).
    """
    height, width = image_size
    h, w = int(dims[0]), int(dims[1])
    if h < 1 or w < 1 or h > height or w > width:
        return False
    if slack is None:
        return True
    return any(
        abs(h - height / stride) <= slack + 1 and abs(w - width / stride) <= slack + 1
        for stride in range(1, max(height, width) + 1)
    )


def _token_grids(count: int, image_size: tuple[int, int]) -> list[tuple[int, int]]:
    """(reduction, prefix) pairs such that ``count`` tokens = prefix + patches of that reduction."""
    height, width = image_size
    found = []
    for reduction in range(1, max(height, width) + 1):
        for h, w in {(height // reduction, width // reduction), (-(-height // reduction), -(-width // reduction))}:
            prefix = count - h * w
            if 0 <= prefix <= MAX_PREFIX_TOKENS and h * w > 1:
                found.append((reduction, prefix))
    # Fewest prefix tokens first, then patch sizes that divide the image exactly (the usual case).
    return sorted(set(found), key=lambda rp: (rp[1], height % rp[0] != 0 or width % rp[0] != 0, -rp[0]))


def layout_from_shapes(
    shape_a: Sequence[int], size_a: tuple[int, int], shape_b: Sequence[int], size_b: tuple[int, int]
) -> TapLayout | None:
    """The layout of a tensor seen at two input sizes, or None if it holds no spatial grid.

    The channel dimension is the one that stays fixed while the spatial ones scale with the
    input. A token sequence (B, N, C) is recognised when N changes by the patch count of the
    two sizes, with the same number of prefix tokens in both.
    """
    if len(shape_a) != len(shape_b) or shape_a[0] != shape_b[0]:
        return None
    if len(shape_a) == 4:
        nchw = shape_a[1] == shape_b[1] and shape_a[2] != shape_b[2] and shape_a[3] != shape_b[3]
        if nchw and _plausible_grid(shape_a[2:], size_a) and _plausible_grid(shape_b[2:], size_b):
            return TapLayout("nchw", int(shape_a[1]))
        nhwc = shape_a[3] == shape_b[3] and shape_a[1] != shape_b[1] and shape_a[2] != shape_b[2]
        if nhwc and _plausible_grid(shape_a[1:3], size_a) and _plausible_grid(shape_b[1:3], size_b):
            return TapLayout("nhwc", int(shape_a[3]))
        return None
    if len(shape_a) == 3 and shape_a[2] == shape_b[2] and shape_a[1] != shape_b[1]:
        grids_b = set(_token_grids(int(shape_b[1]), size_b))
        exact_b = {g for g in grids_b if size_b[0] % g[0] == 0 and size_b[1] % g[0] == 0}
        candidates = [g for g in _token_grids(int(shape_a[1]), size_a) if g in grids_b]
        for reduction, prefix in sorted(candidates, key=lambda g: g not in exact_b):
            return TapLayout("tokens", int(shape_a[2]), prefix_tokens=prefix, reduction=reduction)
    return None


def layout_from_one_shape(
    shape: Sequence[int],
    image_size: tuple[int, int],
    *,
    channels: int | None = None,
    prefix_tokens: int | None = None,
    reduction: int | None = None,
    kind: str | None = None,
) -> TapLayout | None:
    """The layout of a tensor seen at a single input size, or None if the shape is ambiguous.

    Used for models that accept one input size only. ``channels``, ``prefix_tokens``,
    ``reduction`` and ``kind`` are what the model's metadata says (timm ``feature_info``,
    ``num_prefix_tokens``, ``output_fmt``); each one rules readings out, none is trusted alone.
    """
    if len(shape) == 4:
        options = []
        if _plausible_grid(shape[2:], image_size, slack=3) and channels in (None, shape[1]):
            options.append(TapLayout("nchw", int(shape[1])))
        if _plausible_grid(shape[1:3], image_size, slack=3) and channels in (None, shape[3]):
            options.append(TapLayout("nhwc", int(shape[3])))
        if len(options) > 1 and kind in ("nchw", "nhwc"):
            options = [o for o in options if o.kind == kind]
        return options[0] if len(options) == 1 else None
    if len(shape) == 3:
        if channels not in (None, shape[2]):
            return None
        grids = _token_grids(int(shape[1]), image_size)
        if prefix_tokens is not None:
            grids = [g for g in grids if g[1] == prefix_tokens]
        if reduction is not None:
            grids = [g for g in grids if g[0] == reduction]
        if not grids:
            return None
        # The fewest prefix tokens wins (class and register tokens are few); several patch sizes
        # that give the same grid at this input size read the tensor the same way.
        fewest = [g for g in grids if g[1] == grids[0][1]]
        exact = [g for g in fewest if image_size[0] % g[0] == 0 and image_size[1] % g[0] == 0]
        r, p = (exact or fewest)[-1]
        return TapLayout("tokens", int(shape[2]), prefix_tokens=p, reduction=r)
    return None


# ---------------------------------------------------------------------------------------- probe runs
def probe_input(model: nn.Module, channels: int, size: tuple[int, int]) -> Tensor:
    """A seeded random batch of two images on the model's device and dtype."""
    device = model_device(model, torch.device("cpu"))
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    generator = torch.Generator().manual_seed(0)  # never touch the global RNG
    return torch.randn(2, channels, *size, generator=generator).to(device=device, dtype=dtype)


def _record(model: nn.Module, channels: int, size: tuple[int, int]) -> Recording:
    return record_calls(model, probe_input(model, channels, size))


def probe_plans(
    probe_size: int | tuple[int, int] | None, fixed: tuple[int, int] | None, natural: tuple[int, int]
) -> list[tuple[tuple[int, int], tuple[int, int] | None]]:
    """Input sizes to measure at, cheapest first: two sizes where the model accepts several."""
    if fixed is not None:
        return [(fixed, None)]
    if probe_size is not None:
        first = (probe_size, probe_size) if isinstance(probe_size, int) else (int(probe_size[0]), int(probe_size[1]))
        return [(first, (first[0] + 32, first[1] + 32)), (first, None)]
    plans: list[tuple[tuple[int, int], tuple[int, int] | None]] = [((64, 64), (96, 96))]
    if min(natural) > 128:  # stride-64 models have a 1x1 map at 64 px
        plans.append(((128, 128), (160, 160)))
    plans += [(natural, (natural[0] + 32, natural[1] + 32)), (natural, None)]
    return list(dict.fromkeys(plans))


def probe_runs(
    model: nn.Module,
    channels: list[int],
    plans: list[tuple[tuple[int, int], tuple[int, int] | None]],
    errors: list[str],
) -> Iterator[tuple[Recording, Recording | None, int]]:
    """Recordings for each plan the model runs (first the input channel count that works)."""
    for channel_count in channels:
        ran = False
        for size_a, size_b in plans:
            try:
                rec_a = _record(model, channel_count, size_a)
                rec_b = _record(model, channel_count, size_b) if size_b is not None else None
            except Exception as exc:  # a model that refuses this input says so in its own words
                errors.append(f"{channel_count} channels at {size_a[0]}x{size_a[1]}: {type(exc).__name__}: {exc}")
                continue
            ran = True
            yield rec_a, rec_b, channel_count
        if ran:
            return


def did_not_run(model: nn.Module, errors: list[str]) -> ValueError:
    """The error for a model no probe could run, quoting the first errors and naming ``probe_size=``."""
    detail = "; ".join(e.splitlines()[0][:200] for e in errors[:3])
    from .model_profile import ProfileError  # the error type lives with the profile data

    return ProfileError(
        f"{type(model).__name__} did not run on a dummy batch ({detail}). If it needs a particular input size, "
        "pass probe_size=(height, width) (or give it a pretrained_cfg['input_size']); if it needs other "
        "input channels, pass in_channels="
    )
