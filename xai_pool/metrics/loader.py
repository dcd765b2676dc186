"""``evaluate_loader``: stream a dataset through :func:`~xai_pool.metrics.evaluate`.

Memory stays bounded by one loader batch: maps are computed, scored and dropped batch by
batch; only the per-image results (and the curves, when asked) are kept.

Under ``torchrun`` (``torch.distributed`` initialised with more than one process) each rank
scores the loader batches i with i % world_size == rank and the results are gathered and put
back in dataset order, so that every rank returns exactly what one process would. A
``DataLoader`` is re-created over this rank's batches only (same dataset, collate function and
workers), so a rank never loads another rank's images; any other iterable is iterated in full
and the other ranks' batches are skipped. Either way the loader must yield the same batches
in the same order on every rank (no shuffling).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..sharding import gather_in_order, rank_and_world, shard_batches
from ._checks import eval_mode, model_device
from .evaluate import DEFAULT_METRICS, evaluate

__all__ = ["evaluate_loader"]

SaliencyFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], Any]


def evaluate_loader(
    model: nn.Module,
    loader: Iterable[Sequence[Any]],
    saliency_fn: SaliencyFn,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    target: str = "label",
    progress: bool = True,
    **options: Any,
) -> dict[str, np.ndarray]:
    """Compute metrics over a whole dataset, one loader batch at a time.

    Args:
        model: the classifier, as for :func:`~xai_pool.metrics.evaluate`.
        loader: iterable of ``(images, labels)`` or ``(images, labels, masks)`` batches,
            e.g. a ``torch.utils.data.DataLoader`` without shuffling.
        saliency_fn: ``saliency_fn(model, images, classes) -> maps`` (B, h, w); called outside
            inference mode, so gradient-based explainers work. ``images`` are on the model's
            device.
        metrics: metric names, as for ``evaluate``.
        target: ``"label"`` explains and scores the loader's labels; ``"prediction"`` the
            model's argmax on the clean image (one extra forward per batch).
        progress: show a tqdm progress bar (only when stderr is a terminal).
        **options: any other keyword of ``evaluate`` (``step``, ``batch_size``, substrates,
            ``mean``/``std``, ``on_invalid``, ``return_curves``...).

    Returns:
        The ``evaluate`` dict for the whole dataset, rows in dataset order.

    Raises:
        ValueError: ``target`` is unknown or a batch is not a 2- or 3-tuple.
    """
    if target not in ("label", "prediction"):
        raise ValueError(f"target must be 'label' or 'prediction'; got {target!r}")
    rank, world = rank_and_world()
    batches = shard_batches(loader, rank, world)
    from tqdm.auto import tqdm

    total = _length(loader)
    if total is not None and world > 1:
        total = len(range(rank, total, world))
    bar = tqdm(batches, total=total, desc="metrics", unit="batch", disable=None if progress else True)
    device = model_device(model, torch.device("cpu"))
    results: list[tuple[int, dict[str, np.ndarray]]] = []
    for index, batch in bar:
        images, labels, masks = _unpack(batch)
        images = images.to(device)
        if target == "prediction":
            labels = _predict(model, images)
        labels_t = torch.as_tensor(labels).to(device)
        maps = saliency_fn(model, images, labels_t)
        results.append(
            (
                index,
                evaluate(model, images, maps, labels_t, metrics=metrics, masks=masks, **options),
            )
        )
    if world > 1:
        results = gather_in_order(results, world)
    return _concat(results, metrics)


def _length(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _unpack(batch: Any) -> tuple[torch.Tensor, Any, Any]:
    if isinstance(batch, (list, tuple)) and len(batch) in (2, 3):
        images, labels = batch[0], batch[1]
        masks = batch[2] if len(batch) == 3 else None
        return images, labels, masks
    got = type(batch).__name__
    if isinstance(batch, (list, tuple)):
        got += f" of length {len(batch)}"
    raise ValueError(f"loader must yield (images, labels) or (images, labels, masks) batches; got {got}")


def _predict(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    # no_grad rather than inference_mode: the classes go on to saliency_fn, which may use
    # them inside autograd (inference tensors cannot be saved for backward)
    with eval_mode(model), torch.no_grad():
        return model(images).argmax(dim=1)


def _concat(results: list[tuple[int, dict[str, np.ndarray]]], metrics: Sequence[str]) -> dict[str, np.ndarray]:
    if not results:
        return {name: np.empty(0) for name in ([metrics] if isinstance(metrics, str) else metrics)}
    keys = results[0][1].keys()
    return {key: np.concatenate([part[key] for _, part in results]) for key in keys}
