"""`xai-pool evaluate` end to end on a tiny ImageFolder written by the test, and its errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from xai_pool import attach_stream, save_stream
from xai_pool.cli import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        folder = root / "data" / "val" / cls
        folder.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (72, 72, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (root / "data" / "val" / "dog" / "broken.png").write_bytes(b"not an image")
    torch.manual_seed(0)
    backbone = torchvision.models.resnet18(num_classes=2).eval()
    torch.save(backbone.state_dict(), root / "weights.pt")
    save_stream(attach_stream(backbone, copy=True), root / "stream.pt")
    return root


def _args(root, out, **extra) -> list[str]:
    args = {
        "--data": root / "data",
        "--arch": "resnet18",
        "--weights": root / "weights.pt",
        "--stream": root / "stream.pt",
        "--out": out,
        "--methods": "raw_attention,gradcam",
        "--image-size": "64",
        "--step": "1024",
        "--workers": "0",
    }
    args.update(extra)
    return [str(x) for kv in args.items() for x in kv] + ["--no-progress"]


def test_evaluate_writes_the_report(setup, tmp_path) -> None:
    out = tmp_path / "report"
    with pytest.warns(UserWarning, match="unreadable"):
        assert main(["evaluate", *_args(setup, out)]) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [(r["method"], r["pooling"]) for r in rows] == [
        ("raw_attention", "ca"),
        ("gradcam", "gap"),
        ("gradcam", "ca"),
    ]
    per_image = list(csv.DictReader(open(out / "per_image.csv")))
    assert len(per_image) == 6 * 3  # the broken image is skipped
    assert (out / "report.html").read_text().count("data:image/png;base64,") >= 3


def test_evaluate_errors(setup, tmp_path, capsys) -> None:
    assert main(["evaluate", *_args(setup, tmp_path / "a", **{"--methods": "nosuchcam"})]) == 2
    assert "nosuchcam" in capsys.readouterr().err
    other = torchvision.models.resnet18(num_classes=3)
    torch.save(other.state_dict(), tmp_path / "w3.pt")
    assert main(["evaluate", *_args(setup, tmp_path / "b", **{"--weights": tmp_path / "w3.pt"})]) == 2
    assert "class folders" in capsys.readouterr().err
    assert main(["evaluate", *_args(setup, tmp_path / "c", **{"--data": tmp_path / "missing"})]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_limit_spreads_over_the_class_sorted_folder():
    from xai_pool.commands.evaluate import spread_indices

    assert spread_indices(5, 10) == [0, 1, 2, 3, 4]
    picked = spread_indices(50_000, 1000)  # ImageNet val: 50 images per class, sorted by class
    assert len(picked) == len(set(picked)) == 1000 and picked[0] == 0 and picked[-1] < 50_000
    assert len({i // 50 for i in picked}) == 1000  # every one of the 1000 classes, once
