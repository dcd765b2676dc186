"""The GAP-vs-CA comparison report on a small run: values, statistics, exports, figures, forward count."""

from __future__ import annotations

import base64
import json
import math
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision
from torch.utils.data import TensorDataset

from xai_pool import attach_stream
from xai_pool.metrics import adjust_p_values, curve_fractions, evaluate
from xai_pool.metrics.registry import METRICS
from xai_pool.report import ComparisonResult, compare, is_complete
from xai_pool.report.tables import findings
from xai_pool.report.writer import csv_cell

from .conftest import TINY_SPEC, TinyCNN, csv_rows
from .test_atomic import dead_pid, owned_name


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
        model,
        data,
        methods=("raw_attention", "gradcam"),
        batch_size=3,
        step=512,
        keep_examples=2,
        progress=False,
        class_names=["cat", "dog", "$x$"],
    )


def _tiny_model():
    torch.manual_seed(0)
    model = attach_stream(TinyCNN(), spec=TINY_SPEC)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.stream.parameters():  # a non-trivial stream
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _tiny_data(n: int = 7) -> TensorDataset:
    g = torch.Generator().manual_seed(2)
    return TensorDataset(torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 5, (n,), generator=g))


def test_pairs_and_per_image_values(result: ComparisonResult) -> None:
    assert result.pairs == [("raw_attention", "ca"), ("gradcam", "gap"), ("gradcam", "ca")]
    assert result.poolings == ("gap", "ca")
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
    assert res.examples.indices.tolist() == [0, 1, 2, 3]
    maps = res.examples.maps[("gradcam", "gap")]
    with model.pooling_as("gap"):
        direct = evaluate(model, images, maps, labels, step=1024)
    for metric in ("ad", "ag", "ai", "insertion", "deletion"):
        # the shared clean forward runs in another batch than evaluate's: float32 rounding only
        np.testing.assert_allclose(res.per_image[("gradcam", "gap")][metric], direct[metric], rtol=1e-5, atol=1e-7)


def test_summary_cells_and_paired_tests(result: ComparisonResult) -> None:
    rows = [r for r in result.summary if r["method"] == "gradcam" and r["metric"] == "ad"]
    assert {r["pooling"] for r in rows} == {"gap", "ca"}
    gap = result.per_image[("gradcam", "gap")]["ad"]
    ca = result.per_image[("gradcam", "ca")]["ad"]
    for row in rows:
        assert row["ci_low"] <= row["mean"] <= row["ci_high"] and row["n"] == 5
        assert 0.0 <= row["p_value"] <= row["p_adjusted"] <= 1.0
        assert row["diff_ca_minus_gap"] == pytest.approx(float(np.mean(ca - gap)))
    raw = [r for r in result.summary if r["method"] == "raw_attention"]
    assert raw and all(r["p_value"] is None and r["p_adjusted"] is None for r in raw)
    # one test per (method, metric) with both poolings, adjusted together (Holm by default)
    assert [(t["method"], t["metric"]) for t in result.tests] == [("gradcam", m) for m in result.metrics]
    raw_p = [t["p_value"] for t in result.tests]
    np.testing.assert_allclose([t["p_adjusted"] for t in result.tests], adjust_p_values(raw_p, "holm"))


def test_accuracy_is_the_share_of_correct_predictions(result: ComparisonResult) -> None:
    for pooling in ("gap", "ca"):
        expected = 100 * np.mean(result.predictions[pooling] == result.labels)
        assert result.accuracy[pooling]["mean"] == pytest.approx(expected)


def test_exports(result: ComparisonResult, tmp_path) -> None:
    rows = csv_rows(result.to_csv(tmp_path / "metrics.csv"))
    assert [(r["method"], r["pooling"]) for r in rows] == result.pairs
    assert {"ad", "ad_ci_low", "ad_ci_high", "ad_p_value", "ad_p_adjusted", "accuracy", "p_adjustment"} <= set(rows[0])
    assert {r["p_adjustment"] for r in rows} == {"holm"}
    per_image = csv_rows(result.to_per_image_csv(tmp_path / "per_image.csv"))
    assert len(per_image) == 5 * len(result.pairs)
    data = json.loads(result.to_json(tmp_path / "metrics.json").read_text())
    assert data["schema_version"] == 2 and data["n_images"] == 5 and len(data["summary"]) == len(result.summary)
    assert data["p_adjustment"] == "holm" and len(data["tests"]) == len(result.tests)
    assert data["curves"]["insertion"]["x"] == pytest.approx(curve_fractions(64, 64, 512).tolist())
    assert "seconds" not in data  # timings only in run.json: two runs on the same data give the same files
    markdown = result.to_markdown()
    assert "| Grad-CAM | CA |" in markdown and "AD ↓" in markdown and "p=" in markdown
    assert "Holm-adjusted" in markdown and "| p (raw) | p (Holm) |" in markdown
    html = result.to_html(tmp_path / "report.html").read_text()
    assert "<table>" in html and html.count("data:image/png;base64,") >= 4
    first = html.split("data:image/png;base64,")[1].split("'")[0]
    assert base64.b64decode(first)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "src='http" not in html  # self-contained
    assert "lower is better" in html and "AD and D: lower is better" not in html


