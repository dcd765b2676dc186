"""``ComparisonResult``: the per-image table, the Table-1-style summary, and its exports."""

from __future__ import annotations

import csv
import io
import json
import math
import platform
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_text

__all__ = ["ComparisonResult", "METRIC_COLUMNS", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1

# (metric key, column title, higher is better) in the paper's Table 1 order, then localisation.
METRIC_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("ad", "AD", False),
    ("ag", "AG", True),
    ("ai", "AI", True),
    ("insertion", "I", True),
    ("deletion", "D", False),
    ("pointing_game", "PG", True),
    ("energy_pointing_game", "EPG", True),
    ("sparsity", "Sparsity", True),
    ("complexity", "Complexity", False),
    ("road", "ROAD", True),
)
_CURVES = ("insertion_curve", "deletion_curve")
_METHOD_TITLES = {
    "raw_attention": "Raw attention",
    "gradcam": "Grad-CAM",
    "gradcam++": "Grad-CAM++",
    "scorecam": "Score-CAM",
}


def method_title(name: str) -> str:
    """Display name of a method (``gradcam++`` -> ``Grad-CAM++``)."""
    return _METHOD_TITLES.get(name, name)


@dataclass
class ComparisonResult:
    """Everything :func:`xai_pool.report.compare` measured.

    Attributes:
        pairs: the (method, pooling) pairs, in order.
        poolings: the poolings compared.
        labels: (N,) ground-truth classes.
        predictions: per pooling, (N,) predicted classes.
        probabilities: per pooling, (N,) top-1 softmax probabilities.
        per_image: per (method, pooling), {metric: (N,) values in percent}.
        mean_curves: per (method, pooling), {"insertion_curve"/"deletion_curve": mean curve}.
        examples: the first images and their maps, for figures.
    """

    pairs: list[tuple[str, str]]
    poolings: tuple[str, ...]
    labels: np.ndarray
    predictions: dict[str, np.ndarray]
    probabilities: dict[str, np.ndarray]
    per_image: dict[tuple[str, str], dict[str, np.ndarray]]
    mean_curves: dict[tuple[str, str], dict[str, np.ndarray]]
    examples: dict[str, Any]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str] | None = None
    confidence: float = 0.95
    seed: int = 0
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_batches(
        cls, records: list[dict[str, Any]], *, pairs: list[tuple[str, str]], **kwargs: Any
    ) -> "ComparisonResult":
        """Assemble per-batch records (in dataset order) from :func:`compare`."""
        if not records:
            raise ValueError("no images were evaluated: the data is empty (or every image was unreadable)")
        poolings = kwargs["poolings"]
        per_image: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        curves: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        for pair in pairs:
            parts = [r["scores"][pair] for r in records]
            per_image[pair] = {
                k: np.concatenate([p[k] for p in parts])
                for k in parts[0]
                if k not in _CURVES and np.asarray(parts[0][k]).ndim == 1
            }
            curves[pair] = {k: np.concatenate([p[k] for p in parts]).mean(axis=0) for k in _CURVES if k in parts[0]}
        examples: dict[str, Any] = {}
        first = [r for r in records if "images" in r]
        if first:
            examples["images"] = np.concatenate([r["images"].numpy() for r in first])
            examples["maps"] = {pair: np.concatenate([r["maps"][pair] for r in first]) for pair in pairs}
            n = len(examples["images"])
            examples["labels"] = np.concatenate([r["labels"] for r in records])[:n]
            examples["pred"] = {p: np.concatenate([r["pred"][p] for r in records])[:n] for p in poolings}
        return cls(
            pairs=list(pairs),
            labels=np.concatenate([r["labels"] for r in records]),
            predictions={p: np.concatenate([r["pred"][p] for r in records]) for p in poolings},
            probabilities={p: np.concatenate([r["prob"][p] for r in records]) for p in poolings},
            per_image=per_image,
            mean_curves=curves,
            examples=examples,
            **kwargs,
        )

    # ------------------------------------------------------------------ numbers
    @property
    def n_images(self) -> int:
        return int(self.labels.shape[0])

    @property
    def metrics(self) -> list[str]:
        """The metric keys present, in Table 1 order."""
        present = {k for values in self.per_image.values() for k in values if k not in ("valid", "target")}
        ordered = [key for key, _, _ in METRIC_COLUMNS if key in present]
        return ordered + sorted(present - set(ordered))

    @cached_property
    def accuracy(self) -> dict[str, dict[str, float]]:
        """Top-1 accuracy (percent) per pooling with its bootstrap confidence interval."""
        from ..metrics import summarize

        return {
            p: summarize(100.0 * (self.predictions[p] == self.labels), confidence=self.confidence, seed=self.seed)
            for p in self.poolings
        }

    @cached_property
    def summary(self) -> list[dict[str, Any]]:
        """One row per (method, pooling, metric): mean, CI, n, and the paired GAP-vs-CA test.

        ``p_value``/``diff`` compare this method's CA and GAP values on the same images
        (Wilcoxon signed-rank; ``diff`` = mean of CA - GAP); None where a pooling is missing.
        """
        from ..metrics import compare as paired_compare
        from ..metrics import summarize

        rows: list[dict[str, Any]] = []
        for method, pooling in self.pairs:
            stats = summarize(
                {k: v for k, v in self.per_image[(method, pooling)].items() if k in self.metrics},
                confidence=self.confidence,
                seed=self.seed,
            )
            other = "gap" if pooling == "ca" else "ca"
            paired = None
            if (method, other) in self.per_image:
                a = self.per_image[(method, "ca")]
                b = self.per_image[(method, "gap")]
                paired = paired_compare(
                    {k: a[k] for k in self.metrics if k in a},
                    {k: b[k] for k in self.metrics if k in b},
                    confidence=self.confidence,
                    seed=self.seed,
                )
            for metric in self.metrics:
                if metric not in stats:
                    continue
                row = {"method": method, "pooling": pooling, "metric": metric, **stats[metric]}
                row["p_value"] = paired[metric]["p_value"] if paired and metric in paired else None
                row["diff_ca_minus_gap"] = paired[metric]["diff"] if paired and metric in paired else None
                rows.append(row)
        return rows

    def _cell(self, method: str, pooling: str, metric: str) -> dict[str, Any] | None:
        for row in self.summary:
            if (row["method"], row["pooling"], row["metric"]) == (method, pooling, metric):
                return row
        return None

    def winners(self) -> dict[tuple[str, str], str]:
        """For each (method, metric) with both poolings: 'ca', 'gap' (significant at 0.05) or 'tie'."""
        higher = {key: better for key, _, better in METRIC_COLUMNS}
        out = {}
        for method in dict.fromkeys(m for m, _ in self.pairs):
            for metric in self.metrics:
                ca, gap = self._cell(method, "ca", metric), self._cell(method, "gap", metric)
                if ca is None or gap is None or ca["p_value"] is None:
                    continue
                if ca["p_value"] >= 0.05 or ca["diff_ca_minus_gap"] == 0:
                    out[(method, metric)] = "tie"
                else:
                    ca_better = (ca["diff_ca_minus_gap"] > 0) == higher.get(metric, True)
                    out[(method, metric)] = "ca" if ca_better else "gap"
        return out

    # ------------------------------------------------------------------ tables
    def table_rows(self) -> list[dict[str, Any]]:
        """Wide rows (one per method x pooling) with ``<metric>``, ``<metric>_ci_low``,
        ``<metric>_ci_high``, ``<metric>_p_value`` columns, as written to ``metrics.csv``."""
        rows = []
        for method, pooling in self.pairs:
            row: dict[str, Any] = {"method": method, "pooling": pooling}
            for metric in self.metrics:
                cell = self._cell(method, pooling, metric)
                if cell is None:
                    continue
                row[metric] = cell["mean"]
                row[f"{metric}_ci_low"] = cell["ci_low"]
                row[f"{metric}_ci_high"] = cell["ci_high"]
                row[f"{metric}_p_value"] = cell["p_value"]
                row["n"] = cell["n"]
            acc = self.accuracy[pooling]
            row.update(accuracy=acc["mean"], accuracy_ci_low=acc["ci_low"], accuracy_ci_high=acc["ci_high"])
            rows.append(row)
        return rows

    def to_markdown(self) -> str:
        """The summary as Markdown: accuracy, then Table 1 (mean [95% CI], p-value of CA vs GAP)."""
        lines = [
            f"Images: {self.n_images}. Cells: mean [{self.confidence:.0%} bootstrap CI]; "
            "p: paired Wilcoxon signed-rank test of CA vs GAP on the same images.",
            "",
        ]
        lines += ["| Pooling | Accuracy (%) |", "|---|---|"]
        for p in self.poolings:
            acc = self.accuracy[p]
            lines.append(f"| {p.upper()} | {acc['mean']:.2f} [{acc['ci_low']:.2f}, {acc['ci_high']:.2f}] |")
        titles = {key: (title, better) for key, title, better in METRIC_COLUMNS}
        header = ["Method", "Pooling"] + [
            f"{titles.get(m, (m, True))[0]} {'↑' if titles.get(m, (m, True))[1] else '↓'}" for m in self.metrics
        ]
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for method, pooling in self.pairs:
            cells = []
            for metric in self.metrics:
                cell = self._cell(method, pooling, metric)
                if cell is None:
                    cells.append("")
                    continue
                text = f"{cell['mean']:.2f} [{cell['ci_low']:.2f}, {cell['ci_high']:.2f}]"
                if pooling == "ca" and cell["p_value"] is not None:
                    text += f" p={_fmt_p(cell['p_value'])}"
                cells.append(text)
            lines.append(f"| {method_title(method)} | {pooling.upper()} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def findings(self) -> str:
        """Two plain sentences: where CA beat GAP significantly, and where it did not."""
        wins = self.winners()
        titles = {key: title for key, title, _ in METRIC_COLUMNS}
        ca = [f"{method_title(m)} {titles.get(k, k)}" for (m, k), w in wins.items() if w == "ca"]
        gap = [f"{method_title(m)} {titles.get(k, k)}" for (m, k), w in wins.items() if w == "gap"]
        tie = [f"{method_title(m)} {titles.get(k, k)}" for (m, k), w in wins.items() if w == "tie"]
        acc = " / ".join(f"{p.upper()} {self.accuracy[p]['mean']:.1f}%" for p in self.poolings)
        first = (
            f"CA was significantly better than GAP (p < 0.05) on: {', '.join(ca)}."
            if ca
            else "CA was significantly better than GAP on no metric."
        )
        second = (
            f"GAP was significantly better on: {', '.join(gap) or 'nothing'}; no significant difference on: "
            f"{', '.join(tie) or 'nothing'} (accuracy {acc})."
        )
        return f"{first} {second}"

    # ------------------------------------------------------------------ exports
    def to_csv(self, path: str | Path) -> Path:
        """One row per method x pooling with every metric, its CI and p-value (atomic write)."""
        rows = self.table_rows()
        columns = list(dict.fromkeys(k for row in rows for k in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in columns})
        return atomic_write_text(path, buffer.getvalue())

    def to_per_image_csv(self, path: str | Path) -> Path:
        """Long per-image table: one row per image x method x pooling (atomic write)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["image", "method", "pooling", "label", "prediction", "probability", *self.metrics])
        for (method, pooling), values in self.per_image.items():
            for i in range(self.n_images):
                writer.writerow(
                    [
                        i,
                        method,
                        pooling,
                        int(self.labels[i]),
                        int(self.predictions[pooling][i]),
                        f"{self.probabilities[pooling][i]:.6f}",
                        *(_csv_value(values[m][i]) if m in values else "" for m in self.metrics),
                    ]
                )
        return atomic_write_text(path, buffer.getvalue())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary with versions, configuration and timing."""
        import torch

        from .._version import __version__

        return {
            "schema_version": SCHEMA_VERSION,
            "xai_pool_version": __version__,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "n_images": self.n_images,
            "seconds": round(self.seconds, 2),
            "confidence": self.confidence,
            "config": self.config,
            "accuracy": self.accuracy,
            "summary": [{k: _json_value(v) for k, v in row.items()} for row in self.summary],
            "findings": self.findings(),
        }

    def to_json(self, path: str | Path) -> Path:
        """:meth:`to_dict` as JSON (atomic write)."""
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def to_pandas(self):
        """The per-image table as a long pandas DataFrame (pandas is optional)."""
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

    def figures(self) -> dict[str, Any]:
        """The report's matplotlib figures by file stem (side-by-side maps, curves, bars)."""
        from .figures import build_figures

        return build_figures(self)

    def to_html(self, path: str | Path, *, title: str = "xai_pool: GAP vs CA") -> Path:
        """One self-contained HTML file (figures embedded as base64 PNG; atomic write)."""
        from .html import render_html

        return atomic_write_text(path, render_html(self, title=title))


def _fmt_p(p: float) -> str:
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{float(value):.6g}"
    return value


def _json_value(value: Any) -> Any:
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
