"""Embedded data: :class:`ShapesScenes`, a generated benchmark with ground-truth masks.

Nothing is downloaded: every image is rendered on demand from its index and seed.
"""

from __future__ import annotations

from .shapes import SHAPE_CLASSES, SHAPES_MEAN, SHAPES_STD, RenderedScene, ShapesScenes, normalization

__all__ = ["SHAPE_CLASSES", "SHAPES_MEAN", "SHAPES_STD", "RenderedScene", "ShapesScenes", "normalization"]
