"""evaluate_loader: streaming equals evaluate, masks, targets, and a 2-process gloo run."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from xai_pool.metrics import evaluate, evaluate_loader


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def make_data(n: int = 7) -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    images = torch.randn(n, 3, 5, 5, generator=g)
    labels = torch.randint(0, 3, (n,), generator=g)
    masks = torch.rand(n, 5, 5, generator=g) > 0.5
    return TensorDataset(images, labels, masks)


def gradient_map(model: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, classes.view(-1, 1)).sum(), x)
    return grad.abs().sum(dim=1)


METRICS = ("ad", "ag", "ai", "insertion", "deletion", "pointing_game")


def test_loader_matches_evaluate_batch_by_batch():
    model = make_model()
    data = make_data()
    out = evaluate_loader(
        model,
        DataLoader(data, batch_size=3),
        gradient_map,
        metrics=METRICS,
        step=4,
        progress=False,
        return_curves=True,
    )
    images, labels, masks = data.tensors
    ref = evaluate(
        model,
        images,
        gradient_map(model, images, labels),
        labels,
        metrics=METRICS,
        masks=masks,
        step=4,
        return_curves=True,
    )
    assert out["insertion_curve"].shape == ref["insertion_curve"].shape
    for key in (*METRICS, "insertion_curve", "target"):
        np.testing.assert_allclose(out[key], ref[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_loader_with_prediction_target_and_pairs():
    model = make_model()
    images, labels, _ = make_data().tensors
    pairs = [(images[i : i + 2], labels[i : i + 2]) for i in range(0, 7, 2)]
    seen = []

    def fn(m, imgs, classes):
        seen.append(classes.clone())
        return gradient_map(m, imgs, classes)

    out = evaluate_loader(model, pairs, fn, metrics=("ad", "deletion"), target="prediction", progress=False)
    with torch.no_grad():
        predicted = model(images).argmax(dim=1)
    assert out["target"].tolist() == predicted.tolist()
    assert torch.cat(seen).tolist() == predicted.tolist()
    assert out["ad"].shape == (7,)


def test_loader_errors():
    model = make_model()
    with pytest.raises(ValueError, match="target must be 'label' or 'prediction'"):
        evaluate_loader(model, [], gradient_map, target="truth")
    with pytest.raises(ValueError, match=r"loader must yield \(images, labels\)"):
        evaluate_loader(model, [torch.zeros(1, 3, 4, 4)], gradient_map, progress=False)


def test_shard_batches_deals_the_remaining_batches_round_robin():
    from xai_pool.sharding import shard_batches

    data = TensorDataset(torch.arange(11.0))
    loader = DataLoader(data, batch_size=2)  # 6 batches, the last one of a single item
    for skip in (frozenset(), frozenset({1, 4})):
        todo = [i for i in range(6) if i not in skip]
        seen = []
        for rank in range(3):  # any world size, uneven tails
            for source in (loader, list(loader)):  # a DataLoader is rebuilt; another iterable is filtered
                shard = shard_batches(source, rank, 3, skip=skip)
                pairs = list(shard)
                assert [i for i, _ in pairs] == todo[rank::3] and shard.total == len(todo[rank::3])
                for index, (batch,) in pairs:
                    assert batch.tolist() == data.tensors[0][2 * index : 2 * index + 2].tolist()
            seen += [i for i, _ in shard_batches(loader, rank, 3, skip=skip)]
        assert sorted(seen) == todo


def test_batch_store_round_trip_and_fingerprint(tmp_path):
    from xai_pool.metrics import BatchStore

    record = {
        "count": 2,
        "labels": np.array([1, 2]),
        "scores": {("gradcam", "ca"): {"ad": np.array([0.5, np.nan]), "valid": np.array([True, False])}},
    }
    store = BatchStore(tmp_path / "run", {"step": 4})
    assert store.open() == frozenset()
    store.save(3, record)
    again = BatchStore(tmp_path / "run", {"step": 4})
    assert again.open() == frozenset({3})
    back = again.load(3)
    np.testing.assert_array_equal(back["scores"][("gradcam", "ca")]["ad"], [0.5, np.nan])
    assert back["scores"][("gradcam", "ca")]["valid"].dtype == bool and back["count"] == 2
    other = BatchStore(tmp_path / "run", {"step": 8})  # another configuration: started over
    assert other.open() == frozenset() and not list((tmp_path / "run").glob("batch-*"))


def test_loader_counts_one_clean_forward_per_batch():
    model = make_model()
    images_forwarded = []
    model.register_forward_hook(lambda module, args, output: images_forwarded.append(args[0].shape[0]))
    fn_calls = []

    def saliency(m, imgs, classes):
        fn_calls.append(1)
        return torch.rand(imgs.shape[0], 5, 5)

    evaluate_loader(model, DataLoader(make_data(), batch_size=3), saliency, step=5, progress=False)
    # per image: 1 clean + 1 AD/AG/AI image + 5 insertion + 5 deletion points (25 pixels, 5 per step)
    assert sum(images_forwarded) == 7 * (1 + 1 + 5 + 5) and len(fn_calls) == 3


def test_batch_store_removes_a_killed_writers_temp_file_on_resume(tmp_path):
    from xai_pool.metrics import BatchStore

    from .test_atomic import dead_pid, owned_name

    store = BatchStore(tmp_path / "run", {"step": 4})
    store.open()
    store.save(0, {"count": 1, "labels": np.array([1])})
    dead = tmp_path / "run" / owned_name("batch-000001.pt", dead_pid())  # killed while writing batch 1
    live = tmp_path / "run" / owned_name("batch-000002.pt", os.getpid())  # a writer still running
    dead.write_bytes(b"half")
    live.write_bytes(b"half")
    assert BatchStore(tmp_path / "run", {"step": 4}).open() == frozenset({0})
    assert not dead.exists() and live.exists()
