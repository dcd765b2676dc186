"""The method registry, and every method on the CA model: same maps as the class itself, no side effects.

The GAP maps of every pytorch-grad-cam method are compared with pytorch-grad-cam on the
original model in ``test_peer_cams.py``. Here each registered method runs once with CA
pooling; ``explain`` must return what the method class returns when called directly on (a
copy of) the same CA model, and leave the model exactly as it was: no hook, same modes,
pooling, ``requires_grad``, ``.grad`` and weights.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
import pytorch_grad_cam
import torch
import torchvision
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from xai_pool import attach_stream, explain
from xai_pool.saliency import METHODS, RawAttention, ScoreCAM, build_cam, count_hooks, method_name, resolve_method

from .conftest import TINY_SPEC, TinyCNN, assert_same_state, model_state

_PERTURBATION = {"scorecam", "ablationcam"}  # one forward pass per channel: on the tiny model
_NAMES = [name for name in METHODS if name != "gradcamplusplus"]  # an alias of gradcam++
_TARGETS = [1, 3]


@pytest.fixture(scope="module")
def ca_models() -> dict:
    torch.manual_seed(0)
    resnet = attach_stream(torchvision.models.resnet18(num_classes=5))
    tiny = attach_stream(TinyCNN(), spec=TINY_SPEC)
    generator = torch.Generator().manual_seed(2)
    return {
        "resnet18": (resnet, torch.randn(2, 3, 96, 96, generator=generator)),
        "tiny": (tiny, torch.randn(2, 3, 16, 16, generator=generator)),
    }


def _direct(cls: type, model, x: torch.Tensor) -> np.ndarray:
    """The method class called directly on a copy of the CA model, pytorch-grad-cam style."""
    model = copy.deepcopy(model)
    model.pooling = "ca"
    layers = [] if cls is pytorch_grad_cam.FullGrad else [model.target_layer]
    np.random.seed(0)  # RandomCAM
    with contextlib.redirect_stderr(io.StringIO()), cls(model=model, target_layers=layers) as cam:
        return cam(x, targets=[ClassifierOutputTarget(t) for t in _TARGETS])


@pytest.mark.parametrize("name", _NAMES)
def test_ca_maps_equal_the_method_class_and_leave_no_trace(ca_models, name: str) -> None:
    model, x = ca_models["tiny" if name in _PERTURBATION else "resnet18"]
    model.pooling = "gap"  # a non-default state that explain must hand back
    model.stream.train()
    before = model_state(model)
    np.random.seed(0)
    maps = explain(model, x, name, pooling="ca", targets=_TARGETS, batch_size=64)
    assert_same_state(before, model_state(model))
    assert count_hooks(model) == 0
    assert np.ptp(maps.reshape(len(x), -1), axis=1).max() > 0, "constant maps explain nothing"
    cls = METHODS[name]
    expected = _direct(pytorch_grad_cam.ScoreCAM if cls is ScoreCAM else cls, model, x)
    np.testing.assert_allclose(maps, expected, rtol=0, atol=1e-5)


def test_names_are_forgiving_and_aliases_resolve() -> None:
    assert resolve_method("Grad-CAM++") is resolve_method("gradcamplusplus") is pytorch_grad_cam.GradCAMPlusPlus
    assert resolve_method("GradCAM") is pytorch_grad_cam.GradCAM
    assert resolve_method("raw attention") is RawAttention
    assert resolve_method("scorecam") is ScoreCAM  # ours, not pytorch-grad-cam's
    assert method_name("Score-CAM") == "scorecam"
    assert method_name(pytorch_grad_cam.HiResCAM) == "hirescam"
    assert method_name(pytorch_grad_cam.FinerCAM) == "FinerCAM"


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid names: raw_attention, gradcam, gradcam\\+\\+"):
        resolve_method("gradcamm")
    with pytest.raises(TypeError, match="not an instance"):
        resolve_method(object())


def test_any_pytorch_grad_cam_class_is_accepted() -> None:
    torch.manual_seed(0)
    model = attach_stream(TinyCNN(), spec=TINY_SPEC)
    x = torch.randn(2, 3, 16, 16)
    ours = explain(model, x, "gradcam", targets=[0, 1])
    np.testing.assert_array_equal(explain(model, x, pytorch_grad_cam.GradCAM, targets=[0, 1]), ours)
    # an unregistered class (FinerCAM) on GAP: pytorch-grad-cam's maps on the original classifier
    maps = explain(model, x, pytorch_grad_cam.FinerCAM, pooling="gap", targets=[0, 1])
    original = copy.deepcopy(model.backbone).requires_grad_(True)
    with pytorch_grad_cam.FinerCAM(model=original, target_layers=[original.stage2]) as cam:
        expected = cam(x, targets=[ClassifierOutputTarget(0), ClassifierOutputTarget(1)])
    assert np.ptp(expected) > 0
    np.testing.assert_allclose(maps, expected, rtol=0, atol=1e-5)
    assert count_hooks(model) == 0


def test_batch_size_reaches_both_score_cams() -> None:
    torch.manual_seed(0)
    model = attach_stream(TinyCNN(), spec=TINY_SPEC)
    layers = [model.backbone.stage2]
    for cls, size in ((ScoreCAM, 3), (pytorch_grad_cam.ScoreCAM, 5), (pytorch_grad_cam.AblationCAM, 7)):
        with build_cam(cls, model, layers, batch_size=size) as cam:
            assert cam.batch_size == size
    assert isinstance(build_cam(RawAttention, model, layers, batch_size=7), RawAttention)
    assert count_hooks(model) == 0
