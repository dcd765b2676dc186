"""Metric oracles: our metrics against torchcam, pytorch-grad-cam and Quantus on the same inputs.

One small random classifier, images and maps; each peer computes its metric, and our
:func:`xai_pool.metrics.evaluate` must give the same number per image once the units are
converted (ours are percent) and the conventions that differ are either set equal or their
difference asserted exactly. Maps are given at the image resolution with min 0 and max 1, so
that no library resizes or rescales them (our S is then the map itself), and, unless a test
is about ties, their values are distinct.

Conventions (see docs/metrics.md, "Peer comparison"):

- torchcam ``ClassificationMetric`` masks in the model's input space (x * S): ours with
  ``masking_space="input"``; it reports fractions and adds 1e-7 to p.
- torchcam ``DeletionInsertionMetric`` uses one baseline for both curves (zeros by default);
  ours starts insertion from RISE's blur: the insertion substrate is set to torchcam's
  baseline. Its ``steps`` intervals are ceil(H W / steps) pixels, our ``step``. Ties are
  ranked in raster order by both (stable sort).
- pytorch-grad-cam ``DropInConfidence`` is the absolute drop max(0, p - o), ours is relative:
  ours = 100 drop / p. ``IncreaseInConfidence`` is our AI / 100.
- pytorch-grad-cam's ROAD removes every pixel at or above ``np.percentile(S, q)`` (ties
  included, keeping q%), ours exactly round(q/100 H W) top-ranked pixels: asserted, and set
  equal by giving ours the percentages that remove pytorch-grad-cam's pixel counts.
- Quantus ``PointingGame`` counts a hit if ANY maximal pixel is in the mask; ours takes the
  first maximum in raster order (``ties="fraction"``: the share of maximal pixels inside).
  Equal on maps with one maximum; the tie cases are asserted.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from functools import partial

import numpy as np
import pytest
import quantus
import torch
import torchcam.metrics as torchcam_metrics
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange, DropInConfidence, IncreaseInConfidence
from pytorch_grad_cam.metrics.perturbation_confidence import RemoveMostRelevantFirst
from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

from xai_pool.metrics import evaluate, rise_blur

from .conftest import TinyCNN

SIDE = 16
PIXELS = SIDE * SIDE


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    net = TinyCNN(num_classes=5).eval()
    with torch.no_grad():
        net.head.weight.mul_(20)  # spread the probabilities: a near-uniform softmax compares little
    return net


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(4, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))


def _unit_maps(batch: int, seed: int, levels: int | None = None) -> torch.Tensor:
    """Float32 maps at image resolution with min exactly 0 and max exactly 1 (``levels``: quantised, with ties)."""
    maps = torch.rand(batch, SIDE, SIDE, generator=torch.Generator().manual_seed(seed))
    if levels is not None:
        maps = torch.floor(maps * levels) / (levels - 1)
    flat = maps.flatten(1)
    low, high = flat.amin(1).view(-1, 1, 1), flat.amax(1).view(-1, 1, 1)
    return ((maps - low) / (high - low)).clamp(0, 1)


@pytest.fixture(scope="module")
def maps() -> torch.Tensor:
    out = _unit_maps(4, seed=2)
    assert all(len(torch.unique(m)) == PIXELS for m in out)  # no ties
    return out


def _probabilities(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(x).double(), dim=1).numpy()


# ---------------------------------------------------------------- torchcam


class _GivenMaps:
    """A torchcam CAM extractor (its ``_CAMExtractor`` protocol) that returns given maps.

    torchcam's metrics take an extractor and compute the map themselves; this one hands them
    our S, so that both libraries score the very same map.
    """

    def __init__(self, model: torch.nn.Module, maps: torch.Tensor) -> None:
        self.model, self.maps = model, maps

    def __call__(self, class_idx=None, scores=None, normalized=True, *, targets=None, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams: list[torch.Tensor]) -> torch.Tensor:
        return cams[0]

    @contextlib.contextmanager
    def _hooks_off(self):
        yield


def _torchcam_per_image(metric_cls, model, images, maps, **kwargs) -> list[dict]:
    out = []
    for i in range(len(images)):
        metric = metric_cls(_GivenMaps(model, maps[i : i + 1]), partial(torch.softmax, dim=-1), **kwargs)
        metric.update(images[i : i + 1])
        out.append(metric.summary())
    return out


def test_average_drop_and_increase_equal_torchcam(model, images, maps) -> None:
    ours = evaluate(model, images, maps, metrics=("ad", "ai"), masking_space="input")
    peer = _torchcam_per_image(torchcam_metrics.ClassificationMetric, model, images, maps)
    np.testing.assert_allclose(ours["ad"] / 100, [r["avg_drop"] for r in peer], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(ours["ai"] / 100, [r["conf_increase"] for r in peer])
    assert ours["ad"].max() > 1  # not vacuous: the masks change the predictions


@pytest.mark.parametrize(("steps", "levels"), [(16, None), (10, None), (16, 5)], ids=["divisible", "partial", "ties"])
def test_deletion_and_insertion_equal_torchcam(model, images, steps: int, levels: int | None) -> None:
    maps = _unit_maps(len(images), seed=3, levels=levels)
    step = math.ceil(PIXELS / steps)  # torchcam: `steps` intervals of ceil(H W / steps) pixels, the last partial
    zeros = evaluate(model, images, maps, metrics=("deletion", "insertion"), step=step, insertion_substrate=0.0)
    peer = _torchcam_per_image(torchcam_metrics.DeletionInsertionMetric, model, images, maps, steps=steps)
    np.testing.assert_allclose(zeros["deletion"] / 100, [r["deletion_auc"] for r in peer], rtol=0, atol=1e-5)
    np.testing.assert_allclose(zeros["insertion"] / 100, [r["insertion_auc"] for r in peer], rtol=0, atol=1e-5)
    # our default insertion (from RISE's blur) equals torchcam's with the blur as its baseline
    blur = evaluate(model, images, maps, metrics=("insertion",), step=step)
    peer_blur = _torchcam_per_image(
        torchcam_metrics.DeletionInsertionMetric, model, images, maps, steps=steps, baseline=rise_blur
    )
    np.testing.assert_allclose(blur["insertion"] / 100, [r["insertion_auc"] for r in peer_blur], rtol=0, atol=1e-5)
    assert np.ptp(zeros["deletion"]) > 1  # not vacuous: the curves differ between images


# ---------------------------------------------------------------- pytorch-grad-cam


def _softmax_targets(model, images) -> list:
    classes = _probabilities(model, images).argmax(axis=1)
    return [ClassifierOutputSoftmaxTarget(int(c)) for c in classes]


def test_confidence_change_equals_pytorch_grad_cam(model, images, maps) -> None:
    ours = evaluate(model, images, maps, metrics=("ad", "ag", "ai"), masking_space="input")
    targets = _softmax_targets(model, images)
    cams = maps.numpy()
    p = _probabilities(model, images).max(axis=1)
    drop = DropInConfidence()(images, cams, targets, model)  # absolute: max(0, p - o)
    increase = IncreaseInConfidence()(images, cams, targets, model)
    change = CamMultImageConfidenceChange()(images, cams, targets, model)  # o - p
    np.testing.assert_allclose(ours["ad"] / 100 * p, drop, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(ours["ai"] / 100, increase)
    np.testing.assert_allclose(ours["ag"] / 100 * (1 - p) - ours["ad"] / 100 * p, change, rtol=0, atol=1e-5)


def _grad_cam_road_counts(cam: np.ndarray, percentiles: list[int]) -> list[int]:
    """Pixels pytorch-grad-cam's MoRF removes at each percentile (recorded from its own remover)."""
    counts = []

    def record(image: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        counts.append(int((keep == 0).sum()))
        return image

    for q in percentiles:
        RemoveMostRelevantFirst(q, record)(torch.zeros(3, SIDE, SIDE), torch.from_numpy(cam))
    return counts


def test_road_pixel_count_differs_from_pytorch_grad_cam_as_documented() -> None:
    # no ties: pytorch-grad-cam's percentile q keeps q% and removes H W - ceil((H W - 1) q / 100) pixels,
    # the pixel at the threshold included; we remove round((100 - q) / 100 * H W)
    cam = _unit_maps(1, seed=4)[0].numpy()
    percentiles = [10, 20, 30, 40, 50, 60, 70, 80, 90]
    theirs = _grad_cam_road_counts(cam, percentiles)
    assert theirs == [PIXELS - math.ceil((PIXELS - 1) * q / 100) for q in percentiles]
    ours = [round((100 - q) / 100 * PIXELS) for q in percentiles]
    assert [t - o for t, o in zip(theirs, ours, strict=True)] == [0, 0, 0, 0, 0, 1, 0, 1, 0]
    # ties: every pixel tied with the threshold goes, so far more than q% can be removed
    tied = _unit_maps(1, seed=4, levels=4)[0].numpy()
    assert _grad_cam_road_counts(tied, [50]) == [int((tied >= np.percentile(tied, 50)).sum())]
    assert _grad_cam_road_counts(tied, [50])[0] > PIXELS // 2 + 10


def test_road_equals_pytorch_grad_cam_with_the_same_pixel_counts(model, images, maps) -> None:
    percentiles = [10, 30, 50, 70, 90]
    for i in range(2):
        x, cam = images[i : i + 1], maps[i : i + 1].numpy()
        targets = _softmax_targets(model, x)
        # the removal percentages that make ours remove pytorch-grad-cam's pixel counts, in its order
        counts = _grad_cam_road_counts(cam[0], percentiles)
        ours_percent = [100 * c / PIXELS for c in counts]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the imputer's np.argwhere on tensors
            torch.manual_seed(0)  # the imputation noise: our seed=0 draws the same sequence
            morf = ROADMostRelevantFirstAverage(percentiles)(x, cam, targets, model)
            lerf = ROADLeastRelevantFirstAverage(percentiles)(x, cam, targets, model)
        ours = evaluate(
            model, x, maps[i : i + 1], metrics=("road_morf", "road_lerf", "road"), road_percentiles=ours_percent, seed=0
        )
        p = _probabilities(model, x).max()
        # pytorch-grad-cam reports p_q - p (averaged over q), ours 100 * p_q
        np.testing.assert_allclose(ours["road_morf"] / 100 - p, morf, rtol=0, atol=1e-5)
        np.testing.assert_allclose(ours["road_lerf"] / 100 - p, lerf, rtol=0, atol=1e-5)
        np.testing.assert_allclose(ours["road"] / 100, (lerf - morf) / 2, rtol=0, atol=1e-5)
    assert abs(float(morf[0])) > 1e-3  # not vacuous: removal changes the probability


# ---------------------------------------------------------------- Quantus


def _quantus(metric, images: torch.Tensor, maps: torch.Tensor, masks: torch.Tensor | None = None) -> np.ndarray:
    kwargs = {} if masks is None else {"s_batch": masks[:, None].numpy().astype(np.float64)}
    with contextlib.redirect_stdout(io.StringIO()):  # Quantus prints its parameter advice
        scores = metric(
            model=None,
            x_batch=images.numpy(),
            y_batch=np.zeros(len(images), dtype=int),
            a_batch=maps[:, None].double().numpy(),
            channel_first=True,
            **kwargs,
        )
    return np.asarray(scores, dtype=np.float64)


def _masks(batch: int) -> torch.Tensor:
    masks = torch.zeros(batch, SIDE, SIDE, dtype=torch.bool)
    for i in range(batch):
        masks[i, 2 * i : 2 * i + 6, 3 : 3 + 4 * (i + 1)] = True
    return masks


def test_energy_pointing_game_equals_quantus_attribution_localisation(images, maps) -> None:
    masks = _masks(len(maps))
    ours = evaluate(torch.nn.Identity(), images, maps, metrics=("energy_pointing_game",), masks=masks)
    theirs = _quantus(quantus.AttributionLocalisation(disable_warnings=True), images, maps, masks)
    np.testing.assert_allclose(ours["energy_pointing_game"] / 100, theirs, rtol=0, atol=1e-5)


def test_pointing_game_equals_quantus_on_maps_with_one_maximum(images, maps) -> None:
    masks = _masks(len(maps))
    peak = maps.flatten(1).argmax(1)
    masks.view(len(maps), -1)[0, peak[0]] = True  # make sure hits and misses both occur
    masks.view(len(maps), -1)[1, peak[1]] = False
    ours = evaluate(torch.nn.Identity(), images, maps, metrics=("pointing_game",), masks=masks)
    theirs = _quantus(quantus.PointingGame(disable_warnings=True), images, maps, masks)
    np.testing.assert_array_equal(ours["pointing_game"] / 100, theirs)
    assert set(theirs.tolist()) == {0.0, 1.0}


def test_pointing_game_ties_quantus_counts_any_maximum() -> None:
    from xai_pool.metrics.localization import pointing_game

    # two tied maxima: (1, 1) outside the mask comes first in raster order, (6, 6) is inside
    s = torch.zeros(1, 8, 8, dtype=torch.float64)
    s[0, 1, 1] = s[0, 6, 6] = 1.0
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 5:, 5:] = True
    x = torch.zeros(1, 3, 8, 8)
    theirs = _quantus(quantus.PointingGame(disable_warnings=True), x, s.float(), mask)
    constant = torch.zeros(1, dtype=torch.bool)
    assert theirs.tolist() == [1.0]  # any maximal pixel inside
    assert pointing_game(s, mask, constant).tolist() == [0.0]  # first maximum in raster order
    assert pointing_game(s, mask, constant, ties="fraction").tolist() == [50.0]  # half of the maxima inside
    # a constant map: every pixel is maximal, so Quantus scores a hit; ours is a miss. (Quantus
    # refuses a batch whose maps are all constant, so the flat map comes with the tied one.)
    both = torch.cat([torch.full((1, 8, 8), 0.5), s.float()])
    masks, xs = mask.expand(2, -1, -1), x.expand(2, -1, -1, -1)
    assert _quantus(quantus.PointingGame(disable_warnings=True), xs, both, masks).tolist() == [1.0, 1.0]
    ours = evaluate(torch.nn.Identity(), xs, both, metrics=("pointing_game",), masks=masks)
    assert ours["pointing_game"].tolist() == [0.0, 0.0]


def test_sparsity_and_complexity_equal_quantus(images, maps) -> None:
    ours = evaluate(torch.nn.Identity(), images, maps, metrics=("sparsity", "complexity"))
    gini = _quantus(quantus.Sparseness(disable_warnings=True, normalise=False), images, maps)
    entropy = _quantus(quantus.Complexity(disable_warnings=True, normalise=False), images, maps)
    np.testing.assert_allclose(ours["sparsity"] / 100, gini, rtol=0, atol=1e-5)
    # Quantus reports the entropy in nats; ours is normalised by its maximum, log(H W), in percent
    np.testing.assert_allclose(ours["complexity"] / 100 * math.log(PIXELS), entropy, rtol=0, atol=1e-5)
