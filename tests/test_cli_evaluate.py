"""`xai-pool evaluate` end to end on a tiny ImageFolder: report, options, errors, resume, torchrun."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import xai_pool.explainer
from xai_pool import attach_stream, save_stream
from xai_pool.cli import main

from .conftest import csv_rows, free_port

CLASSES = ("cat", "dog")
PER_CLASS = 5  # 10 readable images in batches of 2: 5 batches, so kept examples span 3 of them


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(0)
    for cls in CLASSES:
        folder = root / "data" / "val" / cls
        folder.mkdir(parents=True)
        for i in range(PER_CLASS):
            Image.fromarray(rng.integers(0, 255, (72, 72, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (root / "data" / "val" / "dog" / "broken.png").write_bytes(b"not an image")
    torch.manual_seed(0)
    backbone = torchvision.models.resnet18(num_classes=2).eval()
    torch.save(backbone.state_dict(), root / "weights.pt")
    model = attach_stream(backbone, copy=True)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.stream.parameters():  # a non-trivial stream
            p.add_(0.1 * torch.randn_like(p))
    save_stream(model, root / "stream.pt")
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
        "--batch-size": "2",
        "--keep-examples": "5",
        "--workers": "0",
    }
    args.update(extra)
    return [str(x) for kv in args.items() for x in kv] + ["--no-progress"]


def _files(folder: Path) -> dict[str, bytes]:
    """Every file of a report except run.json (timings, number of processes)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "run.json"}


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory) -> Path:
    """One uninterrupted single-process run, the reference for resumed and torchrun runs."""
    out = tmp_path_factory.mktemp("reference") / "report"
    with pytest.warns(UserWarning, match="unreadable"):
        assert main(["evaluate", *_args(setup, out)]) == 0
    return out


def test_evaluate_writes_the_report(reference) -> None:
    rows = csv_rows(reference / "metrics.csv")
    assert [(r["method"], r["pooling"]) for r in rows] == [
        ("raw_attention", "ca"),
        ("gradcam", "gap"),
        ("gradcam", "ca"),
    ]
    per_image = csv_rows(reference / "per_image.csv")
    assert len(per_image) == 2 * PER_CLASS * 3  # the broken image is skipped
    # ImageFolder order: the cats (label 0) first, then the dogs
    assert [int(r["label"]) for r in per_image[: 2 * PER_CLASS]] == [0] * PER_CLASS + [1] * PER_CLASS
    assert (reference / "report.html").read_text().count("data:image/png;base64,") >= 3
    summary = json.loads((reference / "metrics.json").read_text())
    assert summary["examples"] == [0, 1, 2, 3, 4] and summary["p_adjustment"] == "holm"
    assert summary["config"]["insertion_substrate"] == {"callable": "xai_pool.metrics.perturbation.blur"}
    assert json.loads((reference / "manifest.json").read_text())["complete"] is True
    assert not list(reference.parent.glob(".report.*"))  # no partial, staging or old folder left


