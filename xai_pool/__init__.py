"""xai_pool: CA-Stream attention pooling for interpretable CNN classifiers.

The public API is loaded lazily so that ``import xai_pool`` stays cheap (no torch,
no matplotlib until a name that needs them is touched).

    >>> import xai_pool
    >>> ca = xai_pool.attach_stream(torchvision_resnet50)   # doctest: +SKIP
    >>> with ca.pooling_as("gap"):                           # doctest: +SKIP
    ...     logits_gap = ca(images)
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

# public name -> module that defines it
_LAZY_ATTRS = {
    "attach_stream": "xai_pool.model",
    "CAModel": "xai_pool.model",
    "StreamSpec": "xai_pool.adapters",
    "save_stream": "xai_pool.checkpoint",
    "load_stream": "xai_pool.checkpoint",
    "train_stream": "xai_pool.train",
    "explain": "xai_pool.explainer",
}
_LAZY_MODULES = {
    "metrics",
    "saliency",
    "data",
    "zoo",
    "viz",
    "report",
    "stream",
    "adapters",
    "train",
    "classifiers",
    "transfer",
}

__all__ = ["__version__", *_LAZY_ATTRS, *sorted(_LAZY_MODULES)]


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRS:
        module = importlib.import_module(_LAZY_ATTRS[name])
        return getattr(module, name)
    if name in _LAZY_MODULES:
        return importlib.import_module(f"xai_pool.{name}")
    raise AttributeError(f"module 'xai_pool' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
