"""The report's tables as data (:class:`Table`), rendered to Markdown and to HTML from the same data.

Three tables: accuracy per pooling; the Table-1-style summary (one row per method and
pooling, one column per metric: mean [CI], with the adjusted p-value of the paired test in
CA cells); and the paired tests (CA - GAP with its CI, raw and adjusted p, which pooling is
better). Every caption says what the cells are, which test was run and how its p-values were
adjusted. Titles and directions come from the metric registry.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

from ..metrics.registry import ACCURACY, METRICS, metric_info
from ..viz._style import method_label
from .data import ReportData

__all__ = [
    "Table",
    "findings",
    "legend",
    "markdown_report",
    "per_image_rows",
    "report_tables",
    "table_html",
    "table_markdown",
    "wide_rows",
]

_TEST = "paired two-sided Wilcoxon signed-rank test of CA vs GAP on the same images"
_ADJUSTED = {"holm": "Holm", "bh": "BH", "none": "raw"}


@dataclass(frozen=True)
class Table:
    """One table: a caption (what the cells are), a header and rows of cell strings.

    Attributes:
        caption: one or two sentences shown above the table.
        header: column titles.
        rows: cell strings, one list per row.
        left: how many leading columns are text (left-aligned in HTML).
    """

    caption: str
    header: list[str]
    rows: list[list[str]]
    left: int = 1


def _metric_title(key: str) -> str:
    return metric_info(key).title if key in METRICS or key == ACCURACY.key else key


def _metric_header(key: str) -> str:
    if key in METRICS:
        return f"{METRICS[key].title} {METRICS[key].arrow}"
    return key


def _fmt_p(p: float) -> str:
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


def _ci(mean: float, low: float, high: float) -> str:
    if math.isnan(mean):
        return "n/a"
    if math.isnan(low) or math.isnan(high):
        return f"{mean:.2f}"
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]"


def adjustment_text(data: ReportData) -> str:
    """How the p-values were adjusted, e.g. ``"Holm-adjusted over the 21 tests of the report (...)"``."""
    if data.p_adjustment == "none":
        return "not adjusted for multiple comparisons"
    name, controls = {
        "holm": ("Holm", "the family-wise error rate"),
        "bh": ("Benjamini-Hochberg", "the false discovery rate"),
    }[data.p_adjustment]
    return f"{name}-adjusted over the {len(data.tests)} tests of the report (controls {controls})"


def accuracy_table(data: ReportData) -> Table:
    """Top-1 accuracy per pooling with its bootstrap interval."""
    rows = [
        [p.upper(), _ci(data.accuracy[p]["mean"], data.accuracy[p]["ci_low"], data.accuracy[p]["ci_high"])]
        for p in data.poolings
    ]
    return Table(
        caption=f"Top-1 accuracy (%), mean [{data.confidence:.0%} bootstrap CI] over {data.n_images} images.",
        header=["Pooling", "Accuracy (%)"],
        rows=rows,
    )


def metrics_table(data: ReportData) -> Table:
    """Table 1: one row per method and pooling, mean [CI] per metric; CA cells carry the adjusted p."""
    caption = (
        f"Images: {data.n_images}. Cells: mean [{data.confidence:.0%} bootstrap CI]; ↑/↓: higher/lower is better. "
        f"p in CA cells: {_TEST}, {adjustment_text(data)}; raw p in the paired-tests table."
    )
    rows = []
    for method, pooling in data.pairs:
        cells = []
        for metric in data.metrics:
            cell = data.cell(method, pooling, metric)
            if cell is None:
                cells.append("")
                continue
            text = _ci(cell["mean"], cell["ci_low"], cell["ci_high"])
            if pooling == "ca" and cell["p_adjusted"] is not None:
                text += f" p={_fmt_p(cell['p_adjusted'])}"
            cells.append(text)
        rows.append([method_label(method), pooling.upper(), *cells])
    return Table(caption, ["Method", "Pooling", *(_metric_header(m) for m in data.metrics)], rows, left=2)


def tests_table(data: ReportData) -> Table | None:
    """The paired tests: CA - GAP [CI], raw p, adjusted p, and the better pooling."""
    if not data.tests:
        return None
    name = _ADJUSTED[data.p_adjustment]
    caption = (
        f"Paired tests, CA vs GAP: {_TEST}; CA - GAP is the mean paired difference with its "
        f"{data.confidence:.0%} bootstrap CI; p ({name}) is {adjustment_text(data)}; "
        f"'better' is the pooling that wins at {name} p < {data.alpha:g} in the metric's direction."
    )
    rows = []
    for t in data.tests:
        better = {"ca": "CA", "gap": "GAP", "tie": "-"}[t["better"]]
        rows.append(
            [
                method_label(t["method"]),
                _metric_header(t["metric"]),
                _ci(t["diff"], t["ci_low"], t["ci_high"]),
                _fmt_p(t["p_value"]),
                _fmt_p(t["p_adjusted"]),
                better,
            ]
        )
    header = ["Method", "Metric", "CA - GAP", "p (raw)", f"p ({name})", "Better"]
    return Table(caption, header, rows, left=2)


def report_tables(data: ReportData) -> list[Table]:
    """The tables of the report, in order."""
    tables = [accuracy_table(data), metrics_table(data)]
    tests = tests_table(data)
    return tables + ([tests] if tests is not None else [])


def findings(data: ReportData) -> str:
    """Two plain sentences: where CA beat GAP significantly (after adjustment), and where it did not."""
    wins = data.winners()

    def names(which: str) -> list[str]:
        return [f"{method_label(m)} {_metric_title(k)}" for (m, k), w in wins.items() if w == which]

    ca, gap, tie = names("ca"), names("gap"), names("tie")
    acc = " / ".join(f"{p.upper()} {data.accuracy[p]['mean']:.1f}%" for p in data.poolings)
    if data.p_adjustment == "none":
        rule = f"p < {data.alpha:g}, unadjusted, {len(data.tests)} paired tests"
    else:
        rule = f"{_ADJUSTED[data.p_adjustment]}-adjusted p < {data.alpha:g} over {len(data.tests)} paired tests"
    first = (
        f"CA was significantly better than GAP ({rule}) on: {', '.join(ca)}."
        if ca
        else f"CA was significantly better than GAP ({rule}) on no metric."
    )
    second = (
        f"GAP was significantly better on: {', '.join(gap) or 'nothing'}; no significant difference on: "
        f"{', '.join(tie) or 'nothing'} (accuracy {acc})."
    )
    return f"{first} {second}"


def legend(data: ReportData) -> str:
    """One sentence per metric present: its title, name and direction (from the registry)."""
    parts = [
        f"{METRICS[m].title} ({METRICS[m].description}): {METRICS[m].direction} is better"
        for m in data.metrics
        if m in METRICS
    ]
    return "; ".join(parts) + "."


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> str:
    """The table as a Markdown pipe table, preceded by its caption."""
    lines = [table.caption, "", "| " + " | ".join(_md_cell(h) for h in table.header) + " |"]
    lines.append("|" + "---|" * len(table.header))
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines) + "\n"


def table_html(table: Table) -> str:
    """The table as HTML (every string escaped), its caption as a paragraph above it."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = []
    for row in table.rows:
        cells = "".join(
            f"<td class='{'l' if i < table.left else 'r'}'>{html.escape(c)}</td>" for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f"<p class='note'>{html.escape(table.caption)}</p>\n<table><tr>{head}</tr>\n" + "\n".join(body) + "\n</table>"
    )


