"""Insertion / deletion: hand-computed curves and AUCs, ties, partial steps, substrates."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

from xai_pool.metrics import curve_fractions, evaluate, rise_blur, rise_blur_kernel
from xai_pool.metrics.perturbation import pixel_ranks


class MeanProb(nn.Module):
    """p(class 0) = mean(x) exactly: logits (log q, log(1 - q)) computed in float64."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.double().mean(dim=(1, 2, 3))
        return torch.stack([torch.log(q), torch.log1p(-q)], dim=1)


class TinyConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


# 2 x 3 image; S ranks the pixels 0, 4, 2, 1, 3, 5 (flat indices). Pixels 1 and 3 tie (S = 1):
# raster order puts 1 first, and with step 4 the tie falls across the step boundary.
X = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]).view(1, 1, 2, 3)
S = torch.tensor([[[9.0, 1.0, 5.0], [1.0, 7.0, 0.0]]])
X_AXIS = [0.0, 4 / 6, 1.0]  # step 4 on 6 pixels: the last step is partial


def trapezoid_percent(ys: list[float], xs: list[float]) -> float:
    return 100 * sum((ys[i] + ys[i + 1]) / 2 * (xs[i + 1] - xs[i]) for i in range(len(xs) - 1))


def run(metrics, **kwargs):
    return evaluate(MeanProb(), X, S, labels=[0], metrics=metrics, step=4, return_curves=True, **kwargs)


def test_ranks_are_stable_in_raster_order():
    ranks = pixel_ranks(S)
    assert ranks.flatten().tolist() == [0, 3, 2, 4, 1, 5]
    ties = pixel_ranks(torch.zeros(1, 2, 2))
    assert ties.flatten().tolist() == [0, 1, 2, 3]


def test_curve_fractions_with_partial_last_step():
    assert curve_fractions(2, 3, 4).tolist() == X_AXIS
    assert curve_fractions(2, 3, 2).tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert len(curve_fractions(7, 5, 5)) == 7 + 1


def test_deletion_by_hand():
    # removed after one step: pixels 0, 4, 2, 1 (ranks < 4); left: 0.4 and 0.6
    curve = [2.1 / 6, 1.0 / 6, 0.0]
    out = run(("deletion",))
    assert out["deletion_curve"][0] == pytest.approx(curve, abs=1e-7)
    assert out["deletion"] == pytest.approx([trapezoid_percent(curve, X_AXIS)], abs=1e-5)


def test_insertion_with_tensor_substrate_by_hand():
    # start from 0.05 everywhere, reveal pixels 0, 4, 2, 1 (sum 1.1), then all (2.1)
    curve = [0.05, (1.1 + 2 * 0.05) / 6, 2.1 / 6]
    out = run(("insertion",), insertion_substrate=torch.tensor(0.05))
    assert out["insertion_curve"][0] == pytest.approx(curve, abs=1e-7)
    assert out["insertion"] == pytest.approx([trapezoid_percent(curve, X_AXIS)], abs=1e-5)


def test_deletion_with_callable_substrate_by_hand():
    seen = []

    def halve(images: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(images.shape))
        return images * 0.5

    # deleted pixels are halved: 0.05 + 0.25 + 0.15 + 0.1 + kept 0.4 + 0.6, then everything
    curve = [2.1 / 6, 1.55 / 6, 1.05 / 6]
    out = run(("deletion",), deletion_substrate=halve)
    assert seen == [(1, 1, 2, 3)]
    assert out["deletion_curve"][0] == pytest.approx(curve, abs=1e-7)
    assert out["deletion"] == pytest.approx([trapezoid_percent(curve, X_AXIS)], abs=1e-5)


def test_deletion_with_broadcast_tensor_substrate():
    # a per-pixel substrate tensor (1, 1, H, W) broadcast over the batch
    sub = torch.full((1, 1, 2, 3), 0.2)
    out = run(("deletion",), deletion_substrate=sub)
    assert out["deletion_curve"][0] == pytest.approx([0.35, (0.8 + 1.0) / 6, 0.2], abs=1e-7)


def test_default_substrates_are_zeros_and_rise_blur():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 12, 13) * 0.8 + 0.1
    maps = torch.rand(1, 12, 13)
    out = evaluate(MeanProb(), x, maps, labels=[0], metrics=("insertion", "deletion"), return_curves=True)
    assert out["deletion_curve"][0, -1] == 0.0  # all pixels zero: q = 0
    # RISE's substrate: gaussian_filter of an 11 x 11 impulse (sigma 5), zero-padded correlation
    impulse = np.zeros((11, 11))
    impulse[5, 5] = 1
    kernel = scipy.ndimage.gaussian_filter(impulse, 5)
    blurred = scipy.ndimage.correlate(x[0, 0].double().numpy(), kernel, mode="constant", cval=0.0)
    assert out["insertion_curve"][0, 0] == pytest.approx(blurred.mean(), rel=1e-6)
    assert out["insertion_curve"][0, -1] == pytest.approx(x.double().mean().item(), rel=1e-12)


