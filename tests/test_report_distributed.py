"""Sharded over 2 gloo processes, ``report.compare`` and ``metrics.evaluate_loader`` give the
single-process results (kept examples included); one spawn serves both."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from xai_pool import attach_stream
from xai_pool.metrics import evaluate_loader
from xai_pool.report import compare

from .conftest import TINY_SPEC, TinyCNN, free_port
from .test_metrics_loader import METRICS, gradient_map, make_data, make_model

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
        keep_examples=5,  # batches 0, 1 and 2: rank 0 holds 0 and 2, rank 1 holds 1
        class_names=[f"class{i}" for i in range(5)],
    )


def _evaluate_loader() -> dict:
    loader = DataLoader(make_data(), batch_size=2)
    return evaluate_loader(make_model(), loader, gradient_map, metrics=METRICS, step=4, progress=False)


def _save_examples(result, path: str) -> None:
    figure = result.figures()["side_by_side"]
    titles = [ax.get_ylabel() for ax in figure.axes if ax.get_ylabel()]
    maps = {f"{m}|{p}": v for (m, p), v in result.examples.maps.items()}
    np.savez(path, indices=result.examples.indices, images=result.examples.images, titles=titles, **maps)


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        loader_out = _evaluate_loader()
        result = _compare()
        if rank == 0:
            np.savez(os.path.join(folder, "loader.npz"), **loader_out)
            result.to_per_image_csv(os.path.join(folder, "per_image.csv"))
            result.to_csv(os.path.join(folder, "metrics.csv"))
            _save_examples(result, os.path.join(folder, "examples.npz"))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow  # spawning two torch processes takes ~15 s on 2 shared cores
def test_two_processes_equal_one_for_compare_and_evaluate_loader(tmp_path):
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    # 7 images in batches of 2: 4 batches, rank 0 takes 0 and 2, rank 1 takes 1 and 3 (uneven sizes).
    torch.multiprocessing.spawn(_worker, args=(2, free_port(), str(sharded)), nprocs=2, join=True)
    loader_single, gathered = _evaluate_loader(), np.load(sharded / "loader.npz")
    assert sorted(gathered.files) == sorted(loader_single)
    for key in loader_single:
        np.testing.assert_array_equal(gathered[key], loader_single[key], err_msg=key)

    single = _compare()
    single.to_per_image_csv(tmp_path / "per_image.csv")
    single.to_csv(tmp_path / "metrics.csv")
    assert single.n_images == 7
    per_image = (sharded / "per_image.csv").read_text()
    assert per_image == (tmp_path / "per_image.csv").read_text()
    assert len(per_image.strip().splitlines()) == 1 + 7 * 3  # header + images x (raw, gradcam gap, gradcam ca)
    assert (sharded / "metrics.csv").read_text() == (tmp_path / "metrics.csv").read_text()
    # the kept examples are the first 5 images, each with its own label, whatever rank computed it
    _save_examples(single, str(tmp_path / "examples.npz"))
    got, want = np.load(sharded / "examples.npz"), np.load(tmp_path / "examples.npz")
    assert sorted(got.files) == sorted(want.files)
    for key in want.files:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    images, labels, _ = _data().tensors
    assert got["indices"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(got["images"], images[:5].numpy())
    for i, title in enumerate(got["titles"]):
        gap, ca = single.predictions["gap"][i], single.predictions["ca"][i]
        assert str(title) == f"#{i}, true: class{int(labels[i])}\nGAP: class{gap}\nCA: class{ca}"
