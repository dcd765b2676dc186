"""GAP-vs-CA comparison reports.

- :func:`compare` explains a dataset with every method for both poolings and scores every
  map, in one pass (a thin layer over :func:`xai_pool.metrics.run_dataset`).
- :class:`ComparisonResult` (a :class:`ReportData`) holds the per-image values, the mean
  curves with their x coordinates, the kept examples keyed by image index and the
  statistics computed once: means with 95% bootstrap CIs, accuracy, and one paired Wilcoxon
  test of CA vs GAP per method and metric with its p-value adjusted over the family (Holm by
  default, Benjamini-Hochberg as an option; raw p kept).
- :func:`write_report` writes every file (CSV, JSON, Markdown, PNG, self-contained HTML)
  from that data, each figure built once, into a folder replaced whole or not at all.

Modules depend in one direction: data <- tables, figures <- writer <- result <- runner.
"""

from __future__ import annotations

from .data import SCHEMA_VERSION, ReportData
from .result import ComparisonResult
from .runner import DEFAULT_METHODS, DEFAULT_REPORT_METRICS, LOCALISATION_METRICS, compare
from .writer import check_output_dir, is_complete, write_report

__all__ = [
    "DEFAULT_METHODS",
    "DEFAULT_REPORT_METRICS",
    "LOCALISATION_METRICS",
    "SCHEMA_VERSION",
    "ComparisonResult",
    "ReportData",
    "check_output_dir",
    "compare",
    "is_complete",
    "write_report",
]
