"""`xai-pool demo --quick` end to end: the main job writes a complete report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xai_pool.demo import DemoConfig, demo_config

from .conftest import csv_rows


def test_quick_config_is_smaller_and_full_config_meets_the_issue() -> None:
    full, quick = demo_config(False), demo_config(True)
    assert full.test_images >= 200
    assert set(full.methods) == {"raw_attention", "gradcam", "gradcam++", "scorecam"}
    assert quick.test_images < full.test_images and quick.train_images < full.train_images
    assert isinstance(full, DemoConfig)


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path) -> None:
    out = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, "-m", "xai_pool", "demo", "--quick", "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "| Grad-CAM | CA |" in run.stdout  # the summary table is printed
    assert "[2/4] training the CA-Stream" in run.stderr and "[2/4]" not in run.stdout  # the steps are logged
    rows = csv_rows(out / "metrics.csv")
    pairs = {(r["method"], r["pooling"]) for r in rows}
    assert pairs == {("raw_attention", "ca")} | {
        (m, p) for m in ("gradcam", "gradcam++", "scorecam") for p in ("gap", "ca")
    }
    for row in rows:
        for metric in ("ad", "ag", "ai", "insertion", "deletion", "pointing_game", "energy_pointing_game", "accuracy"):
            assert row[metric] != "" and float(row[f"{metric}_ci_low"]) <= float(row[metric]) <= float(
                row[f"{metric}_ci_high"]
            )
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5
    for name in ("side_by_side", "attention_grid", "insertion_curves", "deletion_curves", "metric_bars"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["n_images"] == demo_config(True).test_images
    per_image = csv_rows(out / "per_image.csv")
    assert len(per_image) == 7 * demo_config(True).test_images
    assert (out / "report.md").read_text().startswith("# xai_pool demo")
    assert json.loads((out / "manifest.json").read_text())["complete"]  # written last
    assert "Holm-adjusted" in (out / "report.md").read_text()
    # A second run reuses the finished stream instead of training again.
    again = subprocess.run(
        [sys.executable, "-m", "xai_pool", "demo", "--quick", "--out", str(out), "--no-progress", "--test-images", "8"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "reusing the trained stream" in again.stderr
