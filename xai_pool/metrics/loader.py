"""``evaluate_loader``: stream a dataset through :func:`~xai_pool.metrics.evaluate`.

A thin layer over the dataset driver (:func:`xai_pool.metrics.driver.run_dataset`) with one
explainer: memory stays bounded by one loader batch (maps are computed, scored and dropped
batch by batch; only the per-image results, and the curves when asked, are kept), the clean
forward and the substrates are computed once per batch, and under ``torchrun`` the batches
are sharded over the processes and gathered back in dataset order, so that every rank
returns exactly what one process would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .driver import run_dataset
from .evaluate import DEFAULT_METRICS, Protocol, model_statistics

__all__ = ["evaluate_loader"]

SaliencyFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], Any]
_PAIR = ("saliency", "model")


def evaluate_loader(
    model: nn.Module,
    loader: Iterable[Sequence[Any]],
    saliency_fn: SaliencyFn,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    target: str = "label",
    progress: bool = True,
    return_curves: bool = False,
    **options: Any,
) -> dict[str, np.ndarray]:
    """Compute metrics over a whole dataset, one loader batch at a time.

    Args:
        model: the classifier, as for :func:`~xai_pool.metrics.evaluate`.
        loader: iterable of ``(images, labels)`` or ``(images, labels, masks)`` batches,
            e.g. a ``torch.utils.data.DataLoader`` without shuffling.
        saliency_fn: ``saliency_fn(model, images, classes) -> maps`` (B, h, w); called outside
            inference mode, so gradient-based explainers work. ``images`` are on the model's
            device; a tensor map stays on its device.
        metrics: metric names, as for ``evaluate``.
        target: ``"label"`` explains and scores the loader's labels; ``"prediction"`` the
            model's argmax on the clean image.
        progress: show a tqdm progress bar (only when stderr is a terminal).
        return_curves: also return every image's ``"insertion_curve"`` / ``"deletion_curve"``
            (memory grows with the dataset).
        **options: the other options of ``evaluate`` (``step``, ``batch_size``, substrates,
            ``mean``/``std``, ``masking_space``, ``tolerance``, ``on_invalid``, ROAD's); not
            ``device``: everything runs on the model's device.

    Returns:
        The ``evaluate`` dict for the whole dataset, rows in dataset order.

    Raises:
        ValueError: ``target`` is unknown, an option is invalid, or a batch is not a 2- or
            3-tuple.
    """
    options["mean"], options["std"] = model_statistics(model, options.get("mean"), options.get("std"))
    protocol = Protocol.create(metrics=metrics, **options)
    evaluation = run_dataset(
        model,
        loader,
        {_PAIR: saliency_fn},
        protocol,
        target=target,
        curves="per_image" if return_curves else "none",
        progress=progress,
        desc="metrics",
    )
    scores = evaluation.scores[_PAIR]
    if not scores:
        return {name: np.empty(0) for name in protocol.metrics}
    return scores
