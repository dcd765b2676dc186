"""xai_pool.viz.insertion_deletion_curves and metric_bars: legends, titles, CIs, input forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.collections import PolyCollection
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from xai_pool.viz import insertion_deletion_curves, metric_bars

# xai_pool.viz builds matplotlib Figures outside pyplot: none may be left in pyplot's registry
pytestmark = pytest.mark.usefixtures("no_pyplot_figures_left")


def _legend(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


# ---------------------------------------------------------------- curves


def test_curves_auc_in_legend_and_gap_dashed_ca_solid() -> None:
    x = np.linspace(0, 1, 11)
    fig = insertion_deletion_curves(
        {("gradcam", "gap"): x, ("gradcam", "ca"): np.sqrt(x), ("scorecam", "ca"): torch.from_numpy(x**2)},
        kind="insertion",
    )
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    labels = _legend(fig)
    assert labels[0] == "Grad-CAM / GAP (AUC 50.0)"
    assert labels[1].startswith("Grad-CAM / CA (AUC 66.")
    assert labels[2].startswith("Score-CAM / CA (AUC 33.")
    gap, ca, score = fig.axes[0].get_lines()
    assert gap.get_linestyle() == "--" and ca.get_linestyle() == "-"
    assert gap.get_color() == ca.get_color() != score.get_color()  # one colour per method
    assert "higher" in fig.axes[0].get_title()


def test_per_image_curves_draw_mean_and_band() -> None:
    rng = np.random.default_rng(0)
    curves = rng.random((20, 5))
    fig = insertion_deletion_curves({"Grad-CAM / CA": curves}, kind="deletion")
    (line,) = fig.axes[0].get_lines()
    assert np.allclose(line.get_ydata(), curves.mean(axis=0))
    assert any(isinstance(c, PolyCollection) for c in fig.axes[0].collections)
    assert "lower" in fig.axes[0].get_title()
    assert _legend(fig)[0].startswith("Grad-CAM / CA (AUC ")


def test_curves_use_given_x_and_precomputed_auc() -> None:
    x = np.array([0.0, 0.1, 1.0])
    y = np.array([0.0, 1.0, 1.0])
    fig = insertion_deletion_curves({"A": y, "B": y}, x=x, auc={"B": 12.345})
    assert _legend(fig) == ["A (AUC 95.0)", "B (AUC 12.3)"]
    assert np.array_equal(fig.axes[0].get_lines()[0].get_xdata(), x)


@pytest.mark.parametrize(
    ("curves", "kwargs", "error", "match"),
    [
        ({"A": np.ones(3)}, {"kind": "both"}, ValueError, "'insertion' or 'deletion'"),
        ({}, {}, ValueError, "empty"),
        ([np.ones(3)], {}, TypeError, "mapping"),
        ({"A": np.ones((2, 2, 3))}, {}, ValueError, "n_points"),
        ({"A": np.ones(1)}, {}, ValueError, "at least 2 points"),
        ({"A": np.array([0.1, np.nan])}, {}, ValueError, "NaN"),
        ({"A": np.ones(3)}, {"x": np.linspace(0, 1, 4)}, ValueError, "one x per point"),
        ({"A": np.ones(3)}, {"x": np.array([0.0, 0.8, 0.5])}, ValueError, "non-decreasing"),
        ({("a", "b", "c"): np.ones(3)}, {}, ValueError, r"\(method, pooling\)"),
    ],
)
def test_curves_bad_inputs(curves, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        insertion_deletion_curves(curves, **kwargs)


# ---------------------------------------------------------------- bars


def _rows() -> list[dict]:
    rows = []
    for method, offset in (("gradcam", 0.0), ("scorecam", 5.0)):
        for pooling, shift in (("ca", 1.0), ("gap", 0.0)):
            for metric, base in (("ad", 12.0), ("deletion", 14.0), ("ag", 20.0)):
                mean = base + offset + shift
                rows.append(
                    {
                        "method": method,
                        "pooling": pooling,
                        "metric": metric,
                        "mean": mean,
                        "ci_low": mean - 1,
                        "ci_high": mean + 2,
                        "n": 50,
                    }
                )
    return rows


def _bar_values(ax) -> list[float]:
    return [patch.get_height() for patch in ax.patches]


def test_metric_bars_panels_titles_and_legend() -> None:
    fig = metric_bars(_rows())
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == [
        "AD (lower is better)",
        "AG (higher is better)",
        "Deletion (lower is better)",
    ]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["GAP", "CA"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["Grad-CAM", "Score-CAM"]
    # GAP bars drawn first, then CA, each across methods
    assert _bar_values(fig.axes[0]) == [12.0, 17.0, 13.0, 18.0]
    assert "n = 50" in fig._suptitle.get_text()


def test_metric_bars_error_bars_span_the_ci() -> None:
    fig = metric_bars(_rows(), metrics=["ad"])
    ax = fig.axes[0]
    spans = sorted(
        (float(seg[:, 1].min()), float(seg[:, 1].max()))
        for container in ax.containers
        if isinstance(container, BarContainer)
        for collection in container.errorbar.lines[2]
        for seg in collection.get_segments()
    )
    assert spans == [(11.0, 14.0), (12.0, 15.0), (16.0, 19.0), (17.0, 20.0)]


def test_metric_bars_mapping_form_and_bare_numbers() -> None:
    summary = {
        ("gradcam", "gap"): {"AD": {"mean": 12.0, "ci_low": 11.0, "ci_high": 14.0}, "I": 70.0},
        ("gradcam", "CA"): {"AD": {"mean": 13.0, "ci_low": 12.0, "ci_high": 15.0}, "I": 72.0},
    }
    fig = metric_bars(summary)
    assert [ax.get_title() for ax in fig.axes] == ["AD (lower is better)", "Insertion (higher is better)"]
    assert _bar_values(fig.axes[1]) == [70.0, 72.0]
    bars = [c for c in fig.axes[1].containers if isinstance(c, BarContainer)]
    assert len(bars) == 2 and all(c.errorbar is None for c in bars)  # no CI, no error bar


class _FakeFrame:
    """Duck-typed stand-in for a pandas DataFrame (pandas is optional)."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows, self.columns = rows, list(rows[0])

    def to_dict(self, orient: str) -> list[dict]:
        assert orient == "records"
        return [dict(r, n=float("nan")) for r in self.rows]  # pandas stores a missing count as NaN


