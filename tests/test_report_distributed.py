"""report.compare sharded over 2 gloo processes gives the single-process result."""

from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import TensorDataset

from xai_pool import attach_stream
from xai_pool.report import compare

from .conftest import TINY_SPEC, TinyCNN, free_port

METHODS = ("raw_attention", "gradcam")


def _model():
    torch.manual_seed(0)
    model = attach_stream(TinyCNN(), spec=TINY_SPEC)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.stream.parameters():  # a non-trivial stream, identical in every process
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _data(n: int = 7) -> TensorDataset:
    g = torch.Generator().manual_seed(2)
    images = torch.randn(n, 3, 16, 16, generator=g)
    labels = torch.randint(0, 5, (n,), generator=g)
    masks = torch.rand(n, 16, 16, generator=g) > 0.7
    return TensorDataset(images, labels, masks)


def _compare():
    return compare(
        _model(),
        _data(),
        methods=METHODS,
        batch_size=2,
        step=32,
        progress=False,
        mean=(0, 0, 0),
        std=(1, 1, 1),
        keep_examples=0,
    )


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = _compare()
        if rank == 0:
            result.to_per_image_csv(os.path.join(folder, "per_image.csv"))
            result.to_csv(os.path.join(folder, "metrics.csv"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow  # spawning two torch processes takes ~15 s on 2 shared cores
def test_two_process_compare_equals_one_process(tmp_path):
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    # 7 images in batches of 2: 4 batches, rank 0 takes 0 and 2, rank 1 takes 1 and 3 (uneven sizes).
    torch.multiprocessing.spawn(_worker, args=(2, free_port(), str(sharded)), nprocs=2, join=True)
    single = _compare()
    single.to_per_image_csv(tmp_path / "per_image.csv")
    single.to_csv(tmp_path / "metrics.csv")
    assert single.n_images == 7
    per_image = (sharded / "per_image.csv").read_text()
    assert per_image == (tmp_path / "per_image.csv").read_text()
    assert len(per_image.strip().splitlines()) == 1 + 7 * 3  # header + images x (raw, gradcam gap, gradcam ca)
    assert (sharded / "metrics.csv").read_text() == (tmp_path / "metrics.csv").read_text()
