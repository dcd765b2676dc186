"""Steps shared by the end-to-end runs (``xai-pool demo``, the transfer experiment).

Both train a CA-Stream on in-memory tensors, reusing a finished stream or resuming an
interrupted one; both end in the same call as ``xai-pool evaluate``,
:func:`xai_pool.report.write_report`, and both report their steps through the
``xai_pool.pipeline`` logger (``xai-pool demo`` shows them on stderr).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .atomic import atomic_write_text

__all__ = ["logger", "run_summary", "train_or_reuse_stream"]

#: The logger of the end-to-end runs' steps (``[1/4] ...``).
logger = logging.getLogger("xai_pool.pipeline")

_DONE = "DONE"


def run_summary(result: Any, out: Path, seconds: float, stage_seconds: dict[str, float] | None = None) -> str:
    """The text a finished run shows: the results table, the findings, the time and where the report is.

    Args:
        result: the run's :class:`~xai_pool.report.ComparisonResult`.
        out: the report folder.
        seconds: the run's wall-clock time.
        stage_seconds: seconds per stage, shown rounded when given.

    Returns:
        Several lines of text, starting with an empty line.
    """
    stages = f" ({json.dumps({k: round(v) for k, v in stage_seconds.items()})})" if stage_seconds else ""
    return (
        f"\n{result.to_markdown()}\n{result.findings()}\n\nDone in {seconds:.0f} s{stages}. Open {out / 'report.html'}"
    )


def train_or_reuse_stream(
    model: Any,
    stream_dir: Path,
    train: Callable[[], tuple[Tensor, Tensor]],
    val: Callable[[], tuple[Tensor, Tensor]] | None,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    device: torch.device,
    seed: int,
    fresh: bool = False,
    progress: bool | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """Train ``model``'s stream on ``train`` (frozen backbone), or load the finished one.

    A stream counts as finished when ``stream_dir/DONE`` and ``stream_dir/last.pt`` exist
    and ``last.pt`` matches the model's backbone; an interrupted run (``train_state.pt``
    without ``DONE``) resumes. SGD with a cosine schedule and no warm-up.

    Args:
        model: a :class:`~xai_pool.CAModel`.
        stream_dir: folder of the stream's checkpoints.
        train: returns the training ``(images, labels)`` tensors (called only when training,
            so a reused stream costs no data generation).
        val: returns validation ``(images, labels)``, evaluated every epoch (monitoring only).
        epochs: training epochs.
        lr: the SGD learning rate.
        batch_size: images per step.
        device: where to train.
        seed: seeds the stream's initialisation and the data order.
        fresh: ignore any finished or interrupted run and train from scratch.
        progress: tqdm bars (None: only on a terminal).

    Returns:
        ``(history, reused)``: the per-epoch history (empty when reused) and whether a
        finished stream was loaded instead of trained.
    """
    from torch.utils.data import DataLoader, TensorDataset

    from .checkpoint import load_stream
    from .train import train_stream

    finished = stream_dir / "last.pt"
    if not fresh and finished.exists() and (stream_dir / _DONE).exists():
        try:
            load_stream(model, finished)
            logger.info("      reusing the trained stream in %s (delete %s to retrain)", finished, stream_dir)
            return [], True
        except ValueError as error:  # another backbone: train again
            logger.info("      not reusing %s: %s", finished, error)
    (stream_dir / _DONE).unlink(missing_ok=True)
    state = stream_dir / "train_state.pt"
    resume = not fresh and state.exists() and _resumable(state, model)
    val_loader = DataLoader(TensorDataset(*val()), batch_size=256) if val is not None else None
    history = train_stream(
        model,
        DataLoader(TensorDataset(*train()), batch_size=batch_size, shuffle=True),
        val_loader=val_loader,
        epochs=epochs, lr=lr, schedule="cosine", warmup_epochs=0.0,
        out_dir=stream_dir, resume=resume,
        overwrite=True, device=device, seed=seed, progress=progress,
    )  # fmt: skip
    atomic_write_text(stream_dir / _DONE, "stream training finished\n")
    return history, False


def _resumable(state_path: Path, model: Any) -> bool:
    """Whether an interrupted run's state belongs to this backbone (else it is started over)."""
    from .checkpoint import backbone_fingerprint
    from .train.state import load_train_state

    try:
        stored = load_train_state(state_path)["stream"].get("fingerprint", {})
    except (ValueError, KeyError, AttributeError) as error:
        logger.info("      not resuming from %s: %s", state_path, error)
        return False
    if stored != backbone_fingerprint(model.backbone):
        logger.info("      not resuming from %s: it was trained on another backbone", state_path)
        return False
    return True
