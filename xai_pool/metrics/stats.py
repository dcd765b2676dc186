"""Aggregation and paired comparison of per-image metric values.

- :func:`summarize`: mean, 95% bootstrap confidence interval of the mean (percentile
  method, seeded, ``scipy.stats.bootstrap``) and n, per metric.
- :func:`compare`: for two methods scored on the same images, the mean paired difference
  a - b with its bootstrap confidence interval and the two-sided Wilcoxon signed-rank
  p-value (``scipy.stats.wilcoxon``).
- :func:`adjust_p_values`: a family of p-values corrected for multiple comparisons (Holm's
  step-down, controlling the family-wise error rate, or Benjamini-Hochberg's step-up,
  controlling the false discovery rate).

NaN values (images skipped with ``on_invalid="skip"``) are left out and counted in
``n_skipped``; ``compare`` drops a pair when either side is NaN. Degenerate data never
produces NaN: a constant sample has the zero-width interval [c, c], and when every paired
difference is 0 the p-value is 1 (no evidence of a difference).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["P_ADJUSTMENTS", "adjust_p_values", "compare", "summarize"]

ArrayOrDict = np.ndarray | Mapping[str, Any]

#: names accepted by :func:`adjust_p_values`, with what each controls
P_ADJUSTMENTS: dict[str, str] = {
    "holm": "Holm (family-wise error rate)",
    "bh": "Benjamini-Hochberg (false discovery rate)",
    "none": "no adjustment",
}


def adjust_p_values(p_values: Any, method: str = "holm") -> np.ndarray:
    """Adjust a family of p-values for multiple comparisons.

    - ``"holm"`` (Holm 1979, step-down): sort the m p-values, multiply the k-th smallest
      (k = 1..m) by m - k + 1, take the running maximum, cap at 1. Rejecting where the
      adjusted p < alpha controls the family-wise error rate at alpha, under any dependence.
    - ``"bh"`` (Benjamini & Hochberg 1995, step-up): multiply the k-th smallest by m / k,
      take the running minimum from the largest down, cap at 1; rejecting where the adjusted
      p < alpha controls the false discovery rate at alpha for independent or positively
      dependent tests. Equal to ``scipy.stats.false_discovery_control(p, method="bh")``.
    - ``"none"``: the p-values unchanged.

    NaN entries are left out of the family and stay NaN.

    Args:
        p_values: 1-D array-like of p-values in [0, 1] (NaN allowed).
        method: ``"holm"``, ``"bh"`` or ``"none"``.

    Returns:
        float64 array of adjusted p-values, in the input order.

    Raises:
        ValueError: unknown method, not 1-D, or a value outside [0, 1].

    Example:
        >>> adjust_p_values([0.01, 0.04, 0.03], "holm").round(4).tolist()
        [0.03, 0.06, 0.06]
    """
    if method not in P_ADJUSTMENTS:
        raise ValueError(f"method must be one of {list(P_ADJUSTMENTS)}; got {method!r}")
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-D; got shape {p.shape}")
    finite = ~np.isnan(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise ValueError("p_values must lie in [0, 1]")
    out = p.copy()
    family = p[finite]
    m = family.size
    if method == "none" or m == 0:
        return out
    order = np.argsort(family, kind="stable")
    ranked = family[order]
    k = np.arange(1, m + 1)
    if method == "holm":
        adjusted = np.maximum.accumulate(ranked * (m - k + 1))
    else:
        adjusted = np.minimum.accumulate((ranked * m / k)[::-1])[::-1]
    result = np.empty(m)
    result[order] = np.minimum(adjusted, 1.0)
    out[finite] = result
    return out


def summarize(
    per_image: ArrayOrDict,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, dict[str, float]] | dict[str, float]:
    """Mean, bootstrap confidence interval and count of per-image metric values.

    Args:
        per_image: the dict returned by :func:`~xai_pool.metrics.evaluate` (every 1-D float
            array is summarised; curves, ``valid`` and ``target`` are skipped), or one 1-D array.
        confidence: confidence level of the interval.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling, so the interval is reproducible.

    Returns:
        For a dict, ``{metric: {"mean", "ci_low", "ci_high", "n", "n_skipped"}}``; for an
        array, that inner dict.

    Raises:
        ValueError: ``confidence`` is not in (0, 1) or an array is not 1-D.

    Example:
        >>> summarize({"ad": np.array([10.0, 20.0, 30.0])})["ad"]["mean"]
        20.0
    """
    _check_confidence(confidence)
    if isinstance(per_image, Mapping):
        return {
            name: _summary(np.asarray(values), confidence, n_resamples, seed, name)
            for name, values in per_image.items()
            if _is_metric(values)
        }
    return _summary(np.asarray(per_image), confidence, n_resamples, seed, "per_image")


def compare(
    a: ArrayOrDict,
    b: ArrayOrDict,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, dict[str, float]] | dict[str, float]:
    """Paired comparison of two methods scored on the same images.

    Args:
        a: per-image values of method A (array, or dict as returned by ``evaluate``).
        b: per-image values of method B, same images in the same order.
        confidence: confidence level of the interval of the mean difference.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling.

    Returns:
        ``{"mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_value", "n"}`` where ``diff`` is
        the mean of a - b and ``p_value`` the two-sided Wilcoxon signed-rank p-value (zero
        differences dropped, scipy's default); for dicts, one such dict per metric present in
        both.

    Raises:
        ValueError: the arrays differ in length or are not 1-D, or the dicts share no metric.
    """
    _check_confidence(confidence)
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise TypeError("a and b must both be arrays or both be dicts of per-image arrays")
    if isinstance(a, Mapping):
        names = [name for name, values in a.items() if _is_metric(values) and name in b and _is_metric(b[name])]
        if not names:
            raise ValueError("a and b share no per-image metric to compare")
        return {
            name: _compare(np.asarray(a[name]), np.asarray(b[name]), confidence, n_resamples, seed, name)
            for name in names
        }
    return _compare(np.asarray(a), np.asarray(b), confidence, n_resamples, seed, "a")


def _is_metric(values: Any) -> bool:
    arr = np.asarray(values)
    return arr.ndim == 1 and arr.dtype.kind == "f"


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")


def _as_1d(values: np.ndarray, name: str) -> np.ndarray:
    if values.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of per-image values; got shape {values.shape}")
    if values.dtype.kind not in "fiub":
        raise TypeError(f"{name} must hold numbers; got dtype {values.dtype}")
    return values.astype(np.float64)


def _mean_ci(values: np.ndarray, confidence: float, n_resamples: int, seed: int) -> tuple[float, float]:
    if values.size == 0:
        return float("nan"), float("nan")
    if values.size == 1 or np.all(values == values[0]):
        # every resample has the same mean: the interval has zero width
        return float(values[0]), float(values[0])
    from scipy import stats

    result = stats.bootstrap(
        (values,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        vectorized=True,
        **_rng_kwarg(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _rng_kwarg(seed: int) -> dict[str, Any]:
    from scipy import stats

    # scipy >= 1.15 takes `rng`; older releases only `random_state`
    if "rng" in inspect.signature(stats.bootstrap).parameters:
        return {"rng": np.random.default_rng(seed)}
    return {"random_state": np.random.default_rng(seed)}


def _summary(values: np.ndarray, confidence: float, n_resamples: int, seed: int, name: str) -> dict[str, float]:
    values = _as_1d(values, name)
    finite = values[~np.isnan(values)]
    low, high = _mean_ci(finite, confidence, n_resamples, seed)
    return {
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "ci_low": low,
        "ci_high": high,
        "n": int(finite.size),
        "n_skipped": int(values.size - finite.size),
    }


def _compare(
    a: np.ndarray, b: np.ndarray, confidence: float, n_resamples: int, seed: int, name: str
) -> dict[str, float]:
    a = _as_1d(a, name)
    b = _as_1d(b, name)
    if a.shape != b.shape:
        raise ValueError(
            f"paired comparison needs the same images in a and b; got {a.size} and {b.size} values for {name}"
        )
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    diff = a - b
    low, high = _mean_ci(diff, confidence, n_resamples, seed)
    if np.count_nonzero(diff) == 0:
        p_value = 1.0  # scipy's wilcoxon has nothing to rank once zero differences are dropped
    else:
        from scipy import stats

        p_value = float(stats.wilcoxon(diff).pvalue)
    nan = float("nan")
    return {
        "mean_a": float(a.mean()) if a.size else nan,
        "mean_b": float(b.mean()) if b.size else nan,
        "diff": float(diff.mean()) if diff.size else nan,
        "ci_low": low,
        "ci_high": high,
        "p_value": p_value,
        "n": int(diff.size),
    }
