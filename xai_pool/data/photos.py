"""Real photos, offline: the sample images that ship with scikit-image and matplotlib.

They are the quickest way to check an ImageNet model and its explanations without any
download. Only files inside the installed packages are used (scikit-image's functions that
fetch data with pooch are not offered).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["PHOTO_NAMES", "Photos", "load_photo", "sample_photos"]

# Photos of ImageNet-like objects first; the rest are scientific images (useful as
# out-of-distribution checks, not as classification examples).
PHOTO_NAMES: tuple[str, ...] = (
    "chelsea",  # a tabby cat
    "coffee",  # an espresso cup
    "astronaut",  # Eileen Collins, with a flag and a space shuttle model
    "rocket",  # a rocket on its launch pad
    "grace_hopper",  # matplotlib's sample photo of Grace Hopper in uniform
    "stereo_motorcycle",  # left image of a stereo pair: a motorcycle
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)


def load_photo(name: str) -> np.ndarray:
    """One sample photo as uint8 RGB (H, W, 3).

    Args:
        name: one of :data:`PHOTO_NAMES`.

    Raises:
        ValueError: ``name`` is not a known photo (the message lists them).
    """
    if name not in PHOTO_NAMES:
        raise ValueError(f"unknown photo {name!r}; choose from {', '.join(PHOTO_NAMES)}")
    if name == "grace_hopper":
        import matplotlib.cbook
        from PIL import Image

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
            image = np.asarray(Image.open(handle).convert("RGB"))
    else:
        import skimage.data

        image = getattr(skimage.data, name)()
        if name == "stereo_motorcycle":
            image = image[0]  # (left, right, disparity)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., :3]).astype(np.uint8)


@dataclass(frozen=True)
class Photos:
    """What :func:`sample_photos` returns.

    Attributes:
        names: the photo names, in batch order.
        images: float32 (N, 3, size, size), normalised with the requested mean and std:
            the model's input.
        rgb: float32 (N, size, size, 3) in [0, 1], the same crops before normalisation, for
            overlays (``xai_pool.viz.overlay`` or pytorch-grad-cam's ``show_cam_on_image``).
    """

    names: tuple[str, ...]
    images: Tensor
    rgb: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


def sample_photos(
    names: Sequence[str] | None = None,
    *,
    size: int = 224,
    resize: int | None = None,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
) -> Photos:
    """Photos preprocessed like an ImageNet evaluation: resize the short side, centre crop.

    Args:
        names: photos to load (default: the five ImageNet-like ones, chelsea to grace_hopper).
        size: side of the square centre crop (the model's input size).
        resize: short side before cropping (default ``round(size * 256 / 224)``, the usual
            ImageNet ratio).
        mean: per-channel normalisation mean (ImageNet's by default; EfficientNet-Lite0
            wants ``xai_pool.zoo.LITE0_MEAN``).
        std: per-channel normalisation standard deviation.

    Returns:
        A :class:`Photos` with the normalised batch and the RGB crops.

    Raises:
        ValueError: an unknown name, or a size/mean/std that is out of range.

    Example:
        >>> from xai_pool.zoo import LITE0_MEAN, LITE0_STD
        >>> photos = sample_photos(["chelsea", "coffee"], mean=LITE0_MEAN, std=LITE0_STD)
        >>> photos.images.shape
        torch.Size([2, 3, 224, 224])
    """
    from PIL import Image
    from torchvision.transforms import functional as TF

    names = tuple(PHOTO_NAMES[:5] if names is None else names)
    if not names:
        raise ValueError("names is empty; pass at least one of " + ", ".join(PHOTO_NAMES))
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    resize = int(round(size * 256 / 224)) if resize is None else resize
    if isinstance(resize, bool) or not isinstance(resize, int) or resize < size:
        raise ValueError(f"resize must be an int >= size ({size}), got {resize!r}")
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(3, 1, 1)
    if mean_t.numel() != 3 or std_t.numel() != 3 or bool((std_t <= 0).any()):
        raise ValueError(f"mean and std must be 3 values with std > 0, got mean={mean!r} std={std!r}")

    crops = []
    for name in names:
        image = Image.fromarray(load_photo(name))
        image = TF.center_crop(TF.resize(image, resize, interpolation=TF.InterpolationMode.BICUBIC), [size, size])
        crops.append(TF.to_tensor(image))  # float [0, 1], (3, size, size)
    rgb = torch.stack(crops)
    images = (rgb - mean_t) / std_t
    return Photos(names=names, images=images.contiguous(), rgb=rgb.permute(0, 2, 3, 1).numpy().copy())
