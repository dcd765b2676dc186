"""Where the stream reads and what it replaces.

An explicit spec is checked, or a placement is discovered; then every tap's grid order is checked
(see :mod:`.order`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from .discovery import LayoutOracle, NotPoolable, canonical_producer, close_enough, discover, output_index, spatial_mean
from .layout import TapLayout
from .model_profile import PoolSite, ProfileError, Tap
from .order import follows_image, run_with_bumps
from .probe import Recording, layout_from_one_shape, probe_input
from .spec import StreamSpec, resolve_module

__all__ = ["find_placement", "check_order", "target_layout_of", "SPEC_HELP"]

SPEC_HELP = (
    "pass spec=xai_pool.StreamSpec(taps=[...], pool='<GAP module>') (or head='<classifier's first module>', "
    "pooled='<module whose output is averaged>' for pooling written as a function); see docs/core.md"
)


def _called_once(recording: Recording, path: str, what: str) -> Any:
    count = recording.counts.get(path, 0)
    if count == 0:
        raise ProfileError(f"{what} {path!r} was not called by the model's forward pass; {SPEC_HELP}")
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
                f"{type(source).__name__} {tuple(getattr(source, 'shape', ()))}; "
                "point pool= at the global average pooling"
            )
        output = call.output
        if not isinstance(output, Tensor) or output.numel() != source.shape[0] * layout.channels:
            raise ProfileError(
                f"pool module {spec.pool!r} is not a global pooling: input {tuple(source.shape)} -> output "
                f"{tuple(getattr(output, 'shape', ()))}; point pool= at the global average pooling"
            )
        if not close_enough(output, spatial_mean(source, layout)):
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
    if not close_enough(vector, spatial_mean(feature, pooled.layout)):
        raise ProfileError(f"the input of {spec.head!r} is not the spatial mean of the output of {spec.pooled!r}")
    return PoolSite("head_input", spec.head, pooled.layout, spec.pooled)


def find_placement(
    model: nn.Module, spec: StreamSpec | None, recording: Recording, oracle: LayoutOracle, logits: Any
) -> tuple[tuple[Tap, ...], PoolSite, str | None, str]:
    """(taps, pool site, default CAM layer, how it was found) from an explicit spec, else discovered."""
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
        late = [t.path for t, post in zip(taps, order, strict=True) if post > limit]
        if late:
            raise ProfileError(f"taps {late} run after the pooling {pool.path!r}; taps must come before it")
        target = spec.target_layer or pool.pooled_path or None
        return taps, pool, target, "spec", {}
    try:
        found = discover(recording, oracle, logits)
    except NotPoolable as exc:
        raise ProfileError(
            f"xai_pool cannot replace the global average pooling of {type(model).__name__}: {exc}. "
            f"If it has one that was missed, {SPEC_HELP}"
        ) from None
    taps = tuple(Tap(path, layout, clone, index) for path, layout, clone, index in found.taps)
    pool = PoolSite(found.pool_kind, found.pool_path, found.pooled_layout, found.pooled_path)  # type: ignore[arg-type]
    fallbacks = {path: tuple(Tap(*alt) for alt in alts) for path, alts in found.alternatives.items()}
    return taps, pool, found.pooled_path or None, "discovered", fallbacks


def check_order(
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
    # The first probe image only, bumped four ways: one forward of four images.
    changed = run_with_bumps(model, probe_input(model, channels, size)[:1], watched)
    if pool.kind == "module":
        clean_pool, bumped_pool = recording.first(pool.path).input[:1], changed[f"{pool.path}:in"]
    else:
        clean_pool, bumped_pool = recording.first(pool.pooled_path).output[:1], changed[pool.pooled_path]
    if not follows_image(clean_pool, bumped_pool, pool.layout, size):
        raise ProfileError(
            f"the positions of the map its global pooling averages do not follow the image (read as "
            f"{pool.layout.describe()}, a change in one corner of the image does not appear in that corner): "
            "attention maps over it would be meaningless; if the layout is wrong, pass spec=StreamSpec(..., layouts=)"
        )

    def ordered(tap: Tap) -> bool:
        clean = tap.select(recording.first(tap.path).output)[:1]
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
    return ", ".join(t.path for _, t in sorted(zip(order, taps, strict=True), key=lambda item: item[0]))


def target_layout_of(recording: Recording, oracle: LayoutOracle, path: str | None) -> TapLayout | None:
    """The layout of the output of the layer at ``path`` in the probe's recording (None if it is no map)."""
    if not path:
        return None
    call = recording.first(path)
    if call is None or not isinstance(call.output, Tensor):
        return None
    return oracle.layout(call)
