"""Saliency metrics with pinned definitions, batched on the model's device.

- :func:`evaluate`: AD/AG/AI, insertion/deletion, pointing games, ROAD, sparsity and
  complexity for a batch of images and maps, one value per image, in percent.
- :func:`run_dataset`: the one loop over a dataset: any set of named explainers scored in
  one pass, clean forwards and substrates shared, sharded under torchrun, resumable.
- :func:`evaluate_loader`: one explainer over a dataset (a thin layer over ``run_dataset``).
- :func:`summarize` / :func:`compare` / :func:`adjust_p_values`: bootstrap confidence
  intervals, paired Wilcoxon tests, Holm / Benjamini-Hochberg corrections.
- :data:`METRICS`: the registry (title, direction, needs) of every metric.
- :func:`cascading_randomization`: the model-randomisation sanity check.

Definitions, their sources and every option are in ``docs/metrics.md``.

Example:
    >>> from xai_pool.metrics import evaluate, summarize  # doctest: +SKIP
    >>> scores = evaluate(model, x, cams, labels=y)  # doctest: +SKIP
    >>> summarize(scores)["deletion"]  # doctest: +SKIP
"""

from __future__ import annotations

from .driver import Evaluation, Examples, run_dataset
from .evaluate import ALL_METRICS, DEFAULT_METRICS, IMAGENET_MEAN, IMAGENET_STD, Protocol, evaluate
from .loader import evaluate_loader
from .perturbation import curve_fractions, named_substrate, rise_blur, rise_blur_kernel
from .registry import METRICS, Metric, metric_info
from .sanity import cascading_randomization
from .stats import P_ADJUSTMENTS, adjust_p_values, compare, summarize
from .store import BatchStore

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "METRICS",
    "P_ADJUSTMENTS",
    "BatchStore",
    "Evaluation",
    "Examples",
    "Metric",
    "Protocol",
    "adjust_p_values",
    "cascading_randomization",
    "compare",
    "curve_fractions",
    "evaluate",
    "evaluate_loader",
    "metric_info",
    "named_substrate",
    "rise_blur",
    "rise_blur_kernel",
    "run_dataset",
    "summarize",
]
