"""summarize / compare on known data."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
from scipy import stats

from xai_pool.metrics import compare, summarize


def _percentile_bootstrap(values: np.ndarray, confidence: float, n_resamples: int, seed: int) -> np.ndarray:
    """The percentile bootstrap by hand, with the index draws scipy.stats.bootstrap makes.

    scipy (batch=None) draws all resample indices at once, ``rng.integers(0, n, (n_resamples, n))``
    from the generator it is given, and takes ``np.percentile`` (linear) of the resampled means.
    """
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_resamples, len(values)))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return np.percentile(means, [100 * alpha, 100 * (1 - alpha)])


def _generator_kwarg(generator: np.random.Generator) -> dict:
    # scipy >= 1.15 takes `rng`, older releases `random_state`
    return {"rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state": generator}


@pytest.mark.parametrize(("confidence", "n_resamples", "seed"), [(0.95, 10_000, 0), (0.5, 2_000, 3), (0.99, 5_000, 1)])
def test_summarize_interval_is_the_percentile_bootstrap_of_the_mean(confidence, n_resamples, seed):
    values = np.random.default_rng(5).normal(size=37)
    out = summarize(values, confidence=confidence, n_resamples=n_resamples, seed=seed)
    assert out["mean"] == values.mean() and out["n"] == 37 and out["n_skipped"] == 0
    expected = _percentile_bootstrap(values, confidence, n_resamples, seed)
    np.testing.assert_allclose([out["ci_low"], out["ci_high"]], expected, rtol=0, atol=1e-12)
    # and scipy's own bootstrap on the same generator (the defaults documented in docs/metrics.md)
    scipy_ci = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        **_generator_kwarg(np.random.default_rng(seed)),
    ).confidence_interval
    np.testing.assert_allclose([out["ci_low"], out["ci_high"]], [scipy_ci.low, scipy_ci.high], rtol=0, atol=1e-12)


def test_compare_interval_is_the_bootstrap_of_the_paired_differences():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=25), rng.normal(size=25) + 0.5
    out = compare(a, b)
    expected = _percentile_bootstrap(a - b, 0.95, 10_000, 0)
    np.testing.assert_allclose([out["ci_low"], out["ci_high"]], expected, rtol=0, atol=1e-12)
    assert out["diff"] == pytest.approx((a - b).mean(), abs=1e-15)
    assert out["p_value"] == stats.wilcoxon(a - b).pvalue


def test_summarize_dict_skips_nan_curves_and_non_float_arrays():
    per_image = {
        "ad": np.array([10.0, np.nan, 30.0]),
        "insertion_curve": np.zeros((3, 5)),
        "valid": np.array([True, False, True]),
        "target": np.array([1, -1, 2]),
    }
    out = summarize(per_image)
    assert list(out) == ["ad"]
    assert out["ad"]["mean"] == 20.0 and out["ad"]["n"] == 2 and out["ad"]["n_skipped"] == 1


def test_summarize_constant_sample_has_zero_width_interval():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = summarize(np.full(7, 3.0))
    assert (out["mean"], out["ci_low"], out["ci_high"]) == (3.0, 3.0, 3.0)


def test_compare_shifted_copy():
    a = np.arange(20.0) * 2.5
    out = compare(a, a + 1)
    assert out["diff"] == pytest.approx(-1.0)
    assert out["ci_low"] == pytest.approx(-1.0) and out["ci_high"] == pytest.approx(-1.0)
    assert out["n"] == 20
    # all 20 differences are -1: scipy's signed-rank test (normal approximation with the tie
    # correction, since every |d| ties) gives a tiny p
    assert out["p_value"] == pytest.approx(stats.wilcoxon(np.full(20, -1.0)).pvalue)
    assert out["p_value"] < 1e-4


def test_compare_identical_gives_p_one_without_nan_or_warning():
    a = np.array([1.0, 5.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = compare(a, a.copy())
    assert out["diff"] == 0.0 and out["p_value"] == 1.0
    assert (out["ci_low"], out["ci_high"]) == (0.0, 0.0)


def test_compare_dicts_and_nan_pairs():
    a = {"ad": np.array([1.0, 2.0, np.nan, 4.0]), "valid": np.ones(4, bool)}
    b = {"ad": np.array([0.0, 1.0, 1.0, 3.0]), "ai": np.zeros(4)}
    out = compare(a, b)
    assert list(out) == ["ad"]
    assert out["ad"]["n"] == 3 and out["ad"]["diff"] == pytest.approx(1.0)
    assert out["ad"]["mean_a"] == pytest.approx(7 / 3) and out["ad"]["mean_b"] == pytest.approx(4 / 3)


def test_bad_inputs():
    with pytest.raises(ValueError, match="same images"):
        compare(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="confidence must be in"):
        summarize(np.ones(3), confidence=95)
    with pytest.raises(ValueError, match="1-D"):
        summarize(np.ones((2, 2)))
    with pytest.raises(TypeError, match="both be arrays or both be dicts"):
        compare({"ad": np.ones(2)}, np.ones(2))
    with pytest.raises(ValueError, match="share no per-image metric"):
        compare({"ad": np.ones(2)}, {"ag": np.ones(2)})
