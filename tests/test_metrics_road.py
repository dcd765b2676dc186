"""ROAD with pytorch-grad-cam's noisy linear imputer, on tiny images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xai_pool.metrics import evaluate
from xai_pool.metrics.perturbation import pixel_ranks
from xai_pool.metrics.road import road_images


class Constant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([0.5, 0.0, -0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], -1)


def test_road_images_remove_exact_pixel_counts():
    torch.manual_seed(0)
    image = torch.rand(3, 4, 5)
    ranks = pixel_ranks(torch.rand(1, 4, 5))[0]
    out = road_images(image, ranks, (25, 50), noise=0.0)
    assert out.shape == (4, 3, 4, 5)
    changed = (out != image).any(dim=1).flatten(1)
    flat = ranks.flatten()
    # MoRF 25% / 50%: the 5 / 10 top-ranked pixels are imputed; LeRF the 5 / 10 last ones
    assert torch.equal(changed[0], flat < 5) and torch.equal(changed[1], flat < 10)
    assert torch.equal(changed[2], flat >= 15) and torch.equal(changed[3], flat >= 10)


def test_road_images_are_seeded_and_leave_the_global_rng_alone():
    image = torch.rand(1, 4, 4)
    ranks = pixel_ranks(torch.rand(1, 4, 4))[0]
    state = torch.get_rng_state()
    a = road_images(image, ranks, (50,), seed=3)
    b = road_images(image, ranks, (50,), seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert not torch.equal(a, road_images(image, ranks, (50,), seed=4))


def test_road_of_input_ignoring_classifier_is_zero():
    out = evaluate(
        Constant(),
        torch.randn(2, 3, 5, 5),
        torch.rand(2, 5, 5),
        labels=[0, 2],
        metrics=("road", "road_morf", "road_lerf"),
        road_percentiles=(20, 60),
    )
    p = torch.softmax(torch.tensor([0.5, 0.0, -0.5], dtype=torch.float64), 0)
    assert out["road_morf"] == pytest.approx(100 * np.array([p[0], p[2]]))
    assert out["road_lerf"] == pytest.approx(out["road_morf"])
    assert out["road"] == pytest.approx([0.0, 0.0])


def test_road_combined_is_half_the_difference():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    out = evaluate(
        model,
        torch.randn(2, 3, 6, 6),
        torch.rand(2, 3, 3),
        metrics=("road", "road_morf", "road_lerf"),
        road_percentiles=(30, 70),
    )
    assert out["road"] == pytest.approx((out["road_lerf"] - out["road_morf"]) / 2)
