"""Grouped bar charts of the metrics: one panel per metric, methods as groups, poolings as bars."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._style import (
    LABEL_SIZE,
    SUPTITLE_SIZE,
    TICK_SIZE,
    TITLE_SIZE,
    method_label,
    new_figure,
    plain_text,
    pooling_color,
    pooling_key,
    pooling_label,
    sort_poolings,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["metric_bars"]


def _registry() -> dict[str, tuple[str, str]]:
    """Canonical key -> (display name, which direction is better), from the metric registry."""
    # imported here: the registry's package loads torch, and importing xai_pool.viz must not
    from ..metrics.registry import ACCURACY, METRICS

    return {m.key: (m.label, m.direction) for m in (*METRICS.values(), ACCURACY)}


_ALIASES = {
    "i": "insertion",
    "ins": "insertion",
    "d": "deletion",
    "del": "deletion",
    "pg": "pointing_game",
    "pointing": "pointing_game",
    "epg": "energy_pointing_game",
    "energy_pointing": "energy_pointing_game",
    "acc": "accuracy",
}


@dataclass(frozen=True)
class _Value:
    mean: float
    ci_low: float
    ci_high: float
    n: int | None


def metric_bars(
    summary: Any,
    metrics: Sequence[str] | None = None,
    *,
    methods: Sequence[str] | None = None,
    poolings: Sequence[str] | None = None,
    ncols: int | None = None,
    title: str | None = None,
    value_labels: bool = True,
    panel_size: tuple[float, float] = (3.4, 2.9),
) -> Figure:
    """Grouped bar charts of every metric with 95% confidence-interval error bars.

    One panel per metric; in each panel the groups are the CAM methods and the bars the
    poolings (GAP grey, CA orange, others in further colours). Titles say which direction
    is better, e.g. "AD (lower is better)".

    ``summary`` may take three forms:

    * long rows: an iterable of dicts (or objects with these attributes), one per
      method x pooling x metric: ``{"method": "gradcam", "pooling": "ca", "metric": "ad",
      "mean": 12.3, "ci_low": 11.0, "ci_high": 13.5, "n": 200}``; ``ci_low``/``ci_high``
      and ``n`` are optional (no error bar without a CI);
    * a mapping ``{(method, pooling): {metric: {"mean": .., "ci_low": .., "ci_high": ..}}}``
      where a metric's value may also be a bare number (no error bar);
    * a pandas DataFrame with the long-row columns.

    Metric names are case-insensitive; ``i``/``d``, ``pg``/``epg`` and ``acc`` are read as
    insertion, deletion, pointing game, energy pointing game and accuracy.

    Args:
        summary: the metric summary, in one of the forms above.
        metrics: metrics to draw, in order; default every metric present (AD, AG, AI,
            insertion, deletion, pointing game, energy pointing game, sparsity, complexity,
            ROAD, accuracy first, then any others).
        methods: methods to draw, in order; default all, in order of first appearance.
        poolings: poolings to draw, in order; default GAP, CA, then any others.
        ncols: panels per row (default: at most 4, rows filled evenly).
        title: figure title; default says the bars are means with 95% CIs (and n if unique).
        value_labels: write each mean above its bar.
        panel_size: (width, height) of one panel in inches.

    Returns:
        A ``matplotlib.figure.Figure`` (not registered with pyplot).

    Raises:
        TypeError: ``summary`` is not one of the forms above.
        ValueError: a row misses a field, a value is not finite, a CI has
            ``ci_low > ci_high``, or a requested metric/method/pooling is absent.
    """
    table = _parse(summary)
    if not table:
        raise ValueError("summary is empty: pass at least one method x pooling x metric value")
    metric_keys = _select_metrics(table, metrics)
    method_keys = _select(list(dict.fromkeys(m for m, _ in table)), methods, "method", lambda v: str(v))
    pool_keys = _select(sort_poolings(list(dict.fromkeys(p for _, p in table))), poolings, "pooling", pooling_key)
    others = [p for p in pool_keys if p not in ("gap", "ca")]

    if ncols is None:  # at most 4 per row, rows as evenly filled as possible (7 -> 4 + 3)
        ncols = math.ceil(len(metric_keys) / math.ceil(len(metric_keys) / 4))
    if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    nrows = math.ceil(len(metric_keys) / ncols)
    fig = new_figure(panel_size[0] * ncols, panel_size[1] * nrows + 0.8)
    gs = fig.add_gridspec(nrows, ncols)
    width = 0.8 / len(pool_keys)
    tick_labels = [method_label(m) for m in method_keys]
    # Slant the method names when they would not fit side by side (about 0.6 em per char).
    text_inches = sum(len(t) for t in tick_labels) * TICK_SIZE * 0.6 / 72
    rotation = 25 if text_inches > 0.8 * panel_size[0] else 0
    handles = {}
    for index, metric in enumerate(metric_keys):
        ax = fig.add_subplot(gs[divmod(index, ncols)])
        tops = []
        for j, pooling in enumerate(pool_keys):
            for i, method in enumerate(method_keys):
                value = table.get((method, pooling), {}).get(metric)
                if value is None:
                    continue
                position = i - 0.4 + width * (j + 0.5)
                err = [[max(value.mean - value.ci_low, 0.0)], [max(value.ci_high - value.mean, 0.0)]]
                has_ci = not (np.isnan(value.ci_low) or np.isnan(value.ci_high))
                bar = ax.bar(
                    position,
                    value.mean,
                    width=width * 0.92,
                    color=pooling_color(pooling, others),
                    yerr=err if has_ci else None,
                    capsize=3,
                    error_kw={"elinewidth": 1, "ecolor": "#333333"},
                )
                handles.setdefault(pooling, bar)
                top = value.ci_high if has_ci else value.mean
                tops.append(top)
                if value_labels:
                    ax.annotate(
                        plain_text(_fmt(value.mean)),
                        (position, top),
                        xytext=(0, 2),
                        textcoords="offset points",
                        ha="center",
                        va="bottom",
                        fontsize=TICK_SIZE - 1.5,
                    )
        ax.set_xticks(range(len(method_keys)))
        ax.set_xticklabels(
            [plain_text(label) for label in tick_labels],
            fontsize=TICK_SIZE,
            rotation=rotation,
            ha="right" if rotation else "center",
            rotation_mode="anchor",
        )
        ax.set_xlim(-0.6, len(method_keys) - 0.4)
        ax.tick_params(axis="y", labelsize=TICK_SIZE)
        ax.set_title(plain_text(_metric_title(metric)), fontsize=TITLE_SIZE)
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        if tops and min(tops) >= 0:
            ax.set_ylim(0, max(tops) * 1.15 or 1.0)  # headroom for the value labels
    order = [p for p in pool_keys if p in handles]
    fig.legend(
        [handles[p] for p in order],
        [plain_text(pooling_label(p)) for p in order],
        loc="outside lower center",  # at the top it would collide with the suptitle
        ncols=len(order),
        fontsize=LABEL_SIZE,
        frameon=False,
    )
    fig.suptitle(plain_text(title if title is not None else _default_title(table)), fontsize=SUPTITLE_SIZE)
    return fig


def _parse(summary: Any) -> dict[tuple[str, str], dict[str, _Value]]:
    if hasattr(summary, "to_dict") and hasattr(summary, "columns"):  # a pandas DataFrame
        summary = summary.to_dict("records")
    table: dict[tuple[str, str], dict[str, _Value]] = {}
    if isinstance(summary, Mapping):
        for key, per_metric in summary.items():
            if not (isinstance(key, tuple) and len(key) == 2):
                raise TypeError(f"summary mapping keys must be (method, pooling) tuples, got {key!r}")
            if not isinstance(per_metric, Mapping):
                raise TypeError(f"summary[{key!r}] must map metric names to values, got {type(per_metric).__name__}")
            cell = table.setdefault((str(key[0]), pooling_key(key[1])), {})
            for metric, value in per_metric.items():
                cell[_metric_key(metric)] = _value(value, f"summary[{key!r}][{metric!r}]")
        return table
    if isinstance(summary, (str, bytes)) or not isinstance(summary, Iterable):
        raise TypeError(
            "summary must be a list of rows {method, pooling, metric, mean, ci_low, ci_high}, a mapping "
            f"{{(method, pooling): {{metric: value}}}} or a DataFrame, got {type(summary).__name__}"
        )
    for index, row in enumerate(summary):
        fields = {name: _field(row, name, index) for name in ("method", "pooling", "metric", "mean")}
        value = {"mean": fields["mean"]}
        for name in ("ci_low", "ci_high", "n"):
            found = row.get(name) if isinstance(row, Mapping) else getattr(row, name, None)
            if found is not None:
                value[name] = found
        cell = table.setdefault((str(fields["method"]), pooling_key(fields["pooling"])), {})
        cell[_metric_key(fields["metric"])] = _value(value, f"summary row {index}")
    return table


def _field(row: Any, name: str, index: int) -> Any:
    if isinstance(row, Mapping):
        if name not in row:
            raise ValueError(f"summary row {index} has no {name!r} field: rows need method, pooling, metric, mean")
        return row[name]
    if not hasattr(row, name):
        raise TypeError(f"summary row {index} ({type(row).__name__}) is neither a mapping nor has a {name!r} attribute")
    return getattr(row, name)


def _value(value: Any, name: str) -> _Value:
    if isinstance(value, Mapping):
        if "mean" not in value:
            raise ValueError(f"{name} has no 'mean'")
        mean = _number(value["mean"], name)
        low = _number(value.get("ci_low"), name, optional=True)
        high = _number(value.get("ci_high"), name, optional=True)
        n = value.get("n")
    else:
        mean, low, high, n = _number(value, name), float("nan"), float("nan"), None
    if np.isnan(mean):
        raise ValueError(f"{name} has a non-finite mean")
    if np.isnan(low) != np.isnan(high):
        raise ValueError(f"{name} gives only one of ci_low and ci_high; give both or neither")
    if low > high:
        raise ValueError(f"{name} has ci_low {low} > ci_high {high}")
    if n is not None and not np.isfinite(float(n)):
        n = None  # a DataFrame stores a missing count as NaN
    return _Value(mean, low, high, None if n is None else int(n))


def _number(value: Any, name: str, optional: bool = False) -> float:
    if value is None and optional:
        return float("nan")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected a number, got {value!r}") from exc
    if np.isinf(number) or (np.isnan(number) and not optional):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return number


def _metric_key(metric: Any) -> str:
    key = str(metric).strip().lower().replace(" ", "_").replace("-", "_")
    return _ALIASES.get(key, key)


def _select_metrics(table: dict[tuple[str, str], dict[str, _Value]], metrics: Any) -> list[str]:
    present = list(dict.fromkeys(m for cell in table.values() for m in cell))
    if metrics is None:
        known = _registry()
        return [m for m in known if m in present] + [m for m in present if m not in known]
    if isinstance(metrics, str):
        metrics = [metrics]
    return _select(present, metrics, "metric", _metric_key)


def _select(present: list[str], wanted: Sequence[Any] | None, what: str, canon: Callable[[Any], str]) -> list[str]:
    if wanted is None:
        return present
    chosen = [canon(w) for w in wanted]
    missing = [w for w in chosen if w not in present]
    if missing or not chosen:
        raise ValueError(f"{what}(s) {missing} not in the summary; available: {present}")
    return chosen


def _metric_title(metric: str) -> str:
    name, better = _registry().get(metric, (metric, None))
    return f"{name} ({better} is better)" if better else name


def _default_title(table: dict[tuple[str, str], dict[str, _Value]]) -> str:
    sizes = {v.n for cell in table.values() for v in cell.values() if v.n is not None}
    suffix = f", n = {sizes.pop()} images" if len(sizes) == 1 else ""
    return f"Mean with 95% confidence interval{suffix}"


def _fmt(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
