"""Target layers: defaults per architecture, resolution of names, and a shared-module check.

The default is the last stage's output, the paper's choice (ResNet: ``layer4``), taken from
the model's :class:`~xai_pool.StreamSpec` (``target_layer``). A target layer must run once
per forward pass: pytorch-grad-cam stores one activation per call, so a module reused in
several places (EfficientNet-Lite0 ports that share one ReLU6 between stem and head) would
silently mix unrelated tensors. :func:`single_call_check` turns that into a clear error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

from torch import nn

from ..adapters import TapLayout, resolve_attention_pooling, resolve_module, resolve_profile
from ..model import CAModel

__all__ = [
    "default_target_layers",
    "default_reshape_transform",
    "resolve_target_layers",
    "single_call_check",
    "TargetLayers",
]

TargetLayers = nn.Module | str | Sequence[nn.Module | str] | None


def _default_layer(model: nn.Module) -> tuple[str | None, TapLayout | None, str]:
    """(path, layout, reason) of a plain classifier's default CAM layer.

    That is the map its GAP averages, else what its own attention pooling reads (class-token ViTs,
    CaiT, attention pools).
    """
    try:
        profile = resolve_profile(model)
        return profile.target_layer, profile.target_layout, ""
    except ValueError as exc:
        gap_reason = str(exc).split(": ", 1)[-1].split(". ")[0]
    try:
        pooling = resolve_attention_pooling(model)
        return pooling.target_layer, pooling.target_layout, ""
    except ValueError:
        return None, None, gap_reason


def default_target_layers(model: nn.Module) -> list[nn.Module]:
    """The default CAM target layers of ``model``: ``[the module producing the pooled features]``.

    Args:
        model: a :class:`~xai_pool.CAModel` (uses its profile's ``target_layer``), or a plain
            classifier: the module whose output its global average pooling averages (its
            profile), else the module whose output its own attention pooling reads (the last
            block's norm of a class-token ViT, CaiT's last class-attention norm...).

    Raises:
        ValueError: neither exists; pass ``target_layers`` explicitly.
    """
    if isinstance(model, CAModel):
        return [model.target_layer]
    path, _, reason = _default_layer(model)
    if path is None:
        raise ValueError(
            f"no default target layer is known for {type(model).__name__} ({reason}); pass target_layers, "
            "e.g. target_layers=[model.layer4] or target_layers='layer4' (the last convolutional stage)"
        )
    return [resolve_module(model, path)]


def default_reshape_transform(model: nn.Module, image_size: tuple[int, int]) -> Callable | None:
    """pytorch-grad-cam's ``reshape_transform`` for the default target layer (None when it is NCHW).

    Token layouts drop the prefix tokens and unflatten the patch grid; NHWC maps are permuted.
    """
    if isinstance(model, CAModel):
        layout = model.profile.target_layout
    else:
        _, layout, _ = _default_layer(model)
    if layout is None or layout.kind == "nchw":
        return None
    return lambda tensor: layout.to_nchw(tensor, image_size)


def resolve_target_layers(model: nn.Module, target_layers: TargetLayers) -> list[nn.Module]:
    """Modules from ``target_layers``: None (the default), a module, a dotted path, or a list of them.

    Paths are looked up in ``model.backbone`` for a CAModel (the names of the original
    classifier, as in its spec), then in ``model`` itself.

    Raises:
        TypeError: an element is neither a module nor a string.
        ValueError: a path does not exist, a module is not part of ``model``, or the list is empty.
    """
    if target_layers is None:
        return default_target_layers(model)
    items = [target_layers] if isinstance(target_layers, (nn.Module, str)) else list(target_layers)
    if not items:
        raise ValueError("target_layers is empty; pass None for the default (the last stage) or at least one layer")
    owned = {id(m) for m in model.modules()}
    layers = []
    for item in items:
        if isinstance(item, str):
            layers.append(_lookup(model, item))
        elif isinstance(item, nn.Module):
            if id(item) not in owned:
                raise ValueError(
                    f"target layer {type(item).__name__} is not a submodule of this model (a layer of another copy, "
                    "e.g. of the original classifier after attach_stream(copy=True)?); "
                    "take it from the model you explain"
                )
            layers.append(item)
        else:
            raise TypeError(f"target layers must be nn.Module or dotted path strings, got {type(item).__name__}")
    return layers


def _lookup(model: nn.Module, path: str) -> nn.Module:
    if isinstance(model, CAModel):
        try:
            return model.backbone.get_submodule(path)
        except AttributeError:
            pass
    return resolve_module(model, path)


def _module_name(model: nn.Module, module: nn.Module) -> str:
    return next((name for name, m in model.named_modules() if m is module), type(module).__name__)


@contextlib.contextmanager
def single_call_check(model: nn.Module, layers: Sequence[nn.Module]) -> Iterator[None]:
    """Raise ValueError if a target layer runs more than once in one forward pass of the network.

    Counts reset at every call of the classifier (``model.backbone`` for a CAModel, whose
    class-specific stream may run its backbone twice per forward: once for the GAP
    prediction, once pooled by the stream). The temporary hooks are removed on exit.
    """
    network = model.backbone if isinstance(model, CAModel) else model
    counts = {id(layer): 0 for layer in layers}

    def reset(_module: nn.Module, _inputs: tuple) -> None:
        for key in counts:
            counts[key] = 0

    def make_counter(layer: nn.Module) -> Callable[[nn.Module, tuple, object], None]:
        def count(_module: nn.Module, _inputs: tuple, _output: object) -> None:
            counts[id(layer)] += 1
            if counts[id(layer)] > 1:
                raise ValueError(
                    f"target layer {_module_name(network, layer)!r} ran more than once in one forward pass (a module "
                    "shared between several places, e.g. one activation module reused); pytorch-grad-cam would mix "
                    "its outputs: choose a layer that runs once, such as the last stage or its last block"
                )

        return count

    handles = [network.register_forward_pre_hook(reset)]
    try:
        for layer in {id(layer): layer for layer in layers}.values():
            handles.append(layer.register_forward_hook(make_counter(layer)))
        yield
    finally:
        for handle in handles:
            handle.remove()
