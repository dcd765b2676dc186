"""GAP-vs-CA comparison reports.

:func:`compare` explains a dataset with every method for both poolings and scores every map;
the :class:`ComparisonResult` it returns holds the per-image table and the Table-1-style
summary (means, 95% bootstrap CIs, paired Wilcoxon p-values of CA vs GAP), and writes
Markdown, CSV, JSON, self-contained HTML, and pandas.
"""

from __future__ import annotations

from .results import METRIC_COLUMNS, ComparisonResult
from .runner import DEFAULT_METHODS, DEFAULT_REPORT_METRICS, LOCALISATION_METRICS, compare

__all__ = [
    "compare",
    "ComparisonResult",
    "DEFAULT_METHODS",
    "DEFAULT_REPORT_METRICS",
    "LOCALISATION_METRICS",
    "METRIC_COLUMNS",
]
