"""Preprocessing of a model: the statistics and sizes its weights were trained with.

Every command and every report takes its image transform from the model profile, so an image
is normalised the way the classifier expects whatever command reads it. Sources, in order:
what the model declares (``xai_pool_preprocessing``), timm's ``pretrained_cfg`` (through
``timm.data.resolve_model_data_config``), torchvision's weights metadata (the weights enum's
``transforms()``), then the ImageNet default (224 crop of a 256 resize, bilinear), which is
marked as a default in ``source`` so that reports say the numbers rest on a guess.

The evaluation transform is the one timm and torchvision use: resize the shorter side to
``resize_size`` (``crop_mode="center"``) or both sides (``"squash"``), centre crop
``input_size``, scale to [0, 1], normalise. The training transform is the torchvision ImageNet
recipe the paper uses: random resized crop to ``input_size`` and horizontal flip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

__all__ = [
    "Preprocessing",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "imagenet_default",
    "from_timm",
    "from_torchvision_weights",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
_CROP_MODES = ("center", "squash")


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2 or any(isinstance(v, bool) or v < 1 for v in pair):
        raise ValueError(f"{what} must be a positive int or a (height, width) pair, got {value!r}")
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class Preprocessing:
    """How images are turned into the tensors a model expects.

    Args:
        mean: per-channel mean subtracted after scaling to [0, 1].
        std: per-channel standard deviation divided by.
        input_size: (H, W) of the network input (the centre crop).
        resize_size: the shorter side after resizing, before the crop (``crop_mode="center"``), or
            the side of the square resize (``"squash"``).
        interpolation: ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
        crop_mode: ``"center"`` (keep the aspect ratio, crop the centre) or ``"squash"``.
        source: where these values come from (shown in reports and run metadata).
    """

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_size: tuple[int, int] = (224, 224)
    resize_size: int = 256
    interpolation: str = "bilinear"
    crop_mode: str = "center"
    source: str = "ImageNet default"

    def __post_init__(self) -> None:
        mean = tuple(float(v) for v in self.mean)
        std = tuple(float(v) for v in self.std)
        if not mean or len(mean) != len(std):
            raise ValueError(f"mean and std need one value per channel, got mean={self.mean!r} std={self.std!r}")
        if any(not math.isfinite(v) for v in mean + std) or any(v <= 0 for v in std):
            raise ValueError(f"std must be positive and mean/std finite, got mean={self.mean!r} std={self.std!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "input_size", _pair(self.input_size, "input_size"))
        if isinstance(self.resize_size, bool) or int(self.resize_size) < 1:
            raise ValueError(f"resize_size must be a positive int, got {self.resize_size!r}")
        object.__setattr__(self, "resize_size", int(self.resize_size))
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(_INTERPOLATIONS)}, got {self.interpolation!r}")
        if self.crop_mode not in _CROP_MODES:
            raise ValueError(f"crop_mode must be one of {', '.join(_CROP_MODES)}, got {self.crop_mode!r}")

    @property
    def channels(self) -> int:
        """The number of input channels the statistics describe."""
        return len(self.mean)

    @property
    def crop_pct(self) -> float:
        """Crop side over resize side (timm's ``crop_pct``)."""
        return min(self.input_size) / self.resize_size

    def with_overrides(
        self,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        size: int | Sequence[int] | None = None,
        resize: int | None = None,
        source: str = "user",
    ) -> Preprocessing:
        """A copy with the given values replaced; a new ``size`` keeps the crop fraction unless ``resize`` is given."""
        if mean is None and std is None and size is None and resize is None:
            return self
        changes: dict[str, Any] = {"source": f"{self.source}; {source} override"}
        if mean is not None:
            changes["mean"] = tuple(mean)
        if std is not None:
            changes["std"] = tuple(std)
        if size is not None:
            new_size = _pair(size, "size")
            changes["input_size"] = new_size
            changes["resize_size"] = max(1, math.floor(min(new_size) / self.crop_pct))
        if resize is not None:
            changes["resize_size"] = resize
        return replace(self, **changes)

    def eval_transform(self) -> Callable:
        """PIL image -> normalised tensor (C, H, W): resize, centre crop, to tensor, normalise."""
        from torchvision import transforms as T

        mode = T.InterpolationMode(self.interpolation)
        if self.crop_mode == "squash":
            resize = T.Resize((self.resize_size, self.resize_size), interpolation=mode)
        else:
            resize = T.Resize(self.resize_size, interpolation=mode)
        return T.Compose([resize, T.CenterCrop(self.input_size), T.ToTensor(), T.Normalize(self.mean, self.std)])

    def train_transform(self) -> Callable:
        """PIL image -> tensor with the ImageNet training augmentation (random resized crop, flip)."""
        from torchvision import transforms as T

        mode = T.InterpolationMode(self.interpolation)
        return T.Compose(
            [
                T.RandomResizedCrop(self.input_size, interpolation=mode),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(self.mean, self.std),
            ]
        )

    def transform(self, train: bool = False) -> Callable:
        """The training (``train=True``) or evaluation transform."""
        return self.train_transform() if train else self.eval_transform()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly values (for run metadata and reports)."""
        data = asdict(self)
        data["mean"], data["std"], data["input_size"] = list(self.mean), list(self.std), list(self.input_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "mean": tuple(data["mean"]), "std": tuple(data["std"])})

    def describe(self) -> str:
        """One line for logs and reports."""
        mean = ", ".join(f"{v:.4g}" for v in self.mean)
        std = ", ".join(f"{v:.4g}" for v in self.std)
        h, w = self.input_size
        return (
            f"resize {self.resize_size} ({self.interpolation}, {self.crop_mode}), crop {h}x{w}, "
            f"mean ({mean}), std ({std}) [{self.source}]"
        )


def imagenet_default() -> Preprocessing:
    """ImageNet statistics, 256 resize, 224 centre crop, bilinear: the fallback, marked as such."""
    return Preprocessing(source="ImageNet default (the model declares no preprocessing)")


def from_timm(model: Any) -> Preprocessing | None:
    """Preprocessing from a timm model's ``pretrained_cfg``, or None if it is not a timm model."""
    if not isinstance(getattr(model, "pretrained_cfg", None), dict):
        return None
    try:
        from timm.data import resolve_model_data_config
    except ImportError:  # pragma: no cover - a timm model without timm installed cannot exist
        return None
    config = resolve_model_data_config(model)
    _, height, width = config["input_size"]
    crop_pct = float(config.get("crop_pct") or 0.875)
    crop_mode = config.get("crop_mode") or "center"
    if crop_mode not in _CROP_MODES:
        crop_mode = "center"  # 'border' pads instead of cropping; centre crop is the closest supported choice
    name = model.pretrained_cfg.get("architecture") or type(model).__name__
    return Preprocessing(
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        input_size=(height, width),
        resize_size=math.floor(min(height, width) / crop_pct),
        interpolation=config.get("interpolation") or "bilinear",
        crop_mode=crop_mode,
        source=f"timm pretrained_cfg of {name}",
    )


def from_torchvision_weights(arch: str) -> Preprocessing | None:
    """Preprocessing from torchvision's metadata for the default weights of ``arch``, or None."""
    try:
        import torchvision
    except ImportError:  # pragma: no cover
        return None
    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None
    transform = weights.transforms()
    crop = transform.crop_size
    resize = transform.resize_size
    crop_size = (crop[0], crop[-1]) if isinstance(crop, (list, tuple)) else (crop, crop)
    resize_side = resize[0] if isinstance(resize, (list, tuple)) else resize
    return Preprocessing(
        mean=tuple(transform.mean),
        std=tuple(transform.std),
        input_size=crop_size,
        resize_size=int(resize_side),
        interpolation=transform.interpolation.value,
        source=f"torchvision {weights}",
    )
