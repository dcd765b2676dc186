"""Writing figures to disk atomically (PNG or SVG, chosen by the file extension)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["save_figure"]

_FORMATS = {".png": "png", ".svg": "svg"}


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 150) -> Path:
    """Save ``fig`` as PNG or SVG (by extension), atomically.

    The figure is written to a temporary file in the destination folder and moved into
    place with ``os.replace``, so a crash never leaves a truncated file at ``path`` and
    readers see either the old file or the new one. Missing parent folders are created.

    Args:
        fig: a ``matplotlib.figure.Figure`` (e.g. from :func:`side_by_side`).
        path: destination ending in ``.png`` or ``.svg`` (case-insensitive).
        dpi: resolution of PNG output.

    Returns:
        The destination path.

    Raises:
        TypeError: ``fig`` is not a matplotlib Figure.
        ValueError: the extension is neither ``.png`` nor ``.svg``.
    """
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib.figure.Figure, got {type(fig).__name__}")
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot save {str(path)!r}: use a .png or .svg file name")
    from ..atomic import atomic_write

    return atomic_write(path, lambda handle: fig.savefig(handle, format=fmt, dpi=dpi, facecolor="white"))
