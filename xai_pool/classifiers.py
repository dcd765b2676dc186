"""Build a classifier by name (torchvision, timm, or xai_pool's embedded zoo) from a local weights file.

Nothing is ever downloaded: ``weights`` is a path to a state dict saved with ``torch.save``
(read with ``weights_only=True``), or None for random initialisation.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .checkpoint import safe_torch_load

__all__ = ["build_classifier", "load_state_dict_strict", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def _create(arch: str, num_classes: int | None) -> nn.Module:
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if arch == "shapes_resnet":
        from .zoo import shapes_resnet

        return shapes_resnet(pretrained=False, **kwargs)
    import torchvision

    if arch in torchvision.models.list_models(module=torchvision.models):
        return torchvision.models.get_model(arch, weights=None, **kwargs)
    try:
        import timm
    except ImportError:
        timm = None
    if timm is not None and timm.is_model(arch):
        return timm.create_model(arch, pretrained=False, **kwargs)
    hint = "" if timm is not None else " (timm is not installed: pip install 'xai_pool[timm]' for timm names)"
    raise ValueError(
        f"unknown architecture {arch!r}: use a torchvision or timm classifier name, or 'shapes_resnet'{hint}"
    )


def build_classifier(
    arch: str, weights: str | os.PathLike | None = None, *, num_classes: int | None = None
) -> nn.Module:
    """Create ``arch`` and load ``weights`` strictly (nothing is downloaded).

    Args:
        arch: a torchvision (``resnet50``) or timm (``convnext_tiny``) model name, or
            ``shapes_resnet`` (the embedded demo model, with its shipped weights if ``weights`` is None).
        weights: local state-dict file; the number of classes is read from it unless given.
        num_classes: override the classifier's output count.

    Returns:
        The classifier in eval mode.
    """
    if weights is None:
        if arch == "shapes_resnet":
            from .zoo import shapes_resnet

            return shapes_resnet(pretrained=True).eval()
        return _create(arch, num_classes).eval()
    source = repr(str(weights))
    state_dict = _extract_state_dict(safe_torch_load(weights, what="weights file"), source)
    model = _create(arch, num_classes if num_classes is not None else _infer_num_classes(state_dict))
    load_state_dict_strict(model, state_dict, source=source, arch=arch)
    return model.eval()
