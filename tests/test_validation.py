"""A matrix of bad inputs over the API and the CLI: each ends in the right exception type (or,
on the command line, exit code 2 and one line on stderr) with a message naming the problem,
before any work is done. Plus the rules of xai_pool.validation and its documented casts."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from xai_pool import attach_stream, explain, load_stream, save_stream, train_stream
from xai_pool.atomic import atomic_write_text
from xai_pool.cli import describe_os_error, main
from xai_pool.metrics import evaluate
from xai_pool.saliency import resolve_targets
from xai_pool.validation import (
    check_exclusive,
    check_float,
    check_images,
    check_int,
    check_output_dir,
    check_targets,
    positive_float,
    positive_int,
    split_names,
)

from .conftest import TINY_SPEC, TinyCNN
from .test_train_cli import train_args, write_folder, write_weights

NAN = float("nan")


def tiny(classes: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    return attach_stream(TinyCNN(num_classes=classes), spec=TINY_SPEC)


def plain(classes: int = 2) -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN(num_classes=classes)


def x(*shape: int, dtype=torch.float32, fill=None) -> torch.Tensor:
    torch.manual_seed(1)
    t = torch.randn(*shape).to(dtype)
    if fill is not None:
        t.view(-1)[1] = fill
    return t


# ----------------------------------------------------------------------------- images
IMAGE_CASES = [
    (np.zeros((1, 3, 8, 8), np.float32), {}, TypeError, r"torch.Tensor.*torch.from_numpy\(images\)"),
    ([torch.zeros(3, 8, 8)], {}, TypeError, r"got list; stack the image tensors with torch.stack"),
    (Image.new("RGB", (8, 8)), {}, TypeError, r"got Image; apply the model's transform"),
    ("image.png", {}, TypeError, "got str"),
    (x(3, 8, 8), {}, ValueError, r"4-D batch \(B, C, H, W\), got shape \(3, 8, 8\); add a batch dimension"),
    (x(8, 8), {}, ValueError, r"got shape \(8, 8\); a single one-channel image needs images\[None, None\]"),
    (x(1, 1, 3, 8, 8), {}, ValueError, "4-D batch"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), {}, TypeError, r"floating point.*torch.uint8.*float\(\) / 255"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.bool), {}, TypeError, "floating point.*torch.bool"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.complex64), {}, TypeError, "floating point.*complex64"),
    (x(0, 3, 8, 8), {}, ValueError, r"empty batch \(B = 0"),
    (x(1, 3, 0, 0), {}, ValueError, r"0x0 pixels.*at least 1x1"),
    (x(1, 3, 4, 4), {"min_size": 8}, ValueError, r"4x4 pixels.*at least 8x8"),
    (x(1, 1, 8, 8), {"channels": 3}, ValueError, r"1 channels .* takes 3; grayscale images: .*expand\(-1, 3, -1, -1\)"),
    (x(1, 4, 8, 8), {"channels": 3}, ValueError, r"4 channels .* takes 3; RGBA images: .*images\[:, :3\]"),
    (x(1, 8, 8, 3), {"channels": 3}, ValueError, r"channels-last .*permute\(0, 3, 1, 2\)"),
    (x(1, 3, 8, 8), {"channels": 1}, ValueError, r"3 channels .* takes 1; .*mean\(1, keepdim=True\)"),
    (x(1, 5, 8, 8), {"channels": 3}, ValueError, "5 channels .* takes 3; give images with 3 channels"),
    (
        x(2, 3, 8, 8, fill=NAN),
        {},
        ValueError,
        r"images holds 1 NaN and 0 infinite values \(first at index \(0, 0, 0, 1\)",
    ),
    (x(2, 3, 8, 8, fill=float("-inf")), {}, ValueError, "0 NaN and 1 infinite values"),
    (x(1, 3, 8, 8, dtype=torch.float64) * 1e300, {"dtype": torch.float32}, ValueError, "cast from torch.float64"),
]


@pytest.mark.parametrize("images, options, error, match", IMAGE_CASES)
def test_check_images(images, options, error, match) -> None:
    with pytest.raises(error, match=match):
        check_images(images, **options)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_precisions_are_cast_to_the_model_dtype(dtype) -> None:
    images = x(2, 3, 16, 16).to(dtype)
    cast = check_images(images, dtype=torch.float32)
    assert cast.dtype == torch.float32 and torch.equal(cast, images.float())
    model = tiny()
    np.testing.assert_array_equal(explain(model, images, "gradcam"), explain(model, images.float(), "gradcam"))


# ----------------------------------------------------------------------------- explain
EXPLAIN_CASES = [
    ({"images": x(2, 3, 16, 16, fill=NAN)}, ValueError, "images holds 1 NaN"),
    ({"images": x(2, 3, 16, 16, fill=float("inf"))}, ValueError, "1 infinite values"),
    ({"images": x(2, 1, 16, 16)}, ValueError, "1 channels .* takes 3; grayscale"),
    ({"images": x(2, 3, 0, 0)}, ValueError, "0x0 pixels"),
    ({"images": torch.zeros(2, 3, 16, 16, dtype=torch.int64)}, TypeError, "floating point.*int64"),
    ({"targets": -1}, ValueError, "target class -1 is out of range: class indices start at 0"),
    ({"targets": [0, -2]}, ValueError, r"targets\[1\]: target class -2 is out of range"),
    ({"targets": 5}, ValueError, "target class 5 is out of range: the model has 5 classes"),
    ({"targets": [1]}, ValueError, "got 1 targets for a batch of 2 images"),
    ({"targets": 1.0}, TypeError, "targets must be None, a class index"),
    ({"targets": torch.tensor([[1, 2]])}, ValueError, r"shape \(\) or \(B,\), got dtype torch.int64 shape \(1, 2\)"),
    ({"targets": np.array([0.0, 1.0])}, ValueError, "integer class indices"),
    ({"pooling": "avg"}, ValueError, "pooling must be 'gap' or 'ca', got 'avg'"),
    ({"method": "gradkam"}, ValueError, "unknown saliency method 'gradkam'"),
]


@pytest.mark.parametrize("change, error, match", EXPLAIN_CASES)
def test_explain_refuses(change, error, match) -> None:
    call = {"images": x(2, 3, 16, 16), "method": "gradcam", **change}
    with pytest.raises(error, match=match):
        explain(tiny(), call.pop("images"), call.pop("method"), **call)


@pytest.mark.parametrize("method", ["gradcam", "scorecam"])
def test_out_of_range_targets_on_a_plain_classifier_are_a_value_error(method) -> None:
    model = plain(classes=2)
    with pytest.raises(
        ValueError, match=r"target class 7 is out of range: the model returns 2 logits \(classes 0..1\)"
    ):
        explain(model, x(1, 3, 16, 16), method, pooling="gap", targets=7, target_layers=[model.stage2])
    with pytest.raises(ValueError, match="class indices start at 0"):
        explain(model, x(1, 3, 16, 16), method, pooling="gap", targets=-1, target_layers=[model.stage2])
    last = explain(model, x(1, 3, 16, 16), method, pooling="gap", targets=1, target_layers=[model.stage2])
    assert last.shape == (1, 16, 16)


def test_resolve_targets_checks_negative_indices_without_num_classes() -> None:
    with pytest.raises(ValueError, match="negative indices do not count from the end"):
        resolve_targets(-1, 2)
    assert check_targets(torch.tensor(3), 2) == [3, 3]


# ----------------------------------------------------------------------------- metrics.evaluate
class Net(torch.nn.Module):
    def __init__(self, poison: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4, 3)
        if poison:
            with torch.no_grad():
                self.fc.bias[0] = NAN

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(images)).mean(dim=(2, 3)))


EVALUATE_CASES = [
    ({"images": x(2, 3, 6, 6, fill=NAN)}, ValueError, "images holds 1 NaN and 0 infinite values"),
    ({"images": x(2, 3, 6, 6, fill=float("inf"))}, ValueError, "metrics need finite images"),
    ({"saliency": torch.full((2, 3, 3), NAN)}, ValueError, r"saliency maps \[0, 1\] contain NaN or inf"),
    ({"model": Net(poison=True)}, ValueError, "the model returned non-finite logits"),
    ({"images": x(2, 3, 6, 6).int()}, TypeError, "floating-point"),
    ({"labels": [0, 3]}, ValueError, "labels must be < 3"),
    ({"labels": [0, -1]}, ValueError, "labels must be class indices >= 0"),
    ({"metrics": ("insertion", "nope")}, ValueError, r"unknown metrics \['nope'\]"),
]


@pytest.mark.parametrize("change, error, match", EVALUATE_CASES)
def test_evaluate_refuses(change, error, match) -> None:
    call = {"model": Net(), "images": x(2, 3, 6, 6), "saliency": torch.rand(2, 3, 3), **change}
    with pytest.raises(error, match=match):
        evaluate(call.pop("model"), call.pop("images"), call.pop("saliency"), **call)


def test_nan_images_are_not_scored_as_valid() -> None:
    # Before: NaN images gave NaN insertion/deletion with valid=True.
    images = x(2, 3, 6, 6)
    images[1, 0, 2, 2] = NAN
    with pytest.raises(ValueError, match=r"first at index \(1, 0, 2, 2\)"):
        evaluate(Net(), images, torch.rand(2, 3, 3), metrics=("insertion", "deletion"))


# ----------------------------------------------------------------------------- train_stream
def loader() -> DataLoader:
    images = torch.randn(16, 3, 16, 16)
    return DataLoader(TensorDataset(images, torch.arange(16) % 5), batch_size=8)


TRAIN_CASES = [
    ({"lr": 0}, ValueError, "lr must be a finite number > 0, got 0.0"),
    ({"lr": float("inf")}, ValueError, "lr must be a finite number > 0, got inf"),
    ({"lr": NAN}, ValueError, "lr must be a finite number > 0, got nan"),
    ({"lr": "0.1"}, TypeError, "lr must be a number, got str"),
    ({"momentum": 1.0}, ValueError, r"momentum must be a finite number in \[0, 1\), got 1.0"),
    ({"weight_decay": -1e-4}, ValueError, "weight_decay must be a finite number >= 0"),
    ({"warmup_epochs": 3}, ValueError, r"warmup_epochs must be a finite number in \[0, 2\].*cannot exceed epochs=2"),
    ({"label_smoothing": 1.0}, ValueError, r"label_smoothing must be a finite number in \[0, 1\)"),
    ({"epochs": 0}, ValueError, r"epochs must be a positive integer \(>= 1\), got 0"),
    ({"epochs": True}, TypeError, "epochs must be an int, got bool"),
    ({"max_steps": 0}, ValueError, "max_steps must be a positive integer"),
    ({"checkpoint_every_steps": -1}, ValueError, "checkpoint_every_steps must be a positive integer"),
    ({"seed": -1}, ValueError, "seed must be an integer >= 0"),
    ({"schedule": "linear"}, ValueError, "schedule must be one of 'step', 'cosine', got 'linear'"),
]


@pytest.mark.parametrize("change, error, match", TRAIN_CASES)
def test_train_stream_refuses(change, error, match) -> None:
    with pytest.raises(error, match=match):
        train_stream(tiny(), loader(), **{"epochs": 2, **change})


def test_train_stream_refuses_an_out_dir_inside_a_file(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"its parent .*file' is a file"):
        train_stream(tiny(), loader(), epochs=1, out_dir=tmp_path / "file" / "run")


# ----------------------------------------------------------------------------- load_stream
def test_load_stream_refuses(tmp_path) -> None:
    model = tiny()
    path = save_stream(model, tmp_path / "s.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["query"].view(-1)[0] = NAN
    torch.save(payload, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=r"holds NaN or infinite weights in 1 tensor\(s\) \('query' \(1 values\)\)"):
        load_stream(model, tmp_path / "nan.pt")
    payload["state_dict"] = [1, 2]
    torch.save(payload, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="has no state_dict of weights"):
        load_stream(model, tmp_path / "broken.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_stream(model, tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="load_stream expects a CAModel"):
        load_stream(TinyCNN(), path)


# ----------------------------------------------------------------------------- flags and folders
FLAG_CASES = [
    (lambda: positive_int(0, "--epochs"), ValueError, r"--epochs must be a positive integer \(>= 1\), got 0"),
    (lambda: positive_int(2.5, "--epochs"), TypeError, "--epochs must be an int, got float 2.5"),
    (lambda: check_int(3, "n", minimum=0, maximum=2), ValueError, r"n must be an integer in \[0, 2\], got 3"),
    (lambda: positive_float(-1.0, "--lr"), ValueError, "--lr must be a finite number > 0, got -1.0"),
    (lambda: check_float(2.0, "p", maximum=1.0), ValueError, "p must be a finite number <= 1, got 2.0"),
    (lambda: split_names(",", "--methods"), ValueError, r"--methods is empty \(','\)"),
    (lambda: split_names(" , ,", "--pooling"), ValueError, "--pooling is empty"),
    (lambda: split_names("gap,max", "pooling", choices=("gap", "ca")), ValueError, "'max' is not one of gap, ca"),
    (
        lambda: check_exclusive(("--resume", True), ("--overwrite", True)),
        ValueError,
        "--resume and --overwrite cannot be used together",
    ),
]


@pytest.mark.parametrize("call, error, match", FLAG_CASES)
def test_flag_checks(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call()


def test_check_output_dir(tmp_path, monkeypatch) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"cannot write --out .*file': it is a file, not a folder"):
        check_output_dir(tmp_path / "file", name="--out")
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # nothing is created
    real_open = os.open

    def denied(path, *args, **kwargs):
        if "xai-pool-write-check" in str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(PermissionError, match=r"cannot write out_dir .*: Permission denied; choose a folder you can"):
        check_output_dir(tmp_path / "out")
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]  # the probe left nothing


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root ignores folder permissions")
def test_check_output_dir_with_real_permissions(tmp_path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(PermissionError, match="Permission denied"):
        check_output_dir(locked / "out")


def test_atomic_writer_refuses_a_folder_path(tmp_path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write_text(tmp_path / "dir", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["dir"]  # and leaves no temporary file


@pytest.mark.parametrize(
    "exc, text",
    [
        (
            PermissionError(errno.EACCES, "Permission denied", "/r/out"),
            "cannot access '/r/out': Permission denied; check",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "/r/a.pt"),
            "cannot write '/r/a.pt': No space left on device;",
        ),
        (FileExistsError(errno.EEXIST, "File exists", "/r/x"), "cannot write '/r/x': File exists; remove it"),
        (FileNotFoundError("image 'a.png' does not exist"), "image 'a.png' does not exist"),
    ],
)
def test_os_errors_become_one_line(exc, text) -> None:
    assert describe_os_error(exc).startswith(text) and "\n" not in describe_os_error(exc)


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_bad")
    data = write_folder(root / "data")
    weights = write_weights(root / "w.pt")
    (root / "a_file").write_text("x")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "img.png")
    return root, data, weights


TRAIN_CLI_CASES = [
    (["--epochs", "0"], "--epochs must be a positive integer (>= 1), got 0"),
    (["--batch-size", "-4"], "--batch-size must be a positive integer (>= 1), got -4"),
    (["--image-size", "0"], "--image-size must be at least 8 pixels, got 0"),
    (["--lr", "0"], "--lr must be a finite number > 0, got 0.0; the paper uses 0.1"),
    (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["--momentum", "1.5"], "--momentum must be a finite number in [0, 1), got 1.5"),
    (["--weight-decay", "-1"], "--weight-decay must be a finite number >= 0"),
    (["--warmup-epochs", "5"], "--warmup-epochs must be a finite number in [0, 2], got 5.0; at most --epochs"),
    (["--label-smoothing", "1"], "--label-smoothing must be a finite number in [0, 1)"),
    (["--workers", "-1"], "--workers must be an integer >= 0, got -1"),
    (["--heads", "0"], "--heads must be a positive integer"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be a positive integer"),
    (["--max-steps", "0"], "--max-steps must be a positive integer"),
    (["--resume", "--overwrite"], "--resume and --overwrite cannot be used together"),
    (["--out", "{root}/a_file"], "cannot write --out '{root}/a_file': it is a file, not a folder"),
    (["--out", "{root}/a_file/run"], "its parent '{root}/a_file' is a file"),
]


@pytest.mark.parametrize("extra, message", TRAIN_CLI_CASES)
def test_train_cli_refuses(cli_files, tmp_path, capsys, extra, message) -> None:
    root, data, weights = cli_files
    argv = train_args(data, weights, tmp_path / "run") + [e.format(root=root) for e in extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(root=root) in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_train_cli_with_lr_1e30_fails_with_exit_2(cli_files, tmp_path, capsys) -> None:
    _, data, weights = cli_files
    out = tmp_path / "run"
    assert main([*train_args(data, weights, out), "--lr", "1e30", "--checkpoint-every", "1"]) == 2
    captured = capsys.readouterr()
    assert "NaN or inf" in captured.err and "lower the learning rate" in captured.err
    assert "(flags: --lr, --warmup-epochs, --amp off)" in captured.err
    assert "trained" not in captured.out and not (out / "best.pt").exists()


def test_train_cli_on_unreadable_images_fails_and_claims_no_checkpoint(tmp_path, capsys) -> None:
    data = write_folder(tmp_path / "data")
    for path in (data / "train").rglob("*.png"):
        path.write_bytes(b"not a PNG")
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        code = main(train_args(data, write_weights(tmp_path / "w.pt"), tmp_path / "run"))
    captured = capsys.readouterr()
    assert code == 2 and "every training image was unreadable (8 skipped)" in captured.err
    assert "best.pt" not in captured.out and not (tmp_path / "run" / "best.pt").exists()


def test_a_bad_transform_parameter_is_not_taken_for_unreadable_images(cli_files) -> None:
    from torchvision import transforms as T

    from xai_pool.imageio import SafeImageFolder

    _, data, _ = cli_files
    folder = SafeImageFolder(data / "train", transform=T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.0,))]))
    with pytest.raises(ValueError, match="std evaluated to zero"):
        folder[0]
    assert folder.skipped == 0


def explain_args(root: Path, weights: Path, out: Path, *extra: str) -> list[str]:
    return [
        "explain",
        "--arch",
        "resnet18",
        "--weights",
        str(weights),
        "--images",
        str(root / "img.png"),
        "--out",
        str(out),
        "--methods",
        "gradcam",
        "--pooling",
        "gap",
        "--no-progress",
        *extra,
    ]


EXPLAIN_CLI_CASES = [
    (["--methods", ","], "--methods is empty (',')"),
    (["--methods", " "], "--methods is empty"),
    (["--pooling", ","], "--pooling is empty"),
    (["--pooling", "gap,avg"], "--pooling 'avg' is not a pooling"),
    (["--image-size", "0"], "--image-size must be an integer >= 8, got 0; the network input size"),
    (["--batch-size", "0"], "--batch-size must be a positive integer (>= 1), got 0"),
    (["--class", "-1"], "--class must be an integer >= 0, got -1; class indices start at 0"),
    (["--class", "2"], "--class 2 is out of range: the model has 2 classes"),
    (["--out", "{root}/a_file"], "cannot write --out '{root}/a_file': it is a file, not a folder"),
    (["--device", "cuda:99x"], "--device 'cuda:99x' is not a device name"),
]


@pytest.mark.parametrize("extra, message", EXPLAIN_CLI_CASES)
def test_explain_cli_refuses(cli_files, tmp_path, capsys, extra, message) -> None:
    root, _, weights = cli_files
    assert main(explain_args(root, weights, tmp_path / "out", *[e.format(root=root) for e in extra])) == 2
    err = capsys.readouterr().err
    assert message.format(root=root) in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_explain_cli_refuses_an_unwritable_out_before_any_work(cli_files, tmp_path, capsys, monkeypatch) -> None:
    root, _, weights = cli_files
    real_open = os.open

    def denied(path, *args, **kwargs):
        if "xai-pool-write-check" in str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    monkeypatch.setattr("xai_pool.classifiers.build_classifier", lambda *a: pytest.fail("work started"))
    assert main(explain_args(root, weights, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert f"xai-pool explain: error: cannot write --out '{tmp_path / 'out'}'" in err and "Permission denied" in err