def test_write_embeds_the_png_files_and_marks_completion(result: ComparisonResult, tmp_path) -> None:
    out = tmp_path / "report"
    files = result.write(out, title="<GAP & CA>", run_info={"seconds": 1.5})
    assert files[-1].name == "manifest.json" and is_complete(out)
    html = (out / "report.html").read_text()
    assert "<h1>&lt;GAP &amp; CA&gt;</h1>" in html
    embedded = dict(re.findall(r"<img alt='([^']+)' src='data:image/png;base64,([^']+)'>", html))
    assert set(embedded) == {"side_by_side", "attention_grid", "insertion_curves", "deletion_curves", "metric_bars"}
    for name, data in embedded.items():
        assert base64.b64decode(data) == (out / f"{name}.png").read_bytes()  # the same pixels
    assert json.loads((out / "run.json").read_text())["seconds"] == 1.5
    assert (out / "report.md").read_text().startswith("# <GAP & CA>\n\n" + result.findings())
    # a second write replaces the folder whole; a folder without its manifest reads as incomplete
    result.write(out, title="again")
    assert is_complete(out) and "again" in (out / "report.md").read_text()
    (out / "manifest.json").unlink()
    assert not is_complete(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no staging folder left behind


def test_write_keeps_foreign_files_of_the_folder(result: ComparisonResult, tmp_path) -> None:
    (tmp_path / "stream").mkdir()
    (tmp_path / "stream" / "last.pt").write_bytes(b"weights")
    result.write(tmp_path, title="demo")
    assert (tmp_path / "stream" / "last.pt").read_bytes() == b"weights" and is_complete(tmp_path)


def test_a_killed_writers_leftovers_are_cleaned_and_its_old_report_restored(result: ComparisonResult, tmp_path) -> None:
    # What a kill -9 in the middle of write_report leaves: its staging folder, and the previous
    # report moved aside just before the new one was renamed into place.
    dead = dead_pid()
    staging = tmp_path / owned_name("report", dead)
    staging.mkdir()
    (staging / "metrics.csv").write_text("half a report")
    aside = tmp_path / owned_name("report", dead, "old")
    aside.mkdir()
    (aside / "notes.txt").write_text("the user's file in the old report folder")
    result.write(tmp_path / "report", title="t")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    # the old folder came back first (xai_pool.atomic.remove_stale_temp_files), so the new report
    # was moved in file by file next to the user's file instead of replacing the folder
    assert (tmp_path / "report" / "notes.txt").read_text() == "the user's file in the old report folder"
    assert is_complete(tmp_path / "report")


def test_report_folders_get_the_umask_permissions(result: ComparisonResult, tmp_path) -> None:
    previous = os.umask(0o027)
    try:
        result.write(tmp_path / "report", title="t")
    finally:
        os.umask(previous)
    assert (tmp_path / "report").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "report" / "report.html").stat().st_mode & 0o777 == 0o640


def test_report_csv_cells_follow_the_one_escaping_rule() -> None:
    assert [csv_cell(v) for v in ("=cmd()", "@x", "-0.5", "+3", "1e-4", "cat")] == [
        "'=cmd()",
        "'@x",
        "-0.5",  # a number written as text cannot run anything (xai_pool.csvfile.escape_cell)
        "+3",
        "1e-4",
        "cat",
    ]
    assert [csv_cell(v) for v in (None, float("nan"), np.float32(0.1234567), 2.0, 7)] == ["", "", "0.123457", "2", 7]


