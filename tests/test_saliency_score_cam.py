"""xai_pool's batched ScoreCAM: same maps as pytorch-grad-cam's, bounded batches, no autograd."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import pytorch_grad_cam
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

from xai_pool import attach_stream, explain
from xai_pool.saliency import ScoreCAM, count_hooks

from .conftest import TINY_SPEC, TinyCNN


def _tiny_ca(dead_channels: int = 0, seed: int = 0):
    """TinyCNN + stream; the first ``dead_channels`` channels of the target layer are all zero."""
    torch.manual_seed(seed)
    net = TinyCNN()
    if dead_channels:
        with torch.no_grad():
            net.stage2[0].bias[:dead_channels] = -1e4  # ReLU turns these channels into zeros
    return attach_stream(net, spec=TINY_SPEC)


def _reference(model, x, targets, pooling):
    with (
        model.pooling_as(pooling),
        contextlib.redirect_stderr(io.StringIO()),  # its tqdm bars
        pytorch_grad_cam.ScoreCAM(model=model, target_layers=[model.backbone.stage2]) as cam,
    ):
        cam.batch_size = 7
        return cam(x, targets=targets)


@pytest.mark.parametrize("pooling", ["gap", "ca"])
@pytest.mark.parametrize("dead", [0, 10])
def test_same_maps_as_pytorch_grad_cam(pooling: str, dead: int) -> None:
    model = _tiny_ca(dead)
    x = torch.randn(3, 3, 24, 24)
    targets = [ClassifierOutputTarget(1), ClassifierOutputSoftmaxTarget(3), ClassifierOutputTarget(4)]
    expected = _reference(model, x, targets, pooling)
    with model.pooling_as(pooling), ScoreCAM(model=model, target_layers=[model.backbone.stage2], batch_size=5) as cam:
        got = cam(x, targets=targets)
    assert got.dtype == np.float32 and got.shape == (3, 24, 24)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert cam.constant_channels >= 3 * dead
    assert cam.forward_passes == 3 * 32 - cam.constant_channels + (1 if cam.constant_channels else 0)


def test_predicted_class_targets_match_too() -> None:
    model = _tiny_ca(4)
    x = torch.randn(2, 3, 16, 16)
    expected = _reference(model, x, None, "ca")
    np.testing.assert_allclose(explain(model, x, "scorecam", pooling="ca", batch_size=9), expected, atol=1e-5, rtol=0)


def test_constant_channels_share_one_forward_pass() -> None:
    model = _tiny_ca(dead_channels=29)  # 3 of 32 channels alive
    x = torch.randn(2, 3, 16, 16)
    with ScoreCAM(model=model, target_layers=[model.backbone.stage2]) as cam:
        cam(x, targets=None)
    assert cam.constant_channels >= 2 * 29
    assert cam.forward_passes == 2 * 32 - cam.constant_channels + 1


def test_masked_passes_are_batched_and_run_without_autograd() -> None:
    model = _tiny_ca()
    seen = []
    handle = model.backbone.register_forward_pre_hook(
        lambda m, inputs: seen.append((inputs[0].shape[0], torch.is_inference_mode_enabled(), inputs[0].requires_grad))
    )
    try:
        explain(model, torch.randn(2, 3, 16, 16), "scorecam", batch_size=6)
    finally:
        handle.remove()
    masked = seen[1:]  # the first pass is the ordinary forward that records the activations
    assert masked and max(size for size, _, _ in masked) <= 6
    assert all(inference and not grad for _, inference, grad in masked)
    assert count_hooks(model) == 0


def test_target_layer_activations_of_masked_passes_are_not_kept() -> None:
    model = _tiny_ca()
    with ScoreCAM(model=model, target_layers=[model.backbone.stage2], batch_size=4) as cam:
        cam(torch.randn(1, 3, 16, 16), targets=None)
        assert len(cam.activations_and_grads.activations) == 1


def test_batch_size_is_validated_and_modes_restored() -> None:
    model = _tiny_ca()
    with pytest.raises(ValueError, match="batch_size"):
        ScoreCAM(model=model, target_layers=[model.backbone.stage2], batch_size=0)
    model.train()
    model.backbone.stage1.train()
    with ScoreCAM(model=model, target_layers=[model.backbone.stage2]) as cam:
        assert not model.stream.training  # BaseCAM puts the model in eval inside
        cam(torch.randn(1, 3, 16, 16), targets=None)
    assert model.stream.training and model.backbone.stage1.training and not model.backbone.stage2.training
    assert count_hooks(model) == 0


def test_target_must_return_a_scalar() -> None:
    model = _tiny_ca()
    with (
        ScoreCAM(model=model, target_layers=[model.backbone.stage2]) as cam,
        pytest.raises(ValueError, match="scalar"),
    ):
        cam(torch.randn(1, 3, 16, 16), targets=[lambda output: output])
