"""Finished batches of a dataset run kept on disk, so that a killed run resumes where it stopped.

A :class:`BatchStore` is a folder with ``run.json`` (the run's fingerprint: everything that
changes the numbers) and one ``batch-NNNNNN.pt`` per finished batch, each written atomically
and read back weights-only. A folder whose fingerprint differs from the run's is emptied
first, so results of another configuration are never mixed in. Under torchrun every rank
saves its own batches into the same folder (it must be on a filesystem all ranks share).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["BatchStore", "describe", "model_digest"]

logger = logging.getLogger("xai_pool")

_BATCH = re.compile(r"^batch-(\d{6,})\.pt$")
_FINGERPRINT = "run.json"


class BatchStore:
    """A folder of finished batch records for one run configuration.

    Args:
        folder: where the records live (created by :meth:`open`).
        fingerprint: JSON-ready description of everything that changes the results.
    """

    def __init__(self, folder: str | Path, fingerprint: Mapping[str, Any]) -> None:
        self.folder = Path(folder)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))

    def open(self) -> frozenset[int]:
        """Create the folder or check its fingerprint; returns the finished batch indices.

        Call it on one process (rank 0) before any :meth:`save`. A folder written by
        another configuration is emptied (with a log message) and reused. Temporary files of
        writers that died (a batch killed mid-write) are removed first.
        """
        from ..atomic import atomic_write_text, remove_stale_temp_files

        path = self.folder / _FINGERPRINT
        if self.folder.is_dir():
            remove_stale_temp_files(self.folder)
        if path.is_file():
            try:
                stored = json.loads(path.read_text())
            except (OSError, ValueError):
                stored = None
            if stored == self.fingerprint:
                done = self.done()
                if done:
                    logger.info("resuming from %s: %d finished batches are reused", self.folder, len(done))
                return done
            logger.warning("%s holds batches of another configuration; starting over", self.folder)
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.fingerprint, indent=2, sort_keys=True) + "\n")
        return frozenset()

    def done(self) -> frozenset[int]:
        """Indices of the batches saved so far."""
        if not self.folder.is_dir():
            return frozenset()
        return frozenset(int(m.group(1)) for p in self.folder.iterdir() if (m := _BATCH.match(p.name)))

    def save(self, index: int, record: Mapping[str, Any]) -> None:
        """Write one batch's record atomically."""
        from ..checkpoint import atomic_torch_save

        atomic_torch_save(_to_torch(record), self._path(index))

    def load(self, index: int) -> dict[str, Any]:
        """Read one batch's record back (weights-only unpickling: tensors and plain containers)."""
        from ..checkpoint import safe_torch_load

        return _to_numpy(safe_torch_load(self._path(index)))

    def remove(self) -> None:
        """Delete the folder (after the run's output is complete)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _path(self, index: int) -> Path:
        return self.folder / f"batch-{index:06d}.pt"


def _to_torch(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, Mapping):
        return {k: _to_torch(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_torch(v) for v in value)
    return value


def _to_numpy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, Mapping):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(v) for v in value)
    return value


def model_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``model`` (names, shapes, dtypes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def describe(value: Any) -> Any:
    """A JSON-ready, run-independent description of an option (tensors hashed, callables named)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.ndarray, torch.Tensor)):
        data = torch.as_tensor(value).detach().cpu().contiguous()
        return {"tensor": list(data.shape), "sha256": hashlib.sha256(data.numpy().tobytes()).hexdigest()}
    if isinstance(value, Mapping):
        return {str(k): describe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [describe(v) for v in value]
    if callable(value):
        name = getattr(value, "name", None) or getattr(value, "__qualname__", type(value).__qualname__)
        return {"callable": f"{getattr(value, '__module__', '')}.{name}"}
    return repr(value)