def markdown_report(data: ReportData) -> str:
    """Every table in Markdown, separated by blank lines."""
    return "\n".join(table_markdown(t) for t in report_tables(data))


# ---------------------------------------------------------------------- rows for CSV / pandas
def wide_rows(data: ReportData) -> list[dict[str, Any]]:
    """One row per method x pooling: ``<metric>``, its CI, raw and adjusted p, n and accuracy (metrics.csv)."""
    rows = []
    for method, pooling in data.pairs:
        row: dict[str, Any] = {"method": method, "pooling": pooling}
        for metric in data.metrics:
            cell = data.cell(method, pooling, metric)
            if cell is None:
                continue
            row[metric] = cell["mean"]
            row[f"{metric}_ci_low"] = cell["ci_low"]
            row[f"{metric}_ci_high"] = cell["ci_high"]
            row[f"{metric}_p_value"] = cell["p_value"]
            row[f"{metric}_p_adjusted"] = cell["p_adjusted"]
            row["n"] = cell["n"]
        acc = data.accuracy[pooling]
        row.update(accuracy=acc["mean"], accuracy_ci_low=acc["ci_low"], accuracy_ci_high=acc["ci_high"])
        row["p_adjustment"] = data.p_adjustment
        rows.append(row)
    return rows


def per_image_rows(data: ReportData) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the long per-image table: one row per image x method x pooling."""
    header = ["image", "method", "pooling", "label", "prediction", "probability", *data.metrics]
    rows = []
    for (method, pooling), values in data.per_image.items():
        for i in range(data.n_images):
            rows.append(
                [
                    i,
                    method,
                    pooling,
                    int(data.labels[i]),
                    int(data.predictions[pooling][i]),
                    float(data.probabilities[pooling][i]),
                    *(float(values[m][i]) if m in values else None for m in data.metrics),
                ]
            )
    return header, rows
