"""``compare``: every saliency method x pooling over a dataset, scored with every metric.

A thin layer over the dataset driver (:func:`xai_pool.metrics.run_dataset`): it names one
explainer per (method, pooling), lets the driver switch the model's pooling, and turns what
the driver measured into a :class:`~.result.ComparisonResult`. One pass over the data; per
batch one clean forward per pooling and one set of substrates whatever the number of
methods; peak memory is one batch (plus a few kept examples for the figures). Under torchrun
each process takes every ``world``-th batch and the results are gathered in dataset order, so
the numbers equal a single-process run. With ``resume=FOLDER`` a killed run continues: the
finished batches saved there are not computed again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

from torch.utils.data import DataLoader, Dataset, Subset

from ..metrics.driver import Pair, run_dataset
from ..metrics.evaluate import Protocol
from ..metrics.registry import metrics_in_group
from ..metrics.store import BatchStore, describe, model_digest
from ..model import CAModel
from .result import ComparisonResult

__all__ = ["DEFAULT_METHODS", "DEFAULT_REPORT_METRICS", "LOCALISATION_METRICS", "compare"]

DEFAULT_METHODS = ("raw_attention", "gradcam", "gradcam++", "scorecam")
DEFAULT_REPORT_METRICS = ("ad", "ag", "ai", "insertion", "deletion")
LOCALISATION_METRICS = metrics_in_group("localization")


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


def _explainer(method: Any, pooling: str, kwargs: dict[str, Any]) -> Any:
    from ..explainer import explain

    def run(model: CAModel, images: Any, classes: Any) -> Any:
        return explain(model, images, method, pooling=pooling, targets=classes.tolist(), **kwargs)

    return run


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
    insertion_substrate: Any = None,
    deletion_substrate: Any = None,
    masking_space: str = "pixel",
    tolerance: float = 0.0,
    p_adjustment: str = "holm",
    alpha: float = 0.05,
    resume: str | os.PathLike | None = None,
    resume_key: dict[str, Any] | None = None,
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
            one, else the model's own, ``model.preprocessing``).
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
        progress: show a tqdm progress bar (only on a terminal, rank 0).
        confidence: level of the confidence intervals.
        seed: seed of the bootstrap.
        insertion_substrate: start of the insertion curves (see ``evaluate``; e.g.
            ``xai_pool.metrics.named_substrate("box-blur")``); default RISE's blur.
        deletion_substrate: what deleted pixels become; default zeros (input space).
        masking_space: ``"pixel"`` or ``"input"``, where AD/AG/AI multiply by the map.
        tolerance: pointing-game radius in pixels.
        p_adjustment: multiple-comparison adjustment of the paired tests: ``"holm"``
            (family-wise error rate, default), ``"bh"`` (Benjamini-Hochberg, false discovery
            rate) or ``"none"``.
        alpha: significance level of the adjusted p-values (findings and "better" column).
        resume: a folder where every finished batch is saved; a rerun with the same
            configuration, model and data computes only the missing batches.
        resume_key: extra facts identifying the data for ``resume`` (e.g. the image files);
            a stored run with another key is discarded.

    Returns:
        A :class:`~.result.ComparisonResult` (per-image table, statistics, exports, figures).
    """
    from ..metrics.evaluate import model_statistics
    from ..metrics.stats import P_ADJUSTMENTS
    from ..saliency import method_name

    if not isinstance(model, CAModel):
        raise TypeError(f"compare needs a CAModel (from xai_pool.attach_stream), got {type(model).__name__}")
    if targets not in ("label", "prediction"):
        raise ValueError(f"targets must be 'label' or 'prediction', got {targets!r}")
    if not poolings:
        raise ValueError("poolings must name at least one of 'gap', 'ca'")
    for pooling in poolings:
        if pooling not in ("gap", "ca"):
            raise ValueError(f"poolings must be 'gap' and/or 'ca', got {pooling!r}")
    if p_adjustment not in P_ADJUSTMENTS:
        raise ValueError(f"p_adjustment must be one of {list(P_ADJUSTMENTS)}, got {p_adjustment!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    dataset = data.dataset if isinstance(data, DataLoader) else data
    # The data's own statistics (ShapesScenes carries them), else the model's preprocessing.
    mean = mean if mean is not None else getattr(dataset, "mean", None)
    std = std if std is not None else getattr(dataset, "std", None)
    mean, std = model_statistics(model, mean, std)
    class_names = class_names if class_names is not None else getattr(dataset, "class_names", None)
    method_kwargs = method_kwargs or {}
    by_name = {method_name(m): m for m in methods}  # canonical names; unknown methods fail here
    methods = list(by_name)
    pairs: list[Pair] = [(m, p) for m in methods for p in poolings if not (m == "raw_attention" and p == "gap")]
    if not pairs:
        raise ValueError(f"nothing to compare: methods {methods} with poolings {list(poolings)} give no pair")
    options = {
        "step": step,
        "batch_size": eval_batch_size,
        "masking_space": masking_space,
        "mean": mean,
        "std": std,
        "insertion_substrate": insertion_substrate,
        "deletion_substrate": deletion_substrate,
        "tolerance": tolerance,
    }
    protocol = Protocol.create(metrics=metrics if metrics is not None else DEFAULT_REPORT_METRICS, **options)
    masks_protocol = protocol
    if metrics is None:
        masks_protocol = Protocol.create(metrics=DEFAULT_REPORT_METRICS + LOCALISATION_METRICS, **options)
    explainers = {(m, p): _explainer(by_name[m], p, method_kwargs.get(m, {})) for m, p in pairs}
    loader = _as_loader(data, batch_size, limit)
    config = {
        "methods": list(methods),
        "poolings": list(poolings),
        "targets": targets,
        "step": step,
        "metrics": list(metrics) if metrics is not None else None,
        "masking_space": masking_space,
        "insertion_substrate": describe(insertion_substrate),
        "deletion_substrate": describe(deletion_substrate),
        "tolerance": tolerance,
        "p_adjustment": p_adjustment,
    }
    store = None
    if resume is not None:
        fingerprint = {
            "config": config,
            "protocols": [describe(vars(protocol)), describe(vars(masks_protocol))],
            "method_kwargs": describe(method_kwargs),
            "keep_examples": keep_examples,
            "model": model_digest(model),
            "batches": len(loader) if hasattr(loader, "__len__") else None,
            "batch_size": getattr(loader, "batch_size", None),
            "data": resume_key,
        }
        store = BatchStore(resume, fingerprint)
    started = time.perf_counter()
    evaluation = run_dataset(
        model,
        loader,
        explainers,
        protocol,
        masks_protocol=masks_protocol,
        switch=model.pooling_as,
        target=targets,
        keep=keep_examples,
        curves="mean",
        store=store,
        progress=progress,
        desc="compare",
    )
    return ComparisonResult(
        pairs=pairs,
        poolings=tuple(p for p in poolings if p in evaluation.poolings),
        labels=evaluation.labels,
        predictions=evaluation.predictions,
        probabilities=evaluation.probabilities,
        per_image=evaluation.scores,
        mean_curves=evaluation.mean_curves,
        curve_x=evaluation.curve_x,
        examples=evaluation.examples,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        class_names=list(class_names) if class_names is not None else None,
        confidence=confidence,
        seed=seed,
        p_adjustment=p_adjustment,
        alpha=alpha,
        config=config,
        seconds=time.perf_counter() - started,
        runtime={
            "world_size": evaluation.world_size,
            "batches_computed": evaluation.batches_computed,
            "batches_reused": evaluation.batches_reused,
        },
    )
