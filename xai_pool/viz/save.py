"""Writing figures to disk atomically (PNG or SVG, chosen by the file extension)."""

from __future__ import annotations

import os
import tempfile
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, format=fmt, dpi=dpi, facecolor="white")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
