"""The model profile: everything xai_pool needs to know about a classifier, resolved once.

:func:`resolve_profile` answers, for any ``nn.Module`` classifier: where the stream's blocks
read (the stage taps and their layouts), which global average pooling the stream replaces and
how it is reached (a module, or the input of the classifier for pooling written as a
function), the default CAM target layer, the input channels, the input size the model
needs, the number of classes, and the preprocessing its weights expect.

Sources, in order:

1. what the user passes (``spec=``, ``preprocessing=``) and what the model declares
   (``xai_pool_spec``, ``xai_pool_preprocessing`` attributes: ShapesResNet does);
2. timm: ``pretrained_cfg`` / ``timm.data.resolve_model_data_config`` (preprocessing, fixed
   input size, input channels) and ``feature_info`` / ``num_prefix_tokens`` (layout hints);
3. torchvision: the weights metadata of a named architecture (``arch=``, set by
   :func:`xai_pool.classifiers.build_classifier`), the fixed input size of its ViTs;
4. measurement: probe forward passes at two input sizes (:mod:`~xai_pool.adapters.probe`)
   find the layouts and, unless a spec says otherwise, the pooling and the stages
   (:mod:`~xai_pool.adapters.discovery`).

Everything found is checked on the probe: the pooled vector must equal the average of the
pooled map, every tap must run once and have a measured layout. What cannot be checked is
refused with the reason and the spec to pass.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .attention import AttentionPooling, find_attention_pooling
from .discovery import LayoutOracle, NotPoolable, canonical_producer, discover, output_index, spatial_mean
from .layout import TapLayout
from .order import follows_image, run_with_bumps
from .preprocessing import Preprocessing, from_timm, from_torchvision_weights, imagenet_default
from .probe import Recording, layout_from_one_shape, record_calls, select_output
from .spec import StreamSpec, resolve_module

__all__ = [
    "ModelProfile",
    "Tap",
    "PoolSite",
    "resolve_profile",
    "resolve_preprocessing",
    "ProfileError",
    "with_preprocessing",
]

PoolKind = Literal["module", "head_input"]
_DEFAULT_PROBE = 64
_SPEC_HELP = (
    "pass spec=xai_pool.StreamSpec(taps=[...], pool='<GAP module>') (or head='<classifier's first module>', "
    "pooled='<module whose output is averaged>' for pooling written as a function); see docs/core.md"
)


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


# ------------------------------------------------------------------------------------ metadata
def _timm_cfg(model: nn.Module) -> dict | None:
    cfg = getattr(model, "pretrained_cfg", None)
    return cfg if isinstance(cfg, dict) else None


def _family(model: nn.Module) -> str:
    cfg = _timm_cfg(model)
    if cfg and cfg.get("architecture"):
        return f"timm-{cfg['architecture']}"
    module = type(model).__module__
    if module.startswith("torchvision."):
        return f"torchvision-{type(model).__name__.lower()}"
    return type(model).__name__


def resolve_preprocessing(model: nn.Module, arch: str | None = None) -> Preprocessing:
    """The preprocessing a model's weights expect (no probing): declared, timm, torchvision, or the ImageNet default.

    Args:
        model: any classifier (also one xai_pool cannot wrap, e.g. a class-token ViT).
        arch: the torchvision architecture name, for its weights' metadata.
    """
    return _preprocessing(model, arch)


def _preprocessing(model: nn.Module, arch: str | None) -> Preprocessing:
    declared = getattr(model, "xai_pool_preprocessing", None)
    if isinstance(declared, Preprocessing):
        return declared
    timm_pre = from_timm(model)
    if timm_pre is not None:
        return timm_pre
    if arch:
        named = from_torchvision_weights(arch)
        if named is not None:
            return named
    if type(model).__module__.startswith("torchvision.models"):
        if type(model).__name__ == "Inception3":
            return Preprocessing(input_size=(299, 299), resize_size=342, source="torchvision Inception3 default")
        return Preprocessing(source=f"torchvision default for {type(model).__name__} (ImageNet)")
    return imagenet_default()


def _fixed_input_size(model: nn.Module, preprocessing: Preprocessing) -> tuple[int, int] | None:
    cfg = _timm_cfg(model)
    patch_embed = getattr(model, "patch_embed", None)
    built = getattr(patch_embed, "img_size", None)
    if cfg and isinstance(built, (tuple, list)) and len(built) == 2 and not getattr(model, "dynamic_img_size", False):
        if cfg.get("fixed_input_size") or getattr(patch_embed, "strict_img_size", False):
            return (int(built[0]), int(built[1]))  # the size the model was built for (img_size=...), not the cfg's
    if cfg and cfg.get("fixed_input_size"):
        return preprocessing.input_size
    if type(model).__module__.startswith("torchvision.models") and isinstance(getattr(model, "image_size", None), int):
        return (model.image_size, model.image_size)  # torchvision ViT asserts its image_size
    return None


def _channel_candidates(model: nn.Module, preprocessing: Preprocessing, explicit: int | None) -> list[int]:
    if explicit is not None:
        return [explicit]
    candidates = []
    cfg = _timm_cfg(model)
    if isinstance(getattr(model, "in_chans", None), int):
        candidates.append(model.in_chans)
    if cfg and cfg.get("input_size"):
        candidates.append(int(cfg["input_size"][0]))
    candidates.append(preprocessing.channels)
    candidates.append(3)
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is not None:
        candidates.append(first_conv.in_channels)
    return list(dict.fromkeys(candidates))


def _layout_hints(model: nn.Module) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    prefix = getattr(model, "num_prefix_tokens", None)
    if isinstance(prefix, int):
        hints["prefix_tokens"] = prefix
    fmt = getattr(model, "output_fmt", None)
    if isinstance(fmt, str) and fmt.lower() in ("nchw", "nhwc"):
        hints["kind"] = fmt.lower()
    return hints


# ------------------------------------------------------------------------------------ probing
def _probe_input(model: nn.Module, channels: int, size: tuple[int, int]) -> Tensor:
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    generator = torch.Generator().manual_seed(0)  # never touch the global RNG
    return torch.randn(2, channels, *size, generator=generator).to(device=device, dtype=dtype)


def _record(model: nn.Module, channels: int, size: tuple[int, int]) -> Recording:
    return record_calls(model, _probe_input(model, channels, size))


def _probe_plans(
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


def _probes(
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


def _did_not_run(model: nn.Module, errors: list[str]) -> ProfileError:
    detail = "; ".join(e.splitlines()[0][:200] for e in errors[:3])
    return ProfileError(
        f"{type(model).__name__} did not run on a dummy batch ({detail}). If it needs a particular input size, "
        "pass probe_size=(height, width) (or give it a pretrained_cfg['input_size']); if it needs other "
        "input channels, pass in_channels="
    )


# ------------------------------------------------------------------------------------ placement
def _called_once(recording: Recording, path: str, what: str) -> Any:
    count = recording.counts.get(path, 0)
    if count == 0:
        raise ProfileError(f"{what} {path!r} was not called by the model's forward pass; {_SPEC_HELP}")
    if count > 1:
        raise ProfileError(
            f"{what} {path!r} runs {count} times per forward pass (a shared module): hooks cannot tell its calls "
            "apart; choose a module that runs once"
        )
    return recording.first(path)


def _declared_layout(spec: StreamSpec, path: str, tensor: Tensor, size: tuple[int, int]) -> TapLayout | None:
    kind = spec.layouts.get(path)
    if kind is None:
        return None
    return layout_from_one_shape(tensor.shape, size, kind=kind, prefix_tokens=spec.prefix_tokens) or (
        TapLayout(kind, int(tensor.shape[1] if kind == "nchw" else tensor.shape[-1])) if kind != "tokens" else None
    )


def _tap_from_spec(spec: StreamSpec, path: str, recording: Recording, oracle: LayoutOracle, what: str) -> Tap:
    call = _called_once(recording, path, what)
    index = output_index(call.output)
    output = call.output if index is None else call.output[index]
    if not isinstance(output, Tensor) or output.ndim not in (3, 4):
        raise ProfileError(
            f"{what} {path!r} returns {type(output).__name__} {tuple(getattr(output, 'shape', ()))}, not a feature "
            "map (B, C, h, w), (B, h, w, C) or tokens (B, N, C); tap a module that returns the feature tensor"
        )
    measured = oracle.layout(call)
    declared = _declared_layout(spec, path, output, recording.image_size)
    if declared is not None and measured is not None and declared.kind != measured.kind:
        raise ProfileError(
            f"{what} {path!r}: the spec says {declared.kind} but its output {tuple(output.shape)} measures as "
            f"{measured.kind} (the dimensions that scale with the input are the spatial ones)"
        )
    layout = measured or declared
    if layout is None:
        raise ProfileError(
            f"the layout of {what} {path!r} (output {tuple(output.shape)}) cannot be determined: no dimension "
            f"scales with the input size; pass spec=StreamSpec(..., layouts={{{path!r}: 'nchw' | 'nhwc' | 'tokens'}})"
        )
    return Tap(path, layout, clone=getattr(output, "_version", 0) != call.version, index=index)


def _pool_from_spec(spec: StreamSpec, recording: Recording, oracle: LayoutOracle) -> PoolSite:
    if spec.pool is not None:
        call = _called_once(recording, spec.pool, "pool module")
        source = call.input
        layout = oracle.layout(call, "input") if isinstance(source, Tensor) and source.ndim in (3, 4) else None
        if layout is None and isinstance(source, Tensor) and spec.layouts.get(spec.pool):
            layout = _declared_layout(spec, spec.pool, source, recording.image_size)
        if layout is None:
            raise ProfileError(
                f"pool module {spec.pool!r} must receive a feature map, got "
                f"{type(source).__name__} {tuple(getattr(source, 'shape', ()))}; point pool= at the global average pooling"
            )
        output = call.output
        if not isinstance(output, Tensor) or output.numel() != source.shape[0] * layout.channels:
            raise ProfileError(
                f"pool module {spec.pool!r} is not a global pooling: input {tuple(source.shape)} -> output "
                f"{tuple(getattr(output, 'shape', ()))}; point pool= at the global average pooling"
            )
        if not _allclose(output, spatial_mean(source, layout)):
            raise ProfileError(
                f"pool module {spec.pool!r} does not average its input over the positions (max pooling?)"
            )
        producer = canonical_producer(recording, source)
        return PoolSite("module", spec.pool, layout, producer.name if producer is not None else "")
    assert spec.head is not None and spec.pooled is not None
    pooled = _tap_from_spec(spec, spec.pooled, recording, oracle, "pooled module")
    head = _called_once(recording, spec.head, "head module")
    vector = head.input
    feature = recording.first(spec.pooled).output
    if not isinstance(vector, Tensor) or vector.numel() != feature.shape[0] * pooled.layout.channels:
        raise ProfileError(
            f"head module {spec.head!r} receives {tuple(getattr(vector, 'shape', ()))}, not a pooled vector of the "
            f"{pooled.layout.channels} channels of {spec.pooled!r}"
        )
    if not _allclose(vector, spatial_mean(feature, pooled.layout)):
        raise ProfileError(f"the input of {spec.head!r} is not the spatial mean of the output of {spec.pooled!r}")
    return PoolSite("head_input", spec.head, pooled.layout, spec.pooled)


def _allclose(a: Tensor, b: Tensor) -> bool:
    a = a.detach().float().reshape(a.shape[0], -1)
    b = b.detach().float().reshape(b.shape[0], -1)
    return a.shape == b.shape and bool((a - b).abs().max() <= 1e-4 * max(float(b.abs().max()), 1e-6) + 1e-6)


def _placement(
    model: nn.Module, spec: StreamSpec | None, recording: Recording, oracle: LayoutOracle, logits: Any
) -> tuple[tuple[Tap, ...], PoolSite, str | None, str]:
    if spec is not None:
        for path in (*spec.taps, spec.pool or spec.head, spec.pooled, spec.target_layer):
            if path:
                resolve_module(model, path)
        pool = _pool_from_spec(spec, recording, oracle)
        taps = tuple(_tap_from_spec(spec, p, recording, oracle, "tap") for p in spec.taps)
        order = [recording.first(t.path).post for t in taps]
        if order != sorted(order):
            raise ProfileError(
                f"StreamSpec.taps must be in forward order; the model runs them as {_ordered(taps, order)}"
            )
        limit = recording.first(pool.path).pre
        late = [t.path for t, post in zip(taps, order) if post > limit]
        if late:
            raise ProfileError(f"taps {late} run after the pooling {pool.path!r}; taps must come before it")
        target = spec.target_layer or pool.pooled_path or None
        return taps, pool, target, "spec", {}
    try:
        found = discover(recording, oracle, logits)
    except NotPoolable as exc:
        raise ProfileError(
            f"xai_pool cannot replace the global average pooling of {type(model).__name__}: {exc}. "
            f"If it has one that was missed, {_SPEC_HELP}"
        ) from None
    taps = tuple(Tap(path, layout, clone, index) for path, layout, clone, index in found.taps)
    pool = PoolSite(found.pool_kind, found.pool_path, found.pooled_layout, found.pooled_path)  # type: ignore[arg-type]
    fallbacks = {path: tuple(Tap(*alt) for alt in alts) for path, alts in found.alternatives.items()}
    return taps, pool, found.pooled_path or None, "discovered", fallbacks


def _check_order(
    model: nn.Module,
    recording: Recording,
    channels: int,
    taps: tuple[Tap, ...],
    pool: PoolSite,
    fallbacks: dict[str, tuple[Tap, ...]],
    *,
    strict: bool,
) -> tuple[tuple[Tap, ...], list[str]]:
    """Keep the taps whose grids follow the image (a bump in a quadrant shows up there); see :mod:`.order`.

    A tap that fails is replaced by the latest earlier module of its stage that passes, if any.
    """
    size = recording.image_size
    spares = [alt.path for t in taps for alt in fallbacks.get(t.path, ())]
    watched = [t.path for t in taps] + spares + [pool.path if pool.kind == "module" else pool.pooled_path]
    changed = run_with_bumps(model, _probe_input(model, channels, size), watched)
    if pool.kind == "module":
        clean_pool, bumped_pool = recording.first(pool.path).input, changed[f"{pool.path}:in"]
    else:
        clean_pool, bumped_pool = recording.first(pool.pooled_path).output, changed[pool.pooled_path]
    if not follows_image(clean_pool, bumped_pool, pool.layout, size):
        raise ProfileError(
            f"the positions of the map its global pooling averages do not follow the image (read as "
            f"{pool.layout.describe()}, a change in one corner of the image does not appear in that corner): "
            "attention maps over it would be meaningless; if the layout is wrong, pass spec=StreamSpec(..., layouts=)"
        )

    def ordered(tap: Tap) -> bool:
        clean = tap.select(recording.first(tap.path).output)
        return follows_image(clean, [tap.select(v) for v in changed[tap.path]], tap.layout, size)

    kept, dropped = [], []
    for tap in taps:
        if ordered(tap):
            kept.append(tap)
            continue
        spare = next((alt for alt in fallbacks.get(tap.path, ()) if ordered(alt)), None)
        if spare is not None:
            kept.append(spare)
        elif strict:
            raise ProfileError(
                f"tap {tap.path!r} read as {tap.layout.describe()}: its positions do not follow the image (a change "
                "in one corner of the image does not appear in that corner: transposed or scrambled); fix its layout "
                "in StreamSpec.layouts or tap another module"
            )
        else:
            dropped.append(tap.path)
    return tuple(kept), dropped


def _ordered(taps: Sequence[Tap], order: Sequence[int]) -> str:
    return ", ".join(t.path for _, t in sorted(zip(order, taps), key=lambda item: item[0]))


def _target_layout(recording: Recording, oracle: LayoutOracle, path: str | None) -> TapLayout | None:
    if not path:
        return None
    call = recording.first(path)
    if call is None or not isinstance(call.output, Tensor):
        return None
    return oracle.layout(call)


# ------------------------------------------------------------------------------------ public
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def resolve_profile(
    model: nn.Module,
    *,
    spec: StreamSpec | None = None,
    logits: int | str | None = None,
    preprocessing: Preprocessing | None = None,
    arch: str | None = None,
    in_channels: int | None = None,
    probe_size: int | tuple[int, int] | None = None,
) -> ModelProfile:
    """Profile a classifier: stream placement, pooling, layouts, channels, input size, preprocessing.

    The model runs a few probe forward passes under ``no_grad`` in eval mode (its train/eval
    flags are restored, no hook is left). Results are cached per model object and arguments.

    Args:
        model: any classifier ending in a global average pooling and a head.
        spec: where to attach (default: the model's ``xai_pool_spec``, else discovered).
        logits: for models that return a tuple, list, dict or object: the index, key or
            attribute holding the logits.
        preprocessing: overrides the model's own preprocessing.
        arch: the torchvision/timm architecture name, for preprocessing metadata.
        in_channels: input channels (default: the model's metadata, else 3).
        probe_size: side (or (H, W)) of the dummy images (default 64, then the model's input size).

    Returns:
        A :class:`ModelProfile`.

    Raises:
        ProfileError (a ValueError): the model has no global average pooling to replace (the
            reason is given: class token, 7x7 pooling, max pooling...), a spec path does not exist
            or runs more than once, a layout cannot be measured, or the model does not run.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module classifier, got {type(model).__name__}")
    if spec is None and isinstance(getattr(model, "xai_pool_spec", None), StreamSpec):
        spec = model.xai_pool_spec
    key = (spec, logits, preprocessing, arch, in_channels, probe_size, _structure(model))
    cached = _CACHE.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    profile = _resolve(model, spec, logits, preprocessing, arch, in_channels, probe_size)
    _CACHE[model] = (key, profile)
    return profile


_ATTENTION_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def resolve_attention_pooling(
    model: nn.Module,
    *,
    in_channels: int | None = None,
    probe_size: int | tuple[int, int] | None = None,
) -> AttentionPooling:
    """Find the attention a classifier pools with (class token, class attention, latent or 2-D attention pool).

    Measured on probe passes like :func:`resolve_profile` (same probe sizes and channels), and
    cached per model object.

    Raises:
        ProfileError: the model computes no attention over its patch grid before the classifier;
            the message says what to use instead (a CA-Stream with ``attach_stream``).
    """
    key = (in_channels, probe_size, _structure(model))
    cached = _ATTENTION_CACHE.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    preprocessing = _preprocessing(model, None)
    plans = _probe_plans(probe_size, _fixed_input_size(model, preprocessing), preprocessing.input_size)
    errors: list[str] = []
    reason = "it did not run"
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        for rec_a, rec_b, channels in _probes(
            model, _channel_candidates(model, preprocessing, in_channels), plans, errors
        ):
            try:
                found = find_attention_pooling(
                    model,
                    rec_a,
                    LayoutOracle(rec_a, rec_b, _layout_hints(model)),
                    _probe_input(model, channels, rec_a.image_size),
                )
            except ValueError as exc:
                reason = str(exc)
                continue
            _ATTENTION_CACHE[model] = (key, found)
            return found
    finally:
        for module, flag in flags:
            module.training = flag
    if errors and reason == "it did not run":
        raise _did_not_run(model, errors)
    raise ProfileError(
        f"{type(model).__name__} has no attention pooling to read raw attention from ({reason}); for a CA-Stream's "
        "attention, wrap it with xai_pool.attach_stream(model) and train the stream"
    )


def _structure(model: nn.Module) -> tuple:
    return tuple((name, type(m).__name__) for name, m in model.named_modules())


def _resolve(
    model: nn.Module,
    spec: StreamSpec | None,
    logits: int | str | None,
    preprocessing: Preprocessing | None,
    arch: str | None,
    in_channels: int | None,
    probe_size: int | tuple[int, int] | None,
) -> ModelProfile:
    preprocessing = preprocessing or _preprocessing(model, arch)
    fixed = _fixed_input_size(model, preprocessing)
    if fixed is not None and preprocessing.input_size != fixed:
        preprocessing = preprocessing.with_overrides(size=fixed, source="the model's fixed input size")
    plans = _probe_plans(probe_size, fixed, preprocessing.input_size)
    errors: list[str] = []
    failure: ProfileError | None = None
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        for rec_a, rec_b, channels in _probes(
            model, _channel_candidates(model, preprocessing, in_channels), plans, errors
        ):
            selected = _logits_of(model, rec_a.output, logits)
            oracle = LayoutOracle(rec_a, rec_b, _layout_hints(model))
            try:
                taps, pool, target, source, fallbacks = _placement(model, spec, rec_a, oracle, logits)
                taps, dropped = _check_order(model, rec_a, channels, taps, pool, fallbacks, strict=spec is not None)
            except ProfileError as exc:
                if spec is not None:
                    raise  # the user's placement is wrong at any size
                failure = exc  # a larger input may give the last map more than one position
                continue
            break
        else:
            raise failure if failure is not None else _did_not_run(model, errors)
    finally:
        for module, flag in flags:
            module.training = flag
    notes = [f"tap {path!r} dropped: its positions do not follow the image (e.g. unrolled tokens)" for path in dropped]
    if rec_b is None:
        notes.append(f"measured at one input size ({rec_a.image_size[0]}x{rec_a.image_size[1]}) only")
    if preprocessing.source.startswith("ImageNet default"):
        notes.append("preprocessing is the ImageNet default: the model declares none (override it if needed)")
    if spec is not None and spec is getattr(model, "xai_pool_spec", None):
        source = "declared"
    return ModelProfile(
        taps=taps,
        pool=pool,
        target_layer=target,
        target_layout=_target_layout(rec_a, oracle, target),
        in_channels=channels,
        num_classes=int(selected.shape[1]),
        preprocessing=preprocessing,
        input_size=fixed,
        probe_size=rec_a.image_size,
        logits=logits,
        family=spec.family if spec is not None and spec.family != "custom" else _family(model),
        source=source,
        notes=tuple(notes),
    )


def _logits_of(model: nn.Module, output: Any, logits: int | str | None) -> Tensor:
    try:
        selected = select_output(output, logits)
    except (KeyError, IndexError, AttributeError, TypeError) as exc:
        raise ProfileError(f"logits={logits!r} does not select an output of {type(model).__name__}: {exc}") from None
    if not isinstance(selected, Tensor):
        raise ProfileError(
            f"{type(model).__name__} returns {_describe_output(output)}, not a logits tensor; say which output holds "
            "the logits: attach_stream(model, logits=0) for a tuple/list, logits='logits' for a dict or attribute"
        )
    if selected.ndim != 2:
        raise ProfileError(f"the logits must be (batch, classes), got shape {tuple(selected.shape)}")
    return selected


def _describe_output(output: Any) -> str:
    if isinstance(output, (tuple, list)):
        inner = ", ".join(type(o).__name__ for o in output[:4])
        return f"a {type(output).__name__} of {len(output)} ({inner})"
    if isinstance(output, dict):
        return f"a dict with keys {list(output)[:6]}"
    return type(output).__name__


def with_preprocessing(profile: ModelProfile, preprocessing: Preprocessing) -> ModelProfile:
    """A copy of ``profile`` with other preprocessing (the CLI's --mean/--std/--image-size)."""
    return replace(profile, preprocessing=preprocessing)
