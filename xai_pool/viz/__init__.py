"""Figures for GAP-vs-CA saliency comparisons (matplotlib, loaded only when a function runs).

Every figure function takes numpy arrays or torch tensors and returns a
``matplotlib.figure.Figure`` built without pyplot, so no figure is left open; write it with
:func:`save_figure`. ``docs/figures.md`` explains how to read each figure.

- :func:`overlay`: one RGB heat-map overlay (uint8 array), on pytorch-grad-cam.
- :func:`side_by_side`: input, raw attention and each CAM method with GAP | CA (paper Fig. 2).
- :func:`attention_grid`: raw attention over many images, or every stream block (paper Fig. 4).
- :func:`insertion_deletion_curves`: GAP vs CA curves with the AUC in the legend.
- :func:`metric_bars`: every metric as grouped bars with 95% confidence intervals.
"""

from __future__ import annotations

from .bars import metric_bars
from .curves import insertion_deletion_curves
from .grids import attention_grid, side_by_side
from .overlay import overlay
from .save import save_figure

__all__ = [
    "attention_grid",
    "insertion_deletion_curves",
    "metric_bars",
    "overlay",
    "save_figure",
    "side_by_side",
]
