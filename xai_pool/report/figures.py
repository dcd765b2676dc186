"""The report's figures, built from a :class:`~xai_pool.report.data.ReportData` with :mod:`xai_pool.viz`.

Each kept example carries its image index, and its title and predictions are looked up by
that index, so they follow the image whatever process computed it. The curves are drawn
against the x coordinates stored with them (the exact fraction of pixels changed at each
point, including a partial last step).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .data import ReportData

__all__ = ["build_figures", "mpl_text"]


def mpl_text(text: str) -> str:
    """``text`` safe for a matplotlib label: ``$`` would start mathtext, so it is escaped."""
    return str(text).replace("$", r"\$")


def build_figures(data: ReportData) -> dict[str, Any]:
    """``{file stem: Figure}``: side-by-side maps, attention grid, curves and metric bars."""
    from .. import viz

    figures: dict[str, Any] = {}
    names = [mpl_text(n) for n in data.class_names] if data.class_names else None
    examples = data.examples
    if examples is not None and len(examples.indices):
        at = examples.indices
        methods: dict[str, dict[str, Any]] = {}
        for method, pooling in data.pairs:
            if method != "raw_attention":
                methods.setdefault(method, {})[pooling] = examples.maps[(method, pooling)]
        raw = examples.maps.get(("raw_attention", "ca"))
        titles = [f"#{i}, true: {names[int(data.labels[i])] if names else int(data.labels[i])}" for i in at]
        figures["side_by_side"] = viz.side_by_side(
            examples.images,
            raw_attention=raw,
            methods=methods or None,
            predictions={p: data.predictions[p][at] for p in data.poolings},
            titles=titles,
            class_names=names,
            mean=data.mean,
            std=data.std,
            suptitle="Saliency maps: GAP vs CA (paper Figure 2 layout)",
        )
        if raw is not None:
            figures["attention_grid"] = viz.attention_grid(
                examples.images,
                raw,
                titles=titles,
                mean=data.mean,
                std=data.std,
                suptitle="Raw CA attention (class-agnostic)",
            )
    for kind in ("insertion", "deletion"):
        key = f"{kind}_curve"
        curves = {pair: c[key] for pair, c in data.mean_curves.items() if key in c and np.isfinite(c[key]).all()}
        if curves and kind in data.curve_x:
            auc = {pair: data.cell(*pair, kind)["mean"] for pair in curves if data.cell(*pair, kind) is not None}
            figures[f"{kind}_curves"] = viz.insertion_deletion_curves(curves, kind=kind, x=data.curve_x[kind], auc=auc)
    rows = [r for r in data.summary if np.isfinite(r["mean"])]
    for pooling, acc in data.accuracy.items():
        for method in dict.fromkeys(m for m, p in data.pairs if p == pooling and m != "raw_attention"):
            rows.append({"method": method, "pooling": pooling, "metric": "accuracy", **acc})
    if rows:
        figures["metric_bars"] = viz.metric_bars(rows)
    return figures