def test_rise_blur_kernel():
    k = rise_blur_kernel()
    assert k.shape == (11, 11)
    assert float(k.sum()) == pytest.approx(1.0)
    assert torch.allclose(k, k.T, rtol=1e-12) and torch.allclose(k, k.flip(0), rtol=1e-12)
    assert k.argmax().item() == 60  # the centre
    # zero padding: a constant image keeps its value in the middle and darkens at the border
    flat = rise_blur(torch.ones(1, 3, 21, 21))
    assert flat[0, :, 10, 10] == pytest.approx(torch.ones(3))
    assert float(flat[0, 0, 0, 0]) < 0.5


@pytest.mark.parametrize(("step", "points"), [(None, 5 + 1), (3, 12 + 1)])  # default: one row of 7 pixels
def test_deletion_curve_point_by_point(step, points):
    # point k shows x with its min(k step, 35) top-ranked pixels set to 0; MeanProb reads its mean
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 5, 7, generator=g, dtype=torch.float64) * 0.5 + 0.25
    maps = torch.rand(2, 5, 7, generator=g)
    out = evaluate(MeanProb(), x, maps, labels=[0, 0], metrics=("deletion",), step=step, return_curves=True)
    ranks = torch.argsort(torch.argsort(maps.flatten(1), dim=1, descending=True, stable=True), dim=1).view(2, 5, 7)
    counts = [min(k * (step or 7), 35) for k in range(points)]
    expected = [[float(torch.where(ranks[i] < m, 0.0, x[i, 0]).mean()) for m in counts] for i in range(2)]
    np.testing.assert_allclose(out["deletion_curve"], expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "transform",
    [
        lambda s: 3 * s + 1,
        torch.exp,
        lambda s: s**3,
        lambda s: torch.log1p(s),
        lambda s: torch.sigmoid(10 * s),
    ],
)
def test_invariant_to_monotone_transforms(transform):
    torch.manual_seed(0)
    model = TinyConv()
    x = torch.randn(3, 3, 6, 6)
    maps = torch.rand(3, 6, 6)
    kwargs = {"metrics": ("insertion", "deletion"), "step": 5, "return_curves": True, "batch_size": 7}
    ref = evaluate(model, x, maps, **kwargs)
    out = evaluate(model, x, transform(maps), **kwargs)
    for key in ("insertion", "deletion", "insertion_curve", "deletion_curve"):
        np.testing.assert_array_equal(out[key], ref[key])


def test_batch_size_does_not_change_results():
    torch.manual_seed(1)
    x = torch.rand(5, 1, 4, 4) * 0.8 + 0.1
    maps = torch.rand(5, 2, 2)
    outs = [
        evaluate(
            MeanProb(),
            x,
            maps,
            metrics=("ad", "insertion", "deletion"),
            step=3,
            batch_size=b,
            return_curves=True,
            masking_space="input",
        )
        for b in (1, 4, 64)
    ]
    for other in outs[1:]:
        for key in ("ad", "insertion", "deletion", "insertion_curve", "deletion_curve"):
            np.testing.assert_allclose(other[key], outs[0][key], rtol=1e-12)


def test_input_ignoring_classifier_has_flat_curves():
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([1.0, 0.0]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bias.expand(x.shape[0], -1)

    out = evaluate(Constant(), torch.randn(2, 3, 4, 4), torch.rand(2, 4, 4), metrics=("insertion", "deletion"))
    p = 1 / (1 + np.exp(-1.0))
    assert out["insertion"] == pytest.approx([100 * p] * 2)
    assert out["deletion"] == pytest.approx([100 * p] * 2)


def test_named_substrates():
    import torch.nn.functional as F

    from xai_pool.metrics import named_substrate, rise_blur

    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(named_substrate("blur")(x), rise_blur(x))
    torch.testing.assert_close(named_substrate("box-blur")(x), F.avg_pool2d(x, 5, 1, 2, count_include_pad=True))
    assert torch.equal(named_substrate("zeros")(x), torch.zeros_like(x))
    black = named_substrate("black", mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))(x)
    assert black[0, :, 4, 4].tolist() == [-1.0, -1.0, 0.0] and black.shape == x.shape
    with pytest.raises(ValueError, match="unknown substrate 'grey'"):
        named_substrate("grey")
    with pytest.raises(ValueError, match="needs the images' normalisation mean and std"):
        named_substrate("black")
