"""Saliency for GAP and CA models, with pytorch-grad-cam's conventions.

- :class:`RawAttention`: the CA-Stream's own attention map, called like a pytorch-grad-cam
  method (class-agnostic, one forward pass).
- :class:`OwnAttention`: the attention a classifier already pools with (class-token ViTs,
  CaiT/XCiT class attention, attention pools), read without changing the model; rollout too.
- :class:`ScoreCAM`: Score-CAM with batched, memory-bounded masked passes under inference
  mode, and one shared pass for all constant channels.
- :data:`METHODS`, :func:`resolve_method`: every method by name (``"gradcam"``,
  ``"gradcam++"``, ``"scorecam"``, ``"raw_attention"``...).
- :func:`default_target_layers`: the last stage, per architecture.
- :func:`resolve_targets`: class indices / target objects / per-sample targets.
- :func:`model_state_guard` and friends: no side effects on the model.

Most users call :func:`xai_pool.explain`, which ties these together. Importing this package
imports pytorch-grad-cam (and with it OpenCV and matplotlib).
"""

from __future__ import annotations

from .hygiene import count_hooks, model_state_guard
from .layers import default_reshape_transform, default_target_layers, resolve_target_layers
from .methods import METHODS, build_cam, method_name, resolve_method
from .own_attention import OwnAttention, attention_rollout
from .raw_attention import RawAttention
from .score_cam import ScoreCAM
from .targets import resolve_targets

__all__ = [
    "RawAttention",
    "OwnAttention",
    "attention_rollout",
    "default_reshape_transform",
    "ScoreCAM",
    "METHODS",
    "resolve_method",
    "method_name",
    "build_cam",
    "default_target_layers",
    "resolve_target_layers",
    "resolve_targets",
    "model_state_guard",
    "count_hooks",
]
