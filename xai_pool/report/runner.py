"""``compare``: every saliency method x pooling over a dataset, scored with every metric.

One pass over the data: each batch is explained by every (method, pooling) pair and scored
right away, so peak memory is one batch (plus a few kept examples for the figures), whatever
the dataset size. Under torchrun each process takes every ``world``-th batch and the results
are gathered in dataset order, so the numbers equal a single-process run.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..model import CAModel
from ..sharding import gather_in_order, rank_and_world, shard_batches
from .results import ComparisonResult

__all__ = ["compare", "DEFAULT_METHODS", "DEFAULT_REPORT_METRICS", "LOCALISATION_METRICS"]

DEFAULT_METHODS = ("raw_attention", "gradcam", "gradcam++", "scorecam")
DEFAULT_REPORT_METRICS = ("ad", "ag", "ai", "insertion", "deletion")
LOCALISATION_METRICS = ("pointing_game", "energy_pointing_game")


def _as_loader(data: Any, batch_size: int, limit: int | None) -> Iterable[Any]:
    if isinstance(data, DataLoader) or not isinstance(data, Dataset):
        if limit is not None and isinstance(data, DataLoader) and hasattr(data.dataset, "__len__"):
            subset = Subset(data.dataset, range(min(limit, len(data.dataset))))
            return DataLoader(
                subset,
                batch_size=data.batch_size or batch_size,
                shuffle=False,
                num_workers=data.num_workers,
                collate_fn=data.collate_fn,
            )
        return data
    if limit is not None:
        data = Subset(data, range(min(limit, len(data))))
    return DataLoader(data, batch_size=batch_size, shuffle=False)


def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if batch is None:  # every image of the batch was unreadable (skip_none_collate)
        return None  # type: ignore[return-value]
    if isinstance(batch, (list, tuple)) and len(batch) in (2, 3):
        masks = batch[2] if len(batch) == 3 else None
        return batch[0], torch.as_tensor(batch[1]).long(), masks
    raise ValueError("data must yield (image, label) or (image, label, mask) items or batches")


def compare(
    model: CAModel,
    data: Dataset | DataLoader | Iterable[Any],
    *,
    methods: Sequence[str] = DEFAULT_METHODS,
    poolings: Sequence[str] = ("gap", "ca"),
    metrics: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    batch_size: int = 32,
    limit: int | None = None,
    step: int | None = None,
    eval_batch_size: int = 128,
    targets: str = "label",
    method_kwargs: dict[str, dict[str, Any]] | None = None,
    keep_examples: int = 6,
    class_names: Sequence[str] | None = None,
    progress: bool = True,
    confidence: float = 0.95,
    seed: int = 0,
) -> ComparisonResult:
    """Explain and score a dataset with every method for GAP and CA pooling.

    Args:
        model: a :class:`~xai_pool.CAModel` (its stream trained).
        data: a Dataset or DataLoader yielding ``(image, label)`` or ``(image, label, mask)``;
            images normalised as the model expects. With masks, the localisation metrics
            (pointing game, energy pointing game) are added by default.
        methods: saliency method names (see :data:`xai_pool.saliency.METHODS`). Raw
            attention exists only for CA and is scored there only.
        poolings: which poolings to compare.
        metrics: metric names for :func:`xai_pool.metrics.evaluate`; default AD, AG, AI,
            insertion, deletion (+ localisation when masks are present).
        mean: normalisation mean of the images (default: ``data.mean`` if the dataset has
            one, else ImageNet's).
        std: normalisation std, likewise.
        batch_size: images per batch when ``data`` is a Dataset.
        limit: use only the first ``limit`` images.
        step: insertion/deletion pixels per step (default one image row).
        eval_batch_size: perturbed images per forward pass in the metrics.
        targets: ``"label"`` explains and scores the ground-truth class (the authors'
            protocol); ``"prediction"`` the class each pooling predicts.
        method_kwargs: extra keyword arguments per method name for :func:`xai_pool.explain`.
        keep_examples: how many first images keep their maps for the figures.
        class_names: names of the classes, for tables and figures.
        progress: show a tqdm progress bar (only on a terminal).
        confidence: level of the confidence intervals.
        seed: seed of the bootstrap.

    Returns:
        A :class:`ComparisonResult` (per-image table, summary, exports, figures).
    """
    from tqdm.auto import tqdm

    from ..explainer import explain
    from ..metrics import IMAGENET_MEAN, IMAGENET_STD, evaluate
    from ..saliency import method_name

    if not isinstance(model, CAModel):
        raise TypeError(f"compare needs a CAModel (from xai_pool.attach_stream), got {type(model).__name__}")
    if targets not in ("label", "prediction"):
        raise ValueError(f"targets must be 'label' or 'prediction', got {targets!r}")
    for pooling in poolings:
        if pooling not in ("gap", "ca"):
            raise ValueError(f"poolings must be 'gap' and/or 'ca', got {pooling!r}")
    dataset = data.dataset if isinstance(data, DataLoader) else data
    mean = mean if mean is not None else getattr(dataset, "mean", IMAGENET_MEAN)
    std = std if std is not None else getattr(dataset, "std", IMAGENET_STD)
    class_names = class_names if class_names is not None else getattr(dataset, "class_names", None)
    method_kwargs = method_kwargs or {}
    by_name = {method_name(m): m for m in methods}  # canonical names; unknown methods fail here
    methods = list(by_name)
    pairs = [(m, p) for m in methods for p in poolings if not (m == "raw_attention" and p == "gap")]
    loader = _as_loader(data, batch_size, limit)
    rank, world = rank_and_world()
    device = next(model.parameters()).device
    local: list[tuple[int, dict[str, Any]]] = []
    started = time.perf_counter()
    total = len(loader) if hasattr(loader, "__len__") else None
    bar = tqdm(
        shard_batches(loader, rank, world),
        total=total,
        desc="compare",
        unit="batch",
        disable=None if progress else True,
    )
    seen = 0
    for index, batch in bar:
        unpacked = _unpack(batch)
        if unpacked is None:
            continue
        images, labels, masks = unpacked
        images, labels = images.to(device), labels.to(device)
        record: dict[str, Any] = {"labels": labels.cpu().numpy(), "pred": {}, "prob": {}, "scores": {}, "maps": {}}
        with torch.no_grad():
            for pooling in poolings:
                with model.pooling_as(pooling):
                    probs = model(images).float().softmax(dim=1)
                record["pred"][pooling] = probs.argmax(1).cpu().numpy()
                record["prob"][pooling] = probs.max(1).values.cpu().numpy()
        use_metrics = (
            tuple(metrics)
            if metrics is not None
            else (DEFAULT_REPORT_METRICS + (LOCALISATION_METRICS if masks is not None else ()))
        )
        keep = max(0, keep_examples - index * images.shape[0]) if rank == 0 else 0
        for method, pooling in pairs:
            classes = labels if targets == "label" else torch.as_tensor(record["pred"][pooling], device=device)
            maps = explain(
                model,
                images,
                by_name[method],
                pooling=pooling,
                targets=classes.tolist(),
                **method_kwargs.get(method, {}),
            )
            with model.pooling_as(pooling):
                scores = evaluate(
                    model,
                    images,
                    maps,
                    classes,
                    metrics=use_metrics,
                    masks=masks,
                    mean=mean,
                    std=std,
                    step=step,
                    batch_size=eval_batch_size,
                    return_curves=True,
                )
            record["scores"][(method, pooling)] = scores
            if keep:
                record["maps"][(method, pooling)] = maps[:keep]
        if keep:
            record["images"] = images[:keep].cpu()
        local.append((index, record))
        seen += images.shape[0]
        bar.set_postfix(images=seen)
    bar.close()
    gathered = gather_in_order(local, world)
    return ComparisonResult.from_batches(
        [record for _, record in gathered],
        pairs=pairs,
        poolings=tuple(poolings),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        class_names=list(class_names) if class_names is not None else None,
        confidence=confidence,
        seed=seed,
        seconds=time.perf_counter() - started,
        config={
            "methods": list(methods),
            "poolings": list(poolings),
            "targets": targets,
            "step": step,
            "metrics": list(metrics) if metrics is not None else None,
            "world_size": world,
        },
    )
