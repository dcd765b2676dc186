"""What a model and its library say about it, before any probe.

timm's ``pretrained_cfg``, torchvision's weights, declared attributes (``xai_pool_preprocessing``),
fixed input sizes, input channels, layout hints.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .preprocessing import Preprocessing, from_timm, from_torchvision_weights, imagenet_default

__all__ = [
    "timm_cfg",
    "model_family",
    "resolve_preprocessing",
    "fixed_input_size",
    "channel_candidates",
    "layout_hints",
]


def timm_cfg(model: nn.Module) -> dict | None:
    """The ``pretrained_cfg`` of a model timm built, else None."""
    cfg = getattr(model, "pretrained_cfg", None)
    return cfg if isinstance(cfg, dict) else None


def model_family(model: nn.Module) -> str:
    """A short name for messages and caches: ``timm-<architecture>``, ``torchvision-<class>`` or the class name."""
    cfg = timm_cfg(model)
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


def fixed_input_size(model: nn.Module, preprocessing: Preprocessing) -> tuple[int, int] | None:
    """The (H, W) a model refuses to run without (timm fixed-size models, torchvision ViTs), else None."""
    cfg = timm_cfg(model)
    patch_embed = getattr(model, "patch_embed", None)
    built = getattr(patch_embed, "img_size", None)
    if (
        cfg
        and isinstance(built, (tuple, list))
        and len(built) == 2
        and not getattr(model, "dynamic_img_size", False)
        and (cfg.get("fixed_input_size") or getattr(patch_embed, "strict_img_size", False))
    ):
        return (int(built[0]), int(built[1]))  # the size the model was built for (img_size=...), not the cfg's
    if cfg and cfg.get("fixed_input_size"):
        return preprocessing.input_size
    if type(model).__module__.startswith("torchvision.models") and isinstance(getattr(model, "image_size", None), int):
        return (model.image_size, model.image_size)  # torchvision ViT asserts its image_size
    return None


def channel_candidates(model: nn.Module, preprocessing: Preprocessing, explicit: int | None) -> list[int]:
    """Input channel counts to probe with, most trusted first.

    The first conv comes last: stems like tresnet's space-to-depth read more channels than the image has.
    """
    if explicit is not None:
        return [explicit]
    candidates = []
    cfg = timm_cfg(model)
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


def layout_hints(model: nn.Module) -> dict[str, Any]:
    """What the model says about its feature layout: timm's ``num_prefix_tokens`` and ``output_fmt``."""
    hints: dict[str, Any] = {}
    prefix = getattr(model, "num_prefix_tokens", None)
    if isinstance(prefix, int):
        hints["prefix_tokens"] = prefix
    fmt = getattr(model, "output_fmt", None)
    if isinstance(fmt, str) and fmt.lower() in ("nchw", "nhwc"):
        hints["kind"] = fmt.lower()
    return hints
