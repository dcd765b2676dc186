"""summarize / compare on known data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from xai_pool.metrics import compare, summarize


def test_summarize_known_values():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    out = summarize(values)
    assert out["mean"] == 2.5 and out["n"] == 4 and out["n_skipped"] == 0
    assert 1.0 <= out["ci_low"] < 2.5 < out["ci_high"] <= 4.0
    assert summarize(values) == out  # seeded: reproducible
    other = summarize(values, seed=1)
    assert other["mean"] == 2.5 and 1.0 <= other["ci_low"] < 2.5 < other["ci_high"] <= 4.0


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


def test_summarize_interval_narrows_with_confidence():
    rng = np.random.default_rng(0)
    values = rng.normal(size=50)
    wide = summarize(values, confidence=0.99)
    narrow = summarize(values, confidence=0.5)
    assert wide["ci_low"] < narrow["ci_low"] < narrow["ci_high"] < wide["ci_high"]


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
