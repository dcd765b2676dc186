"""Saliency metrics with pinned definitions, batched on the model's device.

- :func:`evaluate`: AD/AG/AI, insertion/deletion, pointing games, ROAD, sparsity and
  complexity for a batch of images and maps, one value per image, in percent.
- :func:`evaluate_loader`: the same over a dataset, streamed, sharded under torchrun.
- :func:`summarize` / :func:`compare`: bootstrap confidence intervals and paired Wilcoxon tests.
- :func:`cascading_randomization`: the model-randomisation sanity check.

Definitions, their sources and every option are in ``docs/metrics.md``.

Example:
    >>> from xai_pool.metrics import evaluate, summarize  # doctest: +SKIP
    >>> scores = evaluate(model, x, cams, labels=y)  # doctest: +SKIP
    >>> summarize(scores)["deletion"]  # doctest: +SKIP
"""

from __future__ import annotations

from .evaluate import ALL_METRICS, DEFAULT_METRICS, IMAGENET_MEAN, IMAGENET_STD, evaluate
from .loader import evaluate_loader
from .perturbation import curve_fractions, rise_blur, rise_blur_kernel
from .sanity import cascading_randomization
from .stats import compare, summarize

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "cascading_randomization",
    "compare",
    "curve_fractions",
    "evaluate",
    "evaluate_loader",
    "rise_blur",
    "rise_blur_kernel",
    "summarize",
]
