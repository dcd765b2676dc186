"""The one min-max normalisation (xai_pool.minmax): known answers, and bit-for-bit equality of
every path that now calls it with the code it replaced (kept below as the reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xai_pool.metrics.maps import prepare_maps
from xai_pool.minmax import minmax_normalize
from xai_pool.saliency._maps import minmax_scale, scale_to_input, upsample
from xai_pool.saliency.score_cam import ScoreCAM
from xai_pool.viz._arrays import saliency_to_unit


def test_known_answers() -> None:
    maps = np.array([[[1.0, 3.0], [2.0, 5.0]], [[-2.0, -2.0], [-2.0, -2.0]]])
    np.testing.assert_array_equal(minmax_normalize(maps), [[[0, 0.5], [0.25, 1]], [[0, 0], [0, 0]]])
    eps = minmax_normalize(torch.tensor(maps[:1]), eps=1.0)  # (m - 1) / (4 + 1)
    torch.testing.assert_close(eps, torch.tensor([[[0.0, 0.4], [0.2, 0.8]]], dtype=torch.float64), rtol=0, atol=0)
    assert not minmax_normalize(torch.full((1, 3, 3), 7.0), eps=1e-7).any()  # constant: zeros, never 0/0


def test_type_dtype_and_shape_are_kept() -> None:
    for maps in (np.random.rand(2, 3, 4).astype(np.float32), torch.rand(2, 3, 4, dtype=torch.float64)):
        out = minmax_normalize(maps)
        assert type(out) is type(maps) and out.dtype == maps.dtype and out.shape == maps.shape
    single = minmax_normalize(np.array([[0.0, 2.0], [1.0, 1.0]], np.float32))  # one (H, W) map
    np.testing.assert_array_equal(single, np.array([[0, 1], [0.5, 0.5]], np.float32))
    per_map = minmax_normalize(torch.arange(8.0).view(2, 2, 2))  # each map on its own
    assert per_map.flatten(1).amax(dim=1).tolist() == [1.0, 1.0] and per_map.flatten(1).amin(dim=1).tolist() == [0, 0]


# ----------------------------------------------------------------------------- equality with the replaced code
def _maps(seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(8, 7, 9) maps of very different scales and offsets, ties, a constant and a near-constant map."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(8, 7, 9, generator=g, dtype=torch.float64)
    scales = torch.tensor([1e-6, 1e-3, 1.0, 1.0, 1e3, 1e6, 1.0, 1.0], dtype=torch.float64).view(-1, 1, 1)
    offsets = torch.tensor([0.0, -5.0, 0.0, 1e4, 3.0, -1e7, 0.0, 1.0], dtype=torch.float64).view(-1, 1, 1)
    maps = base * scales + offsets
    maps[2] = maps[2].round()  # many ties
    maps[6] = 4.25  # constant
    maps[7] = 1.0 + torch.rand(7, 9, generator=g, dtype=torch.float64) * 1e-6  # nearly constant
    return maps.to(dtype)


def _old_minmax_scale(maps: torch.Tensor) -> torch.Tensor:  # saliency/_maps.py before the move
    shifted = maps - maps.flatten(1).amin(dim=1)[:, None, None]
    return shifted / (shifted.flatten(1).amax(dim=1)[:, None, None] + 1e-7)


def _old_prepare_normalized(saliency: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:  # metrics/maps.py
    saliency = saliency.to(torch.float64)
    flat = saliency.flatten(1)
    constant = flat.amax(dim=1) == flat.amin(dim=1)
    up = F.interpolate(saliency.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
    up_flat = up.flatten(1)
    constant = constant | (up_flat.amax(dim=1) == up_flat.amin(dim=1))
    up[constant] = 0
    magnitude = up_flat.abs().amax(dim=1).view(-1, 1, 1)
    scaled = up / torch.where(magnitude > 0, magnitude, torch.ones_like(magnitude))
    low = scaled.flatten(1).amin(dim=1).view(-1, 1, 1)
    span = scaled.flatten(1).amax(dim=1).view(-1, 1, 1) - low
    return (scaled - low) / torch.where(span > 0, span, torch.ones_like(span))


def _old_saliency_to_unit(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:  # viz/_arrays.py
    import cv2

    array = saliency.astype(np.float32)
    low, high = float(array.min()), float(array.max())
    array = np.zeros_like(array) if high - low <= 0 else (array - low) / (high - low)
    return np.clip(cv2.resize(array, (size[1], size[0]), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def _old_score_cam_masks(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:  # saliency/score_cam.py
    upsampled = F.interpolate(maps[None], size=size, mode="bilinear", align_corners=True)[0]
    flat = upsampled.flatten(1)
    mins = flat.min(dim=-1)[0][:, None, None]
    maxs = flat.max(dim=-1)[0][:, None, None]
    return (upsampled - mins) / (maxs - mins + 1e-8)


@pytest.mark.parametrize("seed", range(5))
def test_saliency_methods_path_is_unchanged(seed: int) -> None:
    for dtype in (torch.float32, torch.float64):
        maps = _maps(seed, dtype)
        assert torch.equal(minmax_scale(maps), _old_minmax_scale(maps))
    maps = _maps(seed)
    expected = _old_minmax_scale(upsample(_old_minmax_scale(maps.float()), (20, 31)))
    assert torch.equal(scale_to_input(maps, (20, 31)), expected)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_path_is_unchanged(seed: int) -> None:
    for dtype in (torch.float32, torch.float64):
        for size in ((21, 27), (7, 9), (3, 4)):  # up, same, down
            maps = _maps(seed, dtype)
            assert torch.equal(prepare_maps(maps, size).normalized, _old_prepare_normalized(maps, size))
    huge = _maps(seed, torch.float64) * 1e300  # the magnitude guard keeps max - min finite
    normalized = prepare_maps(huge, (14, 18)).normalized
    assert torch.isfinite(normalized).all() and torch.equal(normalized, _old_prepare_normalized(huge, (14, 18)))


@pytest.mark.parametrize("seed", range(5))
def test_figures_path_is_unchanged(seed: int) -> None:
    for index, saliency in enumerate(_maps(seed).numpy()):
        for size in ((14, 18), (7, 9), (3, 5)):
            assert np.array_equal(saliency_to_unit(saliency, size), _old_saliency_to_unit(saliency, size)), index


@pytest.mark.parametrize("seed", range(5))
def test_score_cam_masks_are_unchanged(seed: int) -> None:
    maps = _maps(seed)[:6]  # Score-CAM never masks with a constant activation map
    got = ScoreCAM._masks(maps, (15, 11), torch.device("cpu"))
    assert torch.equal(got, _old_score_cam_masks(maps, (15, 11)))
