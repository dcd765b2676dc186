"""Image grids: the paper's Figure 2 (GAP vs CA per CAM method) and Figure 4 (raw attention)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._arrays import image_to_rgb01, split_images, split_maps, to_numpy
from ._style import (
    COLORMAP_JET,
    LABEL_SIZE,
    SUPTITLE_SIZE,
    TICK_SIZE,
    TITLE_SIZE,
    image_axes,
    method_label,
    mpl_colormap,
    new_figure,
    plain_text,
    pooling_key,
    pooling_label,
    sort_poolings,
)
from .overlay import overlay

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["side_by_side", "attention_grid"]

_LABEL_WIDTH = 18  # characters per line of a row label before wrapping
_SPACER = 0.12  # width of the empty column between column groups, in cells
_COLORBAR_LABEL = "saliency, each map min-max normalised (low → high)"


def side_by_side(
    images: Any,
    *,
    raw_attention: Any | None = None,
    methods: Mapping[str, Mapping[str, Any]] | None = None,
    columns: Mapping[str, Any] | None = None,
    predictions: Mapping[str, Sequence[Any]] | Sequence[Any] | None = None,
    titles: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    image_weight: float = 0.5,
    colormap: int = COLORMAP_JET,
    cell_size: float = 2.0,
    colorbar: bool = True,
    suptitle: str | None = None,
) -> Figure:
    """Saliency maps of several methods and poolings, one row per image (paper Figure 2).

    Columns, left to right: the input, the raw CA attention (if given), then for each CAM
    method its GAP map and its CA map, then any extra ``columns``. Headers read e.g.
    ``"Grad-CAM GAP"``; each row is labelled on the left with its title and predicted classes.

    Args:
        images: a batch (B, 3, H, W) / (B, H, W, 3) or a list of B images, in any form
            :func:`overlay` accepts (normalised with ``mean``/``std``, [0, 1] float, uint8).
        raw_attention: the class-agnostic attention, (B, h, w), (B, heads, h, w) (heads are
            averaged) or a list of B maps, e.g. the last entry of ``CAModel.attention(x)``.
        methods: ``{method: {pooling: maps}}`` such as
            ``{"gradcam": {"gap": cams_gap, "ca": cams_ca}}``; method keys like ``"gradcam"``,
            ``"gradcampp"``, ``"scorecam"`` are shown as "Grad-CAM", "Grad-CAM++", "Score-CAM"
            (others verbatim); poolings are shown GAP first, then CA, then others.
        columns: extra ``{header: maps}`` columns appended after the methods.
        predictions: the predicted class per row, either one sequence of B classes or
            ``{pooling: classes}`` (e.g. ``{"gap": pred_gap, "ca": pred_ca}``) to show both.
            Ints (or int tensors) are looked up in ``class_names`` when given.
        titles: one free-text title per row (e.g. ``"#12, true: star"``), shown above the
            predictions in the row label.
        class_names: names for integer class predictions.
        mean: per-channel mean of the normalisation applied to ``images``.
        std: per-channel standard deviation of that normalisation.
        image_weight: image share of each overlay blend, in [0, 1].
        colormap: OpenCV colormap id (default ``cv2.COLORMAP_JET``).
        cell_size: width and height of one image cell in inches.
        colorbar: add one colour bar for all maps under the grid.
        suptitle: optional title for the whole figure.

    Returns:
        A ``matplotlib.figure.Figure`` (not registered with pyplot); save it with
        :func:`~xai_pool.viz.save_figure`.

    Raises:
        TypeError: ``methods``/``columns`` are not mappings, or inputs are not arrays.
        ValueError: no map column is given, map counts differ from the image count, row
            titles or predictions have the wrong length, or an image/map is malformed.
    """
    items = split_images(images)
    count = len(items)
    groups = _column_groups(count, raw_attention, methods, columns)
    labels = _row_labels(count, titles, predictions, class_names)
    rgbs = [image_to_rgb01(image, mean, std, name=f"images[{i}]") for i, image in enumerate(items)]

    # A narrow empty grid column before each method's GAP | CA pair groups them visually.
    ratios, slots = [1.0], []
    for index, group in enumerate(groups):
        if index > 0 or raw_attention is None:
            ratios.append(_SPACER)
        for header, maps in group:
            slots.append((len(ratios), header, maps))
            ratios.append(1.0)
    label_width = 1.3 if any(labels) else 0.0
    fig = new_figure(cell_size * sum(ratios) + label_width, cell_size * count + 0.4 + 0.6 * colorbar)
    gs = fig.add_gridspec(count, len(ratios), width_ratios=ratios)
    axes = []
    for row, rgb in enumerate(rgbs):
        ax = fig.add_subplot(gs[row, 0])
        _show(ax, np.uint8(np.round(255 * rgb)), "Input" if row == 0 else None)
        if labels[row]:
            ax.set_ylabel(plain_text(labels[row]), rotation=0, ha="right", va="center", fontsize=LABEL_SIZE, labelpad=6)
        axes.append(ax)
        for col, header, maps in slots:
            ax = fig.add_subplot(gs[row, col])
            cam = overlay(rgb, maps[row], image_weight=image_weight, colormap=colormap)
            _show(ax, cam, header if row == 0 else None)
            axes.append(ax)
    _finish(fig, axes, colormap, colorbar, suptitle)
    return fig


def attention_grid(
    images: Any,
    attention_maps: Any,
    *,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    block_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    image_weight: float = 0.5,
    colormap: int = COLORMAP_JET,
    cell_size: float = 2.0,
    colorbar: bool = True,
    suptitle: str | None = None,
) -> Figure:
    """Raw CA attention over the input images (paper Figure 4), or every block of the stream.

    Two layouts, chosen by the type of ``attention_maps``:

    * an array or tensor (B, h, w) or (B, heads, h, w): one attention map per image; the grid
      holds (input, attention overlay) pairs, ``ncols`` pairs per row;
    * a list or tuple with one entry per stream block, each (B, h_k, w_k),
      (B, heads, h_k, w_k) or, for a single image, (h_k, w_k) (this is what
      ``CAModel.attention(x)`` returns): one row per image with the input followed by the
      attention of every block, so the maps can be compared from early to late blocks.

    Args:
        images: a batch (B, 3, H, W) / (B, H, W, 3) or a list of B images (see :func:`overlay`).
        attention_maps: see above; heads are averaged.
        titles: one title per image (e.g. the predicted class).
        ncols: pairs per row in the per-image layout (default ``min(B, 4)``); ignored for blocks.
        block_names: column headers for the per-block layout (default ``"Block k (h×w)"``).
        mean: per-channel mean of the normalisation applied to ``images``.
        std: per-channel standard deviation of that normalisation.
        image_weight: image share of each overlay blend, in [0, 1].
        colormap: OpenCV colormap id (default ``cv2.COLORMAP_JET``).
        cell_size: width and height of one image cell in inches.
        colorbar: add one colour bar for all maps under the grid.
        suptitle: optional title for the whole figure.

    Returns:
        A ``matplotlib.figure.Figure`` (not registered with pyplot).

    Raises:
        TypeError: ``attention_maps`` or ``images`` have an unsupported type.
        ValueError: counts disagree (maps vs images, titles, block names), ``ncols < 1``, or a
            map or image is malformed.
    """
    items = split_images(images)
    count = len(items)
    if titles is not None and len(titles) != count:
        raise ValueError(f"titles has {len(titles)} entries but there are {count} images; pass one per image")
    rgbs = [image_to_rgb01(image, mean, std, name=f"images[{i}]") for i, image in enumerate(items)]
    if isinstance(attention_maps, (list, tuple)):
        fig, axes = _block_grid(rgbs, attention_maps, titles, block_names, image_weight, colormap, cell_size, colorbar)
    else:
        maps = split_maps(attention_maps, count, "attention_maps")
        fig, axes = _pair_grid(rgbs, maps, titles, ncols, image_weight, colormap, cell_size, colorbar)
    _finish(fig, axes, colormap, colorbar, suptitle)
    return fig


def _pair_grid(
    rgbs: list[np.ndarray],
    maps: list[np.ndarray],
    titles: Sequence[Any] | None,
    ncols: Any,
    image_weight: float,
    colormap: int,
    cell_size: float,
    colorbar: bool,
) -> tuple[Figure, list[Axes]]:
    count = len(rgbs)
    if ncols is None:
        ncols = min(count, 4)
    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise ValueError(f"ncols must be a positive int (pairs per row), got {ncols!r}")
    ncols = min(int(ncols), count)
    nrows = math.ceil(count / ncols)
    # A narrow empty column between pairs keeps each (input, attention) pair visibly together.
    ratios = [1, 1, 0.12] * ncols
    fig = new_figure(cell_size * (2.12 * ncols - 0.12), cell_size * nrows + 0.4 + 0.6 * colorbar)
    gs = fig.add_gridspec(nrows, 3 * ncols - 1, width_ratios=ratios[:-1])
    axes = []
    for index, (rgb, attention) in enumerate(zip(rgbs, maps, strict=True)):
        row, col = divmod(index, ncols)
        title = titles[index] if titles is not None else f"Image {index + 1}"
        ax = fig.add_subplot(gs[row, 3 * col])
        _show(ax, np.uint8(np.round(255 * rgb)), _wrap(str(title)))
        ax_map = fig.add_subplot(gs[row, 3 * col + 1])
        _show(ax_map, overlay(rgb, attention, image_weight=image_weight, colormap=colormap), "Raw attention")
        axes += [ax, ax_map]
    return fig, axes


def _block_grid(
    rgbs: list[np.ndarray],
    blocks: Sequence[Any],
    titles: Sequence[Any] | None,
    block_names: Sequence[Any] | None,
    image_weight: float,
    colormap: int,
    cell_size: float,
    colorbar: bool,
) -> tuple[Figure, list[Axes]]:
    count = len(rgbs)
    if not blocks:
        raise ValueError("attention_maps is an empty list: pass one (B, h, w) map per stream block")
    per_block = []
    for k, block in enumerate(blocks):
        name = f"attention_maps[{k}]"
        if count == 1 and to_numpy(block, name).ndim == 2:
            block = [block]  # a single image's (h, w) map
        per_block.append(split_maps(block, count, name))
    if block_names is None:
        block_names = [f"Block {k + 1} ({m[0].shape[-2]}×{m[0].shape[-1]})" for k, m in enumerate(per_block)]
    elif len(block_names) != len(per_block):
        raise ValueError(f"block_names has {len(block_names)} entries for {len(per_block)} blocks; pass one per block")
    labels = [_wrap(str(t)) for t in titles] if titles is not None else [""] * count
    ncols = len(per_block) + 1
    label_width = 1.3 if titles is not None else 0.0
    fig = new_figure(cell_size * ncols + label_width, cell_size * count + 0.4 + 0.6 * colorbar)
    gs = fig.add_gridspec(count, ncols)
    axes = []
    for row, rgb in enumerate(rgbs):
        ax = fig.add_subplot(gs[row, 0])
        _show(ax, np.uint8(np.round(255 * rgb)), "Input" if row == 0 else None)
        if labels[row]:
            ax.set_ylabel(plain_text(labels[row]), rotation=0, ha="right", va="center", fontsize=LABEL_SIZE, labelpad=6)
        axes.append(ax)
        for col, maps in enumerate(per_block, start=1):
            ax = fig.add_subplot(gs[row, col])
            cam = overlay(rgb, maps[row], image_weight=image_weight, colormap=colormap)
            _show(ax, cam, str(block_names[col - 1]) if row == 0 else None)
            axes.append(ax)
    return fig, axes


def _column_groups(
    count: int, raw_attention: Any, methods: Any, columns: Any
) -> list[list[tuple[str, list[np.ndarray]]]]:
    """The (header, per-image maps) of every column after the input, grouped.

    The raw attention comes first (next to the input), then one group per method, then the
    extra columns.
    """
    groups = []
    if raw_attention is not None:
        groups.append([("Raw attention", split_maps(raw_attention, count, "raw_attention"))])
    if methods is not None:
        if not isinstance(methods, Mapping):
            raise TypeError(
                "methods must be a mapping {method: {pooling: maps}}, e.g. "
                f"{{'gradcam': {{'gap': maps, 'ca': maps}}}}, got {type(methods).__name__}"
            )
        for method, per_pooling in methods.items():
            if not isinstance(per_pooling, Mapping) or not per_pooling:
                raise TypeError(
                    f"methods[{method!r}] must be a non-empty mapping {{pooling: maps}} such as "
                    f"{{'gap': maps, 'ca': maps}}, got {type(per_pooling).__name__}"
                )
            by_key = {}
            for pooling, maps in per_pooling.items():
                key = pooling_key(pooling)
                if key in by_key:
                    raise ValueError(f"methods[{method!r}] names pooling {key!r} twice")
                by_key[key] = maps
            group = []
            for key in sort_poolings(list(by_key)):
                maps = split_maps(by_key[key], count, f"methods[{method!r}][{key!r}]")
                group.append((f"{method_label(method)} {pooling_label(key)}", maps))
            groups.append(group)
    if columns is not None:
        if not isinstance(columns, Mapping):
            raise TypeError(f"columns must be a mapping {{header: maps}}, got {type(columns).__name__}")
        extra = [(str(header), split_maps(maps, count, f"columns[{header!r}]")) for header, maps in columns.items()]
        groups.append(extra)
    groups = [group for group in groups if group]
    if not groups:
        raise ValueError("nothing to show next to the images: pass raw_attention, methods or columns")
    return groups


def _row_labels(count: int, titles: Any, predictions: Any, class_names: Sequence[str] | None) -> list[str]:
    lines: list[list[str]] = [[] for _ in range(count)]
    if titles is not None:
        if isinstance(titles, str) or len(titles) != count:
            raise ValueError(f"titles must hold one string per image ({count})")
        for row, title in enumerate(titles):
            lines[row].append(str(title))
    if predictions is not None:
        named = predictions.items() if isinstance(predictions, Mapping) else [(None, predictions)]
        for pooling, classes in named:
            name = "predictions" if pooling is None else f"predictions[{pooling!r}]"
            values = _class_list(classes, count, class_names, name)
            prefix = "predicted" if pooling is None else pooling_label(pooling)
            for row, value in enumerate(values):
                lines[row].append(f"{prefix}: {value}")
    return ["\n".join(_wrap(line) for line in row) for row in lines]


def _class_list(classes: Any, count: int, class_names: Sequence[str] | None, name: str) -> list[str]:
    if isinstance(classes, str):
        raise TypeError(f"{name} must be a sequence of classes, one per image, not a string")
    values = list(to_numpy(classes, name).reshape(-1)) if not isinstance(classes, (list, tuple)) else list(classes)
    if len(values) != count:
        raise ValueError(f"{name} has {len(values)} entries but there are {count} images; pass one per image")
    out = []
    for value in values:
        if class_names is not None and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if not 0 <= value < len(class_names):
                raise ValueError(f"{name} holds class {value}, outside class_names (0..{len(class_names) - 1})")
            value = class_names[value]
        out.append(str(value))
    return out


def _wrap(text: str) -> str:
    return "\n".join(textwrap.wrap(text, _LABEL_WIDTH)) if len(text) > _LABEL_WIDTH else text


def _show(ax: Axes, rgb: np.ndarray, title: str | None) -> None:
    ax.imshow(rgb, interpolation="antialiased")  # smooth when downsampling, crisp when enlarging
    image_axes(ax)
    if title:
        ax.set_title(plain_text(title), fontsize=TITLE_SIZE)


def _finish(fig: Figure, axes: list[Axes], colormap: int, colorbar: bool, suptitle: str | None) -> None:
    if colorbar:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        mappable = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=mpl_colormap(colormap))
        bar = fig.colorbar(mappable, ax=axes, location="bottom", shrink=0.35, aspect=35, pad=0.02)
        bar.set_label(plain_text(_COLORBAR_LABEL), fontsize=LABEL_SIZE)
        bar.set_ticks([0.0, 0.5, 1.0])
        bar.ax.tick_params(labelsize=TICK_SIZE)
    if suptitle:
        fig.suptitle(plain_text(suptitle), fontsize=SUPTITLE_SIZE)