def test_options_reach_the_metrics(setup, tmp_path) -> None:
    out = tmp_path / "report"
    extra = {
        "--methods": "gradcam",
        "--pooling": "gap,ca",
        "--metrics": "ad,insertion,deletion,sparsity",
        "--insertion-substrate": "box-blur",
        "--deletion-substrate": "black",
        "--masking-space": "input",
        "--step": "1000",  # 64 x 64 = 4096 pixels: 4 full steps and a partial one
        "--p-adjust": "bh",
        "--keep-examples": "0",
    }
    with pytest.warns(UserWarning, match="unreadable"):
        assert main(["evaluate", *_args(setup, out, **extra)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    config = summary["config"]
    assert config["masking_space"] == "input" and config["step"] == 1000
    assert config["insertion_substrate"] == {"callable": "xai_pool.metrics.perturbation.box-blur"}
    assert config["deletion_substrate"] == {"callable": "xai_pool.metrics.perturbation.black"}
    assert summary["curves"]["insertion"]["x"] == pytest.approx(
        [0, 1000 / 4096, 2000 / 4096, 3000 / 4096, 4000 / 4096, 1]
    )
    assert summary["p_adjustment"] == "bh" and "| p (BH) |" in (out / "report.md").read_text()
    assert {row["metric"] for row in summary["summary"]} == {"ad", "insertion", "deletion", "sparsity"}


@pytest.fixture(scope="module")
def masks(setup) -> Path:
    """One PNG mask per image (a centred 24 x 24 square of the 72 x 72 images), broken image included."""
    folder = setup / "masks"
    for image in (setup / "data" / "val").glob("*/*.png"):
        mask = np.zeros((72, 72), dtype=np.uint8)
        mask[24:48, 24:48] = 255
        target = folder / image.parent.name / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(target)
    return folder


def test_masks_follow_the_image_transform(setup, masks) -> None:
    from xai_pool.adapters import Preprocessing
    from xai_pool.commands.evaluate import MaskedFolder
    from xai_pool.imageio import SafeImageFolder

    transform = Preprocessing().with_overrides(size=64).eval_transform()  # ImageNet's 224/256, scaled to 64
    root = setup / "data" / "val"
    data = MaskedFolder(SafeImageFolder(root, transform), root, masks, transform, (0.485,), (0.229,))
    image, label, mask = data[0]
    assert image.shape == (3, 64, 64) and label == 0 and mask.dtype == torch.bool
    # 72 px resized to 73 then centre-cropped to 64: the square moves to about 20..44
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    assert 19 <= int(rows[0]) <= 21 and 43 <= int(rows[-1]) <= 45
    assert torch.equal(mask, mask.T) and abs(int(mask.sum()) - 24 * 24) < 4 * 24


def test_masks_and_tolerance_reach_the_pointing_game(setup, masks, tmp_path) -> None:
    extra = {"--masks": masks, "--methods": "gradcam", "--pooling": "ca", "--keep-examples": "0"}
    results = {}
    for tolerance in ("0", "1000"):
        out = tmp_path / f"t{tolerance}"
        with pytest.warns(UserWarning, match="unreadable"):
            assert main(["evaluate", *_args(setup, out, **extra, **{"--tolerance": tolerance})]) == 0
        rows = csv_rows(out / "per_image.csv")
        results[tolerance] = [float(r["pointing_game"]) for r in rows]
        assert {"pointing_game", "energy_pointing_game", "ad"} <= set(rows[0])  # localisation added by default
    assert len(results["0"]) == 2 * PER_CLASS and set(results["0"]) <= {0.0, 100.0}
    assert results["1000"] == [100.0] * (2 * PER_CLASS)  # every point is within 1000 px of the object


def test_bad_arguments_fail_before_any_work(setup, tmp_path, capsys, monkeypatch) -> None:
    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the arguments were checked")

    monkeypatch.setattr("xai_pool.classifiers.build_classifier", no_model)
    cases = [
        ({"--methods": ","}, "--methods ',' names nothing"),
        ({"--methods": "nosuchcam"}, "nosuchcam"),
        ({"--pooling": "max"}, "--pooling must name gap and/or ca"),
        ({"--metrics": "ad,auc"}, "unknown ['auc']"),
        ({"--metrics": "pointing_game"}, "need object masks: give them with --masks DIR"),
        ({"--masks": tmp_path / "nomasks"}, "--masks"),
        ({"--step": "0"}, "--step must be >= 1"),
        ({"--tolerance": "-1"}, "--tolerance must be >= 0"),
        ({"--data": tmp_path / "missing"}, "does not exist"),
    ]
    for extra, message in cases:
        assert main(["evaluate", *_args(setup, tmp_path / "a", **extra)]) == 2, extra
        assert message in capsys.readouterr().err, extra
    (tmp_path / "taken").write_text("x")
    assert main(["evaluate", *_args(setup, tmp_path / "taken")]) == 2
    assert "cannot write --out" in (err := capsys.readouterr().err) and "it is a file, not a folder" in err
    assert main(["evaluate", *_args(setup, tmp_path / "taken" / "sub")]) == 2  # parent is a file
    assert "/taken' is a file, not a folder" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_class_count_mismatch(setup, tmp_path, capsys) -> None:
    other = torchvision.models.resnet18(num_classes=3)
    torch.save(other.state_dict(), tmp_path / "w3.pt")
    assert main(["evaluate", *_args(setup, tmp_path / "b", **{"--weights": tmp_path / "w3.pt"})]) == 2
    assert "class folders" in capsys.readouterr().err


def test_resume_after_an_interrupt_computes_only_the_missing_batches(setup, reference, tmp_path, monkeypatch):
    out = tmp_path / "report"
    explain = xai_pool.explainer.explain
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2 * 3:  # 3 pairs per batch: stop inside the third batch
            raise KeyboardInterrupt
        return explain(*args, **kwargs)

    monkeypatch.setattr(xai_pool.explainer, "explain", interrupted)
    with warnings.catch_warnings(action="ignore", category=UserWarning):  # the unreadable image
        assert main(["evaluate", *_args(setup, out)]) == 130
    partial = tmp_path / ".report.partial"
    assert sorted(p.name for p in partial.glob("batch-*.pt")) == ["batch-000000.pt", "batch-000001.pt"]
    assert not out.exists()  # nothing half-written

    calls.clear()
    monkeypatch.setattr(xai_pool.explainer, "explain", lambda *a, **k: calls.append(1) or explain(*a, **k))
    with warnings.catch_warnings(action="ignore", category=UserWarning):  # the unreadable image
        assert main(["evaluate", *_args(setup, out)]) == 0
    assert len(calls) == 3 * 3  # the 3 missing batches only
    assert json.loads((out / "run.json").read_text())["batches_reused"] == 2
    assert _files(out) == _files(reference)
    assert not partial.exists()


@pytest.mark.slow  # two more runs of the CLI
def test_another_configuration_does_not_reuse_the_batches(setup, reference, tmp_path, monkeypatch):
    out = tmp_path / "report"
    explain = xai_pool.explainer.explain

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(xai_pool.explainer, "explain", interrupted)
    with warnings.catch_warnings(action="ignore", category=UserWarning):  # an interrupted run, another step
        assert main(["evaluate", *_args(setup, out, **{"--step": "2048"})]) == 130
    assert json.loads((tmp_path / ".report.partial" / "run.json").read_text())["config"]["step"] == 2048
    monkeypatch.setattr(xai_pool.explainer, "explain", explain)
    with warnings.catch_warnings(action="ignore", category=UserWarning):  # the unreadable image
        assert main(["evaluate", *_args(setup, out)]) == 0
    assert json.loads((out / "run.json").read_text())["batches_reused"] == 0
    assert _files(out) == _files(reference)


def _cli(*args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def _kill_when(run: subprocess.Popen, ready, extra_delay: float) -> None:
    """SIGKILL ``run`` ``extra_delay`` seconds after ``ready()`` becomes true (or when it ends)."""
    while not ready() and run.poll() is None:
        time.sleep(0.02)
    time.sleep(extra_delay)
    run.send_signal(signal.SIGKILL)
    run.communicate(timeout=60)


@pytest.mark.slow  # four CLI processes: about two minutes on 2 shared cores
def test_kill_at_random_points_then_resume_gives_the_same_files(setup, reference, tmp_path):
    out = tmp_path / "report"
    partial = tmp_path / ".report.partial"
    args = ["-m", "xai_pool", "evaluate", *_args(setup, out)]
    rng = random.Random(0)

    def saved() -> list[Path]:
        return sorted(partial.glob("batch-*.pt"))

    # 1. killed while computing, after 1 or 2 of the 5 batches are saved
    first = rng.randint(1, 2)
    _kill_when(_cli(*args), lambda: len(saved()) >= first, rng.uniform(0, 0.5))
    kept = {p.name: p.stat().st_mtime_ns for p in saved()}
    assert first <= len(kept) < 5 and not out.exists()
    # 2. killed again later: the batches of the first run are reused, not written again
    _kill_when(_cli(*args), lambda: len(saved()) >= len(kept) + 1, rng.uniform(0, 0.5))
    assert all(partial.joinpath(name).stat().st_mtime_ns == mtime for name, mtime in kept.items())
    # 3. killed after the last batch, while gathering, rendering or writing the report
    _kill_when(_cli(*args), lambda: len(saved()) == 5, rng.uniform(0, 2.0))
    if out.exists():  # never half-written: complete, or absent
        assert json.loads((out / "manifest.json").read_text())["complete"]
    last = _cli(*args)
    _, err = last.communicate(timeout=600)
    assert last.returncode == 0, err[-2000:]
    assert _files(out) == _files(reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no partial or staging folder left


@pytest.mark.slow  # two torch processes: about a minute on 2 shared cores
def test_torchrun_two_processes_write_the_files_of_one(setup, reference, tmp_path):
    out = tmp_path / "report"
    run = _cli(
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        "-m",
        "xai_pool",
        "evaluate",
        *_args(setup, out),
    )
    stdout, err = run.communicate(timeout=900)
    assert run.returncode == 0, err[-3000:]
    assert "on 2 process(es)" in stdout
    assert json.loads((out / "run.json").read_text())["world_size"] == 2
    # byte for byte, figures included: kept examples (images 0-4, batches 0-2 on both ranks)
    # carry their own labels and predictions
    assert _files(out) == _files(reference)


def test_limit_spreads_over_the_class_sorted_folder():
    from xai_pool.commands.evaluate import spread_indices

    assert spread_indices(5, 10) == [0, 1, 2, 3, 4]
    picked = spread_indices(50_000, 1000)  # ImageNet val: 50 images per class, sorted by class
    assert len(picked) == len(set(picked)) == 1000 and picked[0] == 0 and picked[-1] < 50_000
    assert len({i // 50 for i in picked}) == 1000  # every one of the 1000 classes, once
