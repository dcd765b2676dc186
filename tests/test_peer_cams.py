"""Peer contract: on GAP, ``explain`` gives pytorch-grad-cam's maps on the original model.

For every pytorch-grad-cam method in the registry, the method class is run by
pytorch-grad-cam itself on the ORIGINAL classifier (``with`` block, explicit targets), and
``xai_pool.explain(attach_stream(model, copy=True), x, name, pooling="gap")`` must return the
same maps: the stream, the frozen copy, the hygiene guards and the input-gradient route of
``explain`` may change nothing. Measured: every method is bit-identical on the three models
below, except ShapleyCAM (max |diff| 1.8e-7 on TinyCNN, 3.6e-7 on ResNet-18, 1.6e-6 on
resnet10t; see below).

- ``scorecam`` is xai_pool's batched reimplementation: compared with ``pytorch_grad_cam.ScoreCAM``.
- ``shapleycam`` is a subclass that returns Grad-CAM when the Hessian term has no graph (a
  frozen GAP + Linear head); pytorch-grad-cam's ShapleyCAM on the unfrozen original computes
  that term, which is exactly zero there, so the two agree to float rounding.
- ``randomcam`` draws its weights from NumPy's global RNG: both runs start from the same seed.

Every comparison also checks that it is not vacuous: the maps are not all constant.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import pytorch_grad_cam as pgc
import timm
import torch
import torchvision
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from xai_pool import attach_stream, explain
from xai_pool.saliency import METHODS, RawAttention

from .conftest import TINY_SPEC, TinyCNN

#: Registered name -> the pytorch-grad-cam class it must agree with (aliases left out).
_PEER = {
    name: {"scorecam": pgc.ScoreCAM, "shapleycam": pgc.ShapleyCAM}.get(name, cls)
    for name, cls in METHODS.items()
    if cls is not RawAttention and name != "gradcamplusplus"
}
_PERTURBATION = {"scorecam", "ablationcam"}  # one forward pass per channel: tiny model only by default
_TARGETS = [1, 3]

# name -> (builder, spec, image side, target layer); the sides give non-constant maps for every method
_MODELS = {
    "tiny": (lambda: TinyCNN(), TINY_SPEC, 16, "stage2"),
    "torchvision-resnet18": (lambda: torchvision.models.resnet18(num_classes=5), None, 96, "layer4"),
    "timm-resnet10t": (lambda: timm.create_model("resnet10t", num_classes=5), None, 96, "layer4"),
}


@pytest.fixture(scope="module")
def setups() -> dict:
    out = {}
    for key, (build, spec, side, layer) in _MODELS.items():
        torch.manual_seed(0)
        original = build().eval()
        ca = attach_stream(original, spec=spec, copy=True)
        x = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
        out[key] = (original, ca, x, layer)
    return out


def _peer_maps(cls: type, model: torch.nn.Module, x: torch.Tensor, layer: str) -> np.ndarray:
    layers = [] if cls is pgc.FullGrad else [model.get_submodule(layer)]
    targets = [ClassifierOutputTarget(t) for t in _TARGETS]
    np.random.seed(0)  # RandomCAM
    with contextlib.redirect_stderr(io.StringIO()), cls(model=model, target_layers=layers) as cam:  # tqdm bars
        return cam(x, targets=targets)


def _params() -> list:
    cases = []
    for key in _MODELS:
        for name in _PEER:
            slow = name in _PERTURBATION and key != "tiny"
            cases.append(pytest.param(key, name, marks=[pytest.mark.slow] if slow else [], id=f"{key}-{name}"))
    return cases


@pytest.mark.parametrize(("model_key", "name"), _params())
def test_gap_maps_equal_pytorch_grad_cam_on_the_original_model(setups, model_key: str, name: str) -> None:
    original, ca, x, layer = setups[model_key]
    expected = _peer_maps(_PEER[name], original, x, layer)
    np.random.seed(0)
    got = explain(ca, x, name, pooling="gap", targets=_TARGETS, batch_size=16)
    assert np.ptp(expected.reshape(len(x), -1), axis=1).max() > 0, "constant maps: the comparison would be vacuous"
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("option", ["aug_smooth", "eigen_smooth"])
def test_smoothing_options_reach_pytorch_grad_cam_and_change_the_map(setups, option: str) -> None:
    # Peer answer for the option, and proof that it is not dropped on the way (the map changes).
    original, ca, x, layer = setups["torchvision-resnet18"]
    targets = [ClassifierOutputTarget(t) for t in _TARGETS]
    with pgc.GradCAM(model=original, target_layers=[original.get_submodule(layer)]) as cam:
        expected = cam(x, targets=targets, **{option: True})
    got = explain(ca, x, "gradcam", pooling="gap", targets=_TARGETS, **{option: True})
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    plain = explain(ca, x, "gradcam", pooling="gap", targets=_TARGETS)
    assert np.abs(got - plain).max() > 0.05
