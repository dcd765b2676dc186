"""explain(): GAP maps equal pytorch-grad-cam's, CA gradients flow through the attention, errors."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from torch import nn

import xai_pool
from xai_pool import attach_stream, explain
from xai_pool.saliency import count_hooks, default_target_layers, resolve_target_layers

from .conftest import TINY_SPEC, TinyCNN, TinyFlattenCNN


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return attach_stream(TinyCNN(), spec=TINY_SPEC)


def _minmax(maps: torch.Tensor) -> np.ndarray:
    low = maps.flatten(1).min(1).values[:, None, None]
    high = maps.flatten(1).max(1).values[:, None, None]
    return ((maps - low) / (high - low)).numpy()


@pytest.mark.parametrize("cam_class, name", [(GradCAM, "gradcam"), (GradCAMPlusPlus, "gradcam++")])
def test_gap_maps_equal_pytorch_grad_cam_on_the_original_model(cam_class, name: str) -> None:
    torch.manual_seed(0)
    original = torchvision.models.resnet18(num_classes=5).eval()  # unwrapped, trainable parameters
    model = attach_stream(original, copy=True)
    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    for targets in (None, [3, 1]):
        with cam_class(model=original, target_layers=[original.layer4[-1]]) as cam:
            expected = cam(x, targets=None if targets is None else [_target(t) for t in targets])
        got = explain(model, x, name, pooling="gap", targets=targets)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    # A plain classifier is its own GAP model.
    plain = explain(original, x, name, pooling="gap")
    np.testing.assert_allclose(plain, explain(model, x, name, pooling="gap"), atol=1e-6)


def _target(index: int):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    return ClassifierOutputTarget(index)


def test_ca_gradcam_equals_manual_autograd_through_the_attention(tiny) -> None:
    torch.manual_seed(2)
    x = torch.randn(2, 3, 16, 16)
    classes = [1, 3]
    store = {}
    handle = tiny.backbone.stage2.register_forward_hook(lambda m, i, o: store.update(activation=o))
    try:
        logits = tiny(x.clone().requires_grad_(True))  # CA pooling: logits depend on A through softmax(A q)
    finally:
        handle.remove()
    activation = store["activation"]
    (grad,) = torch.autograd.grad(logits[torch.arange(2), classes].sum(), activation)
    weights = grad.mean(dim=(2, 3))
    cam = torch.relu((weights[:, :, None, None] * activation).sum(dim=1)).detach()
    expected = _minmax(F.interpolate(cam[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0])

    got = explain(tiny, x, "gradcam", pooling="ca", targets=classes)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    # Through GAP the gradient is spatially constant; through the attention it is not.
    assert grad.flatten(2).std(dim=2).max() > 0
    assert not np.allclose(got, explain(tiny, x, "gradcam", pooling="gap", targets=classes), atol=1e-3)


def test_raw_attention_equals_the_last_block_softmax_upsampled(tiny) -> None:
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        last = tiny.attention(x)[-1][:, 0]  # (B, 4, 4), one head
    expected = _minmax(F.interpolate(last[:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0])
    np.testing.assert_allclose(explain(tiny, x, "raw_attention"), expected, atol=1e-5)


def test_default_target_layers_are_the_last_stage() -> None:
    tv = torchvision.models.resnet18(num_classes=3)
    assert default_target_layers(tv) == [tv.layer4]
    assert default_target_layers(attach_stream(tv)) == [tv.layer4]
    tm = timm.create_model("resnet10t", num_classes=3)
    assert default_target_layers(attach_stream(tm)) == [tm.layer4]
    tiny = TinyCNN()
    assert default_target_layers(tiny) == [tiny.stage2]  # discovered: the map its GAP averages
    with pytest.raises(ValueError, match="pools to 7x7.*pass target_layers"):
        default_target_layers(torchvision.models.vgg11(num_classes=3))


def test_target_layers_can_be_overridden(tiny) -> None:
    x = torch.randn(2, 3, 16, 16)
    by_path = explain(tiny, x, "gradcam", target_layers="stage1")
    np.testing.assert_array_equal(by_path, explain(tiny, x, "gradcam", target_layers=[tiny.backbone.stage1]))
    assert not np.allclose(by_path, explain(tiny, x, "gradcam"))
    both = explain(tiny, x, "gradcam", target_layers=["stage1", "stage2"])
    assert both.shape == (2, 16, 16)
    assert resolve_target_layers(tiny, "backbone.stage2") == [tiny.backbone.stage2]


def test_methods_without_target_layers_need_no_default() -> None:
    torch.manual_seed(0)
    plain = TinyFlattenCNN()  # no global pooling: no default target layer, but FullGrad needs none
    assert explain(plain, torch.randn(1, 3, 16, 16), "fullgrad", pooling="gap").shape == (1, 16, 16)
    with pytest.raises(ValueError, match="pools to 2x2.*pass target_layers"):
        explain(plain, torch.randn(1, 3, 16, 16), "gradcam", pooling="gap")


def test_explain_is_the_function_even_after_importing_its_module(tiny) -> None:
    import xai_pool.explainer as module

    x = torch.randn(1, 3, 16, 16)
    assert xai_pool.explain is module.explain
    np.testing.assert_array_equal(xai_pool.explain(tiny, x, "gradcam"), module.explain(tiny, x, "gradcam"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_gives_the_cpu_maps(tiny) -> None:
    x = torch.randn(2, 3, 16, 16)
    expected = {m: explain(tiny, x, m, targets=[0, 1]) for m in ("gradcam", "scorecam", "raw_attention")}
    tiny.cuda()
    for method, maps in expected.items():
        np.testing.assert_allclose(explain(tiny, x, method, targets=[0, 1]), maps, atol=1e-4)
    assert count_hooks(tiny) == 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"method": "gradcamm"}, ValueError, "unknown saliency method 'gradcamm'; valid names: raw_attention, gradcam"),
        ({"targets": [1, 2, 3]}, ValueError, "got 3 targets for a batch of 2 images"),
        ({"targets": 9}, ValueError, "out of range: the model has 5 classes"),
        ({"images": torch.randn(3, 16, 16)}, ValueError, "4-D batch.*unsqueeze"),
        ({"images": torch.randn(2, 1, 3, 16, 16)}, ValueError, "4-D batch"),
        ({"images": np.zeros((2, 3, 16, 16), np.float32)}, TypeError, "torch.from_numpy"),
        ({"images": torch.zeros(2, 3, 16, 16, dtype=torch.uint8)}, TypeError, "floating point"),
        ({"images": torch.zeros(0, 3, 16, 16)}, ValueError, "empty batch"),
        ({"pooling": "max"}, ValueError, "'gap' or 'ca'"),
        ({"method": "raw_attention", "pooling": "gap"}, ValueError, "raw attention exists only with pooling='ca'"),
        ({"target_layers": "nope"}, ValueError, "no submodule 'nope'"),
        ({"target_layers": []}, ValueError, "target_layers is empty"),
        ({"target_layers": [3]}, TypeError, "nn.Module or dotted path"),
        ({"method": GradCAM(torch.nn.Linear(2, 2), [])}, TypeError, "not an instance"),
        ({"method": "raw_attention", "block": 9}, ValueError, "out of range"),
        ({"method": "scorecam", "batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_requests_are_named(tiny, kwargs: dict, error: type, match: str) -> None:
    call = {"images": torch.randn(2, 3, 16, 16), "method": "gradcam", **kwargs}
    with pytest.raises(error, match=match):
        explain(tiny, call.pop("images"), call.pop("method"), **call)
    assert count_hooks(tiny) == 0 and tiny.pooling == "ca"


def test_model_problems_are_named(tiny) -> None:
    x = torch.randn(1, 3, 16, 16)
    plain = TinyCNN()
    with pytest.raises(ValueError, match="has no CA-Stream.*attach_stream"):
        explain(plain, x, "gradcam", pooling="ca", target_layers=[plain.stage2])
    with pytest.raises(ValueError, match="not a submodule of this model"):
        explain(tiny, x, "gradcam", target_layers=[plain.stage2])
    with pytest.raises(TypeError, match="torch.nn.Module"):
        explain("resnet", x, "gradcam")


def test_gradcam_is_not_fooled_by_an_in_place_op_after_the_target_layer() -> None:
    """A conv followed by ReLU(inplace=True) (as in SqueezeNet's head, DenseNet's features): on the CPU,
    pytorch-grad-cam alone stores the post-ReLU values but the gradient of the pre-ReLU output;
    explain keeps the layer's output."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from xai_pool.saliency._maps import scale_to_input

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 3),
    ).eval()
    x = torch.randn(2, 3, 64, 64)
    layer = model[0]
    captured = {}

    def keep(_module, _inputs, output):
        captured["a"] = output.detach().clone()  # the layer's output, before the in-place ReLU
        output.register_hook(lambda grad: captured.update(g=grad))

    handle = layer.register_forward_hook(keep)
    model(x.clone().requires_grad_(True))[:, 1].sum().backward()
    handle.remove()
    weights = captured["g"].mean(dim=(2, 3), keepdim=True)
    definition = scale_to_input(torch.relu((weights * captured["a"]).sum(dim=1)), (64, 64)).numpy()
    ours = explain(model, x, "gradcam", target_layers=[layer], targets=1)
    np.testing.assert_allclose(ours, definition, atol=1e-5)
    with GradCAM(model, [layer]) as cam:
        raw = cam(x.clone(), [ClassifierOutputTarget(1)] * 2)
    assert np.abs(raw - definition).max() > 1e-2  # the pitfall is real on this model
