"""The GAP-vs-CA comparison report on a small run: tables, exports, findings, figures."""

from __future__ import annotations

import base64
import csv
import json

import numpy as np
import pytest
import torch
import torchvision
from torch.utils.data import TensorDataset

from xai_pool import attach_stream
from xai_pool.metrics import evaluate
from xai_pool.report import ComparisonResult, compare


@pytest.fixture(scope="module")
def result() -> ComparisonResult:
    torch.manual_seed(0)
    model = attach_stream(torchvision.models.resnet18(num_classes=3))
    images = torch.randn(5, 3, 64, 64)
    labels = torch.tensor([0, 1, 2, 0, 1])
    masks = torch.zeros(5, 64, 64, dtype=torch.bool)
    masks[:, 16:48, 16:48] = True
    data = TensorDataset(images, labels, masks)
    return compare(
        model, data, methods=("raw_attention", "gradcam"), batch_size=3, step=512, keep_examples=2, progress=False
    )


def test_pairs_and_per_image_values_match_direct_evaluation(result: ComparisonResult) -> None:
    assert result.pairs == [("raw_attention", "ca"), ("gradcam", "gap"), ("gradcam", "ca")]
    assert result.n_images == 5
    assert result.metrics == ["ad", "ag", "ai", "insertion", "deletion", "pointing_game", "energy_pointing_game"]
    for values in result.per_image.values():
        for metric in result.metrics:
            assert values[metric].shape == (5,) and np.isfinite(values[metric]).all()


def test_report_equals_metrics_evaluate_on_the_same_maps() -> None:
    torch.manual_seed(0)
    model = attach_stream(torchvision.models.resnet18(num_classes=3))
    images, labels = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 0])
    res = compare(
        model,
        TensorDataset(images, labels),
        methods=("gradcam",),
        poolings=("gap",),
        batch_size=2,
        step=1024,
        progress=False,
        keep_examples=4,
    )
    maps = res.examples["maps"][("gradcam", "gap")]
    with model.pooling_as("gap"):
        direct = evaluate(model, images, maps, labels, step=1024)
    for metric in ("ad", "ag", "ai", "insertion", "deletion"):
        np.testing.assert_allclose(res.per_image[("gradcam", "gap")][metric], direct[metric], rtol=1e-6, atol=1e-9)


def test_summary_has_cis_and_paired_p_values(result: ComparisonResult) -> None:
    rows = [r for r in result.summary if r["method"] == "gradcam" and r["metric"] == "ad"]
    assert {r["pooling"] for r in rows} == {"gap", "ca"}
    for row in rows:
        assert row["ci_low"] <= row["mean"] <= row["ci_high"] and row["n"] == 5
        assert 0.0 <= row["p_value"] <= 1.0
        gap = result.per_image[("gradcam", "gap")]["ad"]
        ca = result.per_image[("gradcam", "ca")]["ad"]
        assert row["diff_ca_minus_gap"] == pytest.approx(float(np.mean(ca - gap)))
    raw = [r for r in result.summary if r["method"] == "raw_attention"]
    assert raw and all(r["p_value"] is None for r in raw)


def test_accuracy_is_the_share_of_correct_predictions(result: ComparisonResult) -> None:
    for pooling in ("gap", "ca"):
        expected = 100 * np.mean(result.predictions[pooling] == result.labels)
        assert result.accuracy[pooling]["mean"] == pytest.approx(expected)


def test_exports(result: ComparisonResult, tmp_path) -> None:
    rows = list(csv.DictReader(open(result.to_csv(tmp_path / "metrics.csv"))))
    assert [(r["method"], r["pooling"]) for r in rows] == result.pairs
    assert {"ad", "ad_ci_low", "ad_ci_high", "ad_p_value", "accuracy"} <= set(rows[0])
    per_image = list(csv.DictReader(open(result.to_per_image_csv(tmp_path / "per_image.csv"))))
    assert len(per_image) == 5 * len(result.pairs)
    data = json.loads(result.to_json(tmp_path / "metrics.json").read_text())
    assert data["schema_version"] == 1 and data["n_images"] == 5 and len(data["summary"]) == len(result.summary)
    markdown = result.to_markdown()
    assert "| Grad-CAM | CA |" in markdown and "AD ↓" in markdown and "p=" in markdown
    html = result.to_html(tmp_path / "report.html").read_text()
    assert "<table>" in html and html.count("data:image/png;base64,") >= 4
    first = html.split("data:image/png;base64,")[1].split("'")[0]
    assert base64.b64decode(first)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "src='http" not in html  # self-contained


def test_findings_name_significant_wins(result: ComparisonResult) -> None:
    text = result.findings()
    assert text.startswith("CA was significantly better") and "GAP was significantly better" in text


def test_bad_arguments() -> None:
    model = attach_stream(torchvision.models.resnet18(num_classes=3))
    data = TensorDataset(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="targets"):
        compare(model, data, targets="nope")
    with pytest.raises(ValueError, match="poolings"):
        compare(model, data, poolings=("max",))
    with pytest.raises(TypeError, match="CAModel"):
        compare(torchvision.models.resnet18(), data)