def test_metric_bars_dataframe_like_form() -> None:
    fig = metric_bars(_FakeFrame(_rows()), metrics=("ag",), methods=["scorecam"], poolings=["ca"])
    assert _bar_values(fig.axes[0]) == [26.0]
    assert "n =" not in fig._suptitle.get_text()


def test_metric_bars_dataframe_form() -> None:
    pd = pytest.importorskip("pandas")
    fig = metric_bars(pd.DataFrame(_rows()), metrics=("ag",), methods=["scorecam"], poolings=["ca"])
    assert _bar_values(fig.axes[0]) == [26.0]


@pytest.mark.parametrize(
    ("summary", "kwargs", "error", "match"),
    [
        ("ad", {}, TypeError, "list of rows"),
        ([], {}, ValueError, "empty"),
        ([{"method": "g", "pooling": "ca", "metric": "ad"}], {}, ValueError, "'mean'"),
        (
            [{"method": "g", "pooling": "ca", "metric": "ad", "mean": 1, "ci_low": 3, "ci_high": 2}],
            {},
            ValueError,
            "ci_low",
        ),
        ([{"method": "g", "pooling": "ca", "metric": "ad", "mean": 1, "ci_low": 0}], {}, ValueError, "both"),
        ([{"method": "g", "pooling": "ca", "metric": "ad", "mean": "high"}], {}, TypeError, "number"),
        ([{"method": "g", "pooling": "ca", "metric": "ad", "mean": float("inf")}], {}, ValueError, "finite"),
        ({"gradcam": {"ad": 1.0}}, {}, TypeError, r"\(method, pooling\)"),
        (_rows(), {"metrics": ["ai"]}, ValueError, "available"),
        (_rows(), {"methods": ["gradcampp"]}, ValueError, "available"),
        (_rows(), {"ncols": 0}, ValueError, "positive int"),
    ],
)
def test_metric_bars_bad_inputs(summary, kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        metric_bars(summary, **kwargs)
