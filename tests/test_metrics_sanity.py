"""Cascading model-parameter randomisation sanity check."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from xai_pool.metrics import cascading_randomization


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def input_gradient(model: nn.Module, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    x = images.clone().requires_grad_(True)
    score = model(x).gather(1, classes.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(score, x)
    return grad.abs().sum(dim=1)


def test_model_independent_maps_keep_correlation_one():
    model = small_model()
    x = torch.randn(2, 3, 6, 6)

    def edge(m, imgs, c):
        return imgs.abs().sum(dim=1)

    out = cascading_randomization(model, x, edge)
    assert out["layers"].tolist() == ["6", "2", "0"]
    np.testing.assert_allclose(out["spearman"], np.ones((3, 2)))


def test_model_dependent_maps_equal_the_cascade_by_hand_and_the_model_is_untouched():
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(3, 3, 6, 6)
    classes = torch.tensor([0, 1, 2])
    out = cascading_randomization(model, x, input_gradient, labels=classes, seed=1)
    # by hand: a copy, seeded once, reset from the output back to the input; Spearman per image
    reference = input_gradient(model, x, classes).flatten(1).numpy()
    randomized = copy.deepcopy(model)
    torch.manual_seed(1)
    expected = []
    for index in (6, 2, 0):
        randomized[index].reset_parameters()
        maps = input_gradient(randomized, x, classes).flatten(1).numpy()
        expected.append([stats.spearmanr(a, b).statistic for a, b in zip(reference, maps, strict=True)])
    assert out["layers"].tolist() == ["6", "2", "0"]
    np.testing.assert_allclose(out["spearman"], expected, rtol=0, atol=1e-12)
    assert np.abs(out["spearman"] - 1).max() > 0.1  # the maps do depend on the model
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_constant_maps_give_zero_not_nan():
    model = small_model()
    x = torch.randn(2, 3, 4, 4)
    calls = []

    def flat_after_first(m, imgs, c):
        calls.append(1)
        return torch.rand(2, 4, 4) if len(calls) == 1 else torch.ones(2, 4, 4)

    out = cascading_randomization(model, x, flat_after_first, layers=["0"])
    assert out["spearman"].tolist() == [[0.0, 0.0]]


def test_unknown_layer():
    with pytest.raises(ValueError, match=r"layers \['head'\] are not modules of the model"):
        cascading_randomization(small_model(), torch.randn(1, 3, 4, 4), input_gradient, layers=["head"])
