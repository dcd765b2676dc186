"""The example scripts in examples/ run end to end (``--quick``) and write valid files."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = ("quickstart.py", "saliency_overlays.py", "gap_vs_ca_report.py")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PAIRS = {("raw_attention", "ca")} | {(m, p) for m in ("gradcam", "gradcam++", "scorecam") for p in ("gap", "ca")}


def _run(script: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--quick", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=EXAMPLES.parent,
    )
    assert run.returncode == 0, f"{script} failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    return run


def _assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000, f"{path} is not a PNG image ({len(data)} bytes)"


@pytest.mark.slow
def test_quickstart_example(tmp_path) -> None:
    out = tmp_path / "quickstart"
    run = _run("quickstart.py", "--out", str(out))
    assert "test accuracy" in run.stdout
    _assert_png(out / "side_by_side.png")
    import torch

    import xai_pool

    model = xai_pool.attach_stream(xai_pool.zoo.shapes_resnet(pretrained=True))
    before = [p.clone() for p in model.stream.parameters()]
    xai_pool.load_stream(model, out / "stream.pt")  # a valid checkpoint for the shipped model
    assert any(not torch.equal(a, b) for a, b in zip(before, model.stream.parameters(), strict=True))


@pytest.mark.slow
def test_saliency_overlays_example(tmp_path) -> None:
    out = tmp_path / "overlays"
    run = _run("saliency_overlays.py", "--out", str(out), "--images", "2")
    files = sorted(out.glob("*.png"))
    inputs = [f for f in files if f.name.endswith("_input.png")]
    assert len(inputs) == 2, [f.name for f in files]
    for stem in (f.name[: -len("_input.png")] for f in inputs):
        names = {f.name for f in files if f.name.startswith(stem + "_")}
        expected = {f"{stem}_{m.replace('+', 'p')}_{p}.png" for m, p in PAIRS} | {f"{stem}_input.png"}
        assert names == expected
    for path in files:
        _assert_png(path)
    from PIL import Image

    with Image.open(out / inputs[0].name) as image:
        assert image.size == (256, 256)  # 64x64 enlarged --scale 4 times
    assert f"wrote {len(files)} PNG files" in run.stdout


@pytest.mark.slow
def test_gap_vs_ca_report_example(tmp_path) -> None:
    out = tmp_path / "report"
    run = _run("gap_vs_ca_report.py", "--out", str(out))
    assert "| Grad-CAM | CA |" in run.stdout
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert {(r["method"], r["pooling"]) for r in rows} == PAIRS
    for row in rows:
        assert int(row["n"]) == 10
        for metric in ("ad", "ag", "ai", "insertion", "deletion", "pointing_game", "energy_pointing_game"):
            assert float(row[f"{metric}_ci_low"]) <= float(row[metric]) <= float(row[f"{metric}_ci_high"])
    per_image = list(csv.DictReader((out / "per_image.csv").open()))
    assert len(per_image) == 10 * len(PAIRS)
    assert json.loads((out / "metrics.json").read_text())["n_images"] == 10
    assert "| Method | Pooling |" in (out / "report.md").read_text()
    assert (out / "report.html").read_text().count("data:image/png;base64,") >= 5
    for name in ("side_by_side", "attention_grid", "insertion_curves", "deletion_curves", "metric_bars"):
        _assert_png(out / f"{name}.png")


def _load(script: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{Path(script).stem}", EXAMPLES / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_defaults_and_bad_arguments(script: str, tmp_path, capsys) -> None:
    module = _load(script)
    assert module.__doc__ and "python examples/" + script in module.__doc__  # says how to run it
    args = module.parse_args([])
    assert args.out == Path("xai_pool_examples") / Path(script).stem and not args.quick
    target = tmp_path / "a_file"
    target.write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args(["--out", str(target)])
    assert exit_info.value.code == 2
    assert "is a file" in capsys.readouterr().err
    if script == "saliency_overlays.py":
        with pytest.raises(SystemExit):
            module.parse_args(["--methods", "gradcam,nosuchcam"])
        assert "nosuchcam" in capsys.readouterr().err
    if hasattr(module.parse_args([]), "stream"):
        with pytest.raises(SystemExit):
            module.parse_args(["--stream", str(tmp_path / "missing.pt")])
        assert "is not a file" in capsys.readouterr().err


def test_examples_are_short() -> None:
    for script in SCRIPTS:
        lines = (EXAMPLES / script).read_text().count("\n")
        assert lines <= 100, f"{script} has {lines} lines; examples should stay short (about 80)"


def test_transfer_example_passes_its_options_to_run_transfer(monkeypatch, tmp_path, capsys) -> None:
    # The run itself is tested in tests/test_transfer.py; here only the script's wiring.
    module = _load("transfer_lite0.py")
    calls: list[tuple] = []
    monkeypatch.setattr(
        module, "run_transfer", lambda out, **kwargs: calls.append((out, kwargs)) or {"summary": "the summary"}
    )
    assert (
        module.main(
            ["--out", str(tmp_path), "--quick", "--methods", "gradcam, scorecam", "--test-images", "7", "--no-progress"]
        )
        == 0
    )
    ((out, kwargs),) = calls
    config = kwargs["config"]
    assert out == tmp_path and kwargs["progress"] is False
    assert config.methods == ("gradcam", "scorecam") and config.test_images == 7
    assert config.image_size == 96 and config.finetune_epochs == 1  # --quick sizes
    assert capsys.readouterr().out == "the summary\n"  # the script prints what the library returns
    calls.clear()
    module.main(["--out", str(tmp_path)])
    assert calls[0][1]["config"].image_size == 128 and calls[0][1]["progress"] is None


# --------------------------------------------------------------------------- vit_attention.py
def _quick_vit(module: ModuleType, **changes) -> Any:
    from dataclasses import replace

    return module.build_vit(replace(module.QUICK, **changes)).eval()


@pytest.mark.parametrize("stem", ["resnet", "patch"])
def test_vit_average_pooled_variant_keeps_weights_and_head(stem: str) -> None:
    import torch

    import xai_pool
    from xai_pool.data import ShapesScenes

    module = _load("vit_attention.py")
    vit = _quick_vit(module, stem=stem)
    x = ShapesScenes("test", n=3, seed=0).tensors()[0]
    with torch.no_grad():
        before = vit(x)
        avg = module.average_pooled_variant(vit).eval()
        tokens = vit.forward_features(x)  # final norm applied to every token
        # By hand: the mean of the normalised patch tokens (class token left out) through the same head.
        assert torch.allclose(avg(x), vit.head(tokens[:, 1:].mean(dim=1)), atol=1e-5)
        assert torch.allclose(vit(x), before) and torch.allclose(vit(x), vit.head(tokens[:, 0]), atol=1e-5)
        assert not torch.allclose(avg(x), before, atol=1e-3)  # another pooling, not the same model
    assert vit.global_pool == "token" and avg.global_pool == "avg"
    assert all(torch.equal(a, b) for a, b in zip(vit.state_dict().values(), avg.state_dict().values(), strict=True))
    ca = xai_pool.attach_stream(avg)  # the stream replaces exactly that mean
    assert ca.profile.pool.path == "fc_norm" and ca.profile.pool.layout.prefix_tokens == 1
    with torch.no_grad(), ca.pooling_as("gap"):
        assert torch.allclose(ca(x), avg(x), atol=1e-5)


def test_vit_attention_arguments(tmp_path, capsys) -> None:
    module = _load("vit_attention.py")
    assert module.__doc__ and "python examples/vit_attention.py" in module.__doc__
    args = module.parse_args([])
    assert args.out == Path("xai_pool_examples/vit_attention") and not args.quick and args.stem == "resnet"
    target = tmp_path / "a_file"
    target.write_text("x")
    for bad, message in (
        (["--out", str(target)], "is a file"),
        (["--n", "1"], "--n must be at least 2"),
        (["--quick", "--from-scratch"], "--quick and --from-scratch are two configurations"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            module.parse_args(bad)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.slow
def test_vit_attention_example(tmp_path) -> None:
    import numpy as np
    import torch

    import xai_pool
    from xai_pool.data import ShapesScenes
    from xai_pool.metrics import adjust_p_values, evaluate, summarize

    out = tmp_path / "vit"
    run = _run("vit_attention.py", "--out", str(out))
    assert sorted(p.name for p in out.iterdir()) == [
        "examples.png",
        "results.json",
        "results.md",
        "stream.pt",
        "vit.pt",
    ]
    _assert_png(out / "examples.png")
    results = json.loads((out / "results.json").read_text())
    module = _load("vit_attention.py")
    n = module.QUICK.n
    per_image = results["per_image"]
    assert set(per_image) == set(module.MAPS) and results["config"]["n"] == n
    markdown = (out / "results.md").read_text()
    assert markdown in run.stdout
    for key, values in per_image.items():
        pg, epg = (np.asarray(values[m]) for m in module.METRICS)
        assert pg.shape == epg.shape == (n,) and set(pg) <= {0.0, 100.0} and ((epg >= 0) & (epg <= 100)).all()
        summary = results["summary"][key]
        assert summary == summarize({m: np.asarray(values[m]) for m in module.METRICS})  # same seed: same CIs
        assert summary["pointing_game"]["mean"] == pytest.approx(pg.mean())
        s = summary["energy_pointing_game"]
        assert f"{s['mean']:.1f} [{s['ci_low']:.1f}, {s['ci_high']:.1f}]" in markdown
    tests = results["tests"]
    assert [(t["a"], t["b"], t["metric"]) for t in tests] == [
        (a, b, m) for a, b in module.PAIRS for m in module.METRICS
    ]
    for t in tests:
        a, b = np.asarray(per_image[t["a"]][t["metric"]]), np.asarray(per_image[t["b"]][t["metric"]])
        assert t["diff"] == pytest.approx((a - b).mean()) and t["ci_low"] <= t["diff"] <= t["ci_high"]
    assert [t["p_holm"] for t in tests] == pytest.approx(list(adjust_p_values([t["p_value"] for t in tests], "holm")))

    # The saved weights reproduce the scored maps: the ViT's own attention and the CA-Stream's.
    vit = module.build_vit(module.QUICK)
    vit.load_state_dict(torch.load(out / "vit.pt", weights_only=True))
    vit.eval()
    ca = xai_pool.attach_stream(module.average_pooled_variant(vit))
    xai_pool.load_stream(ca, out / "stream.pt")
    x, y, masks = ShapesScenes("test", n=n, seed=0).tensors()
    for key, model, kwargs in (
        ("own_attention", vit, {}),
        ("own_rollout", vit, {"rollout": True}),
        ("ca_attention", ca, {}),
    ):
        maps = xai_pool.explain(model, x, "raw_attention", **kwargs)
        again = evaluate(model, x, maps, y, metrics=module.METRICS, masks=masks)
        for metric in module.METRICS:
            # percent; the saved float32 weights reload exactly, the sums may round differently (~5e-6 seen)
            np.testing.assert_allclose(again[metric], per_image[key][metric], rtol=1e-5, atol=1e-4)
    with torch.no_grad():
        accuracy = float((ca(x).argmax(1) == y).float().mean())
    assert accuracy == pytest.approx(results["accuracy_on_scored"]["ca"])
