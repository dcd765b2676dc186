"""Deterministic, shardable, resumable data loading for the trainer.

The trainer rebuilds the user's ``DataLoader`` around three small pieces:

- :class:`ResumableSampler`, a ``DistributedSampler`` (also used with one process) whose
  epoch order depends only on ``(seed, epoch)`` and which can start in the middle of an
  epoch, so a resumed run sees exactly the batches the interrupted one had not seen yet;
- :class:`SeededSamples`, which runs each sample's transform under a seed derived from
  ``(seed, epoch, position in the epoch)``, so random augmentations do not depend on the
  number of workers, the number of processes, or where a run was resumed;
- :class:`CountingCollate`, which drops unreadable samples (``None``) and reports how many
  it dropped, so the count reaches the main process even from worker processes.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

__all__ = [
    "ResumableSampler",
    "ShardSampler",
    "SeededSamples",
    "CountingCollate",
    "PreparedLoader",
    "prepare_train_loader",
    "prepare_eval_loader",
    "sample_seed",
]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    # A well-mixed 64-bit hash, so neighbouring (epoch, position) pairs get unrelated seeds.
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The 63-bit seed of the sample at ``position`` of epoch ``epoch``'s global order."""
    h = 0
    for value in (seed, epoch, position):
        h = _splitmix64(h ^ (value & _MASK64))
    return h >> 1


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` that yields ``(index, sample_seed)`` and can skip ahead.

    The global order of an epoch is the one of ``DistributedSampler`` (a permutation seeded by
    ``seed + epoch``); rank ``r`` of ``n`` takes positions ``r, r + n, ...``. With one process
    and a batch of ``B``, or ``n`` processes with batches of ``B / n``, every optimizer step
    therefore covers the same samples.
    """

    def __init__(
        self, dataset: Dataset, *, num_replicas: int, rank: int, shuffle: bool, seed: int, drop_last: bool
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self.start = 0

    def set_start(self, local_samples: int) -> None:
        """Skip the first ``local_samples`` samples of this rank in the current epoch."""
        if not 0 <= local_samples <= self.num_samples:
            raise ValueError(f"cannot skip {local_samples} samples of an epoch of {self.num_samples}")
        self.start = local_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        local = list(super().__iter__())
        for j in range(self.start, len(local)):
            position = self.rank + j * self.num_replicas
            yield local[j], sample_seed(self.seed, self.epoch, position)

    def __len__(self) -> int:
        return self.num_samples - self.start


class ShardSampler(Sampler[int]):
    """Sequential indices ``rank, rank + n, ...`` without padding (evaluation shards)."""

    def __init__(self, length: int, *, num_replicas: int, rank: int) -> None:
        self.length, self.num_replicas, self.rank = length, num_replicas, rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.num_replicas))


@contextlib.contextmanager
def _seeded_rngs(seed: int) -> Iterator[None]:
    """Seed torch, ``random`` and numpy for one sample, then put their states back."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % (1 << 32))
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class SeededSamples(Dataset):
    """Wraps a map-style dataset; ``self[(index, seed)]`` is ``dataset[index]`` under ``seed``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        with _seeded_rngs(seed):
            return self.dataset[index]


class CountingCollate:
    """Drop ``None`` samples (unreadable images), collate the rest, and count the dropped.

    Returns ``(batch_or_None, dropped)``; picklable, so it also works in worker processes.
    """

    def __init__(self, collate_fn: Callable[[list], Any]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, samples: list) -> tuple[Any, int]:
        """``(collated batch or None when every sample was None, number of None samples)``."""
        kept = [s for s in samples if s is not None]
        return (self.collate_fn(kept) if kept else None), len(samples) - len(kept)


@dataclass
class PreparedLoader:
    """What the trainer iterates: ``(batch, dropped)`` pairs, and how to resume an epoch.

    Attributes:
        loader: the rebuilt loader (yielding ``(batch, dropped)`` pairs), or the user's.
        sampler: the resumable sampler, or None when the user's loader is used as given.
        batch_size: samples per batch in this process (None when unknown).
        steps_per_epoch: batches per epoch in this process.
        dataset_size: number of samples in the dataset (None when unknown).
    """

    loader: Iterable
    sampler: ResumableSampler | None
    batch_size: int | None
    steps_per_epoch: int | None
    dataset_size: int | None

    def epoch(self, epoch: int, skip_steps: int = 0) -> Iterator[tuple[Any, int]]:
        """Iterate epoch ``epoch`` from its batch ``skip_steps`` on, as ``(batch, dropped)``."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
            self.sampler.set_start(min(skip_steps * (self.batch_size or 0), self.sampler.num_samples))
            yield from self.loader  # type: ignore[misc]
            return
        # A loader we could not rebuild: its order is its own; skip by drawing the batches.
        for step, batch in enumerate(self.loader):
            if step >= skip_steps:
                yield batch, 0


def _rebuildable(loader: Any) -> bool:
    return (
        isinstance(loader, DataLoader)
        and not isinstance(loader.dataset, IterableDataset)
        and loader.batch_size is not None
        and type(loader.batch_sampler) is BatchSampler
        and hasattr(loader.dataset, "__len__")
    )


def _loader_shuffles(loader: DataLoader) -> bool | None:
    sampler = loader.sampler
    if isinstance(sampler, DistributedSampler):
        return sampler.shuffle
    if type(sampler) is RandomSampler and not sampler.replacement:
        # A RandomSampler drawing a custom number of samples is not a plain shuffle.
        return True if getattr(sampler, "_num_samples", None) is None else None
    if type(sampler) is SequentialSampler:
        return False
    return None  # a custom sampler: we cannot reproduce it


def _rebuild(
    loader: DataLoader, dataset: Dataset, batch_size: int, sampler: Sampler, drop_last: bool, seed: int
) -> DataLoader:
    kwargs: dict[str, Any] = {
        "batch_size": batch_size,
        "sampler": sampler,
        "num_workers": loader.num_workers,
        "collate_fn": CountingCollate(loader.collate_fn),
        "pin_memory": loader.pin_memory,
        "drop_last": drop_last,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        # A private generator: DataLoader draws its worker base seed from the global RNG
        # otherwise, which would shift the global random stream when a run is resumed.
        "generator": torch.Generator().manual_seed(seed),
    }
    if loader.num_workers > 0:
        kwargs.update(
            multiprocessing_context=loader.multiprocessing_context,
            persistent_workers=loader.persistent_workers,
            prefetch_factor=loader.prefetch_factor,
        )
    return DataLoader(dataset, **kwargs)


def prepare_train_loader(loader: Any, *, seed: int, rank: int, world_size: int) -> PreparedLoader:
    """Rebuild ``loader`` with a :class:`ResumableSampler` (and per-sample seeds) when possible.

    A ``DataLoader`` over a map-style dataset with a random, sequential or distributed
    sampler is rebuilt (same dataset, batch size, workers, collate, drop_last; the sampler
    becomes resumable and shardable). Anything else (an iterable dataset, a custom sampler,
    a plain list of batches) is used as given: a resumed run then skips already-seen batches
    by drawing them, which is exact only if that loader's order is itself deterministic.

    Raises:
        ValueError: a loader that cannot be rebuilt is used with several processes (it
            cannot be sharded), or the loader has no batch size.
    """
    if not _rebuildable(loader) or _loader_shuffles(loader) is None:
        if world_size > 1:
            raise ValueError(
                "with several processes the trainer must shard the data itself: pass a "
                "torch.utils.data.DataLoader over a map-style dataset with shuffle=True/False "
                "(no custom sampler or batch_sampler, no IterableDataset)"
            )
        if isinstance(loader, DataLoader) and not isinstance(loader.dataset, IterableDataset) and loader.batch_size:
            warnings.warn(
                "train_loader uses a custom sampler; it is used as given, so resuming in the "
                "middle of an epoch is exact only if that sampler's order is deterministic",
                stacklevel=3,
            )
        try:
            steps = len(loader)
        except TypeError:
            steps = None
        return PreparedLoader(loader, None, getattr(loader, "batch_size", None), steps, None)
    shuffle = bool(_loader_shuffles(loader))
    dataset = loader.dataset
    sampler = ResumableSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
    rebuilt = _rebuild(loader, SeededSamples(dataset), loader.batch_size, sampler, loader.drop_last, seed)
    size = len(dataset)  # type: ignore[arg-type]
    return PreparedLoader(rebuilt, sampler, loader.batch_size, len(rebuilt), size)


def prepare_eval_loader(loader: Any, *, rank: int, world_size: int) -> tuple[Iterable, bool, bool]:
    """Shard an evaluation loader across processes (no padding, no duplicates).

    Returns:
        ``(iterable, counts, sharded)``: ``counts`` says whether items are ``(batch,
        dropped)`` pairs; ``sharded`` whether each process sees only its part (then the
        metric sums must be added across processes).
    """
    if not _rebuildable(loader):
        return loader, False, False
    sampler = ShardSampler(len(loader.dataset), num_replicas=world_size, rank=rank)  # type: ignore[arg-type]
    return _rebuild(loader, loader.dataset, loader.batch_size, sampler, False, 0), True, True
