"""The dataset driver: one pass over a loader, every explainer, every metric.

:func:`run_dataset` is the only loop over a dataset in the package;
:func:`~xai_pool.metrics.evaluate_loader` and :func:`xai_pool.report.compare` are thin layers
over it. For each batch it

1. moves the images to the model's device once and builds the curve substrates once
   (:func:`~xai_pool.metrics.evaluate.build_sources`; the RISE blur of a batch is computed
   once, not once per map);
2. for each pooling (any named model state, switched by ``switch``), runs one clean forward,
   which gives the predictions, the explained classes (``target="prediction"``) and the clean
   probabilities p shared by every map (:class:`~xai_pool.metrics.evaluate.Shared`);
3. runs every explainer of that pooling and scores its maps at once, without converting
   them to numpy, with no further clean forward;
4. keeps only per-image numbers, the per-batch sums of the curves and, for the first images,
   the images and their maps.

Under torchrun each rank takes every ``world``-th batch (:func:`~xai_pool.sharding.shard_batches`)
and the per-batch records are gathered and sorted by batch index, so every rank returns what
one process returns. With a :class:`~xai_pool.metrics.store.BatchStore` every finished batch
is saved and a rerun computes only the missing ones.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..runtime import eval_mode, model_device
from ..sharding import broadcast_from_main, gather_in_order, rank_and_world, shard_batches
from . import confidence as _confidence
from ._checks import as_images, as_labels, check_label_range
from .evaluate import Protocol, Shared, build_sources, check_logits, score
from .perturbation import curve_fractions
from .store import BatchStore

__all__ = ["Evaluation", "Examples", "Explainer", "Pair", "run_dataset"]

logger = logging.getLogger("xai_pool")

Pair = tuple[str, str]
#: ``explainer(model, images, classes) -> maps`` (B, h, w), tensor (kept on its device) or numpy.
Explainer = Callable[[nn.Module, torch.Tensor, torch.Tensor], Any]
_CURVE_KEYS = {"insertion": "insertion_curve", "deletion": "deletion_curve"}


@dataclass
class Examples:
    """The first images of the dataset and their maps, for figures.

    Attributes:
        indices: (K,) position of each image in the dataset order (its row in the per-image
            table), so that its label and predictions are looked up by the same index.
        images: (K, C, H, W) float32 images as the model takes them.
        maps: per (method, pooling), (K, h, w) float32 maps.
    """

    indices: np.ndarray
    images: np.ndarray
    maps: dict[Pair, np.ndarray]


@dataclass
class Evaluation:
    """What :func:`run_dataset` measured, rows in dataset order.

    Attributes:
        pairs: the (method, pooling) keys of the explainers, in order.
        poolings: the poolings, in order of first appearance in ``pairs``.
        labels: (N,) the loader's labels.
        predictions: per pooling, (N,) argmax of the clean softmax.
        probabilities: per pooling, (N,) top-1 clean softmax probability (float32 softmax).
        scores: per pair, the :func:`~xai_pool.metrics.evaluate` dict (per-image curves
            only with ``curves="per_image"``).
        mean_curves: per pair, ``{"insertion_curve"/"deletion_curve": (n + 1,) mean over
            the valid images}`` (with ``curves="mean"``).
        curve_x: per curve kind, the (n + 1,) fraction of pixels changed at each point.
        examples: the kept first images, or None.
        world_size: processes that computed the run.
        batches_computed: batches computed by this run.
        batches_reused: batches read back from the store (finished by an earlier run).
    """

    pairs: list[Pair]
    poolings: tuple[str, ...]
    labels: np.ndarray
    predictions: dict[str, np.ndarray]
    probabilities: dict[str, np.ndarray]
    scores: dict[Pair, dict[str, np.ndarray]]
    mean_curves: dict[Pair, dict[str, np.ndarray]] = field(default_factory=dict)
    curve_x: dict[str, np.ndarray] = field(default_factory=dict)
    examples: Examples | None = None
    world_size: int = 1
    batches_computed: int = 0
    batches_reused: int = 0

    @property
    def n_images(self) -> int:
        """Number of images evaluated."""
        return int(self.labels.shape[0])


def run_dataset(
    model: nn.Module,
    loader: Iterable[Any],
    explainers: Mapping[Pair, Explainer],
    protocol: Protocol,
    *,
    masks_protocol: Protocol | None = None,
    switch: Callable[[str], AbstractContextManager[Any]] | None = None,
    target: str = "label",
    keep: int = 0,
    curves: str = "mean",
    store: BatchStore | None = None,
    progress: bool = True,
    desc: str = "evaluate",
) -> Evaluation:
    """Explain and score every batch of ``loader`` with every explainer, in one pass.

    Args:
        model: the classifier; its device is where everything is computed.
        loader: iterable of ``(images, labels)`` or ``(images, labels, masks)`` batches in a
            fixed order (a DataLoader without shuffling); ``None`` batches (every image
            unreadable) are skipped.
        explainers: ``{(method, pooling): explainer(model, images, classes) -> maps}``.
        protocol: the metrics and their options, checked once.
        masks_protocol: the protocol for batches that carry masks (e.g. with the pointing
            games added); default ``protocol``.
        switch: ``switch(pooling)`` -> context manager putting the model in that pooling
            (e.g. ``CAModel.pooling_as``); None when every pair has the same pooling.
        target: ``"label"`` explains and scores the loader's labels, ``"prediction"`` each
            pooling's argmax on the clean image.
        keep: keep the images and maps of the first ``keep`` images (dataset order).
        curves: ``"mean"`` (mean curves), ``"per_image"`` (every image's curves in
            ``scores``; memory grows with the dataset) or ``"none"``.
        store: save each finished batch there and reuse those saved by an earlier run.
        progress: a tqdm bar on rank 0 (only when stderr is a terminal).
        desc: the bar's label.

    Returns:
        An :class:`Evaluation`, identical on every rank and for any number of processes.

    Raises:
        ValueError: an unknown ``target`` or ``curves``, explainers of several poolings
            without ``switch``, a batch that is not a 2- or 3-tuple, batches of different
            image sizes with curves, labels out of range.
        TypeError: non-integer labels, a model that does not return logits.
    """
    if target not in ("label", "prediction"):
        raise ValueError(f"target must be 'label' or 'prediction'; got {target!r}")
    if curves not in ("mean", "per_image", "none"):
        raise ValueError(f"curves must be 'mean', 'per_image' or 'none'; got {curves!r}")
    pairs = list(explainers)
    if not pairs:
        raise ValueError("explainers is empty: give at least one {(method, pooling): explainer}")
    poolings = tuple(dict.fromkeys(pooling for _, pooling in pairs))
    if switch is None and len(poolings) > 1:
        raise ValueError(f"explainers use several poolings {list(poolings)}: pass switch=model.pooling_as")
    if curves != "none":
        protocol = _with_curves(protocol)
        masks_protocol = _with_curves(masks_protocol) if masks_protocol is not None else None
    rank, world = rank_and_world()
    done = store.open() if store is not None and rank == 0 else frozenset()
    done = broadcast_from_main(done, world)
    device = model_device(model, torch.device("cpu"))
    batch_run = _BatchRun(
        model, explainers, protocol, masks_protocol or protocol, switch or _no_switch, target, curves, device
    )
    shard = shard_batches(loader, rank, world, skip=done)
    from tqdm.auto import tqdm

    label = desc if world == 1 else f"{desc} (rank 0 of {world})"
    bar = tqdm(total=shard.total, desc=label, unit="batch", disable=None if progress and rank == 0 else True)
    local: list[tuple[int, dict[str, Any]]] = []
    seen, started = 0, time.perf_counter()
    try:
        for index, batch in shard:
            record = batch_run(batch, keep=max(0, keep - seen))
            if store is not None:
                store.save(index, record)
            local.append((index, record))
            seen += record["count"]
            bar.update(1)
            bar.set_postfix_str(f"{seen / max(time.perf_counter() - started, 1e-9):.1f} img/s")
    finally:
        bar.close()
    records = gather_in_order(local, world)
    if done:
        records = sorted(records + [(i, store.load(i)) for i in sorted(done)], key=lambda item: item[0])
    evaluation = _assemble(records, pairs, poolings, keep, curves, world)
    evaluation.batches_computed = len(records) - len(done)
    evaluation.batches_reused = len(done)
    return evaluation


def _no_switch(_pooling: str) -> AbstractContextManager[Any]:
    return contextlib.nullcontext()


def _with_curves(protocol: Protocol) -> Protocol:
    if protocol.return_curves or not protocol.curves:
        return protocol
    from dataclasses import replace

    return replace(protocol, return_curves=True)


def _unpack(batch: Any) -> tuple[Any, Any, Any]:
    if isinstance(batch, (list, tuple)) and len(batch) in (2, 3):
        return batch[0], batch[1], batch[2] if len(batch) == 3 else None
    got = type(batch).__name__
    if isinstance(batch, (list, tuple)):
        got += f" of length {len(batch)}"
    raise ValueError(f"loader must yield (images, labels) or (images, labels, masks) batches; got {got}")


class _BatchRun:
    """Explains and scores one batch; returns its record (numpy arrays and plain containers)."""

    def __init__(
        self,
        model: nn.Module,
        explainers: Mapping[Pair, Explainer],
        protocol: Protocol,
        masks_protocol: Protocol,
        switch: Callable[[str], AbstractContextManager[Any]],
        target: str,
        curves: str,
        device: torch.device,
    ) -> None:
        self.model = model
        self.explainers = explainers
        self.protocols = {False: protocol, True: masks_protocol}
        self.switch = switch
        self.target = target
        self.curves = curves
        self.device = device

    def __call__(self, batch: Any, keep: int) -> dict[str, Any]:
        if batch is None:  # every image of the batch was unreadable (skip_none_collate)
            return {"count": 0}
        images, labels, masks = _unpack(batch)
        x = as_images(images).to(self.device)
        count, _, height, width = x.shape
        y = as_labels(torch.as_tensor(labels), count).to(self.device)
        protocol = self.protocols[masks is not None]
        record: dict[str, Any] = {
            "count": count,
            "labels": y.cpu().numpy(),
            "pred": {},
            "prob": {},
            "scores": {},
            "has_masks": masks is not None,
        }
        if protocol.curves and self.curves != "none":
            step = width if protocol.step is None else protocol.step
            record["curve_x"] = {kind: curve_fractions(height, width, step) for kind in protocol.curves}
        with torch.inference_mode():
            sources = build_sources(x, protocol) if protocol.uses_model else None
        kept_maps: dict[Pair, np.ndarray] = {}
        for pooling in dict.fromkeys(p for _, p in self.explainers):
            with self.switch(pooling):
                shared = self._clean(x, y, pooling, record, sources)
                for pair, explainer in self.explainers.items():
                    if pair[1] != pooling:
                        continue
                    maps = explainer(self.model, x, shared.classes)
                    scores = score(self.model, x, maps, shared.classes, protocol, masks=masks, shared=shared)
                    record["scores"][pair] = self._reduce_curves(pair, scores, record)
                    if keep:
                        kept_maps[pair] = _numpy(maps[:keep])
                    del maps
        if keep:
            record["examples"] = {
                "positions": np.arange(min(keep, count)),
                "images": x[:keep].cpu().numpy(),
                "maps": kept_maps,
            }
        return record

    def _clean(
        self, x: torch.Tensor, y: torch.Tensor, pooling: str, record: dict[str, Any], sources: torch.Tensor | None
    ) -> Shared:
        """One clean forward: predictions, the explained classes and their clean probabilities."""
        # no_grad, not inference_mode: the classes go on to explainers that may use autograd
        with eval_mode(self.model), torch.no_grad():
            logits = check_logits(self.model(x), x.shape[0])
            probs = logits.float().softmax(dim=1)
            predicted = probs.argmax(dim=1)
            record["pred"][pooling] = predicted.cpu().numpy()
            record["prob"][pooling] = probs.max(dim=1).values.cpu().numpy()
            if self.target == "label":
                check_label_range(y, logits.shape[1])
                classes = y
            else:
                classes = predicted
            clean = _confidence.probabilities(logits, classes)
        return Shared(classes=classes, clean=clean, sources=sources)

    def _reduce_curves(
        self, pair: Pair, scores: dict[str, np.ndarray], record: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        """Replace the per-image curves by their sum over the valid images (``curves="mean"``)."""
        if self.curves == "per_image":
            return scores
        for kind, key in _CURVE_KEYS.items():
            curve = scores.pop(key, None)
            if curve is None or self.curves == "none":
                continue
            valid = scores["valid"]
            record.setdefault("curve_sum", {}).setdefault(kind, {})[pair] = curve[valid].sum(axis=0)
            record.setdefault("curve_count", {}).setdefault(kind, {})[pair] = int(valid.sum())
        return scores


def _numpy(maps: Any) -> np.ndarray:
    if isinstance(maps, torch.Tensor):
        return maps.detach().float().cpu().numpy()
    return np.asarray(maps, dtype=np.float32)


def _assemble(
    records: Sequence[tuple[int, dict[str, Any]]],
    pairs: list[Pair],
    poolings: tuple[str, ...],
    keep: int,
    curves: str,
    world: int,
) -> Evaluation:
    filled = [record for _, record in records if record["count"]]
    if not filled:
        return Evaluation(
            pairs=pairs,
            poolings=poolings,
            labels=np.empty(0, dtype=np.int64),
            predictions={p: np.empty(0, dtype=np.int64) for p in poolings},
            probabilities={p: np.empty(0, dtype=np.float32) for p in poolings},
            scores={pair: {} for pair in pairs},
            world_size=world,
        )
    if len({record["has_masks"] for record in filled}) > 1:
        raise ValueError("some batches carry masks and others do not; give masks for every image or for none")
    keys = {pair: list(filled[0]["scores"][pair]) for pair in pairs}
    evaluation = Evaluation(
        pairs=pairs,
        poolings=poolings,
        labels=np.concatenate([r["labels"] for r in filled]),
        predictions={p: np.concatenate([r["pred"][p] for r in filled]) for p in poolings},
        probabilities={p: np.concatenate([r["prob"][p] for r in filled]) for p in poolings},
        scores={
            pair: {k: np.concatenate([r["scores"][pair][k] for r in filled]) for k in keys[pair]} for pair in pairs
        },
        world_size=world,
    )
    if "curve_x" in filled[0]:
        x = filled[0]["curve_x"]
        for record in filled:
            if record["curve_x"].keys() != x.keys() or any(
                not np.array_equal(record["curve_x"][kind], x[kind]) for kind in x
            ):
                raise ValueError("batches have different image sizes: insertion/deletion curves cannot be averaged")
        evaluation.curve_x = dict(x)
    if curves == "mean":
        for kind in evaluation.curve_x:
            for pair in pairs:
                total = sum(r["curve_sum"][kind][pair] for r in filled)
                count = sum(r["curve_count"][kind][pair] for r in filled)
                mean = total / count if count else np.full_like(total, np.nan)
                evaluation.mean_curves.setdefault(pair, {})[_CURVE_KEYS[kind]] = mean
    if keep:
        evaluation.examples = _select_examples(records, pairs, keep)
    return evaluation


def _select_examples(records: Sequence[tuple[int, dict[str, Any]]], pairs: list[Pair], keep: int) -> Examples | None:
    """The first ``keep`` images in dataset order, from each batch's candidates."""
    offset = 0
    indices, images, maps = [], [], {pair: [] for pair in pairs}
    for _, record in records:
        kept = record.get("examples")
        if kept is not None:
            take = offset + kept["positions"] < keep
            indices.append(offset + kept["positions"][take])
            images.append(kept["images"][take])
            for pair in pairs:
                maps[pair].append(kept["maps"][pair][take])
        offset += record["count"]
    if not indices or not sum(len(i) for i in indices):
        return None
    return Examples(
        indices=np.concatenate(indices),
        images=np.concatenate(images),
        maps={pair: np.concatenate(parts) for pair, parts in maps.items()},
    )