def test_write_refuses_a_file_before_any_work(result: ComparisonResult, tmp_path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(NotADirectoryError, match="it is a file, not a folder"):
        result.write(tmp_path / "taken", title="t")


def test_findings_name_significant_wins(result: ComparisonResult) -> None:
    # Known answer: the sentences list exactly the (method, metric) pairs each pooling won.
    data = SimpleNamespace(
        winners=lambda: {
            ("gradcam", "ad"): "ca",
            ("gradcam", "pointing_game"): "gap",
            ("scorecam", "insertion"): "tie",
        },
        poolings=("gap", "ca"),
        accuracy={"gap": {"mean": 99.5}, "ca": {"mean": 99.0}},
        p_adjustment="holm",
        alpha=0.05,
        tests=[{}] * 3,
    )
    assert findings(data) == (
        "CA was significantly better than GAP (Holm-adjusted p < 0.05 over 3 paired tests) on: Grad-CAM AD. "
        "GAP was significantly better on: Grad-CAM PG; no significant difference on: Score-CAM I "
        "(accuracy GAP 99.5% / CA 99.0%)."
    )
    data.winners = lambda: {("gradcam", "ad"): "tie"}
    data.p_adjustment = "none"
    assert findings(data).startswith(
        "CA was significantly better than GAP (p < 0.05, unadjusted, 3 paired tests) on no metric. "
        "GAP was significantly better on: nothing; no significant difference on: Grad-CAM AD"
    )
    # On a real run: each paired test's verdict follows its Holm-adjusted p and the metric's direction.
    text = result.findings()
    assert text.startswith(f"CA was significantly better than GAP (Holm-adjusted p < 0.05 over {len(result.tests)} ")
    for t in result.tests:
        higher_is_better = METRICS[t["metric"]].higher_is_better
        expected = "tie" if t["p_adjusted"] >= 0.05 else ("ca" if (t["diff"] > 0) == higher_is_better else "gap")
        assert t["better"] == expected, t


def test_figures_label_each_kept_image_with_its_own_class(result: ComparisonResult) -> None:
    figures = result.figures()
    labels = [ax.get_ylabel() for ax in figures["side_by_side"].axes if ax.get_ylabel()]
    names = ["cat", "dog", r"\$x\$"]
    assert len(labels) == 2
    for index, label in zip(result.examples.indices, labels, strict=True):
        assert label.startswith(f"#{index}, true: {names[result.labels[index]]}")


def test_curve_x_has_the_partial_last_step_without_kept_examples() -> None:
    # 16 x 16 = 256 pixels in steps of 60: points at 0, 60, 120, 180, 240 and 256 pixels
    res = compare(
        _tiny_model(),
        _tiny_data(),
        methods=("gradcam",),
        batch_size=3,
        step=60,
        progress=False,
        mean=(0, 0, 0),
        std=(1, 1, 1),
        keep_examples=0,
    )
    expected = np.array([0, 60, 120, 180, 240, 256]) / 256
    for kind in ("insertion", "deletion"):
        np.testing.assert_array_equal(res.curve_x[kind], expected)
        lines = res.figures()[f"{kind}_curves"].axes[0].lines
        assert lines and all(np.array_equal(line.get_xdata(), expected) for line in lines)
    # the mean curve is the mean of the per-image curves, and its AUC over x is the table's
    ca = res.mean_curves[("gradcam", "ca")]["insertion_curve"]
    assert 100 * np.trapezoid(ca, expected) == pytest.approx(res.cell("gradcam", "ca", "insertion")["mean"])


def test_forward_passes_are_the_protocol_minimum() -> None:
    """Counted with a hook on the backbone: one clean forward per pooling, none repeated."""
    model, data = _tiny_model(), _tiny_data(7)
    images_forwarded = []
    model.backbone.register_forward_hook(lambda module, args, output: images_forwarded.append(args[0].shape[0]))
    compare(
        model,
        data,
        methods=("raw_attention", "gradcam"),
        batch_size=3,
        step=60,
        progress=False,
        mean=(0, 0, 0),
        std=(1, 1, 1),
        keep_examples=0,
    )
    steps = math.ceil(16 * 16 / 60)
    clean = 2  # GAP and CA
    explainers = 1 + 1 + 1  # raw attention (CA), Grad-CAM GAP, Grad-CAM CA: one forward each
    metrics = 3 * (1 + 2 * steps)  # per pair: the AD/AG/AI image + n insertion and n deletion points
    assert sum(images_forwarded) == 7 * (clean + explainers + metrics)


def test_bad_arguments() -> None:
    model = attach_stream(torchvision.models.resnet18(num_classes=3))
    data = TensorDataset(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="targets"):
        compare(model, data, targets="nope")
    with pytest.raises(ValueError, match="poolings"):
        compare(model, data, poolings=("max",))
    with pytest.raises(ValueError, match="p_adjustment"):
        compare(model, data, p_adjustment="bonferroni")
    with pytest.raises(ValueError, match="give no pair"):
        compare(model, data, methods=("raw_attention",), poolings=("gap",))
    with pytest.raises(TypeError, match="CAModel"):
        compare(torchvision.models.resnet18(), data)
