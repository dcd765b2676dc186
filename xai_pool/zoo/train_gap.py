"""Train a GAP classifier from scratch (the embedded ShapesResNet, or any small CNN).

The recipe that produced the shipped weights is this module's defaults: AdamW with a
one-cycle learning-rate schedule (plain SGD at lr 0.1 stayed near chance on this data),
batches of 64, 12 epochs, and random flips and 90-degree rotations as augmentation.

Randomness comes only from a private ``torch.Generator`` seeded with ``seed`` (shuffling
and augmentation), so the global RNG is untouched and two runs with the same seed, the same
initial weights and the same thread count give the same weights. Seed the model's
initialisation yourself (``torch.manual_seed(seed)`` before building it), as
``scripts/train_shapes_model.py`` does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..runtime import eval_mode

__all__ = ["EpochStats", "TrainHistory", "evaluate_accuracy", "train_gap_classifier"]

logger = logging.getLogger("xai_pool.zoo")


@dataclass(frozen=True)
class EpochStats:
    """Metrics after one epoch (accuracies are fractions in [0, 1]).

    Attributes:
        epoch: 1-based epoch number.
        train_loss: mean cross-entropy over the epoch's training batches (augmented).
        train_accuracy: accuracy on those batches, in train mode.
        test_loss: cross-entropy on the test data in eval mode (None without test data).
        test_accuracy: accuracy on the test data (None without test data).
        lr: learning rate at the end of the epoch.
        seconds: wall-clock time of the epoch, evaluation included.
    """

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float | None
    test_accuracy: float | None
    lr: float
    seconds: float


@dataclass
class TrainHistory:
    """What :func:`train_gap_classifier` returns: one :class:`EpochStats` per epoch.

    Attributes:
        epochs: per-epoch statistics, in order.
        seconds: total wall-clock time.
        config: the training arguments (for logs and reports).
    """

    epochs: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def final_test_accuracy(self) -> float | None:
        """Test accuracy after the last epoch (None if there was no test data or no epoch)."""
        return self.epochs[-1].test_accuracy if self.epochs else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {"epochs": [asdict(e) for e in self.epochs], "seconds": self.seconds, "config": dict(self.config)}


def _as_tensors(data: Any, name: str) -> tuple[Tensor, Tensor]:
    """(images, labels) from an ``(images, labels, ...)`` tuple, a ShapesScenes, or a Dataset."""
    if isinstance(data, (tuple, list)) and len(data) >= 2 and all(isinstance(t, Tensor) for t in data[:2]):
        images, labels = data[0], data[1]
    elif callable(getattr(data, "tensors", None)):
        images, labels = data.tensors()[:2]
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        items = [data[i] for i in range(len(data))]
        if not items:
            raise ValueError(f"{name} is empty")
        images = torch.stack([item[0] for item in items])
        labels = torch.as_tensor([int(item[1]) for item in items])
    else:
        raise TypeError(
            f"{name} must be a Dataset yielding (image, label, ...) or a tuple (images, labels), "
            f"got {type(data).__name__}"
        )
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name}: images must be a float tensor (N, C, H, W), got {got}")
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.shape[0] != images.shape[0] or labels.is_floating_point():
        raise ValueError(
            f"{name}: labels must be N integer class indices for the N={images.shape[0]} images, "
            f"got shape {tuple(labels.shape)} and dtype {labels.dtype}"
        )
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    return images, labels.long()


def _dihedral(images: Tensor, generator: torch.Generator) -> Tensor:
    """Random flip and 90-degree rotation per image (rotations only for square images)."""
    batch = images.shape[0]
    flips = torch.randint(0, 2, (batch,), generator=generator)
    turns = torch.randint(0, 4, (batch,), generator=generator)
    if images.shape[-1] != images.shape[-2]:
        turns.zero_()
    out = images.clone()
    for k in range(4):
        for flip in (0, 1):
            sel = ((turns == k) & (flips == flip)).nonzero().flatten()
            if sel.numel() == 0 or (k == 0 and flip == 0):
                continue
            part = images[sel].flip(-1) if flip else images[sel]
            out[sel] = torch.rot90(part, k, dims=(-2, -1))
    return out


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module, data: Any, *, batch_size: int = 256, device: str | torch.device = "cpu"
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data``, in eval mode.

    The model's training flag is restored afterwards.

    Args:
        model: a classifier returning logits (B, num_classes).
        data: a Dataset yielding ``(image, label, ...)``, a ShapesScenes, or ``(images, labels)``.
        batch_size: images per forward pass.
        device: where to run.

    Returns:
        ``(loss, accuracy)`` with accuracy a fraction in [0, 1].
    """
    images, labels = _as_tensors(data, "data")
    total_loss, correct = 0.0, 0
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(device)
            y = labels[start : start + batch_size].to(device)
            logits = model(x)
            total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(dim=1) == y).sum())
    n = images.shape[0]
    return total_loss / n, correct / n


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    # No weight decay on BatchNorm scales and biases: decaying them only hurts small nets.
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_gap_classifier(
    model: nn.Module,
    train_data: Any,
    test_data: Any = None,
    *,
    epochs: int = 12,
    batch_size: int = 64,
    lr: float = 4e-3,
    weight_decay: float = 0.05,
    label_smoothing: float = 0.05,
    augment: bool = True,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> TrainHistory:
    """Train every parameter of a classifier from scratch with AdamW and a one-cycle schedule.

    The whole training split is held in memory as tensors (ShapesScenes materialises it
    once with :meth:`~xai_pool.data.ShapesScenes.tensors`); batches are drawn by index.

    Args:
        model: the classifier (e.g. :class:`~xai_pool.zoo.ShapesResNet`), modified in place.
        train_data: a Dataset yielding ``(image, label, ...)`` (a ShapesScenes, for instance)
            or a tuple ``(images, labels)`` of tensors.
        test_data: same forms, evaluated after every epoch; ``None`` to skip.
        epochs: passes over the training data.
        batch_size: images per step; the last incomplete batch of an epoch is dropped.
        lr: peak learning rate of the one-cycle schedule.
        weight_decay: AdamW decoupled weight decay (not applied to norms and biases).
        label_smoothing: cross-entropy label smoothing.
        augment: random horizontal flips and 90-degree rotations; only valid when every
            class is invariant to them (true for ShapesScenes: its shapes are mirror-symmetric
            and drawn at random rotations). Turn off for other data.
        seed: seeds the shuffling and the augmentation.
        device: where to train (``"cpu"``, ``"cuda"``, a torch.device).
        progress: show a tqdm progress bar. Each epoch's losses and accuracies are logged
            (INFO, logger ``xai_pool.zoo``) either way.

    Returns:
        A :class:`TrainHistory`. The model is left in eval mode.

    Raises:
        ValueError: a hyper-parameter is out of range or the data is malformed.
        TypeError: the data is of an unsupported type.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_positive_int("epochs", epochs)
    _check_positive_int("batch_size", batch_size)
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    images, labels = _as_tensors(train_data, "train_data")
    test = _as_tensors(test_data, "test_data") if test_data is not None else None
    steps = images.shape[0] // batch_size
    if steps == 0:
        raise ValueError(
            f"batch_size={batch_size} is larger than the {images.shape[0]} training images; use a smaller batch_size"
        )
    device = torch.device(device)
    config = {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
        "label_smoothing": label_smoothing, "augment": augment, "seed": seed, "device": str(device),
        "train_size": int(images.shape[0]), "test_size": int(test[0].shape[0]) if test else 0,
    }  # fmt: skip

    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    optimizer = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr)
    # A short warm-up from lr/10: starting from the default lr/25 left the network at chance
    # for the first epochs (it must find the object before it can learn its shape).
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps, pct_start=0.15, div_factor=10.0
    )
    history = TrainHistory(config=config)
    bar = _progress_bar(epochs * steps, progress)
    start = time.perf_counter()
    try:
        for epoch in range(1, epochs + 1):
            epoch_start = time.perf_counter()
            model.train()
            order = torch.randperm(images.shape[0], generator=generator)
            loss_sum, correct = 0.0, 0
            for step in range(steps):
                index = order[step * batch_size : (step + 1) * batch_size]
                x = images[index]
                if augment:
                    x = _dihedral(x, generator)
                x, y = x.to(device, non_blocking=True), labels[index].to(device, non_blocking=True)
                logits = model(x)
                loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                loss_value = loss.item()
                loss_sum += loss_value * y.shape[0]
                correct += int((logits.detach().argmax(dim=1) == y).sum())
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{loss_value:.3f}")
            seen = steps * batch_size
            test_loss, test_acc = evaluate_accuracy(model, test, device=device) if test else (None, None)
            stats = EpochStats(
                epoch=epoch,
                train_loss=loss_sum / seen,
                train_accuracy=correct / seen,
                test_loss=test_loss,
                test_accuracy=test_acc,
                lr=float(schedule.get_last_lr()[0]),
                seconds=time.perf_counter() - epoch_start,
            )
            history.epochs.append(stats)
            logger.info("%s", _epoch_line(stats))
    finally:
        if bar is not None:
            bar.close()
        model.eval()
    history.seconds = time.perf_counter() - start
    return history


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="train GAP classifier", unit="step", dynamic_ncols=True)


def _epoch_line(stats: EpochStats) -> str:
    test = "" if stats.test_accuracy is None else f"  test loss {stats.test_loss:.3f} acc {stats.test_accuracy:.3f}"
    return (
        f"epoch {stats.epoch:3d}  train loss {stats.train_loss:.3f} acc {stats.train_accuracy:.3f}{test}"
        f"  ({stats.seconds:.0f} s)"
    )
