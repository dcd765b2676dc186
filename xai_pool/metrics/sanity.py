"""Sanity check by cascading model-parameter randomisation (Adebayo et al., NeurIPS 2018).

A faithful explanation depends on the model's parameters: re-initialising the layers one
by one, from the output back to the input, should change the maps more and more. We
re-initialise a *copy* of the model cumulatively (the caller's model is never modified),
recompute the maps for the same images and classes, and report per layer and image the
Spearman rank correlation between the original and the randomised map (both upsampled to
the image size, as in :mod:`xai_pool.metrics.maps`). A correlation that stays near 1 flags a
method that ignores the model (e.g. an edge detector).

Choices:

- layers: by default every module that owns parameters directly, in reverse registration
  order (for the usual sequential models, from the head back to the stem);
- re-initialisation: the module's own ``reset_parameters()`` when it has one (the framework's
  default initialisation; BatchNorm goes back to the identity and its running statistics
  are reset), otherwise every parameter redrawn from N(0, std of the original values);
  drawn from a forked RNG seeded with ``seed``;
- the class c stays fixed: ``labels`` or the original model's prediction;
- Spearman's rho is undefined when a map is constant (min-max gives S = 0): it is reported as
  0 (no rank agreement), never NaN.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..runtime import eval_mode
from ._checks import as_images, as_labels, as_maps
from .maps import prepare_maps

__all__ = ["cascading_randomization"]


def cascading_randomization(
    model: nn.Module,
    images: torch.Tensor,
    saliency_fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], Any],
    labels: torch.Tensor | Sequence[int] | None = None,
    *,
    layers: Sequence[str] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Rank correlation of maps before and after cascading parameter randomisation.

    Args:
        model: the classifier; left untouched (a deep copy is randomised).
        images: (B, C, H, W) normalised images on the model's device.
        saliency_fn: ``saliency_fn(model, images, classes) -> maps`` (B, h, w).
        labels: (B,) classes to explain; default the model's prediction.
        layers: names (as in ``model.named_modules()``) to randomise, in cascade order;
            default every module owning parameters, from the output back to the input.
        seed: seed of the re-initialisation.

    Returns:
        ``{"layers": (L,) str array, "spearman": (L, B) float64 array}``: row l is the
        correlation after randomising ``layers[0..l]``.

    Raises:
        ValueError: a layer name is unknown or there is no layer to randomise.
    """
    x = as_images(images)
    size = (x.shape[2], x.shape[3])
    classes = as_labels(labels, x.shape[0])
    if classes is None:
        with eval_mode(model), torch.no_grad():
            classes = model(x).argmax(dim=1)
    classes = classes.to(x.device)
    names = _cascade(model, layers)
    reference = _flat_maps(saliency_fn(model, x, classes), x.shape[0], size)

    randomized = copy.deepcopy(model)
    modules = dict(randomized.named_modules())
    devices = sorted({p.device.index or 0 for p in randomized.parameters() if p.device.type == "cuda"})
    rows = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for name in names:
            _reinitialize(modules[name])
            maps = _flat_maps(saliency_fn(randomized, x, classes), x.shape[0], size)
            rows.append([_spearman(a, b) for a, b in zip(reference, maps, strict=True)])
    return {"layers": np.array(names), "spearman": np.array(rows, dtype=np.float64)}


def _cascade(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    modules = dict(model.named_modules())
    if layers is None:
        names = [name for name, module in modules.items() if any(True for _ in module.parameters(recurse=False))]
        names.reverse()
    else:
        names = list(layers)
        unknown = [name for name in names if name not in modules]
        if unknown:
            raise ValueError(f"layers {unknown} are not modules of the model; see model.named_modules()")
    if not names:
        raise ValueError("no layer to randomise: the model has no parameters and no layers were given")
    return names


@torch.no_grad()
def _reinitialize(module: nn.Module) -> None:
    reset = getattr(module, "reset_parameters", None)
    if callable(reset):
        reset()
        if hasattr(module, "reset_running_stats"):
            module.reset_running_stats()
        return
    for param in module.parameters(recurse=False):
        scale = float(param.float().std()) if param.numel() > 1 else 0.0
        param.normal_(0.0, scale if scale > 0 else 0.01)


def _flat_maps(maps: Any, batch: int, size: tuple[int, int]) -> np.ndarray:
    prepared = prepare_maps(as_maps(maps if not isinstance(maps, torch.Tensor) else maps.detach(), batch), size)
    return prepared.normalized.flatten(1).cpu().numpy()


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    from scipy import stats

    return float(stats.spearmanr(a, b).statistic)
