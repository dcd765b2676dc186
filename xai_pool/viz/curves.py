"""Insertion / deletion curves, GAP vs CA, with the area under each curve in the legend."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ._arrays import to_numpy
from ._style import (
    LABEL_SIZE,
    METHOD_COLORS,
    POOLING_LINESTYLES,
    TICK_SIZE,
    TITLE_SIZE,
    method_label,
    new_figure,
    plain_text,
    pooling_key,
    pooling_label,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["insertion_deletion_curves"]

_KINDS = {
    "insertion": ("Insertion (higher AUC is better)", "fraction of pixels inserted"),
    "deletion": ("Deletion (lower AUC is better)", "fraction of pixels deleted"),
}
_Z95 = 1.959964  # two-sided 95% normal quantile


def insertion_deletion_curves(
    curves: Mapping[Any, Any],
    *,
    kind: str = "insertion",
    x: Any | None = None,
    auc: Mapping[Any, float] | None = None,
    band: bool = True,
    title: str | None = None,
    ylabel: str = "probability of the class",
    size: tuple[float, float] = (6.0, 4.2),
) -> Figure:
    """Insertion or deletion curves of several method/pooling pairs on one axes.

    Each curve is labelled with its area under the curve, e.g. ``"Grad-CAM / CA (AUC 71.2)"``.
    Curves of the same CAM method share a colour; GAP is dashed and CA solid, so the GAP-vs-CA
    gap of each method reads directly.

    Args:
        curves: ``{label: values}``. A label is a string (``"Grad-CAM / CA"``; a trailing
            ``" / GAP"`` or ``" / CA"`` selects the line style) or a ``(method, pooling)``
            tuple such as ``("gradcam", "ca")``. Values are one curve (n_points,) or per-image
            curves (N, n_points); for the latter the mean is drawn with a shaded 95%
            confidence band of the mean (normal approximation, mean ± 1.96 SE).
        kind: ``"insertion"`` or ``"deletion"``; sets the title and the x label.
        x: the fraction of pixels changed at each point, (n_points,) in [0, 1] and
            non-decreasing (e.g. ``xai_pool.metrics.curve_fractions``); default evenly spaced.
        auc: optional precomputed AUC per label (same keys as ``curves``) shown instead of the
            trapezoid area of the drawn mean curve, which is otherwise computed, in percent.
        band: draw the 95% band for per-image curves.
        title: axes title; default names the kind and whether higher or lower is better.
        ylabel: y axis label.
        size: figure size in inches.

    Returns:
        A ``matplotlib.figure.Figure`` (not registered with pyplot).

    Raises:
        TypeError: ``curves`` is not a mapping or a curve is not numeric.
        ValueError: unknown ``kind``, empty ``curves``, a curve with the wrong number of
            dimensions, fewer than 2 points or non-finite values, or ``x`` that does not
            match the curves or is not a non-decreasing sequence in [0, 1].
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be 'insertion' or 'deletion', got {kind!r}")
    if not isinstance(curves, Mapping):
        raise TypeError(f"curves must be a mapping {{label: values}}, got {type(curves).__name__}")
    if not curves:
        raise ValueError("curves is empty: pass at least one {label: values} entry")
    if auc is not None and not isinstance(auc, Mapping):
        raise TypeError(f"auc must be a mapping {{label: area}} with the keys of curves, got {type(auc).__name__}")
    default_title, xlabel = _KINDS[kind]

    fig = new_figure(*size)
    ax = fig.add_subplot()
    method_colors: dict[str, str] = {}
    top = 1.0
    for key, values in curves.items():
        method, pooling = _split_label(key)
        mean, half_width = _mean_and_band(values, f"curves[{key!r}]")
        xs = _x_axis(x, mean.size, f"curves[{key!r}]")
        area = float(auc[key]) if auc is not None and key in auc else 100.0 * _trapezoid(mean, xs)
        color = method_colors.setdefault(method, METHOD_COLORS[len(method_colors) % len(METHOD_COLORS)])
        style = POOLING_LINESTYLES.get(pooling_key(pooling), ":") if pooling is not None else "-"
        name = method if pooling is None else f"{method} / {pooling_label(pooling)}"
        ax.plot(xs, mean, color=color, linestyle=style, linewidth=2, label=plain_text(f"{name} (AUC {area:.1f})"))
        if band and half_width is not None:
            ax.fill_between(xs, mean - half_width, mean + half_width, color=color, alpha=0.15, linewidth=0)
            top = max(top, float(np.max(mean + half_width)))
        top = max(top, float(np.max(mean)))
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, top * 1.03)
    ax.set_xlabel(plain_text(xlabel), fontsize=LABEL_SIZE)
    ax.set_ylabel(plain_text(ylabel), fontsize=LABEL_SIZE)
    ax.set_title(plain_text(title if title is not None else default_title), fontsize=TITLE_SIZE)
    ax.tick_params(labelsize=TICK_SIZE)
    ax.grid(True, alpha=0.3)
    # Insertion curves rise (free space top-left is empty at the start, bottom-right at the
    # end), deletion curves fall: put the legend where the curves are not.
    ax.legend(fontsize=TICK_SIZE, loc="lower right" if kind == "insertion" else "upper right", framealpha=0.9)
    return fig


def _split_label(key: Any) -> tuple[str, str | None]:
    """(method display name, pooling or None) from a tuple key or a "Method / POOL" string."""
    if isinstance(key, tuple):
        if len(key) != 2:
            raise ValueError(f"a tuple curve label must be (method, pooling), got {key!r}")
        return method_label(key[0]), str(key[1])
    text = str(key)
    if " / " in text:
        method, pooling = text.rsplit(" / ", 1)
        if pooling_key(pooling) in POOLING_LINESTYLES:
            return method_label(method), pooling
    return method_label(text), None


def _mean_and_band(values: Any, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    array = to_numpy(values, name).astype(np.float64)
    if array.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be one curve (n_points,) or per-image curves (N, n_points), got shape {array.shape}"
        )
    if array.shape[-1] < 2 or array.size == 0:
        raise ValueError(f"{name} needs at least 2 points per curve, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if array.ndim == 1 or array.shape[0] == 1:
        return array.reshape(-1), None
    half_width = _Z95 * array.std(axis=0, ddof=1) / np.sqrt(array.shape[0])
    return array.mean(axis=0), half_width


def _x_axis(x: Any, n_points: int, name: str) -> np.ndarray:
    if x is None:
        return np.linspace(0.0, 1.0, n_points)
    xs = to_numpy(x, "x").astype(np.float64)
    if xs.shape != (n_points,):
        raise ValueError(f"x has shape {xs.shape} but {name} has {n_points} points; pass one x per point")
    if not np.isfinite(xs).all() or xs.min() < 0 or xs.max() > 1 or np.any(np.diff(xs) < 0):
        raise ValueError("x must be non-decreasing fractions of pixels in [0, 1]")
    return xs


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)
