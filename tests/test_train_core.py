"""train_stream: frozen means frozen, the stream learns, losses, inits, schedules, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, TensorDataset

import xai_pool
from xai_pool import attach_stream, train_stream
from xai_pool.train import CosineSchedule, StepSchedule, evaluate_stream, init_stream

from .conftest import TINY_SPEC, TinyCNN


def colour_problem(n: int, seed: int, classes: int = 4, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images whose class is a colour cast: channel ``c // 2`` shifted by +-1.5 (sign = c % 2)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randn(n, 3, size, size, generator=g)
    sign = 1.0 - 2.0 * (labels % 2).float()
    images[torch.arange(n), labels // 2] += 1.5 * sign[:, None, None]
    return images, labels


def tiny_model(classes: int = 4, **options) -> xai_pool.CAModel:
    torch.manual_seed(0)
    return attach_stream(TinyCNN(num_classes=classes), spec=TINY_SPEC, **options)


def loader(n: int = 64, seed: int = 0, batch: int = 16, shuffle: bool = True) -> DataLoader:
    return DataLoader(TensorDataset(*colour_problem(n, seed)), batch_size=batch, shuffle=shuffle)


def test_backbone_weights_and_batchnorm_stats_are_bit_identical() -> None:
    torch.manual_seed(0)
    ca = attach_stream(torchvision.models.resnet18(num_classes=4))
    # Non-trivial running statistics, so that any drift would show.
    for module in ca.backbone.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.num_batches_tracked.fill_(7)
    before = {k: v.clone() for k, v in ca.backbone.state_dict().items()}
    stream_before = {k: v.clone() for k, v in ca.stream.state_dict().items()}
    images, labels = colour_problem(16, 0, size=64)  # layer4 2x2: every block gets gradients
    train_stream(
        ca,
        DataLoader(TensorDataset(images, labels), batch_size=8, shuffle=True),
        epochs=1,
        val_loader=DataLoader(TensorDataset(images, labels), batch_size=8),
        init="keep",
    )
    after = ca.backbone.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(value, after[key]), key
    assert all(p.grad is None for p in ca.backbone.parameters())
    changed = [k for k, v in ca.stream.state_dict().items() if not torch.equal(v, stream_before[k])]
    assert changed and len(changed) == len(stream_before)
    assert not ca.training  # the model's mode is restored


def test_backbone_builds_no_autograd_graph_in_a_step() -> None:
    ca = tiny_model()
    seen = []
    handle = ca.backbone.stage1.register_forward_hook(lambda m, i, o: seen.append((o.requires_grad, o.grad_fn)))
    try:
        train_stream(ca, loader(16, batch=16), epochs=1)
    finally:
        handle.remove()
    assert seen and all(flag is False and fn is None for flag, fn in seen)


def test_training_loss_decreases_on_a_learnable_problem() -> None:
    ca = tiny_model()
    history = train_stream(ca, loader(128, batch=32), epochs=6, lr=1.0, val_loader=loader(64, seed=1, shuffle=False))
    losses = [record["train_loss"] for record in history]
    assert losses[-1] < losses[0] - 0.1
    assert all(loss < losses[0] for loss in losses[1:])
    assert history[-1]["val_acc_ca"] > history[-1]["val_acc_gap"]
    assert [record["epoch"] for record in history] == list(range(1, 7))
    for key in ("train_loss", "train_acc", "val_loss", "val_acc_ca", "val_acc_gap", "lr", "time"):
        assert key in history[0]


def _first_step_loss(label_smoothing: float) -> float:
    losses: list[float] = []
    train_stream(
        tiny_model(),
        loader(16, batch=16, shuffle=False),
        epochs=1,
        label_smoothing=label_smoothing,
        on_step=lambda info: losses.append(info["loss"]),
    )
    return losses[0]


def test_label_smoothing_reaches_the_loss() -> None:
    images, labels = colour_problem(16, 0)
    ca = tiny_model()
    init_stream(ca, "xavier", 0)  # the initial stream train_stream starts from (seed 0)
    ca.train()
    with torch.no_grad():
        logits = ca(images)
    smoothed = _first_step_loss(0.3)
    assert smoothed == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=0.3).item(), rel=1e-5)
    assert _first_step_loss(0.0) == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    assert abs(smoothed - _first_step_loss(0.0)) > 1e-3


def test_label_free_mode_distils_the_gap_prediction() -> None:
    images, _ = colour_problem(64, 0)
    unlabeled = DataLoader(TensorDataset(images), batch_size=16, shuffle=True)
    ca = tiny_model()
    history = train_stream(
        ca, unlabeled, epochs=4, lr=1.0, label_free=True, val_loader=DataLoader(TensorDataset(images), batch_size=32)
    )
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_acc_ca"] is None and history[-1]["val_agreement"] is not None


def test_class_specific_stream_trains_with_labels() -> None:
    ca = tiny_model(class_specific=True)
    query = ca.stream.query.detach().clone()
    history = train_stream(ca, loader(32), epochs=1, val_loader=loader(16, seed=1))
    assert history[0]["val_acc_ca"] is not None
    assert not torch.equal(query, ca.stream.query)


def test_identity_init_sets_the_last_linear() -> None:
    ca = tiny_model()
    init_stream(ca, "identity", 0)
    last = ca.stream.blocks[-1].proj
    assert torch.equal(last.weight, torch.eye(last.in_features)) and torch.count_nonzero(last.bias) == 0
    # Same seed, same draws: everything else equals the xavier initialisation.
    other = tiny_model()
    init_stream(other, "xavier", 0)
    assert torch.equal(ca.stream.query, other.stream.query)
    assert torch.equal(ca.stream.blocks[0].proj.weight, other.stream.blocks[0].proj.weight)


def test_identity_init_on_a_torchvision_resnet() -> None:
    torch.manual_seed(0)
    ca = attach_stream(torchvision.models.resnet18(num_classes=4))
    init_stream(ca, "identity", 0)  # the last block reads layer4 (512) and feeds the 512-wide fc
    assert torch.equal(ca.stream.blocks[-1].proj.weight, torch.eye(512))


def test_seed_makes_runs_reproducible() -> None:
    a, b = tiny_model(), tiny_model()
    train_stream(a, loader(32), epochs=1, seed=3)
    train_stream(b, loader(32), epochs=1, seed=3)
    for (key, va), vb in zip(a.stream.state_dict().items(), b.stream.state_dict().values(), strict=True):
        assert torch.equal(va, vb), key


def test_evaluate_stream_reports_both_poolings() -> None:
    ca = tiny_model()
    metrics = evaluate_stream(ca, loader(32, shuffle=False))
    assert metrics["count"] == 32 and 0 <= metrics["acc_ca"] <= 1 and 0 <= metrics["acc_gap"] <= 1
    images, labels = colour_problem(32, 0)
    with torch.no_grad(), ca.pooling_as("gap"):
        expected = (ca(images).argmax(1) == labels).float().mean().item()
    assert metrics["acc_gap"] == pytest.approx(expected)
    assert metrics["loss"] == pytest.approx(F.cross_entropy(ca(images).detach(), labels).item(), rel=1e-5)


def test_schedules() -> None:
    step = StepSchedule(steps_per_epoch=10, step_epochs=30, gamma=0.1)
    assert [step(s) for s in (0, 299, 300, 599, 600)] == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    warm = StepSchedule(steps_per_epoch=10, warmup_steps=5)
    assert [warm(s) for s in range(6)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    cosine = CosineSchedule(total_steps=100, warmup_steps=10)
    assert cosine(0) == pytest.approx(0.1) and cosine(10) == pytest.approx(1.0)
    assert cosine(55) == pytest.approx(0.5) and cosine(100) == pytest.approx(0.0, abs=1e-12)
    lrs: list[float] = []
    train_stream(
        tiny_model(),
        loader(32, batch=8),
        epochs=2,
        schedule="cosine",
        warmup_epochs=1,
        lr=0.4,
        on_step=lambda info: lrs.append(info["lr"]),
    )
    assert lrs[:4] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert lrs[4] == pytest.approx(0.4) and lrs[-1] == pytest.approx(0.4 * 0.5 * (1 + math.cos(math.pi * 3 / 4)))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epochs": 0}, ValueError, "epochs"),
        ({"epochs": 1.5}, TypeError, "epochs"),
        ({"epochs": 1, "schedule": "linear"}, ValueError, "schedule"),
        ({"epochs": 1, "label_free": True, "label_smoothing": 0.1}, ValueError, "label_smoothing"),
        ({"epochs": 1, "resume": True}, ValueError, "out_dir"),
        ({"epochs": 1, "init": "zeros"}, ValueError, "init"),
        ({"epochs": 1, "amp": "fp8"}, ValueError, "amp"),
    ],
)
def test_argument_errors(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        train_stream(tiny_model(), loader(16), **kwargs)


def test_refuses_a_plain_model_and_an_unfrozen_backbone() -> None:
    with pytest.raises(TypeError, match="CAModel"):
        train_stream(TinyCNN(), loader(16), epochs=1)
    ca = tiny_model()
    ca.backbone.head.weight.requires_grad_(True)
    with pytest.raises(ValueError, match="frozen"):
        train_stream(ca, loader(16), epochs=1)


def test_labels_outside_the_classifier_are_a_clear_error() -> None:
    images, labels = colour_problem(16, 0)
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\)"):
        train_stream(tiny_model(), DataLoader(TensorDataset(images, labels + 3), batch_size=8), epochs=1)


def test_out_dir_must_be_a_folder(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        train_stream(tiny_model(), loader(16), epochs=1, out_dir=tmp_path / "file")


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_on_cpu_keeps_the_loss_finite(amp) -> None:
    ca = tiny_model()
    history = train_stream(ca, loader(32), epochs=1, amp=amp, val_loader=loader(16, seed=1))
    assert math.isfinite(history[0]["train_loss"]) and math.isfinite(history[0]["val_loss"])
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in ca.stream.parameters())


class _PartlyUnreadable(torch.utils.data.Dataset):
    """Samples 0-3 are unreadable (None), like broken files in a SafeImageFolder."""

    def __init__(self) -> None:
        self.images, self.labels = colour_problem(12, 0)

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int):
        return None if index < 4 else (self.images[index], self.labels[index])


def test_unreadable_samples_are_skipped_and_counted() -> None:
    data = DataLoader(_PartlyUnreadable(), batch_size=4, shuffle=False)  # the first batch is all unreadable
    history = train_stream(tiny_model(), data, epochs=2, val_loader=DataLoader(_PartlyUnreadable(), batch_size=3))
    assert [r["skipped"] for r in history] == [8, 8]  # 4 in training + 4 in validation, per epoch
    assert history[0]["steps"] == 3 and math.isfinite(history[0]["train_loss"])


def test_unlabeled_batches_need_label_free() -> None:
    images, _ = colour_problem(16, 0)
    with pytest.raises(ValueError, match="label_free"):
        train_stream(tiny_model(), DataLoader(TensorDataset(images), batch_size=8), epochs=1)
