"""The main job: the whole method on the embedded ShapesScenes benchmark, offline, on a laptop.

:func:`run_demo` loads the shipped GAP classifier (or retrains it), trains its CA-Stream with
the backbone frozen, explains the test images with raw attention, Grad-CAM, Grad-CAM++ and
Score-CAM for GAP and CA, scores every map (AD, AG, AI, insertion, deletion, pointing game,
energy pointing game) and writes the report. Every file is written atomically; a run that is
interrupted resumes its stream training from ``DIR/stream/train_state.pt`` and reuses a
finished stream (``DIR/stream/last.pt``) instead of training again.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["DemoConfig", "run_demo", "demo_config"]


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of one demo run (the defaults are the full demo; ``quick`` shrinks them)."""

    train_images: int = 4000
    test_images: int = 200
    stream_epochs: int = 4
    stream_lr: float = 0.05
    batch_size: int = 64
    step: int | None = 128  # insertion/deletion pixels per step: 2 rows of a 64x64 image, 33 points
    methods: tuple[str, ...] = ("raw_attention", "gradcam", "gradcam++", "scorecam")
    retrain_epochs: int = 12
    retrain_images: int = 6000
    seed: int = 0


def demo_config(quick: bool = False) -> DemoConfig:
    """The full demo (>= 200 test images) or the ``--quick`` smoke run."""
    if quick:
        return DemoConfig(train_images=1000, test_images=40, stream_epochs=2, step=256,
                          retrain_epochs=2, retrain_images=1000)
    return DemoConfig()


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, flush=True)


def run_demo(
    out: str | Path = "xai_pool_demo",
    *,
    quick: bool = False,
    retrain: bool = False,
    device: str | None = None,
    config: DemoConfig | None = None,
    progress: bool | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run the demo and write its report to ``out``.

    Args:
        out: output folder (created; existing results in it are reused or replaced).
        quick: the small smoke run (about a minute on 2 cores).
        retrain: retrain the GAP classifier from scratch instead of loading the shipped weights.
        device: ``"cpu"``, ``"cuda"``...; default CUDA when available.
        config: explicit sizes (overrides ``quick``).
        progress: tqdm bars (default: only on a terminal).
        quiet: print nothing.

    Returns:
        ``{"result": ComparisonResult, "files": [...], "seconds": ..., "history": [...]}``.
    """
    from torch.utils.data import DataLoader, TensorDataset

    from . import attach_stream, load_stream
    from .data import ShapesScenes
    from .report import compare
    from .train import train_stream
    from .viz import save_figure
    from .zoo import ShapesResNet, shapes_resnet, train_gap_classifier

    cfg = config or demo_config(quick)
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.seed)

    if retrain:
        _log(f"[1/4] retraining the GAP classifier from scratch ({cfg.retrain_images} images, "
             f"{cfg.retrain_epochs} epochs)", quiet)
        backbone = ShapesResNet()
        gap_history = train_gap_classifier(
            backbone, ShapesScenes("train", n=cfg.retrain_images, seed=cfg.seed),
            ShapesScenes("test", n=cfg.test_images, seed=cfg.seed), epochs=cfg.retrain_epochs,
            seed=cfg.seed, device=device, progress=progress is not False,
        )
        _log(f"      GAP classifier test accuracy: {100 * gap_history.final_test_accuracy:.1f}%", quiet)
    else:
        _log("[1/4] loading the shipped GAP classifier (xai_pool.zoo.shapes_resnet)", quiet)
        backbone = shapes_resnet(pretrained=True)
    model = attach_stream(backbone.to(device))

    stream_dir = out / "stream"
    finished = stream_dir / "last.pt"
    history: list[dict[str, Any]] = []
    reuse = finished.exists() and not retrain and (stream_dir / "DONE").exists()
    if reuse:
        try:
            load_stream(model, finished)
            _log(f"[2/4] reusing the trained stream in {finished} (delete {stream_dir} to retrain)", quiet)
        except ValueError:
            reuse = False
    if not reuse:
        _log(f"[2/4] training the CA-Stream, backbone frozen ({cfg.train_images} images, "
             f"{cfg.stream_epochs} epochs)", quiet)
        train = ShapesScenes("train", n=cfg.train_images, seed=cfg.seed)
        images, labels, _ = train.tensors()
        val = ShapesScenes("test", n=cfg.test_images, seed=cfg.seed)
        val_images, val_labels, _ = val.tensors()
        (stream_dir / "DONE").unlink(missing_ok=True)
        history = train_stream(
            model,
            DataLoader(TensorDataset(images, labels), batch_size=cfg.batch_size, shuffle=True),
            val_loader=DataLoader(TensorDataset(val_images, val_labels), batch_size=256),
            epochs=cfg.stream_epochs, lr=cfg.stream_lr, schedule="cosine", warmup_epochs=0.0,
            out_dir=stream_dir, resume=(stream_dir / "train_state.pt").exists() and not retrain,
            overwrite=True, device=device, seed=cfg.seed, progress=progress,
        )
        (stream_dir / "DONE").write_text("stream training finished\n")
        del images, labels
    model.eval()

    _log(f"[3/4] explaining and scoring {cfg.test_images} test images: {', '.join(cfg.methods)} x GAP/CA", quiet)
    test = ShapesScenes("test", n=cfg.test_images, seed=cfg.seed)
    result = compare(model, test, methods=cfg.methods, batch_size=cfg.batch_size, step=cfg.step,
                     progress=progress is not False, keep_examples=6)

    _log(f"[4/4] writing the report to {out}", quiet)
    files = [
        result.to_csv(out / "metrics.csv"),
        result.to_json(out / "metrics.json"),
        result.to_per_image_csv(out / "per_image.csv"),
    ]
    from .atomic import atomic_write_text

    markdown = "# xai_pool demo: GAP vs CA on ShapesScenes\n\n" + result.findings() + "\n\n" + result.to_markdown()
    files.append(atomic_write_text(out / "report.md", markdown))
    for name, fig in result.figures().items():
        files.append(save_figure(fig, out / f"{name}.png"))
    files.append(result.to_html(out / "report.html", title="xai_pool demo: GAP vs CA on ShapesScenes"))
    seconds = time.perf_counter() - started
    run_info = {"config": asdict(cfg), "device": str(device), "retrain": retrain, "seconds": round(seconds, 1),
                "stream_history": history}
    files.append(atomic_write_text(out / "run.json", json.dumps(run_info, indent=2, default=str) + "\n"))
    if not quiet:
        print()
        print(result.to_markdown())
        print(result.findings())
        print(f"\nDone in {seconds:.0f} s. Open {out / 'report.html'}")
    return {"result": result, "files": files, "seconds": seconds, "history": history}
