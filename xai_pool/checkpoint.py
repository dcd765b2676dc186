"""Stream checkpoints: the stream's weights, its configuration and the backbone's fingerprint.

Files are written atomically (temporary file in the same folder, fsync, ``os.replace``), so an
interrupted save never damages the previous file. They are read with
``torch.load(weights_only=True)``: loading never executes pickled code.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write
from .model import CAModel
from .stream import StreamConfig

__all__ = [
    "save_stream",
    "load_stream",
    "backbone_fingerprint",
    "atomic_torch_save",
    "safe_torch_load",
    "check_finite_state",
]

_FORMAT = "xai_pool.stream"
_FORMAT_VERSION = 1


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file next to ``path``, fsync it, then rename over ``path``."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


def safe_torch_load(path: str | os.PathLike, *, what: str = "checkpoint") -> Any:
    """Load with ``weights_only=True``; a missing, truncated or foreign file raises a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise ValueError(
            f"{what} {str(path)!r} cannot be read safely ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "it is truncated, corrupt or not a tensor-only file written by xai_pool"
        ) from exc


def backbone_fingerprint(backbone: nn.Module) -> dict[str, str]:
    """Hashes of the backbone's architecture (names, shapes, dtypes) and of its weights."""
    arch = hashlib.sha256()
    weights = hashlib.sha256()
    for name, tensor in backbone.state_dict().items():
        arch.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        if tensor.is_floating_point():
            weights.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return {"architecture": arch.hexdigest()[:16], "weights": weights.hexdigest()[:16]}


def check_finite_state(state_dict: dict[str, Any], source: str) -> None:
    """Refuse a state dict with NaN or infinite weights (a diverged run), naming the tensors.

    Raises:
        ValueError: naming the first tensors and their count of non-finite values.
    """
    bad = [
        (key, int((~torch.isfinite(value)).sum()))
        for key, value in state_dict.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]
    if bad:
        listed = ", ".join(f"{key!r} ({count} values)" for key, count in bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise ValueError(
            f"{source} holds NaN or infinite weights in {len(bad)} tensor(s) ({listed}): the training that produced "
            "them diverged; retrain (e.g. with a smaller learning rate) or use an earlier checkpoint"
        )


def stream_payload(model: CAModel) -> dict[str, Any]:
    """The tensor-only dictionary stored by :func:`save_stream` (also embedded by the trainer).

    Raises:
        ValueError: the stream's weights hold NaN or inf (such a stream is never saved).
    """
    check_finite_state(model.stream.state_dict(), "the stream to save")
    return {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "config": model.stream.config.to_dict(),
        "spec": {"taps": list(model.spec.taps), "pool": model.spec.pool, "family": model.spec.family},
        "fingerprint": backbone_fingerprint(model.backbone),
        "state_dict": {k: v.detach().cpu() for k, v in model.stream.state_dict().items()},
    }


def save_stream(model: CAModel, path: str | os.PathLike) -> Path:
    """Save ``model.stream`` (weights + configuration + backbone fingerprint) atomically."""
    if not isinstance(model, CAModel):
        raise TypeError(f"save_stream expects a CAModel (from attach_stream), got {type(model).__name__}")
    return atomic_torch_save(stream_payload(model), path)


def apply_stream_payload(model: CAModel, payload: Any, *, source: str = "stream checkpoint") -> None:
    """Check ``payload`` against ``model`` and load its weights into ``model.stream``."""
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise ValueError(f"{source} is not an xai_pool stream checkpoint (missing format tag {_FORMAT!r})")
    if payload.get("format_version", 0) > _FORMAT_VERSION:
        raise ValueError(
            f"{source} was written by a newer xai_pool (format {payload['format_version']}); upgrade xai_pool"
        )
    saved = StreamConfig.from_dict(payload["config"])
    current = model.stream.config
    if saved != current:
        diffs = [
            f"{k}: checkpoint {v!r} vs model {current.to_dict()[k]!r}"
            for k, v in saved.to_dict().items()
            if current.to_dict()[k] != v
        ]
        raise ValueError(
            f"{source} was trained with another stream configuration ({'; '.join(diffs)}); "
            "call attach_stream with the same options (start_stage, heads, project_kv, class_specific)"
        )
    fingerprint = backbone_fingerprint(model.backbone)
    stored = payload.get("fingerprint", {})
    if stored.get("architecture") != fingerprint["architecture"]:
        raise ValueError(
            f"{source} belongs to another backbone architecture (family {payload.get('spec', {}).get('family')!r}); "
            "load it into the same model it was trained on"
        )
    if stored.get("weights") != fingerprint["weights"]:
        raise ValueError(
            f"{source} was trained on a backbone with different weights; a stream only makes sense on the "
            "frozen backbone it was trained with (load the same pretrained weights first)"
        )
    if not isinstance(payload.get("state_dict"), dict):
        raise ValueError(f"{source} has no state_dict of weights; it is damaged or not written by xai_pool")
    check_finite_state(payload["state_dict"], source)
    model.stream.load_state_dict(payload["state_dict"], strict=True)


def load_stream(model: CAModel, path: str | os.PathLike) -> CAModel:
    """Load a stream saved by :func:`save_stream` into ``model`` (returns ``model``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is corrupt, not a stream checkpoint, holds NaN or infinite
            weights, or was trained for another backbone (architecture or weights) or stream
            configuration.
    """
    if not isinstance(model, CAModel):
        raise TypeError(f"load_stream expects a CAModel (from attach_stream), got {type(model).__name__}")
    payload = safe_torch_load(path, what="stream checkpoint")
    apply_stream_payload(model, payload, source=f"stream checkpoint {str(path)!r}")
    return model
