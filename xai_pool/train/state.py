"""Training checkpoints (``train_state.pt``): everything needed to continue a run exactly.

A training state holds the stream (as a stream checkpoint payload, so the backbone
fingerprint is checked on resume), the optimizer, the scheduler, the AMP scaler, the
position in the run (epoch, step in the epoch, global step), the random states of python,
numpy, torch and CUDA, the metric sums of the unfinished epoch, the history so far, and
the settings that must not change on resume.

Files are written atomically and read with ``torch.load(weights_only=True)``: a crash
while saving leaves the previous file intact, and a truncated or foreign file raises a
ValueError that says so, without touching it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import atomic_torch_save, safe_torch_load

__all__ = [
    "TRAIN_STATE_FORMAT",
    "capture_rng_state",
    "restore_rng_state",
    "save_train_state",
    "load_train_state",
    "check_resume_config",
]

TRAIN_STATE_FORMAT = "xai_pool.train_state"
TRAIN_STATE_VERSION = 1
_REQUIRED = (
    "stream",
    "optimizer",
    "scheduler",
    "epoch",
    "step_in_epoch",
    "global_step",
    "rng",
    "epoch_sums",
    "history",
    "config",
)
# Settings that may differ on resume: a longer step-schedule run can be continued.
_RESUMABLE_CHANGES = frozenset({"epochs"})


def capture_rng_state() -> dict[str, Any]:
    """The random states of python, numpy, torch (CPU) and every initialised CUDA device.

    numpy's state is stored as plain Python values, since ``weights_only`` loading refuses
    numpy arrays.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
        "cuda": None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the random states saved by :func:`capture_rng_state`."""
    random.setstate(_as_tuples(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _as_tuples(value: Any) -> Any:
    # random.setstate needs tuples; be tolerant of lists in case a serialiser changed them.
    if isinstance(value, list):
        return tuple(_as_tuples(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_as_tuples(v) for v in value)
    return value


def save_train_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write a training state atomically (the format tag is added here)."""
    missing = [key for key in _REQUIRED if key not in state]
    if missing:
        raise ValueError(f"training state is missing {missing}")
    return atomic_torch_save({"format": TRAIN_STATE_FORMAT, "format_version": TRAIN_STATE_VERSION, **state}, path)


def load_train_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a training state written by :func:`save_train_state`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is truncated or corrupt, is not an xai_pool training state
            (e.g. a stream checkpoint or another tool's file), comes from a newer xai_pool,
            or lacks fields. The file itself is never modified.
    """
    payload = safe_torch_load(path, what="training state")
    source = f"training state {str(path)!r}"
    if not isinstance(payload, dict) or payload.get("format") != TRAIN_STATE_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        is_stream = found == "xai_pool.stream"
        hint = " (it is a stream checkpoint: best.pt/last.pt hold only the stream)" if is_stream else ""
        raise ValueError(
            f"{source} is not an xai_pool training state (format {found!r}){hint}; "
            "resume from the train_state.pt that train_stream wrote, or start a new out_dir"
        )
    if payload.get("format_version", 0) > TRAIN_STATE_VERSION:
        raise ValueError(
            f"{source} was written by a newer xai_pool (format {payload['format_version']}); upgrade xai_pool"
        )
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise ValueError(f"{source} is incomplete (missing {missing}); it cannot be resumed")
    return payload


def check_resume_config(saved: dict[str, Any], current: dict[str, Any], *, source: str) -> None:
    """Refuse to resume with settings that would change the run (except a longer step schedule).

    Raises:
        ValueError: listing each setting that differs.
    """
    diffs = [
        f"{key}: checkpoint {saved.get(key)!r} vs now {value!r}"
        for key, value in current.items()
        if key not in _RESUMABLE_CHANGES and saved.get(key) != value
    ]
    if saved.get("schedule") == "cosine" and saved.get("epochs") != current.get("epochs"):
        diffs.append(
            f"epochs: checkpoint {saved.get('epochs')!r} vs now {current.get('epochs')!r} "
            "(the cosine schedule depends on it)"
        )
    if diffs:
        raise ValueError(
            f"{source} was written with other settings ({'; '.join(diffs)}); resume with the same "
            "settings, or train into a new out_dir"
        )
