"""``xai_pool.explain``: one call for any saliency method on the GAP or the CA model.

>>> maps = xai_pool.explain(ca_model, images, "gradcam", pooling="ca")      # doctest: +SKIP
>>> maps.shape, maps.dtype                                                 # doctest: +SKIP
((8, 224, 224), dtype('float32'))
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .model import CAModel
from .runtime import model_device
from .saliency.hygiene import model_state_guard
from .saliency.layers import TargetLayers, default_reshape_transform, resolve_target_layers, single_call_check
from .saliency.methods import build_cam, method_name, needs_target_layers, resolve_method
from .saliency.own_attention import OwnAttention
from .saliency.raw_attention import RawAttention
from .saliency.targets import TargetSpec, resolve_targets
from .validation import check_images

__all__ = ["explain"]

_POOLINGS = ("gap", "ca")


def explain(
    model: nn.Module,
    images: Tensor,
    method: str | type = "gradcam",
    *,
    pooling: str | None = None,
    targets: TargetSpec = None,
    target_layers: TargetLayers = None,
    batch_size: int = 16,
    reshape_transform: Any = None,
    aug_smooth: bool = False,
    eigen_smooth: bool = False,
    **method_kwargs: Any,
) -> np.ndarray:
    """Saliency maps for ``images`` with ``method``, on the GAP or the CA model.

    The model is left exactly as it was: pooling mode, every submodule's train/eval flag,
    every parameter's ``requires_grad`` and ``.grad``, its module tree, and no hook left,
    also when the method raises. Gradient methods work on frozen models (and under an
    outer ``torch.no_grad()`` or ``torch.inference_mode()``): gradients reach the
    activations through an input that requires grad, never through the parameters.

    Args:
        model: a :class:`~xai_pool.CAModel` (both poolings), or a plain classifier, explained as
            it is (its own pooling: GAP, or the attention pooling of a class-token ViT, CaiT,
            an attention pool; wrap it with :func:`~xai_pool.attach_stream` for CA).
        images: (B, C, H, W) float tensor, normalised as the model expects; moved to the
            model's device and cast to its parameters' dtype (float16, bfloat16 and float64
            images are accepted). Checked first by :func:`xai_pool.validation.check_images`:
            finite values, the model's number of input channels, at least 1x1 pixels.
        method: a name from :data:`xai_pool.saliency.METHODS` (``"raw_attention"``,
            ``"gradcam"``, ``"gradcam++"``, ``"scorecam"``, ``"xgradcam"``, ``"eigencam"``,
            ``"layercam"``, ``"hirescam"``, ``"ablationcam"``, ``"fullgrad"``...) or any
            pytorch-grad-cam method class.
        pooling: ``"ca"`` (the stream) or ``"gap"``; default ``"ca"`` for a CAModel and the
            model's own pooling for a plain classifier. Raw attention is the stream's with
            ``"ca"``, and a plain classifier's own attention pooling (class token, class
            attention, attention pools: :class:`~xai_pool.saliency.OwnAttention`).
        targets: None (each image's predicted class with this pooling), a class index, one
            class index or pytorch-grad-cam target per image (see
            :func:`xai_pool.saliency.resolve_targets`). Ignored by raw attention.
        target_layers: None (the module producing the pooled features: ResNet ``layer4``, a
            ViT's last ``norm1``; see :func:`xai_pool.saliency.default_target_layers`), a
            module, a dotted path (``"layer3"``, looked up in the backbone), or a list of them.
        batch_size: masked images per forward pass for Score-CAM and Ablation-CAM.
        reshape_transform: pytorch-grad-cam's hook for non-NCHW layers; with the default target
            layer, the model profile supplies it for token and NHWC layers.
        aug_smooth: pytorch-grad-cam's test-time augmentation smoothing.
        eigen_smooth: pytorch-grad-cam's first-principal-component smoothing.
        **method_kwargs: passed to the method's constructor (e.g. ``block=-2`` or
            ``use_all_blocks=True`` for raw attention, ``progress=True`` for Score-CAM).

    Returns:
        float32 array (B, H, W) in [0, 1], one min-max scaled map per image at input resolution.

    Raises:
        TypeError: ``images`` is not a floating-point tensor, ``model`` not a module, or a
            target of the wrong type.
        ValueError: unknown method (the valid names are listed), wrong number of targets, a
            negative or out-of-range class index (for a plain classifier, checked against the
            logits when the method runs), images not 4-D, empty, with NaN/inf or the wrong
            number of channels, CA pooling or raw attention on a model without a stream, a
            target layer that is not part of the model or runs more than once per forward pass.
        RuntimeError: the method produced NaN/inf maps from finite images.
    """
    cls = resolve_method(method)
    name = method_name(method)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (a CAModel or a classifier), got {type(model).__name__}")
    x = check_images(images, channels=_input_channels(model), dtype=_float_dtype(model))
    is_ca = isinstance(model, CAModel)
    if pooling is None:
        pooling = "ca" if is_ca else "gap"
    if pooling not in _POOLINGS:
        raise ValueError(f"pooling must be 'gap' or 'ca', got {pooling!r}")
    if issubclass(cls, RawAttention) and not is_ca:
        cls = OwnAttention  # a plain classifier's raw attention: its own attention pooling
    elif issubclass(cls, RawAttention) and pooling != "ca":
        raise ValueError(
            "raw attention exists only with pooling='ca' (GAP has no attention: its implicit weights are uniform); "
            "use pooling='ca' on a CAModel, or another method for GAP"
        )
    if not is_ca and pooling == "ca":
        raise ValueError(
            f"{type(model).__name__} has no CA-Stream: explain it with pooling='gap', or wrap it with "
            "xai_pool.attach_stream(model) (and load a trained stream) for pooling='ca'"
        )
    cam_targets = resolve_targets(targets, x.shape[0], num_classes=model.num_classes if is_ca else None)
    layers = resolve_target_layers(model, target_layers) if needs_target_layers(cls) else []
    if reshape_transform is None and target_layers is None and layers:
        reshape_transform = default_reshape_transform(model, (int(x.shape[-2]), int(x.shape[-1])))
    device = model_device(model, x.device)

    with model_state_guard(model, pooling=pooling if is_ca else None), torch.inference_mode(False):
        x = x.detach().to(device)
        if x.is_inference():  # created under inference_mode: autograd cannot use it
            x = x.clone()
        cam = build_cam(cls, model, layers, batch_size=batch_size, reshape_transform=reshape_transform, **method_kwargs)
        protect = keep_layer_outputs(layers)  # after pytorch-grad-cam's hooks: they see the layer's own output
        try:
            needs_grad = bool(getattr(cam, "uses_gradients", True) or getattr(cam, "compute_input_gradient", False))
            if needs_grad:
                x.requires_grad_(True)  # frozen parameters: gradients flow through the input
            call_kwargs = {k: v for k, v in (("aug_smooth", aug_smooth), ("eigen_smooth", eigen_smooth)) if v}
            with torch.set_grad_enabled(needs_grad), single_call_check(model, layers):
                maps = cam(x, cam_targets, **call_kwargs)
        finally:
            for handle in protect:
                handle.remove()
            _release(cam)
        del cam
    return _check_maps(maps, tuple(x.shape), name)


def keep_layer_outputs(layers: list[nn.Module]) -> list[Any]:
    """Hooks that hand a copy of each target layer's output to the rest of the network.

    pytorch-grad-cam keeps a detached alias of the layer's output (``.cpu()`` copies only on a
    GPU) and the gradient with respect to that output. A later in-place operation (SqueezeNet's
    ``ReLU(inplace=True)`` after its class conv, DenseNet's ``F.relu(features, inplace=True)``)
    then changes the stored activations on the CPU but not on a GPU, and Grad-CAM mixes the
    gradient of one tensor with the values of another. Registered after the method's own hooks,
    these return a clone for the downstream layers, so the stored values stay the layer's output
    on every device. The model's result is unchanged (the clone holds the same values).
    """

    def hand_over_a_copy(_module: nn.Module, _inputs: tuple, output: Any) -> Any:
        return output.clone() if isinstance(output, Tensor) else None

    return [layer.register_forward_hook(hand_over_a_copy) for layer in {id(m): m for m in layers}.values()]


def _input_channels(model: nn.Module) -> int | None:
    """The channels the model takes: a CAModel knows; timm models say (``in_chans``); else the first Conv2d's.

    (A space-to-depth or DCT stem's first conv sees more channels than the image has: timm's
    metadata comes first for that reason.)
    """
    for attribute in ("in_channels", "in_chans"):
        channels = getattr(model, attribute, None)
        if isinstance(channels, int) and not isinstance(channels, bool):
            return channels
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("input_size"):
        return int(cfg["input_size"][0])
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv.in_channels if conv is not None else None


def _float_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's floating parameters: images are cast to it (None: no parameter)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def _release(cam: Any) -> None:
    # Call __exit__ with no exception: pytorch-grad-cam's would swallow an IndexError.
    exit_method = getattr(cam, "__exit__", None)
    if exit_method is not None:
        exit_method(None, None, None)
    if hasattr(cam, "outputs"):
        cam.outputs = None  # BaseCAM keeps the last logits, and their graph, alive


def _check_maps(maps: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    maps = np.asarray(maps)
    expected = (shape[0], shape[2], shape[3])
    if maps.shape != expected:
        raise RuntimeError(f"method {name!r} returned maps of shape {maps.shape}, expected {expected}")
    if not np.isfinite(maps).all():
        # The images were checked to be finite: the maps' NaN/inf come from the model or the method.
        raise RuntimeError(
            f"method {name!r} returned NaN or infinite values for finite images: the model's outputs or weights may "
            "be non-finite, or the method fails on this target layer; check model(images) is finite, then try another "
            "method or target layer"
        )
    # pytorch-grad-cam scales into [0, 1) already; clip guards against float rounding only.
    return np.clip(maps.astype(np.float32, copy=False), 0.0, 1.0)
