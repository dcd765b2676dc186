"""The metric registry: one entry per metric, read by the evaluator, the tables, the bars and the HTML.

Each :class:`Metric` says what the metric is called (``title`` in table columns, ``name``
in figure panels), which direction is better, what it needs besides the saliency map
(``"model"``: forward passes; ``"masks"``: object masks) and which part of the engine
computes it (``group``). Nothing else in the package keeps its own list of metric names,
titles or directions.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ACCURACY",
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "METRICS",
    "Metric",
    "metric_info",
    "metrics_in_group",
]


@dataclass(frozen=True)
class Metric:
    """What the package knows about one metric.

    Attributes:
        key: the name passed to ``evaluate(metrics=...)`` and used as column key.
        title: short column title (``"AD"``, ``"I"``), as in the paper's Table 1.
        label: figure panel title (``"AD"``, ``"Insertion"``).
        description: what it is, for legends (``"Average Drop"``).
        higher_is_better: the direction in which a method is better.
        needs: what the metric needs besides the maps: ``"model"`` and/or ``"masks"``.
        group: the engine part computing it: ``"confidence"`` (AD/AG/AI), ``"curve"``
            (insertion/deletion), ``"localization"``, ``"road"``, ``"map"`` (map-only) or
            ``"accuracy"`` (not a saliency metric; shown in tables and bars).
    """

    key: str
    title: str
    label: str
    description: str
    higher_is_better: bool
    needs: tuple[str, ...]
    group: str

    @property
    def arrow(self) -> str:
        """``"↑"`` when higher is better, else ``"↓"``."""
        return "↑" if self.higher_is_better else "↓"

    @property
    def direction(self) -> str:
        """``"higher"`` or ``"lower"`` (is better)."""
        return "higher" if self.higher_is_better else "lower"


_MODEL, _MASKS = ("model",), ("masks",)

# The paper's Table 1 order first, then localisation, map-only metrics and ROAD.
METRICS: dict[str, Metric] = {
    m.key: m
    for m in (
        Metric("ad", "AD", "AD", "Average Drop", False, _MODEL, "confidence"),
        Metric("ag", "AG", "AG", "Average Gain", True, _MODEL, "confidence"),
        Metric("ai", "AI", "AI", "Average Increase", True, _MODEL, "confidence"),
        Metric("insertion", "I", "Insertion", "insertion AUC", True, _MODEL, "curve"),
        Metric("deletion", "D", "Deletion", "deletion AUC", False, _MODEL, "curve"),
        Metric("pointing_game", "PG", "Pointing game", "pointing game", True, _MASKS, "localization"),
        Metric(
            "energy_pointing_game", "EPG", "Energy pointing game", "energy pointing game", True, _MASKS, "localization"
        ),
        Metric("sparsity", "Sparsity", "Sparsity", "Gini index of the map", True, (), "map"),
        Metric("complexity", "Complexity", "Complexity", "entropy of the map", False, (), "map"),
        Metric("road", "ROAD", "ROAD", "(LeRF - MoRF) / 2", True, _MODEL, "road"),
        Metric("road_morf", "ROAD MoRF", "ROAD MoRF", "most relevant pixels removed first", False, _MODEL, "road"),
        Metric("road_lerf", "ROAD LeRF", "ROAD LeRF", "least relevant pixels removed first", True, _MODEL, "road"),
    )
}

#: Top-1 accuracy: not a saliency metric, but a column of the tables and a panel of the bars.
ACCURACY = Metric("accuracy", "Acc", "Accuracy", "top-1 accuracy", True, _MODEL, "accuracy")

ALL_METRICS: tuple[str, ...] = tuple(METRICS)
DEFAULT_METRICS: tuple[str, ...] = ("ad", "ag", "ai", "insertion", "deletion")


def metric_info(key: str) -> Metric:
    """The registry entry of ``key`` (``"accuracy"`` included).

    Raises:
        ValueError: ``key`` is not a known metric.
    """
    if key == ACCURACY.key:
        return ACCURACY
    try:
        return METRICS[key]
    except KeyError:
        raise ValueError(f"unknown metric {key!r}; choose from {list(METRICS)}") from None


def metrics_in_group(group: str) -> tuple[str, ...]:
    """Keys of the metrics computed by one part of the engine, in registry order."""
    return tuple(key for key, m in METRICS.items() if m.group == group)
