"""One training step and one evaluation pass of a CA-Stream on its frozen backbone.

These are the inner loops of :func:`xai_pool.train_stream`, kept separate so the benchmark
(``bench/train_step.py``) and users with their own loop can call exactly the same code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model import CAModel

__all__ = ["Objective", "train_step", "evaluate_sums", "split_batch", "autocast"]


class Objective:
    """The training loss of the stream.

    With labels: cross-entropy on the CA logits, with ``label_smoothing`` passed to the loss
    constructor (the authors set it as an attribute that ``CrossEntropyLoss`` never reads).
    Label-free: ``KL(p_gap || p_ca)``, distilling the frozen model's own GAP prediction into
    the stream, for users who have images but no labels.

    Args:
        label_free: use the KL-to-GAP loss instead of cross-entropy.
        label_smoothing: label smoothing of the cross-entropy, in [0, 1).
    """

    def __init__(self, *, label_free: bool = False, label_smoothing: float = 0.0) -> None:
        self.label_free = label_free
        self.label_smoothing = label_smoothing
        self._ce = {
            reduction: nn.CrossEntropyLoss(label_smoothing=label_smoothing, reduction=reduction)
            for reduction in ("mean", "sum")
        }

    def __call__(
        self, logits: Tensor, labels: Tensor | None, gap_logits: Tensor | None, reduction: str = "mean"
    ) -> Tensor:
        """The loss (mean or sum over the batch), computed in float32."""
        logits = logits.float()
        if self.label_free:
            if gap_logits is None:
                raise ValueError("the label-free loss needs the GAP logits")
            kl = F.kl_div(logits.log_softmax(1), gap_logits.float().log_softmax(1), log_target=True, reduction="sum")
            return kl / logits.shape[0] if reduction == "mean" else kl
        if labels is None:
            raise ValueError("the batches have no labels; give (images, labels) batches, or train with label_free=True")
        return self._ce[reduction](logits, labels)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype`` on ``device``, or a no-op when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def split_batch(batch: Any) -> tuple[Tensor, Tensor | None]:
    """``(images, labels or None)`` from a tensor, ``(images,)`` or ``(images, labels, ...)``.

    Extra items after the labels (e.g. the masks of ShapesScenes) are ignored.
    """
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
        labels = batch[1] if len(batch) > 1 else None
        if labels is not None and not isinstance(labels, Tensor):
            labels = torch.as_tensor(labels)
        return batch[0], labels
    raise TypeError(
        f"a batch must be an image tensor or a tuple (images, labels, ...), got {type(batch).__name__}; "
        "use a DataLoader over a dataset that returns (image, label)"
    )


def _class_index(model: CAModel, labels: Tensor | None, gap_logits: Tensor | None) -> Tensor | None:
    """The query index of a class-specific stream: the label when known, else the GAP prediction."""
    if not model.stream.config.class_specific:
        return None
    if labels is not None:
        return labels
    return gap_logits.argmax(1) if gap_logits is not None else None


def train_step(
    model: CAModel,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    labels: Tensor | None,
    objective: Objective,
    *,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[Tensor, Tensor]:
    """One optimizer step of the stream on a batch already on the model's device.

    The model must be in train mode: the frozen backbone then builds no autograd graph, so
    the step costs one forward pass of the backbone plus the stream's forward and backward
    (and, in label-free mode, one more backbone pass for the GAP target).

    Returns:
        ``(loss, correct)``: the batch's mean loss and its number of correct top-1
        predictions (against the labels, or the GAP prediction when label-free), detached.
    """
    optimizer.zero_grad(set_to_none=True)
    with autocast(images.device, amp_dtype):
        gap_logits = None
        if objective.label_free:
            with torch.no_grad(), model.pooling_as("gap"):
                gap_logits = model(images)
        use_labels = None if objective.label_free else labels
        with model.pooling_as("ca"):
            logits = model(images, class_index=_class_index(model, use_labels, gap_logits))
    loss = objective(logits, labels, gap_logits)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    target = gap_logits.argmax(1) if objective.label_free else labels
    correct = (logits.detach().argmax(1) == target).sum()
    return loss.detach(), correct


# Order of the sums returned by evaluate_sums (added across processes as one tensor).
EVAL_FIELDS = ("loss", "count", "correct_ca", "correct_gap", "labeled", "agree", "skipped")


@torch.no_grad()
def evaluate_sums(
    model: CAModel,
    batches: Iterable,
    objective: Objective,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    counts: bool = False,
) -> Tensor:
    """Sums over ``batches`` of the loss and of the correct predictions of both poolings.

    Each batch runs the backbone twice (GAP, then CA with the GAP prediction as the query
    index of a class-specific stream); the model must be in eval mode.

    Returns:
        A float64 tensor on ``device`` ordered as :data:`EVAL_FIELDS` (sample-weighted
        sums, so shards from several processes add up exactly). The loss is summed over the
        labelled samples (all samples when label-free).
    """
    # Accumulated on the device: no host synchronisation per batch.
    sums = torch.zeros(len(EVAL_FIELDS), dtype=torch.float64, device=device)
    for item in batches:
        batch, dropped = item if counts else (item, 0)
        sums[6] += dropped
        if batch is None:
            continue
        images, labels = split_batch(batch)
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True) if labels is not None else None
        with autocast(device, amp_dtype):
            with model.pooling_as("gap"):
                gap_logits = model(images)
            with model.pooling_as("ca"):
                ca_logits = model(images, class_index=_class_index(model, None, gap_logits))
        ca_pred, gap_pred = ca_logits.argmax(1), gap_logits.argmax(1)
        n = images.shape[0]
        if objective.label_free or labels is not None:
            sums[0] += objective(ca_logits, labels, gap_logits, reduction="sum")
        sums[1] += n
        if labels is not None:
            sums[2] += (ca_pred == labels).sum()
            sums[3] += (gap_pred == labels).sum()
            sums[4] += n
        sums[5] += (ca_pred == gap_pred).sum()
    return sums
