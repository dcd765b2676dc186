"""Splitting batched work across torchrun processes and gathering it back in order."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import torch

__all__ = ["rank_and_world", "shard_batches", "gather_in_order"]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised default process group, else ``(0, 1)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def shard_batches(loader: Iterable[Any], rank: int, world: int) -> Iterator[tuple[int, Any]]:
    """Yield ``(batch index, batch)`` for the batches this rank owns (index % world == rank).

    A DataLoader is re-built over this rank's batches only, so no rank loads the others' data.
    """
    if world == 1:
        yield from enumerate(loader)
        return
    if isinstance(loader, torch.utils.data.DataLoader) and loader.batch_sampler is not None:
        mine = list(loader.batch_sampler)[rank::world]
        sharded = torch.utils.data.DataLoader(
            loader.dataset,
            batch_sampler=mine,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            worker_init_fn=loader.worker_init_fn,
        )
        for position, batch in enumerate(sharded):
            yield rank + position * world, batch
        return
    for index, batch in enumerate(loader):
        if index % world == rank:
            yield index, batch


def gather_in_order(local: list[tuple[int, Any]], world: int) -> list[tuple[int, Any]]:
    """All ranks' ``(index, item)`` lists merged and sorted by index (identity for one process)."""
    if world == 1:
        return sorted(local, key=lambda item: item[0])
    gathered: list[Any] = [None] * world
    torch.distributed.all_gather_object(gathered, local)
    return sorted((item for part in gathered for item in part), key=lambda item: item[0])
