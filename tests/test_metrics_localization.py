"""Pointing game and energy-based pointing game, by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xai_pool.metrics import evaluate


class Unused(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - never called
        raise AssertionError("localisation metrics must not run the model")


def point_map(y: int, x: int, size: int = 8) -> torch.Tensor:
    s = torch.zeros(size, size)
    s[y, x] = 1.0
    return s


def box(y0: int, y1: int, x0: int, x1: int, size: int = 8) -> torch.Tensor:
    m = torch.zeros(size, size, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def pointing(maps, masks, **kwargs):
    images = torch.zeros(len(maps), 3, 8, 8)
    return evaluate(
        Unused(),
        images,
        torch.stack(maps),
        metrics=("pointing_game",),
        masks=torch.stack(masks),
        **kwargs,
    )


def test_pointing_game_hit_and_miss():
    out = pointing([point_map(2, 3), point_map(2, 3)], [box(1, 4, 2, 5), box(5, 8, 5, 8)])
    assert out["pointing_game"].tolist() == [100.0, 0.0]
    assert "target" not in out


def test_pointing_game_tolerance_in_pixels():
    # the point (2, 3) is at distance 2 from the nearest mask pixel (2, 5); sqrt(8) from (4, 5)
    maps = [point_map(2, 3)] * 3
    masks = [box(2, 3, 5, 6), box(4, 5, 5, 6), box(2, 3, 5, 6)]
    out = pointing(maps, masks, tolerance=2)
    assert out["pointing_game"].tolist() == [100.0, 0.0, 100.0]
    assert pointing(maps, masks, tolerance=1.9)["pointing_game"].tolist() == [0.0, 0.0, 0.0]
    assert pointing(maps, masks, tolerance=3)["pointing_game"].tolist() == [100.0, 100.0, 100.0]


def test_pointing_game_ties_take_the_first_maximum_in_raster_order():
    s = point_map(6, 6)
    s[1, 1] = 1.0  # tie; (1, 1) comes first in raster order
    out = pointing([s, s], [box(0, 3, 0, 3), box(5, 8, 5, 8)])
    assert out["pointing_game"].tolist() == [100.0, 0.0]


def test_pointing_game_on_low_resolution_map():
    # a 2 x 2 map with its peak at the bottom right: after bilinear upsampling the max is there
    low = torch.tensor([[0.0, 0.1], [0.2, 1.0]])
    images = torch.zeros(1, 3, 8, 8)
    out = evaluate(Unused(), images, low[None], metrics=("pointing_game",), masks=box(4, 8, 4, 8)[None])
    assert out["pointing_game"].tolist() == [100.0]


def test_energy_pointing_game_by_hand():
    s = torch.tensor([[0.0, 1.0], [2.0, 3.0]])  # S = [[0, 1/3], [2/3, 1]]
    mask = torch.tensor([[False, False], [True, True]])
    images = torch.zeros(1, 3, 2, 2)
    out = evaluate(Unused(), images, s[None], metrics=("energy_pointing_game",), masks=mask[None])
    assert out["energy_pointing_game"] == pytest.approx([100 * (2 / 3 + 1) / 2])


def test_masks_as_zero_one_numbers():
    s = torch.tensor([[0.0, 1.0], [2.0, 3.0]])[None]
    images = torch.zeros(1, 3, 2, 2)
    for mask in (np.array([[[0, 0], [1, 1]]]), torch.tensor([[[0.0, 0.0], [1.0, 1.0]]])):
        out = evaluate(Unused(), images, s, metrics=("energy_pointing_game", "pointing_game"), masks=mask)
        assert out["energy_pointing_game"] == pytest.approx([250 / 3])
        assert out["pointing_game"].tolist() == [100.0]


def test_constant_map_scores_zero():
    images = torch.zeros(1, 3, 4, 4)
    mask = torch.ones(1, 4, 4, dtype=torch.bool)
    out = evaluate(
        Unused(),
        images,
        torch.full((1, 2, 2), 0.7),
        metrics=("pointing_game", "energy_pointing_game"),
        masks=mask,
    )
    assert out["pointing_game"].tolist() == [0.0]
    assert out["energy_pointing_game"].tolist() == [0.0]


def test_pointing_game_fraction_of_tied_maxima_inside():
    from xai_pool.metrics.localization import pointing_game

    s = torch.zeros(1, 8, 8, dtype=torch.float64)
    for y, x in ((0, 0), (5, 5), (6, 6), (7, 5)):  # four tied maxima, the first in raster order outside
        s[0, y, x] = 1.0
    mask = box(5, 8, 5, 8)[None]
    none = torch.zeros(1, dtype=torch.bool)
    assert pointing_game(s, mask, none).tolist() == [0.0]
    assert pointing_game(s, mask, none, ties="fraction").tolist() == [75.0]
    # (0, 0) is sqrt(50) from (5, 5): inside the tolerance every maximum hits
    assert pointing_game(s, mask, none, tolerance=7.1, ties="fraction").tolist() == [100.0]
    assert pointing_game(s, mask, torch.ones(1, dtype=torch.bool), ties="fraction").tolist() == [0.0]  # constant
    with pytest.raises(ValueError, match="ties must be one of"):
        pointing_game(s, mask, none, ties="any")


@pytest.mark.parametrize("tolerance", [0.0, 1.0, 1.5, 2.9, 15.0, 1e4])
def test_pointing_game_tolerance_equals_brute_force_distances(tolerance: float):
    from xai_pool.metrics.localization import pointing_game

    g = torch.Generator().manual_seed(0)
    scores = torch.floor(torch.rand(16, 9, 11, generator=g, dtype=torch.float64) * 6)  # many ties
    masks = torch.rand(16, 9, 11, generator=g) > 0.8
    masks[0] = False  # an empty mask: always a miss
    ys, xs = torch.meshgrid(torch.arange(9.0), torch.arange(11.0), indexing="ij")
    expected_first, expected_fraction = [], []
    for s, m in zip(scores, masks, strict=True):
        inside = torch.stack([ys[m], xs[m]], dim=1)  # (k, 2)
        maximal = torch.nonzero(s == s.max()).double()  # raster order
        hits = [bool(len(inside)) and bool((((inside - p) ** 2).sum(1) <= tolerance**2).any()) for p in maximal]
        expected_first.append(100.0 * hits[0])
        expected_fraction.append(100.0 * sum(hits) / len(hits))
    none = torch.zeros(16, dtype=torch.bool)
    assert pointing_game(scores, masks, none, tolerance).tolist() == expected_first
    np.testing.assert_allclose(pointing_game(scores, masks, none, tolerance, ties="fraction"), expected_fraction)
    if tolerance < 100:
        assert 0 < np.mean(expected_first) < 100  # hits and misses both occur
    else:  # beyond the image diagonal: every non-empty mask is reached (and the kernel stays small)
        assert expected_first == [0.0] + [100.0] * 15
