"""``ComparisonResult``: the report data with one-line shortcuts to its tables, figures and files.

The data and its statistics live in :class:`~.data.ReportData`; the formatting in
:mod:`.tables`, the figures in :mod:`.figures`, the files in :mod:`.writer`. Each method here
only calls one of those, so nothing computes, formats and renders in one place, and no
module imports this one except the runner.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import atomic_write_text
from . import figures as _figures
from . import tables as _tables
from . import writer as _writer
from .data import ReportData

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ComparisonResult"]


class ComparisonResult(ReportData):
    """What :func:`xai_pool.report.compare` measured (see :class:`~.data.ReportData`), with shortcuts."""

    def findings(self) -> str:
        """Two plain sentences on where CA beat GAP after the p-value adjustment."""
        return _tables.findings(self)

    def to_markdown(self) -> str:
        """Every table in Markdown (accuracy, Table 1 with adjusted p, paired tests)."""
        return _tables.markdown_report(self)

    def table_rows(self) -> list[dict[str, Any]]:
        """The rows of ``metrics.csv`` (one per method x pooling)."""
        return _tables.wide_rows(self)

    def figures(self) -> dict[str, Any]:
        """The report's matplotlib figures by file stem (side-by-side maps, curves, bars)."""
        return _figures.build_figures(self)

    def to_dict(self) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        return _writer.metrics_dict(self)

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write ``metrics.csv`` (atomic write)."""
        return atomic_write_text(path, _writer.metrics_csv(self))

    def to_per_image_csv(self, path: str | os.PathLike) -> Path:
        """Write the long per-image table (atomic write)."""
        return atomic_write_text(path, _writer.per_image_csv(self))

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write ``metrics.json`` (atomic write)."""
        import json

        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def to_html(self, path: str | os.PathLike, *, title: str = "xai_pool: GAP vs CA") -> Path:
        """Write one self-contained HTML page (figures embedded; atomic write)."""
        return atomic_write_text(path, _writer.report_html(self, title, _writer.render_figures(self)))

    def write(
        self, out: str | os.PathLike, *, title: str = "xai_pool: GAP vs CA", run_info: dict[str, Any] | None = None
    ) -> list[Path]:
        """Write every report file to the folder ``out``, whole or not at all (:func:`~.writer.write_report`)."""
        return _writer.write_report(self, out, title=title, run_info=run_info)

    def to_pandas(self) -> pd.DataFrame:
        """The per-image table as a long pandas DataFrame (pandas is optional).

        Returns:
            One row per image x method x pooling: image index, method, pooling, label,
            prediction, then one column per metric.

        Raises:
            ImportError: pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError("to_pandas needs pandas: pip install pandas") from exc
        frames = []
        for (method, pooling), values in self.per_image.items():
            frame = pd.DataFrame({m: values[m] for m in self.metrics if m in values})
            frame.insert(0, "image", np.arange(self.n_images))
            frame.insert(1, "method", method)
            frame.insert(2, "pooling", pooling)
            frame.insert(3, "label", self.labels)
            frame.insert(4, "prediction", self.predictions[pooling])
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)
