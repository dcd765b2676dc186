"""Multi-process training under ``torchrun``: detection, process group, DDP on the stream only.

``torchrun --nproc_per_node=N script.py`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` in each process; :func:`setup` reads them and starts a
process group (gloo on CPU, nccl on CUDA) unless the caller already started one. Only the
stream is wrapped in ``DistributedDataParallel``: the frozen backbone has nothing to
synchronise and its buffers must not be broadcast or touched.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from ..model import CAModel
from ..runtime import resolve_device  # re-exported: its home is xai_pool.runtime
from ..stream import StreamConfig

__all__ = [
    "DistInfo",
    "env_world",
    "setup",
    "cleanup",
    "resolve_device",
    "ddp_stream",
    "plain_stream",
    "barrier",
    "all_reduce_sum",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job.

    Attributes:
        rank: global rank (0 for a single process).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        owns_group: whether :func:`setup` started the process group (and must end it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes files (rank 0)."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer (set by torchrun)") from None


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from the torchrun environment (0, 1, 0 without it)."""
    return _env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0)


def setup(device: torch.device) -> DistInfo:
    """Join (or start) the process group when running under torchrun; no-op for one process."""
    if dist.is_available() and dist.is_initialized():
        # The caller started the group: use it, leave it to them to destroy.
        return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0), owns_group=False)
    rank, world_size, local_rank = env_world()
    if world_size <= 1:
        return DistInfo(0, 1, local_rank, owns_group=False)
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ValueError(
                f"WORLD_SIZE={world_size} but {name} is not set; launch with torchrun "
                "(e.g. torchrun --nproc_per_node=2 ...) or set the variables yourself"
            )
    if device.type == "cuda":
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, owns_group=True)


def cleanup(info: DistInfo) -> None:
    """Destroy the process group if :func:`setup` created it."""
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op for one process)."""
    if info.enabled:
        dist.barrier()


def all_reduce_sum(values: Tensor, info: DistInfo) -> Tensor:
    """Sum ``values`` over the processes (returns ``values`` unchanged for one process)."""
    if info.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


class _StreamDDP(DistributedDataParallel):
    """DDP around a CAStream that still answers ``.config`` (CAModel reads it in forward)."""

    @property
    def config(self) -> StreamConfig:
        """The wrapped stream's configuration."""
        return self.module.config


@contextlib.contextmanager
def ddp_stream(model: CAModel, info: DistInfo, device: torch.device) -> Iterator[None]:
    """Put ``model.stream`` inside DDP for the duration of the block (one process: no-op).

    CAModel calls ``self.stream(...)`` from its pooling hook; temporarily replacing the
    attribute makes that call go through DDP's forward, which is what synchronises the
    gradients, without changing CAModel. The original stream is always put back.
    """
    if not info.enabled:
        yield
        return
    stream = model.stream
    device_ids = [device.index] if device.type == "cuda" else None
    wrapped = _StreamDDP(stream, device_ids=device_ids)
    model.stream = wrapped  # type: ignore[assignment]
    try:
        yield
    finally:
        model.stream = stream


@contextlib.contextmanager
def plain_stream(model: CAModel) -> Iterator[CAModel]:
    """Temporarily unwrap a DDP stream (for saving: state-dict keys without ``module.``)."""
    current = model.stream
    if isinstance(current, DistributedDataParallel):
        model.stream = current.module  # type: ignore[assignment]
        try:
            yield model
        finally:
            model.stream = current  # type: ignore[assignment]
    else:
        yield model
