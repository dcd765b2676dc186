"""Reading images from disk: single images, and folders of images.

The ImageFolder reader skips unreadable files (with a warning and a count) instead of
crashing a long run.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import default_collate

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["load_image", "SafeImageFolder", "skip_none_collate", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def load_image(path: str | os.PathLike) -> Image:
    """Open ``path`` as an RGB PIL image, with an error that names the file.

    Args:
        path: the image file.

    Returns:
        The image, converted to RGB and loaded (the file is closed).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file is not an image PIL can read.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {str(path)!r} does not exist")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"image {str(path)!r} cannot be read ({exc}); is it a valid image file?") from exc


class SafeImageFolder:
    """A torchvision ``ImageFolder`` whose unreadable images yield ``None``.

    Those are dropped by :func:`skip_none_collate` and counted in ``.skipped`` with a warning.

    Args:
        root: the folder, one sub-folder per class (sorted names are class indices 0..N-1).
        transform: applied to each PIL image.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: ``root`` holds no images in ImageFolder layout.
    """

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None) -> None:
        from torchvision.datasets import ImageFolder

        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
        try:
            self._folder = ImageFolder(str(root), transform=transform, is_valid_file=self._has_image_extension)
        except FileNotFoundError as exc:
            raise ValueError(
                f"data folder {str(root)!r} has no images in ImageFolder layout (one sub-folder per class "
                f"holding {', '.join(IMAGE_EXTENSIONS[:4])}... files): {exc}"
            ) from None
        self.skipped = 0
        self.classes = self._folder.classes
        self.samples = self._folder.samples
        self.targets = self._folder.targets

    @staticmethod
    def _has_image_extension(path: str) -> bool:
        return path.lower().endswith(IMAGE_EXTENSIONS)

    def __len__(self) -> int:
        return len(self._folder)

    def __getitem__(self, index: int) -> tuple[Tensor, int] | None:
        folder = self._folder
        path, target = folder.samples[index]
        try:
            sample = folder.loader(path)
        except (OSError, ValueError, SyntaxError) as exc:  # PIL's errors for broken files
            self.skipped += 1
            warnings.warn(f"skipping unreadable image {path!r}: {exc}", stacklevel=2)
            return None
        # Only reading the file may fail quietly: an error of the transform (a bad size or
        # parameter) is not a broken image and must surface.
        if folder.transform is not None:
            sample = folder.transform(sample)
        if folder.target_transform is not None:
            target = folder.target_transform(target)
        return sample, target


def skip_none_collate(batch: list) -> object:
    """``default_collate`` that drops the ``None`` samples of unreadable images."""
    kept = [item for item in batch if item is not None]
    if not kept:
        return None
    return default_collate(kept)


def to_tensor_batch(images: list) -> Tensor:
    """Stack already-transformed image tensors into a batch."""
    return torch.stack(images)
