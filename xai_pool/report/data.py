"""The report as plain data: per-image values, curves, kept examples, and statistics computed once.

:class:`ReportData` holds what a GAP-vs-CA comparison measured and, computed once when it is
built, its statistics: the mean of every metric with its bootstrap confidence interval, the
top-1 accuracy, and one paired test per (method, metric) of CA against GAP, its p-value
adjusted for multiple comparisons over the whole family of tests (Holm by default) with the
raw p-value kept beside it. Nothing here formats or draws: :mod:`.tables`, :mod:`.figures`
and :mod:`.writer` read this data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..metrics.driver import Examples, Pair
from ..metrics.registry import METRICS

__all__ = ["SCHEMA_VERSION", "ReportData"]

#: version of the files' layout (metrics.json, metrics.csv, per_image.csv)
SCHEMA_VERSION = 2


@dataclass
class ReportData:
    """Everything a comparison measured, and its statistics.

    Attributes:
        pairs: the (method, pooling) pairs, in order.
        poolings: the poolings compared.
        labels: (N,) ground-truth classes.
        predictions: per pooling, (N,) predicted classes.
        probabilities: per pooling, (N,) top-1 softmax probabilities.
        per_image: per pair, {metric: (N,) values in percent} (plus ``valid`` and ``target``).
        mean_curves: per pair, {"insertion_curve"/"deletion_curve": (n + 1,) mean curve}.
        curve_x: per curve kind ("insertion"/"deletion"), the (n + 1,) fraction of pixels
            changed at each point of the mean curves.
        examples: the first images and their maps, keyed by image index (row of the
            per-image table), or None.
        mean: per-channel normalisation mean of the images.
        std: per-channel normalisation std of the images.
        class_names: names of the classes, or None.
        confidence: level of the confidence intervals.
        seed: seed of the bootstrap.
        p_adjustment: multiple-comparison adjustment of the paired tests ("holm", "bh", "none").
        alpha: significance level applied to the adjusted p-values.
        config: the run's options (methods, metrics, step, substrates...).
        seconds: wall time of the run (reported in run.json, not in the tables).
        runtime: how the run went (processes, batches computed and reused), for run.json only:
            results do not depend on it.
        metrics: computed: the metric keys present, in registry (Table 1) order.
        accuracy: computed: per pooling, top-1 accuracy (%) with its bootstrap CI.
        tests: computed: one paired CA-vs-GAP test per (method, metric): ``diff`` (mean of
            CA - GAP), its CI, ``p_value`` (raw), ``p_adjusted``, ``n`` and ``better``
            ("ca", "gap" or "tie", at adjusted p < alpha in the metric's direction).
        summary: computed: one row per (method, pooling, metric): mean, CI, n, n_skipped and
            the pair's ``p_value``, ``p_adjusted`` and ``diff_ca_minus_gap`` (None without a
            paired test).
    """

    pairs: list[Pair]
    poolings: tuple[str, ...]
    labels: np.ndarray
    predictions: dict[str, np.ndarray]
    probabilities: dict[str, np.ndarray]
    per_image: dict[Pair, dict[str, np.ndarray]]
    mean_curves: dict[Pair, dict[str, np.ndarray]] = field(default_factory=dict)
    curve_x: dict[str, np.ndarray] = field(default_factory=dict)
    examples: Examples | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    class_names: list[str] | None = None
    confidence: float = 0.95
    seed: int = 0
    p_adjustment: str = "holm"
    alpha: float = 0.05
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    runtime: dict[str, Any] = field(default_factory=dict)
    metrics: list[str] = field(init=False)
    accuracy: dict[str, dict[str, float]] = field(init=False)
    tests: list[dict[str, Any]] = field(init=False)
    summary: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        from ..metrics.stats import P_ADJUSTMENTS

        if self.p_adjustment not in P_ADJUSTMENTS:
            raise ValueError(f"p_adjustment must be one of {list(P_ADJUSTMENTS)}; got {self.p_adjustment!r}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1); got {self.alpha}")
        if self.n_images == 0:
            raise ValueError("no images were evaluated: the data is empty (or every image was unreadable)")
        self.metrics = _present_metrics(self.per_image)
        self.accuracy = self._accuracy()
        self.tests = self._paired_tests()
        self.summary = self._summary()

    @property
    def n_images(self) -> int:
        """Number of images evaluated."""
        return int(self.labels.shape[0])

    @property
    def methods(self) -> list[str]:
        """The methods, in order of first appearance in ``pairs``."""
        return list(dict.fromkeys(method for method, _ in self.pairs))

    def cell(self, method: str, pooling: str, metric: str) -> dict[str, Any] | None:
        """The summary row of (method, pooling, metric), or None."""
        return self._cells.get((method, pooling, metric))

    def test(self, method: str, metric: str) -> dict[str, Any] | None:
        """The paired CA-vs-GAP test of (method, metric), or None."""
        return self._tests.get((method, metric))

    def winners(self) -> dict[tuple[str, str], str]:
        """For each (method, metric) with both poolings: 'ca', 'gap' (significant after adjustment) or 'tie'."""
        return {(t["method"], t["metric"]): t["better"] for t in self.tests}

    # ------------------------------------------------------------------ statistics, once
    def _accuracy(self) -> dict[str, dict[str, float]]:
        from ..metrics import summarize

        return {
            p: summarize(100.0 * (self.predictions[p] == self.labels), confidence=self.confidence, seed=self.seed)
            for p in self.poolings
        }

    def _paired_tests(self) -> list[dict[str, Any]]:
        from ..metrics.stats import adjust_p_values, compare

        tests = []
        for method in self.methods:
            ca, gap = self.per_image.get((method, "ca")), self.per_image.get((method, "gap"))
            if ca is None or gap is None:
                continue
            shared = [m for m in self.metrics if m in ca and m in gap]
            if not shared:
                continue
            paired = compare(
                {m: ca[m] for m in shared}, {m: gap[m] for m in shared}, confidence=self.confidence, seed=self.seed
            )
            for metric in shared:
                result = paired[metric]
                tests.append(
                    {
                        "method": method,
                        "metric": metric,
                        "diff": result["diff"],
                        "ci_low": result["ci_low"],
                        "ci_high": result["ci_high"],
                        "p_value": result["p_value"],
                        "n": result["n"],
                    }
                )
        adjusted = adjust_p_values([t["p_value"] for t in tests], self.p_adjustment)
        for t, p in zip(tests, adjusted, strict=True):
            t["p_adjusted"] = float(p)
            t["better"] = _better(t["metric"], t["diff"], float(p), self.alpha)
        self._tests = {(t["method"], t["metric"]): t for t in tests}
        return tests

    def _summary(self) -> list[dict[str, Any]]:
        from ..metrics import summarize

        rows: list[dict[str, Any]] = []
        for method, pooling in self.pairs:
            values = self.per_image[(method, pooling)]
            stats = summarize(
                {k: v for k, v in values.items() if k in self.metrics}, confidence=self.confidence, seed=self.seed
            )
            for metric in self.metrics:
                if metric not in stats:
                    continue
                test = self._tests.get((method, metric))
                rows.append(
                    {
                        "method": method,
                        "pooling": pooling,
                        "metric": metric,
                        **stats[metric],
                        "p_value": test["p_value"] if test else None,
                        "p_adjusted": test["p_adjusted"] if test else None,
                        "diff_ca_minus_gap": test["diff"] if test else None,
                    }
                )
        self._cells = {(r["method"], r["pooling"], r["metric"]): r for r in rows}
        return rows


def _present_metrics(per_image: dict[Pair, dict[str, np.ndarray]]) -> list[str]:
    """Metric keys present, registry order first, then any others sorted."""
    present = {k for values in per_image.values() for k in values if k not in ("valid", "target")}
    ordered = [key for key in METRICS if key in present]
    return ordered + sorted(present - set(ordered))


def _better(metric: str, diff: float, p_adjusted: float, alpha: float) -> str:
    if not p_adjusted < alpha or diff == 0 or np.isnan(diff):
        return "tie"
    higher = METRICS[metric].higher_is_better if metric in METRICS else True
    return "ca" if (diff > 0) == higher else "gap"
