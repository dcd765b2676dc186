"""``xai-pool train`` end to end on a tiny ImageFolder, and its errors before training starts."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from xai_pool import attach_stream, load_stream
from xai_pool.classifiers import build_classifier
from xai_pool.cli import main


def write_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog"), per_class: int = 4) -> Path:
    """PNG files in root/{train,val}/<class>/; each class has its own colour cast."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 2)):
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                image = rng.integers(0, 120, (40, 40, 3)).astype(np.uint8)
                image[..., index % 3] += 120
                Image.fromarray(image).save(folder / f"{i}.png")
    return root


def write_weights(path: Path, arch: str = "resnet18", num_classes: int = 2) -> Path:
    torch.manual_seed(0)
    torch.save(getattr(torchvision.models, arch)(num_classes=num_classes).state_dict(), path)
    return path


def train_args(data: Path, weights: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        "--arch",
        "resnet18",
        "--weights",
        str(weights),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--image-size",
        "64",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]


def test_cli_trains_end_to_end(tmp_path, capsys) -> None:
    data = write_folder(tmp_path / "data")
    (data / "train" / "cat" / "broken.png").write_bytes(b"this is not a PNG file")
    weights = write_weights(tmp_path / "resnet18.pt")
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="broken.png"):
        assert main(train_args(data, weights, out, "--checkpoint-every", "1")) == 0
    printed = capsys.readouterr().out
    assert "trained 2 epochs" in printed and "2 unreadable images skipped" in printed
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(r["skipped"] == 1 and r["steps"] == 3 for r in history)  # 9 files, 8 readable
    model = attach_stream(build_classifier("resnet18", weights))
    load_stream(model, out / "best.pt")
    load_stream(model, out / "last.pt")
    # run.json: the preprocessing used (torchvision's resnet18 metadata scaled to --image-size 64) and the status.
    run = json.loads((out / "run.json").read_text())
    assert run["preprocessing"]["input_size"] == [64, 64] and run["preprocessing"]["resize_size"] == 73
    assert run["preprocessing"]["mean"] == [0.485, 0.456, 0.406] and run["profile"]["taps"][0]["path"] == "maxpool"
    assert (run["epochs_done"], run["epochs"], run["finished"]) == (2, 2, True)

    # A repeated command refuses to overwrite the run; --resume continues it (one more epoch).
    assert main(train_args(data, weights, out)) == 2
    assert "already holds a training run" in capsys.readouterr().err
    with warnings.catch_warnings():  # the broken file may or may not fall in the two steps run
        warnings.simplefilter("ignore", UserWarning)
        assert main([*train_args(data, weights, out), "--resume", "--epochs", "4", "--max-steps", "8"]) == 0
    assert len((out / "history.jsonl").read_text().splitlines()) == 2  # stopped inside epoch 3 (3 steps an epoch)
    run = json.loads((out / "run.json").read_text())
    assert (run["epochs_done"], run["epochs"], run["finished"]) == (2, 4, False)
    with pytest.warns(UserWarning, match="broken.png"):
        assert main([*train_args(data, weights, out), "--resume", "--epochs", "3"]) == 0
    assert len((out / "history.jsonl").read_text().splitlines()) == 3
    assert json.loads((out / "run.json").read_text())["finished"] is True


def test_cli_label_free_with_unrelated_folders(tmp_path, capsys) -> None:
    data = write_folder(tmp_path / "data", classes=("a", "b", "c"), per_class=2)
    weights = write_weights(tmp_path / "w.pt", num_classes=2)
    out = tmp_path / "run"
    assert main([*train_args(data, weights, out), "--label-free", "--epochs", "1"]) == 0
    record = json.loads((out / "history.jsonl").read_text())
    assert record["val_acc_ca"] is None and record["val_agreement"] is not None


@pytest.fixture
def cli_setup(tmp_path):
    return write_folder(tmp_path / "data"), write_weights(tmp_path / "w.pt"), tmp_path / "run"


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_cli_errors_before_training(cli_setup, tmp_path, capsys) -> None:
    data, weights, out = cli_setup
    assert "does not exist" in _error(capsys, train_args(tmp_path / "nowhere", weights, out))

    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    assert "no images" in _error(capsys, train_args(empty, weights, out))

    no_val = tmp_path / "no_val"
    write_folder(no_val)
    for path in sorted((no_val / "val").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (no_val / "val").rmdir()
    assert "no val/ sub-folder" in _error(capsys, train_args(no_val, weights, out))

    three = write_folder(tmp_path / "three", classes=("a", "b", "c"))
    assert "3 class folders but the classifier has 2 outputs" in _error(capsys, train_args(three, weights, out))

    other_arch = write_weights(tmp_path / "r34.pt", arch="resnet34")
    assert "do not match architecture 'resnet18'" in _error(capsys, train_args(data, other_arch, out))

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    assert "cannot be read safely" in _error(capsys, train_args(data, garbage, out))

    assert "--batch-size must be a positive" in _error(capsys, [*train_args(data, weights, out), "--batch-size", "0"])
    assert not out.exists()  # nothing was written by any failed command


def test_cli_help_lists_the_command(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--data",
        "--arch",
        "--weights",
        "--out",
        "--epochs",
        "--batch-size",
        "--lr",
        "--workers",
        "--resume",
        "--device",
        "--label-free",
        "--image-size",
        "--quiet",
    ):
        assert option in text
