"""Embedded data: a generated benchmark with ground-truth masks, and real photos.

:class:`ShapesScenes` is the benchmark; :func:`sample_photos` gives real photos that ship with
scikit-image and matplotlib.

Nothing is downloaded: every image is rendered on demand from its index and seed.
"""

from __future__ import annotations

from .photos import PHOTO_NAMES, Photos, load_photo, sample_photos
from .shapes import SHAPE_CLASSES, SHAPES_MEAN, SHAPES_STD, RenderedScene, ShapesScenes, normalization

__all__ = [
    "PHOTO_NAMES",
    "Photos",
    "load_photo",
    "sample_photos",
    "SHAPE_CLASSES",
    "SHAPES_MEAN",
    "SHAPES_STD",
    "RenderedScene",
    "ShapesScenes",
    "normalization",
]
