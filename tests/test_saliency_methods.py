"""The method registry, and every method on both poolings for a torchvision and a timm ResNet."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_grad_cam
import timm
import torch
import torchvision

from xai_pool import attach_stream, explain
from xai_pool.saliency import METHODS, RawAttention, ScoreCAM, build_cam, count_hooks, method_name, resolve_method

from .conftest import TINY_SPEC, TinyCNN

_PERTURBATION = {"scorecam", "ablationcam"}  # one forward pass per channel: slow on a real ResNet
_FAST = [name for name in METHODS if name not in _PERTURBATION and name != "gradcamplusplus"]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {
        "torchvision-resnet18": attach_stream(torchvision.models.resnet18(num_classes=5)),
        "timm-resnet10t": attach_stream(timm.create_model("resnet10t", num_classes=5)),
    }


def _check(model, x: torch.Tensor, name: str, pooling: str) -> None:
    model.pooling = "ca"
    maps = explain(model, x, name, pooling=pooling, batch_size=64)
    assert maps.shape == (x.shape[0], *x.shape[-2:])
    assert maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1
    assert count_hooks(model) == 0 and model.pooling == "ca"


@pytest.mark.parametrize("pooling", ["gap", "ca"])
@pytest.mark.parametrize("name", _FAST)
@pytest.mark.parametrize("arch", ["torchvision-resnet18", "timm-resnet10t"])
def test_every_method_runs_on_both_poolings(models, arch: str, name: str, pooling: str) -> None:
    if name == "raw_attention" and pooling == "gap":
        pytest.skip("raw attention exists only with CA pooling (tested in test_explain)")
    torch.manual_seed(2)
    _check(models[arch], torch.randn(2, 3, 64, 64), name, pooling)


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["gap", "ca"])
@pytest.mark.parametrize("name", sorted(_PERTURBATION))
@pytest.mark.parametrize("arch", ["torchvision-resnet18", "timm-resnet10t"])
def test_perturbation_methods_run_on_both_poolings(models, arch: str, name: str, pooling: str) -> None:
    torch.manual_seed(2)
    _check(models[arch], torch.randn(1, 3, 64, 64), name, pooling)


@pytest.mark.parametrize("pooling", ["gap", "ca"])
@pytest.mark.parametrize("name", sorted(_PERTURBATION))
def test_perturbation_methods_on_a_tiny_model(name: str, pooling: str) -> None:
    torch.manual_seed(0)
    _check(attach_stream(TinyCNN(), spec=TINY_SPEC), torch.randn(2, 3, 16, 16), name, pooling)


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
    maps = explain(model, x, pytorch_grad_cam.FinerCAM, pooling="gap")
    assert maps.shape == (2, 16, 16) and count_hooks(model) == 0


def test_batch_size_reaches_both_score_cams() -> None:
    torch.manual_seed(0)
    model = attach_stream(TinyCNN(), spec=TINY_SPEC)
    layers = [model.backbone.stage2]
    for cls, size in ((ScoreCAM, 3), (pytorch_grad_cam.ScoreCAM, 5), (pytorch_grad_cam.AblationCAM, 7)):
        with build_cam(cls, model, layers, batch_size=size) as cam:
            assert cam.batch_size == size
    assert isinstance(build_cam(RawAttention, model, layers, batch_size=7), RawAttention)
    assert count_hooks(model) == 0
