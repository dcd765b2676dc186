"""Saliency methods by name: :data:`METHODS`, :func:`resolve_method` and :func:`build_cam`.

Names are matched case-insensitively, ignoring ``-``, ``_`` and spaces (``"Grad-CAM++"``,
``"gradcam++"`` and ``"gradcamplusplus"`` are the same method). Any pytorch-grad-cam method
class (or another class with its calling convention) can be passed instead of a name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytorch_grad_cam as pgc
import torch
from torch import nn

from .own_attention import OwnAttention
from .raw_attention import RawAttention
from .score_cam import ScoreCAM

__all__ = ["METHODS", "resolve_method", "method_name", "build_cam", "needs_target_layers", "ShapleyCAM"]


class ShapleyCAM(pgc.ShapleyCAM):
    """pytorch-grad-cam's ShapleyCAM, also on frozen models with a linear head.

    With frozen parameters and GAP + Linear after the target layer, the gradient does not
    depend on the activations, has no ``grad_fn``, and the Hessian-vector product fails
    ("element 0 of tensors does not require grad"). That product is exactly zero then, and
    ShapleyCAM reduces to Grad-CAM, which is what this subclass returns.
    """

    def get_cam_weights(
        self,
        input_tensor: torch.Tensor,
        target_layer: nn.Module,
        target_category: Sequence[Callable],
        activations: torch.Tensor,
        grads: torch.Tensor,
    ) -> np.ndarray:
        """Grad-CAM weights when the gradient has no graph (zero Hessian term), else ShapleyCAM's."""
        if isinstance(grads, torch.Tensor) and grads.grad_fn is None:
            return grads.detach().mean(dim=tuple(range(2, grads.ndim))).cpu().numpy()
        return super().get_cam_weights(input_tensor, target_layer, target_category, activations, grads)


#: Registered methods: canonical name -> class. ``scorecam`` is xai_pool's batched ScoreCAM;
#: pytorch-grad-cam's original is available as ``pytorch_grad_cam.ScoreCAM`` (pass the class).
METHODS: dict[str, type] = {
    "raw_attention": RawAttention,
    "gradcam": pgc.GradCAM,
    "gradcam++": pgc.GradCAMPlusPlus,
    "gradcamplusplus": pgc.GradCAMPlusPlus,
    "scorecam": ScoreCAM,
    "xgradcam": pgc.XGradCAM,
    "eigencam": pgc.EigenCAM,
    "eigengradcam": pgc.EigenGradCAM,
    "layercam": pgc.LayerCAM,
    "hirescam": pgc.HiResCAM,
    "gradcamelementwise": pgc.GradCAMElementWise,
    "ablationcam": pgc.AblationCAM,
    "fullgrad": pgc.FullGrad,
    "randomcam": pgc.RandomCAM,
    "kpcacam": pgc.KPCA_CAM,
    "fem": pgc.FEM,
    "shapleycam": ShapleyCAM,
}

#: Methods that ignore ``target_layers`` (FullGrad uses every biased conv/BN layer).
_NO_TARGET_LAYERS = (RawAttention, OwnAttention, pgc.FullGrad)


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch not in "-_ ")


_BY_KEY = {_normalise(name): name for name in METHODS}


def resolve_method(method: str | type) -> type:
    """The method class for a registered name, or ``method`` itself if it is a class.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
        TypeError: neither a string nor a class (e.g. an already-built CAM object).
    """
    if isinstance(method, str):
        key = _normalise(method)
        if key not in _BY_KEY:
            raise ValueError(
                f"unknown saliency method {method!r}; valid names: {', '.join(METHODS)} "
                "(or pass a pytorch-grad-cam method class)"
            )
        return METHODS[_BY_KEY[key]]
    if inspect.isclass(method) and callable(method):
        return method
    raise TypeError(
        f"method must be a name or a method class (e.g. pytorch_grad_cam.GradCAM), got {type(method).__name__}; "
        "pass the class, not an instance: explain() builds and releases it"
    )


def method_name(method: str | type) -> str:
    """Canonical registry name of ``method`` (or the class name for unregistered classes)."""
    cls = resolve_method(method)
    if isinstance(method, str):
        return _BY_KEY[_normalise(method)]
    return next((name for name, c in METHODS.items() if c is cls), cls.__name__)


def needs_target_layers(cls: type) -> bool:
    """False for methods that ignore ``target_layers`` (raw attention, FullGrad)."""
    return not issubclass(cls, _NO_TARGET_LAYERS)


def build_cam(
    cls: type,
    model: nn.Module,
    target_layers: Sequence[nn.Module],
    *,
    batch_size: int | None = None,
    reshape_transform: Callable | None = None,
    **kwargs: Any,
) -> Any:
    """Instantiate a method class with the pytorch-grad-cam keyword convention.

    ``batch_size`` goes to the constructor when it takes one (xai_pool's ScoreCAM,
    AblationCAM) or to the ``batch_size`` attribute that pytorch-grad-cam's ScoreCAM reads.
    """
    if issubclass(cls, (RawAttention, OwnAttention)):
        return cls(model, **kwargs)
    layers = list(target_layers) if needs_target_layers(cls) else []
    params = inspect.signature(cls.__init__).parameters
    if batch_size is not None and "batch_size" in params and "batch_size" not in kwargs:
        kwargs["batch_size"] = batch_size
    if reshape_transform is not None:
        kwargs["reshape_transform"] = reshape_transform
    cam = cls(model=model, target_layers=layers, **kwargs)
    if batch_size is not None and issubclass(cls, pgc.ScoreCAM):
        cam.batch_size = batch_size
    return cam
