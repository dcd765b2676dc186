"""Map preprocessing: upsampling, min-max, constant maps, NaN/inf handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xai_pool.metrics.maps import prepare_maps


def test_bilinear_upsampling_then_min_max():
    torch.manual_seed(0)
    raw = torch.rand(2, 3, 4, dtype=torch.float64) * 5 - 1
    up = F.interpolate(raw[:, None], size=(6, 8), mode="bilinear", align_corners=False)[:, 0]
    low = up.amin(dim=(1, 2), keepdim=True)
    high = up.amax(dim=(1, 2), keepdim=True)
    prepared = prepare_maps(raw, (6, 8))
    torch.testing.assert_close(prepared.scores, up)
    torch.testing.assert_close(prepared.normalized, (up - low) / (high - low))
    assert prepared.normalized.amin(dim=(1, 2)).tolist() == [0.0, 0.0]
    assert prepared.normalized.amax(dim=(1, 2)).tolist() == [1.0, 1.0]
    assert not prepared.constant.any() and prepared.valid.all()


def test_numpy_float32_maps_at_image_size_are_kept():
    raw = np.array([[[0.0, 2.0], [4.0, 8.0]]], dtype=np.float32)
    prepared = prepare_maps(torch.from_numpy(raw), (2, 2))
    assert prepared.normalized.flatten().tolist() == [0.0, 0.25, 0.5, 1.0]


@pytest.mark.parametrize("value", [0.0, 0.1, -3.0, 1e30])
def test_constant_map_becomes_zero(value):
    raw = torch.full((1, 3, 3), value)
    prepared = prepare_maps(raw, (7, 7))
    assert prepared.constant.tolist() == [True]
    assert torch.count_nonzero(prepared.normalized) == 0
    assert torch.count_nonzero(prepared.scores) == 0


def test_map_flattened_by_downsampling_counts_as_constant():
    checker = (torch.arange(16).view(4, 4) + torch.arange(4).view(4, 1)) % 2
    prepared = prepare_maps(checker[None].double(), (2, 2))
    assert prepared.constant.tolist() == [True]
    assert torch.count_nonzero(prepared.normalized) == 0


def test_extreme_finite_values_stay_finite():
    raw = torch.tensor([[[-3e38, 3e38], [0.0, 1.0]]], dtype=torch.float32)
    prepared = prepare_maps(raw, (2, 2))
    assert torch.isfinite(prepared.normalized).all()
    assert prepared.normalized.flatten().tolist() == pytest.approx([0.0, 1.0, 0.5, 0.5])
    big = torch.tensor([[[-1.7e308, 1.7e308]]], dtype=torch.float64)
    assert prepare_maps(big, (1, 2)).normalized.flatten().tolist() == [0.0, 1.0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_invalid_maps_raise_or_are_flagged(bad):
    raw = torch.rand(3, 2, 2)
    raw[1, 0, 1] = bad
    with pytest.raises(ValueError, match=r"saliency maps \[1\] contain NaN or inf.*on_invalid='skip'"):
        prepare_maps(raw, (2, 2))
    prepared = prepare_maps(raw, (2, 2), on_invalid="skip")
    assert prepared.valid.tolist() == [True, False, True]
    assert torch.isfinite(prepared.normalized).all()


def test_unknown_on_invalid():
    with pytest.raises(ValueError, match="on_invalid must be 'raise' or 'skip'"):
        prepare_maps(torch.rand(1, 2, 2), (2, 2), on_invalid="ignore")
