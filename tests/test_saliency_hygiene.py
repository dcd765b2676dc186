"""No side effects: hooks, pooling, train/eval flags, requires_grad, .grad, module tree, memory."""

from __future__ import annotations

import copy
import gc
import tracemalloc
import warnings

import numpy as np
import pytest
import pytorch_grad_cam
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from xai_pool import attach_stream, explain
from xai_pool.adapters import StreamSpec
from xai_pool.saliency import count_hooks, model_state_guard

from .conftest import TINY_SPEC, TinyCNN


@pytest.fixture
def model():
    torch.manual_seed(0)
    return attach_stream(TinyCNN(), spec=TINY_SPEC)


def _state(model: nn.Module) -> tuple:
    return (
        model.pooling,
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [None if p.grad is None else id(p.grad) for p in model.parameters()],
        [(name, id(m)) for name, m in model.named_modules()],
        count_hooks(model),
    )


def _mess_up(model) -> None:
    """A non-default state: gap pooling, mixed modes and requires_grad, existing .grad."""
    model.pooling = "gap"
    model.stream.train()
    model.backbone.stage1.train()
    model.backbone.head.weight.requires_grad_(True)
    model.stream.blocks[0].proj.weight.grad = torch.ones_like(model.stream.blocks[0].proj.weight)


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "raw_attention", "ablationcam", "fullgrad", "eigencam"])
def test_explain_restores_everything(model, method: str) -> None:
    _mess_up(model)
    before = _state(model)
    grad = model.stream.blocks[0].proj.weight.grad.clone()
    explain(model, torch.randn(2, 3, 16, 16), method, pooling="ca", targets=[1, 2])
    assert _state(model) == before
    assert torch.equal(model.stream.blocks[0].proj.weight.grad, grad)  # not zeroed, nothing accumulated
    assert count_hooks(model) == 0


class _Boom(Exception):
    pass


def _exploding_target(output: torch.Tensor) -> torch.Tensor:
    raise _Boom("target failed")


@pytest.mark.parametrize("method", ["gradcam", "scorecam", "ablationcam"])
def test_state_is_restored_after_an_exception(model, method: str) -> None:
    _mess_up(model)
    before = _state(model)
    with pytest.raises(_Boom):
        explain(model, torch.randn(2, 3, 16, 16), method, targets=[_exploding_target, _exploding_target])
    assert _state(model) == before and count_hooks(model) == 0


def test_index_errors_are_not_swallowed(model) -> None:
    # pytorch-grad-cam's __exit__ prints and suppresses IndexError; explain must not.
    def bad_target(output: torch.Tensor) -> torch.Tensor:
        return output[99]

    with pytest.raises(IndexError):
        explain(model, torch.randn(1, 3, 16, 16), "gradcam", targets=[bad_target])
    assert count_hooks(model) == 0


class _SwapAndFail(pytorch_grad_cam.GradCAM):
    """A method that swaps a submodule and leaks a hook before failing."""

    def __call__(self, input_tensor, targets=None, **kwargs):
        self.model.backbone.stage1 = nn.Identity()
        self.model.backbone.stage2.register_forward_hook(lambda *args: None)
        raise _Boom("half-way")


def test_module_tree_and_leaked_hooks_are_repaired(model) -> None:
    stage1 = model.backbone.stage1
    with pytest.raises(_Boom):
        explain(model, torch.randn(1, 3, 16, 16), _SwapAndFail)
    assert model.backbone.stage1 is stage1 and count_hooks(model) == 0


def test_guard_sets_eval_frozen_and_pooling_inside(model) -> None:
    model.train()
    with model_state_guard(model, pooling="gap"):
        assert model.pooling == "gap"
        assert not any(m.training for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
    assert model.pooling == "ca" and model.stream.training
    assert all(p.requires_grad for p in model.stream.parameters())


def test_user_tensor_is_not_modified(model) -> None:
    x = torch.randn(2, 3, 16, 16)
    copy = x.clone()
    explain(model, x, "gradcam")
    assert not x.requires_grad and x.grad is None and torch.equal(x, copy)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_gradient_methods_give_the_same_maps_inside_no_grad_and_inference_mode(model, context) -> None:
    x = torch.randn(2, 3, 16, 16)
    expected = explain(model, x, "gradcam")
    assert np.ptp(expected) > 0
    with context():
        inside = x.clone()  # under inference_mode: an inference tensor, which autograd cannot use directly
        maps = explain(model, inside, "gradcam")
    np.testing.assert_array_equal(maps, expected)


def test_frozen_plain_classifier_gradcam_equals_pytorch_grad_cam_unfrozen() -> None:
    torch.manual_seed(0)
    net = TinyCNN().eval()
    reference = copy.deepcopy(net)  # trainable parameters: pytorch-grad-cam's usual setting
    for p in net.parameters():
        p.requires_grad_(False)
    x = torch.randn(2, 3, 16, 16)
    maps = explain(net, x, "gradcam", pooling="gap", target_layers=[net.stage2], targets=[0, 1])
    assert not any(p.requires_grad for p in net.parameters())
    with pytorch_grad_cam.GradCAM(model=reference, target_layers=[reference.stage2]) as cam:
        expected = cam(x, targets=[ClassifierOutputTarget(0), ClassifierOutputTarget(1)])
    assert np.ptp(expected) > 0
    np.testing.assert_allclose(maps, expected, rtol=0, atol=1e-6)


class _SharedReLU(nn.Module):
    """One ReLU module used twice, like some EfficientNet-Lite0 ports (stem and head)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv(self.act(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))


def test_shared_target_layer_is_refused() -> None:
    torch.manual_seed(0)
    model = attach_stream(_SharedReLU(), spec=StreamSpec(taps=("stem",), pool="pool", target_layer="conv"))
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="'act' ran more than once.*shared"):
        explain(model, x, "gradcam", target_layers="act")
    assert count_hooks(model) == 0
    assert explain(model, x, "gradcam", target_layers="conv").shape == (1, 8, 8)


def test_class_specific_stream_is_not_mistaken_for_a_shared_layer() -> None:
    torch.manual_seed(0)
    model = attach_stream(TinyCNN(), spec=TINY_SPEC, class_specific=True)  # runs its backbone twice
    x = torch.randn(2, 3, 16, 16)
    maps = explain(model, x, "gradcam", targets=[0, 1])
    # the same class run directly: both backbone passes see the same input, so the maps are well defined
    reference = copy.deepcopy(model)
    with pytorch_grad_cam.GradCAM(model=reference, target_layers=[reference.backbone.stage2]) as cam:
        expected = cam(x, targets=[ClassifierOutputTarget(0), ClassifierOutputTarget(1)])
    np.testing.assert_allclose(maps, expected, rtol=0, atol=1e-6)


def _live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on deprecated torch.distributed aliases warns
        warnings.simplefilter("ignore")
        return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


@pytest.mark.parametrize("method, calls", [("gradcam", 300), ("raw_attention", 100), ("scorecam", 100)])
def test_memory_is_flat_over_repeated_calls(model, method: str, calls: int) -> None:
    x = torch.randn(2, 3, 8, 8)
    for _ in range(10):  # warm-up: caches, lazily created objects
        explain(model, x, method)
    tensors = _live_tensors()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(calls):
            maps = explain(model, x, method)
        del maps
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert _live_tensors() <= tensors
    assert growth < 256 * 1024, f"{growth} bytes kept after {calls} calls"
    assert count_hooks(model) == 0
