"""The report's figures, built from a ComparisonResult with :mod:`xai_pool.viz`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .results import ComparisonResult

__all__ = ["build_figures"]


def build_figures(result: "ComparisonResult") -> dict[str, Any]:
    """``{file stem: Figure}``: side-by-side maps, attention grid, curves and metric bars."""
    from .. import viz
    from ..metrics import curve_fractions

    figures: dict[str, Any] = {}
    examples = result.examples
    if examples.get("images") is not None and len(examples["images"]):
        maps = examples["maps"]
        methods: dict[str, dict[str, Any]] = {}
        for method, pooling in result.pairs:
            if method != "raw_attention":
                methods.setdefault(method, {})[pooling] = maps[(method, pooling)]
        raw = maps.get(("raw_attention", "ca"))
        names = result.class_names
        titles = [f"#{i}, true: {names[int(y)] if names else int(y)}" for i, y in enumerate(examples["labels"])]
        figures["side_by_side"] = viz.side_by_side(
            examples["images"],
            raw_attention=raw,
            methods=methods or None,
            predictions=examples["pred"],
            titles=titles,
            class_names=names,
            mean=result.mean,
            std=result.std,
            suptitle="Saliency maps: GAP vs CA (paper Figure 2 layout)",
        )
        if raw is not None:
            figures["attention_grid"] = viz.attention_grid(
                examples["images"],
                raw,
                titles=titles,
                mean=result.mean,
                std=result.std,
                suptitle="Raw CA attention (class-agnostic)",
            )
    for kind in ("insertion", "deletion"):
        curves = {pair: c[f"{kind}_curve"] for pair, c in result.mean_curves.items() if f"{kind}_curve" in c}
        if curves:
            n_points = len(next(iter(curves.values())))
            x = _fractions(curve_fractions, n_points, result)
            auc = {
                pair: float(result.per_image[pair][kind].mean()) for pair in curves if kind in result.per_image[pair]
            }
            figures[f"{kind}_curves"] = viz.insertion_deletion_curves(curves, kind=kind, x=x, auc=auc)
    rows = list(result.summary)
    for pooling, acc in result.accuracy.items():
        for method in dict.fromkeys(m for m, p in result.pairs if p == pooling and m != "raw_attention"):
            rows.append({"method": method, "pooling": pooling, "metric": "accuracy", **acc})
    figures["metric_bars"] = viz.metric_bars(rows)
    return figures


def _fractions(curve_fractions: Any, n_points: int, result: "ComparisonResult") -> Any:
    # The x axis depends on the image size and step; recover it from the kept example images.
    images = result.examples.get("images")
    step = result.config.get("step")
    if images is None:
        return None
    height, width = images.shape[-2:]
    fractions = curve_fractions(height, width, step or width)
    return fractions if len(fractions) == n_points else None
