"""RawAttention: the last block's softmax attention, upsampled, in pytorch-grad-cam's format."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from pytorch_grad_cam.utils.image import scale_cam_image

from xai_pool import attach_stream, explain
from xai_pool.saliency import RawAttention, count_hooks


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return attach_stream(torchvision.models.resnet18(num_classes=5), heads=2)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, 96, 96)


def _manual(attention: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Upsample (bilinear, half-pixel) and min-max each (B, h, w) map."""
    up = F.interpolate(attention[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    low = up.flatten(1).min(1).values[:, None, None]
    high = up.flatten(1).max(1).values[:, None, None]
    return ((up - low) / (high - low)).numpy()


def test_equals_last_block_attention_upsampled_and_scaled(model, x) -> None:
    with torch.no_grad():
        last = model.attention(x)[-1]  # (B, heads, 3, 3)
    expected = _manual(last.mean(dim=1), (96, 96))
    with RawAttention(model) as cam:
        got = cam(input_tensor=x)
    assert got.shape == (2, 96, 96) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(explain(model, x, "raw_attention"), expected, atol=1e-5)
    assert got.min() == 0 and got.max() > 0.999


def test_matches_pytorch_grad_cam_post_processing(model, x) -> None:
    with torch.no_grad():
        last = model.attention(x)[-1].mean(dim=1).numpy()
    # BaseCAM: scale_cam_image with resize per layer, then scale_cam_image after aggregation.
    expected = scale_cam_image(scale_cam_image(last, (96, 96)))
    with RawAttention(model) as cam:
        np.testing.assert_allclose(cam(x), expected, atol=1e-5)


def test_head_reduction_block_choice_and_fusion(model, x) -> None:
    with torch.no_grad():
        maps = model.attention(x)
    with RawAttention(model, head_reduction="max") as cam:
        np.testing.assert_allclose(cam(x), _manual(maps[-1].amax(dim=1), (96, 96)), atol=1e-5)
    with RawAttention(model, head_reduction=1, block=-2) as cam:
        np.testing.assert_allclose(cam(x), _manual(maps[-2][:, 1], (96, 96)), atol=1e-5)
    fused = {}
    for fuse in ("mean", "max", "product"):
        with RawAttention(model, use_all_blocks=True, fuse=fuse) as cam:
            fused[fuse] = cam(x)
    # mean / max: of the per-block maps, each scaled to [0, 1] at the input size, then scaled again
    scaled = np.stack([_manual(a.mean(dim=1), (96, 96)) for a in maps])
    for fuse, combine in (("mean", scaled.mean(axis=0)), ("max", scaled.max(axis=0))):
        low, high = combine.min(axis=(1, 2), keepdims=True), combine.max(axis=(1, 2), keepdims=True)
        np.testing.assert_allclose(fused[fuse], (combine - low) / (high - low), atol=1e-5)
    product = np.ones((2, 96, 96))
    for a in maps:
        up = F.interpolate(a.mean(dim=1)[:, None], size=(96, 96), mode="bilinear", align_corners=False)[:, 0]
        product = product * up.double().numpy()
    low, high = product.min(axis=(1, 2), keepdims=True), product.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(fused["product"], (product - low) / (high - low), atol=1e-4)
    assert not np.allclose(fused["mean"], fused["product"])
    with RawAttention(model, block=[0, -1]) as cam:
        assert cam.blocks == [0, 4]


def test_costs_one_forward_pass_and_ignores_targets(model, x) -> None:
    calls = []
    handle = model.backbone.register_forward_pre_hook(lambda m, i: calls.append(torch.is_grad_enabled()))
    try:
        with RawAttention(model) as cam:
            first = cam(x, targets=None)
            second = cam(x, targets=[1, 3])  # class-agnostic: targets do not matter
    finally:
        handle.remove()
    assert calls == [False, False]  # one pass per call, no autograd
    np.testing.assert_array_equal(first, second)
    assert cam.outputs is None and count_hooks(model) == 0


def test_constant_attention_gives_zero_maps(model) -> None:
    # A 32x32 input gives a 1x1 last feature map: its attention is 1 everywhere.
    with RawAttention(model) as cam:
        maps = cam(torch.randn(2, 3, 32, 32))
    np.testing.assert_array_equal(maps, np.zeros((2, 32, 32), np.float32))


def test_pooling_and_modes_are_restored(model, x) -> None:
    model.pooling = "gap"
    model.train()
    try:
        with RawAttention(model) as cam:
            cam(x)
        assert model.pooling == "gap" and model.stream.training
    finally:
        model.pooling = "ca"
        model.eval()


def test_pytorch_grad_cam_constructor_keywords_are_accepted_and_ignored(model, x) -> None:
    with RawAttention(model) as cam:
        expected = cam(x)
    with RawAttention(model=model, target_layers=[model.backbone.layer4], reshape_transform=None) as cam:
        np.testing.assert_array_equal(cam(input_tensor=x, targets=None), expected)


def test_bad_arguments(model, x) -> None:
    with pytest.raises(TypeError, match="attach_stream"):
        RawAttention(torchvision.models.resnet18())
    with pytest.raises(ValueError, match="out of range"):
        RawAttention(model, block=5)
    with pytest.raises(ValueError, match="fuse"):
        RawAttention(model, use_all_blocks=True, fuse="sum")
    with pytest.raises(ValueError, match="head_reduction"):
        RawAttention(model, head_reduction="median")
    with pytest.raises(ValueError, match="out of range"):
        RawAttention(model, head_reduction=2)
    with pytest.raises(ValueError, match="aug_smooth"):
        RawAttention(model)(x, aug_smooth=True)
    with pytest.raises(ValueError, match="4-D"):
        RawAttention(model)(x[0])
