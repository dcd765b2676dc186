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
