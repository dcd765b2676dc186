"""Multiple-comparison adjustment: Holm and Benjamini-Hochberg, and how the report applies them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from xai_pool.metrics import adjust_p_values
from xai_pool.report import ReportData
from xai_pool.report.tables import findings, markdown_report


def test_holm_by_hand():
    # sorted: 0.01 (x4), 0.02 (x3), 0.03 (x2), 0.04 (x1) -> 0.04, 0.06, 0.06, 0.06 after the running max
    p = [0.03, 0.01, 0.04, 0.02]
    np.testing.assert_allclose(adjust_p_values(p, "holm"), [0.06, 0.04, 0.06, 0.06])
    np.testing.assert_allclose(adjust_p_values([0.5, 0.6], "holm"), [1.0, 1.0])  # capped at 1
    np.testing.assert_allclose(adjust_p_values([0.2], "holm"), [0.2])  # one test: unchanged


def test_benjamini_hochberg_by_hand_and_against_scipy():
    # sorted 0.01, 0.02, 0.03, 0.04 times m/k = 4, 2, 4/3, 1 -> 0.04 each after the running min
    np.testing.assert_allclose(adjust_p_values([0.03, 0.01, 0.04, 0.02], "bh"), [0.04, 0.04, 0.04, 0.04])
    rng = np.random.default_rng(0)
    for size in (1, 2, 7, 21, 100):
        p = rng.random(size) ** 3
        p[rng.integers(0, size, size // 3)] = p[0]  # ties
        np.testing.assert_allclose(adjust_p_values(p, "bh"), stats.false_discovery_control(p, method="bh"))


def test_adjustments_keep_nan_out_of_the_family_and_reject_bad_input():
    out = adjust_p_values([0.01, np.nan, 0.04], "holm")
    np.testing.assert_allclose(out, [0.02, np.nan, 0.04])
    np.testing.assert_allclose(adjust_p_values([0.01, 0.04], "none"), [0.01, 0.04])
    with pytest.raises(ValueError, match="method must be one of"):
        adjust_p_values([0.1], "bonferroni")
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        adjust_p_values([1.5], "holm")


def _data(p_adjustment: str) -> ReportData:
    """Three metrics where CA beats GAP on all 6 images with distinct differences: raw p = 2/2^6 each."""
    n = 6
    gap = {m: np.full(n, 50.0) for m in ("ad", "ag", "insertion")}
    ca = {m: gap[m] + np.arange(1.0, n + 1) * (-1 if m == "ad" else 1) for m in gap}  # AD: lower is better
    labels = np.zeros(n, dtype=np.int64)
    return ReportData(
        pairs=[("gradcam", "gap"), ("gradcam", "ca")],
        poolings=("gap", "ca"),
        labels=labels,
        predictions={"gap": labels, "ca": labels},
        probabilities={"gap": np.ones(n), "ca": np.ones(n)},
        per_image={("gradcam", "gap"): gap, ("gradcam", "ca"): ca},
        p_adjustment=p_adjustment,
    )


def test_report_judges_the_adjusted_p_and_keeps_the_raw_one():
    raw = 2 / 2**6  # exact two-sided Wilcoxon signed-rank p, all 6 differences of one sign
    holm, bh, none = _data("holm"), _data("bh"), _data("none")
    for data in (holm, bh, none):
        assert [t["p_value"] for t in data.tests] == pytest.approx([raw] * 3)
    assert [t["p_adjusted"] for t in holm.tests] == pytest.approx([3 * raw] * 3)  # 0.094: not significant
    assert [t["p_adjusted"] for t in bh.tests] == pytest.approx([raw] * 3)  # 0.031: significant
    assert set(holm.winners().values()) == {"tie"}
    assert set(bh.winners().values()) == {"ca"} and set(none.winners().values()) == {"ca"}
    assert "on no metric" in findings(holm) and "Holm-adjusted p < 0.05 over 3 paired tests" in findings(holm)
    assert findings(bh).startswith("CA was significantly better than GAP (BH-adjusted")
    table = markdown_report(holm)
    assert "| Grad-CAM | AD ↓ | -3.50 [-4.83, -2.17] | 0.031 | 0.094 | - |" in table
    assert "Holm-adjusted over the 3 tests of the report (controls the family-wise error rate)" in table
    assert "Benjamini-Hochberg-adjusted" in markdown_report(bh) and "| p (BH) |" in markdown_report(bh)
    row = holm.cell("gradcam", "ca", "ad")
    assert row["p_value"] == pytest.approx(raw) and row["p_adjusted"] == pytest.approx(3 * raw)


def test_metric_direction_comes_from_the_registry():
    data = _data("none")
    # CA lowers AD (better: lower) and raises AG and insertion (better: higher): CA wins all three
    assert data.winners() == {("gradcam", "ad"): "ca", ("gradcam", "ag"): "ca", ("gradcam", "insertion"): "ca"}


def test_legend_gives_each_metric_its_own_direction():
    from xai_pool.report.tables import legend

    n = 6
    values = {m: np.arange(float(n)) for m in ("ad", "insertion", "complexity", "road_morf", "road_lerf")}
    labels = np.zeros(n, dtype=np.int64)
    data = ReportData(
        pairs=[("gradcam", "ca")],
        poolings=("ca",),
        labels=labels,
        predictions={"ca": labels},
        probabilities={"ca": np.ones(n)},
        per_image={("gradcam", "ca"): values},
    )
    text = legend(data)
    assert "AD (Average Drop): lower is better" in text and "I (insertion AUC): higher is better" in text
    assert "Complexity (entropy of the map): lower is better" in text
    assert "ROAD MoRF (most relevant pixels removed first): lower is better" in text
    assert "ROAD LeRF (least relevant pixels removed first): higher is better" in text
    assert data.metrics == ["ad", "insertion", "complexity", "road_morf", "road_lerf"] and data.tests == []
