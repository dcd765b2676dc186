"""Splitting batched work across torchrun processes and gathering it back in order.

Batches are dealt round-robin: of the batches still to do (all of them, unless a resumed run
skips finished ones), rank r takes positions r, r + world, r + 2 world... Any world size and
uneven tails work, and the gathered results are sorted by batch index, so they do not
depend on how many processes computed them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

__all__ = ["Shard", "broadcast_from_main", "gather_in_order", "rank_and_world", "shard_batches"]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised default process group, else ``(0, 1)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class Shard:
    """This rank's ``(batch index, batch)`` pairs; ``len()`` is their number when it is known."""

    def __init__(self, pairs: Iterable[tuple[int, Any]], total: int | None) -> None:
        self._pairs = pairs
        self.total = total

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        return iter(self._pairs)


def shard_batches(loader: Iterable[Any], rank: int, world: int, skip: frozenset[int] = frozenset()) -> Shard:
    """The batches this rank owns among those not in ``skip``, as ``(batch index, batch)``.

    A ``DataLoader`` is re-built over this rank's batches only (same dataset, collate
    function and workers), so no rank loads another rank's images or a skipped batch; any
    other iterable is read in full and the other batches are dropped. Either way the loader
    must yield the same batches in the same order on every rank (no shuffling).

    Args:
        loader: a DataLoader or any iterable of batches.
        rank: this process's rank.
        world: the number of processes.
        skip: batch indices not to yield (finished in an earlier run).

    Returns:
        A :class:`Shard`.
    """
    if isinstance(loader, torch.utils.data.DataLoader) and loader.batch_sampler is not None and (world > 1 or skip):
        batches = list(loader.batch_sampler)
        mine = [i for i in range(len(batches)) if i not in skip][rank::world]
        extra = {"prefetch_factor": loader.prefetch_factor} if loader.num_workers > 0 else {}
        sharded = torch.utils.data.DataLoader(
            loader.dataset,
            batch_sampler=[batches[i] for i in mine],
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            worker_init_fn=loader.worker_init_fn,
            **extra,
        )
        return Shard(zip(mine, sharded, strict=True), len(mine))
    total = _length(loader)
    if total is not None:
        total = len([i for i in range(total) if i not in skip][rank::world])
    return Shard(_dealt(loader, rank, world, skip), total)


def _dealt(loader: Iterable[Any], rank: int, world: int, skip: frozenset[int]) -> Iterator[tuple[int, Any]]:
    position = 0  # among the batches not skipped
    for index, batch in enumerate(loader):
        if index in skip:
            continue
        if position % world == rank:
            yield index, batch
        position += 1


def _length(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def gather_in_order(local: list[tuple[int, Any]], world: int) -> list[tuple[int, Any]]:
    """All ranks' ``(index, item)`` lists merged and sorted by index (identity for one process)."""
    if world == 1:
        return sorted(local, key=lambda item: item[0])
    gathered: list[Any] = [None] * world
    torch.distributed.all_gather_object(gathered, local)
    return sorted((item for part in gathered for item in part), key=lambda item: item[0])


def broadcast_from_main(value: Any, world: int) -> Any:
    """Rank 0's ``value`` on every rank (identity for one process)."""
    if world == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]
