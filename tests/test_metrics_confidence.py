"""AD / AG / AI against values computed by hand on models with closed-form probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from xai_pool.metrics import evaluate
from xai_pool.metrics.confidence import (
    average_drop,
    average_gain,
    average_increase,
    explanation_images,
)


def sigmoid(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t))


class MeanLogit(nn.Module):
    """logits = (a * mean(x), 0): p(class 0) = sigmoid(a * mean(x)), p(class 1) = 1 - that."""

    def __init__(self, a: float = 4.0) -> None:
        super().__init__()
        self.a = a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.a * x.double().mean(dim=(1, 2, 3))
        return torch.stack([t, torch.zeros_like(t)], dim=1)


class Constant(nn.Module):
    """Ignores its input: logits are a fixed parameter."""

    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


RAW = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # min-max -> [[1, 0], [0.5, 0.5]]
CONF = ("ad", "ag", "ai")


def test_pixel_space_by_hand():
    # mean = std = 0.5: pixel = 0.5 x + 0.5. x = 1 everywhere is the white image, p = sigmoid(4).
    # E = normalize(white * S) = 2 S - 1 = [[1, -1], [0, 0]]: mean 0, o = sigmoid(0) = 0.5.
    x = torch.ones(2, 1, 2, 2)
    out = evaluate(MeanLogit(), x, RAW.expand(2, 2, 2), labels=[0, 1], metrics=CONF, mean=[0.5], std=[0.5])
    p0, p1 = sigmoid(4), sigmoid(-4)
    assert out["ad"] == pytest.approx([100 * (p0 - 0.5) / p0, 0.0], rel=1e-6)
    assert out["ag"] == pytest.approx([0.0, 100 * (0.5 - p1) / (1 - p1)], rel=1e-6)
    assert out["ai"].tolist() == [0.0, 100.0]
    assert out["target"].tolist() == [0, 1]


def test_input_space_by_hand():
    # E = x * S = S: mean 0.5, o = sigmoid(2)
    x = torch.ones(1, 1, 2, 2)
    out = evaluate(MeanLogit(), x, RAW[None], labels=[0], metrics=CONF, masking_space="input")
    p, o = sigmoid(4), sigmoid(2)
    assert out["ad"] == pytest.approx([100 * (p - o) / p], rel=1e-6)
    assert out["ag"].tolist() == [0.0]


def test_per_channel_normalisation_by_hand():
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)
    pixel = 0.8
    x = torch.stack([torch.full((2, 2), (pixel - m) / s) for m, s in zip(mean, std, strict=True)])[None]
    clean = np.mean([(pixel - m) / s for m, s in zip(mean, std, strict=True)])
    # mean of S is 0.5, and E_c = (0.8 S - mean_c) / std_c is linear in S
    masked = np.mean([(pixel * 0.5 - m) / s for m, s in zip(mean, std, strict=True)])
    out = evaluate(MeanLogit(a=0.5), x, RAW[None], labels=[0], metrics=CONF, mean=mean, std=std)
    p, o = sigmoid(0.5 * clean), sigmoid(0.5 * masked)
    assert p > o
    assert out["ad"] == pytest.approx([100 * (p - o) / p], rel=1e-5)


def test_prediction_is_the_default_class():
    x = -torch.ones(1, 1, 2, 2)  # mean -1: the model predicts class 1
    out = evaluate(MeanLogit(), x, RAW[None], metrics=CONF, mean=[0.5], std=[0.5])
    assert out["target"].tolist() == [1]
    # E = 0 * S - 1 = -1 everywhere: unchanged image, o == p
    assert out["ad"].tolist() == [0.0] and out["ag"].tolist() == [0.0] and out["ai"].tolist() == [0.0]


def test_input_ignoring_classifier_scores_zero():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 8, 8)
    maps = torch.rand(4, 3, 3)
    out = evaluate(Constant([0.3, -1.0, 2.0]), x, maps, labels=[0, 1, 2, 0], metrics=CONF)
    for name in CONF:
        assert out[name].tolist() == [0.0] * 4


def test_saturated_probabilities_give_no_nan():
    # logit gaps of 100 and 1000: p == 1 in float64 (AG is 0/0) and p == 0 (AD is 0/0)
    x = torch.randn(2, 3, 4, 4)
    out = evaluate(Constant([1000.0, 900.0, 0.0]), x, torch.rand(2, 4, 4), labels=[0, 2], metrics=CONF)
    for name in CONF:
        assert np.isfinite(out[name]).all()
        assert out[name].tolist() == [0.0, 0.0]


def test_constant_map_is_all_zero_mask():
    # a constant map becomes S = 0: the explanation is the black image, normalize(0) = -1
    x = torch.ones(1, 1, 2, 2)
    out = evaluate(MeanLogit(), x, torch.full((1, 2, 2), 0.1), labels=[0], metrics=CONF, mean=[0.5], std=[0.5])
    p, o = sigmoid(4), sigmoid(-4)
    assert out["ad"] == pytest.approx([100 * (p - o) / p], rel=1e-6)


def test_formulas_on_tensors():
    p = torch.tensor([0.5, 0.5, 1.0, 0.0, 0.2], dtype=torch.float64)
    o = torch.tensor([0.25, 0.75, 1.0, 0.0, 0.6], dtype=torch.float64)
    assert average_drop(p, o).tolist() == [50.0, 0.0, 0.0, 0.0, 0.0]
    assert average_gain(p, o).tolist() == pytest.approx([0.0, 50.0, 0.0, 0.0, 50.0])
    assert average_increase(p, o).tolist() == [0.0, 100.0, 0.0, 0.0, 100.0]


def test_explanation_images_spaces():
    x = torch.full((1, 1, 1, 2), 0.5)
    s = torch.tensor([[[1.0, 0.0]]])
    mean, std = torch.tensor([0.5]).view(1, 1, 1, 1), torch.tensor([0.25]).view(1, 1, 1, 1)
    # pixel = 0.5 * 0.25 + 0.5 = 0.625; masked pixels 0.625 and 0; normalised back
    assert explanation_images(x, s, mean, std, "pixel").flatten().tolist() == [0.5, -2.0]
    assert explanation_images(x, s, mean, std, "input").flatten().tolist() == [0.5, 0.0]
