"""``xai-pool explain`` end to end on two small PNGs, and its error messages."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from pytorch_grad_cam.utils.image import show_cam_on_image

from xai_pool import attach_stream, save_stream
from xai_pool.adapters.preprocessing import from_torchvision_weights
from xai_pool.cli import main
from xai_pool.commands.explain import output_names
from xai_pool.minmax import minmax_normalize


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_explain")
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=5)
    torch.save(net.state_dict(), root / "weights.pt")
    save_stream(attach_stream(net, copy=True), root / "stream.pt")
    other = torchvision.models.resnet34(num_classes=5)
    save_stream(attach_stream(other), root / "other_stream.pt")
    rng = np.random.default_rng(0)
    for name, shape in (("first", (72, 80, 3)), ("second", (64, 64, 3))):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / f"{name}.png")
    (root / "broken.png").write_text("not an image")
    return root


def _args(files, out, *extra: str) -> list[str]:
    return [
        "explain",
        "--arch",
        "resnet18",
        "--weights",
        str(files / "weights.pt"),
        "--stream",
        str(files / "stream.pt"),
        "--images",
        str(files / "first.png"),
        str(files / "second.png"),
        "--out",
        str(out),
        "--image-size",
        "64",
        "--no-progress",
        *extra,
    ]


def test_end_to_end(files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = main(_args(files, out, "--methods", "gradcam,raw_attention,Grad-CAM++", "--pooling", "gap,ca"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "raw_attention skipped for pooling gap" in captured.err
    for stem in ("first", "second"):
        assert Image.open(out / f"{stem}_input.png").size == (64, 64)
        for method, pooling in [
            ("gradcam", "gap"),
            ("gradcam", "ca"),
            ("raw_attention", "ca"),
            ("gradcampp", "gap"),
            ("gradcampp", "ca"),
        ]:
            saliency = np.load(out / f"{stem}_{method}_{pooling}.npy")
            assert saliency.shape == (64, 64) and saliency.dtype == np.float32
            assert saliency.min() >= 0 and saliency.max() <= 1
            picture = Image.open(out / f"{stem}_{method}_{pooling}.png")
            assert picture.mode == "RGB" and picture.size == (64, 64)
            rgb = np.asarray(Image.open(out / f"{stem}_input.png"), dtype=np.float32) / 255
            # the peer's overlay of the min-max normalised map (viz.overlay's documented input rule)
            expected = show_cam_on_image(rgb, minmax_normalize(saliency), use_rgb=True).astype(int)
            assert np.abs(np.asarray(picture, dtype=int) - expected).max() <= 2
        assert not (out / f"{stem}_raw_attention_gap.npy").exists()

    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["image"] for r in rows] == [str(files / "first.png"), str(files / "second.png")]
    model = attach_stream(torchvision.models.resnet18(num_classes=5))
    model.backbone.load_state_dict(torch.load(files / "weights.pt", weights_only=True))
    model.stream.load_state_dict(torch.load(files / "stream.pt", weights_only=True)["state_dict"])
    # The command's preprocessing: torchvision's resnet18 metadata (resize 256, crop 224), scaled to --image-size 64.
    transform = from_torchvision_weights("resnet18").with_overrides(size=64).eval_transform()
    x = transform(Image.open(files / "first.png").convert("RGB"))[None]
    for pooling in ("gap", "ca"):
        with torch.no_grad(), model.pooling_as(pooling):
            probs = model(x).softmax(dim=1)[0]
        assert int(rows[0][f"{pooling}_class"]) == int(probs.argmax())
        assert float(rows[0][f"{pooling}_prob"]) == pytest.approx(float(probs.max()), abs=1e-5)


def test_default_methods_including_score_cam(files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = _args(files, out)
    args[args.index("--image-size") + 1] = "32"  # a 1x1 last map: one Score-CAM pass per image
    assert main(args) == 0, capsys.readouterr().err
    assert np.load(out / "second_scorecam_ca.npy").shape == (32, 32)
    assert len(list(out.glob("*.npy"))) == 2 * 5  # (gradcam, scorecam) x (gap, ca) + raw_attention x ca


@pytest.mark.parametrize(
    "change, message",
    [
        (("--images", "broken.png"), "cannot be read"),
        (("--images", "missing.png"), "does not exist"),
        (("--methods", "gradcam,nope"), "unknown saliency method 'nope'; valid names: raw_attention, gradcam"),
        (("--pooling", "gap,max"), "--pooling 'max' is not a pooling"),
        (("--stream", "other_stream.pt"), "another backbone"),
        (("--weights", "missing.pt"), "does not exist"),
        (("--class", "9"), "--class 9 is out of range: the model has 5 classes"),
    ],
)
def test_errors_are_messages(files, tmp_path, capsys, change: tuple[str, str], message: str) -> None:
    out = tmp_path / "out"
    args = _args(files, out, "--methods", "gradcam")
    flag, value = change
    position = args.index(flag) if flag in args else len(args)
    if flag == "--images":
        args[position + 1 : position + 3] = [str(files / value)]
    elif flag in ("--stream", "--weights"):
        args[position + 1] = str(files / value)
    else:
        args += [flag, value]  # argparse: the last occurrence wins
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not any(out.glob("*.npy"))


def test_weights_are_required_except_for_the_demo_model(tmp_path, capsys) -> None:
    code = main(["explain", "--arch", "resnet18", "--images", "x.png", "--out", str(tmp_path)])
    assert code == 2 and "--weights is required" in capsys.readouterr().err


def test_help_lists_the_command(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", "--help"])
    assert exit_info.value.code == 0
    assert "--methods" in capsys.readouterr().out


def _quick(files, out, images, *extra: str) -> list[str]:
    args = _args(files, out, "--methods", "gradcam", "--pooling", "gap", *extra)
    start = args.index("--images") + 1
    args[start : start + 2] = [str(p) for p in images]
    return args


def test_output_names_keep_the_full_name_and_are_unique() -> None:
    paths = ["x/frame.0001.png", "x/frame.0002.png", "a/cat.png", "b/cat.png", "cat_2.jpg", "c/Cat.PNG", ".png"]
    assert output_names(paths) == ["frame.0001", "frame.0002", "cat", "cat_3", "cat_2", "Cat_4", ".png"]
    assert output_names(["a/b.tar.gz", "c/b.tar.gz"]) == ["b.tar", "b.tar_2"]


def test_every_input_gets_its_own_files_and_the_count_is_what_exists(files, tmp_path, capsys) -> None:
    # Before: Path.with_suffix made frame.0001 and frame.0002 both write frame.npy/frame.png.
    rng = np.random.default_rng(1)
    images = []
    for relative in ("x/frame.0001.png", "x/frame.0002.png", "a/cat.png", "b/cat.png", "cat_2.png"):
        path = tmp_path / "in" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
        images.append(path)
    out = tmp_path / "out"
    assert main(_quick(files, out, images)) == 0
    printed = capsys.readouterr().out
    written = sorted(p.name for p in out.iterdir())
    names = ["frame.0001", "frame.0002", "cat", "cat_3", "cat_2"]
    expected = sorted(
        [f"{n}_input.png" for n in names]
        + [f"{n}_gradcam_gap.{ext}" for n in names for ext in ("npy", "png")]
        + ["predictions.csv", "run.json"]
    )
    assert written == expected
    assert (
        f"({len(written)} files)" in printed and "wrote 5 maps (.npy), 5 overlays (.png), 5 input image(s)" in printed
    )
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["image"], r["name"]) for r in rows] == list(zip(map(str, images), names, strict=True))
    # Each file holds its own image's map: the two "cat" inputs differ, so do their maps.
    assert not np.array_equal(np.load(out / "cat_gradcam_gap.npy"), np.load(out / "cat_3_gradcam_gap.npy"))


def test_the_output_folder_is_whole_or_nothing(files, tmp_path, capsys, monkeypatch) -> None:
    import xai_pool.explainer

    real, calls = xai_pool.explainer.explain, []

    def fails_on_the_second_image(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the machine went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(xai_pool.explainer, "explain", fails_on_the_second_image)
    out = tmp_path / "out"
    assert main(_quick(files, out, [files / "first.png", files / "second.png"])) == 2
    assert "the machine went away" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither --out nor a staging folder


def test_an_existing_out_is_replaced_only_with_overwrite(files, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old results")
    assert main(_quick(files, out, [files / "first.png"])) == 2
    assert "already exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert main(_quick(files, out, [files / "first.png"], "--overwrite")) == 0
    assert not (out / "old.txt").exists() and (out / "first_gradcam_gap.npy").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    inside = out / "first_input.png"
    assert main(_quick(files, out, [inside], "--overwrite")) == 2
    assert "would delete" in capsys.readouterr().err and inside.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(_quick(files, empty, [files / "first.png"])) == 0  # an empty folder is simply filled


def test_a_killed_run_leaves_nothing_the_next_run_keeps(files, tmp_path) -> None:
    from xai_pool.atomic import _host_tag

    from .test_atomic import dead_pid

    stale = tmp_path / f".out.{_host_tag()}.{dead_pid()}.{'ab' * 6}.tmp"
    stale.mkdir()
    (stale / "first_input.png").write_bytes(b"half")
    assert main(_quick(files, tmp_path / "out", [files / "first.png"])) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_csv_cells_that_spreadsheets_would_run_are_escaped(files, tmp_path, monkeypatch) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(files / "first.png").save(folder / "=1+2.png")
    monkeypatch.chdir(folder)
    out = tmp_path / "out"
    assert main(_quick(files, out, ["=1+2.png"])) == 0
    text = (out / "predictions.csv").read_text()
    assert "'=1+2.png,'=1+2," in text
    assert (out / "=1+2_gradcam_gap.npy").exists()  # file names are left as they are


def test_explain_uses_the_models_own_preprocessing_like_the_python_api(tmp_path) -> None:
    """`--arch tf_efficientnet_lite0 --weights <timm state dict>` on chelsea: timm's statistics, not ImageNet's."""
    import json

    import timm
    from skimage import data
    from timm.data import create_transform, resolve_model_data_config

    from xai_pool.zoo import efficientnet_lite0

    state = efficientnet_lite0().state_dict()  # ImageNet weights, timm key names
    torch.save(state, tmp_path / "lite0.pth")
    Image.fromarray(data.chelsea()).save(tmp_path / "chelsea.png")
    out = tmp_path / "out"
    args = ["explain", "--arch", "tf_efficientnet_lite0", "--weights", str(tmp_path / "lite0.pth")]
    args += ["--images", str(tmp_path / "chelsea.png"), "--methods", "gradcam", "--pooling", "gap"]
    assert main([*args, "--out", str(out), "--no-progress"]) == 0

    # The Python API with the model's own statistics, through timm's own transform (the peer).
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(state)
    model.eval()
    transform = create_transform(**resolve_model_data_config(model), is_training=False)
    with torch.no_grad():
        probs = model(transform(Image.open(tmp_path / "chelsea.png").convert("RGB"))[None]).softmax(dim=1)[0]
    with open(out / "predictions.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert int(row["gap_class"]) == int(probs.argmax()) == 282  # tiger cat
    assert float(row["gap_prob"]) == pytest.approx(float(probs.max()), abs=2e-6)
    run = json.loads((out / "run.json").read_text())
    assert run["preprocessing"]["mean"] == [0.5, 0.5, 0.5] and run["preprocessing"]["interpolation"] == "bicubic"
    assert run["preprocessing"]["source"].startswith("timm pretrained_cfg")

    # --mean/--std/--image-size override the model's values and say so in run.json.
    override = tmp_path / "override"
    extra = ["--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--image-size", "192"]
    assert main([*args, "--out", str(override), "--no-progress", *extra]) == 0
    run = json.loads((override / "run.json").read_text())
    assert run["preprocessing"]["mean"] == [0.485, 0.456, 0.406] and run["preprocessing"]["input_size"] == [192, 192]
    assert run["preprocessing"]["resize_size"] == 219  # the crop fraction (224/256) is kept
    assert "command line override" in run["preprocessing"]["source"]
    assert np.load(override / "chelsea_gradcam_gap.npy").shape == (192, 192)
    resized = tmp_path / "resized"
    assert main([*args, "--out", str(resized), "--no-progress", "--resize", "300"]) == 0
    run = json.loads((resized / "run.json").read_text())
    assert (run["preprocessing"]["resize_size"], run["preprocessing"]["input_size"]) == (300, [224, 224])


def test_a_class_token_vit_is_explained_as_it_is_with_its_own_attention(tmp_path, capsys) -> None:
    import timm

    from xai_pool import explain
    from xai_pool.adapters import resolve_preprocessing

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=5).eval()
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (240, 260, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    args = ["explain", "--arch", "vit_tiny_patch16_224", "--weights", str(tmp_path / "vit.pth")]
    args += ["--images", str(tmp_path / "a.png"), "--methods", "raw_attention,gradcam", "--no-progress"]
    assert main([*args, "--pooling", "gap", "--out", str(tmp_path / "out")]) == 0
    x = resolve_preprocessing(vit).eval_transform()(Image.open(tmp_path / "a.png").convert("RGB"))[None]
    np.testing.assert_allclose(
        np.load(tmp_path / "out" / "a_raw_attention_gap.npy"), explain(vit, x, "raw_attention")[0]
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "out" / "a_gradcam_gap.npy"), explain(vit, x, "gradcam")[0], atol=1e-6
    )
    assert main([*args, "--pooling", "gap,ca", "--out", str(tmp_path / "ca")]) == 2
    assert "class token, no average pooling" in capsys.readouterr().err and not (tmp_path / "ca").exists()
