"""Sparsity (Gini) and complexity (normalised entropy) by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from xai_pool.metrics import evaluate
from xai_pool.metrics.complexity import complexity, sparsity


def test_single_hot_pixel():
    s = torch.zeros(1, 2, 5)
    s[0, 1, 3] = 1.0
    assert sparsity(s).tolist() == pytest.approx([100 * (1 - 1 / 10)])
    assert complexity(s).tolist() == pytest.approx([0.0], abs=1e-12)


def test_uniform_and_two_level_maps():
    assert sparsity(torch.ones(1, 3, 3)).tolist() == pytest.approx([0.0], abs=1e-12)
    assert complexity(torch.ones(1, 3, 3)).tolist() == pytest.approx([100.0])
    # values (0, 0, 1, 1): Gini = 1 - 2 (0.5 * 1.5 / 4 + 0.5 * 0.5 / 4) = 0.5; entropy log 2 / log 4
    s = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    assert sparsity(s).tolist() == pytest.approx([50.0])
    assert complexity(s).tolist() == pytest.approx([100 * math.log(2) / math.log(4)])


def test_constant_map_counts_as_uniform_through_evaluate():
    images = torch.zeros(2, 3, 4, 4)
    maps = torch.stack([torch.full((4, 4), 3.0), torch.eye(4)])
    out = evaluate(nn.Identity(), images, maps, metrics=("sparsity", "complexity"))
    assert out["sparsity"][0] == 0.0 and out["complexity"][0] == 100.0
    # 12 zeros and 4 ones: G = 1 - 2 * 0.25 * (3.5 + 2.5 + 1.5 + 0.5) / 16 = 0.75
    assert out["sparsity"][1] == pytest.approx(75.0)
    assert out["complexity"][1] == pytest.approx(100 * math.log(4) / math.log(16))
