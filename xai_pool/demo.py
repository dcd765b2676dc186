"""The main job: the whole method on the embedded ShapesScenes benchmark, offline, on a laptop.

:func:`run_demo` loads the shipped GAP classifier (or retrains it), trains its CA-Stream with
the backbone frozen, explains the test images with raw attention, Grad-CAM, Grad-CAM++ and
Score-CAM for GAP and CA, scores every map (AD, AG, AI, insertion, deletion, pointing game,
energy pointing game) and writes the report. Every file is written atomically; a run that is
interrupted resumes its stream training from ``DIR/stream/train_state.pt`` and reuses a
finished stream (``DIR/stream/last.pt``) instead of training again. The steps are logged
through the ``xai_pool.pipeline`` logger; nothing is printed (``xai-pool demo`` prints the summary).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["DemoConfig", "demo_config", "run_demo"]


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
        return DemoConfig(
            train_images=1000, test_images=40, stream_epochs=2, step=256, retrain_epochs=2, retrain_images=1000
        )
    return DemoConfig()


def run_demo(
    out: str | Path = "xai_pool_demo",
    *,
    quick: bool = False,
    retrain: bool = False,
    device: str | None = None,
    config: DemoConfig | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run the demo and write its report to ``out``.

    Args:
        out: output folder (created; existing results in it are reused or replaced).
        quick: the small smoke run (about a minute on 2 cores).
        retrain: retrain the GAP classifier from scratch instead of loading the shipped weights.
        device: ``"auto"`` (the default: CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        config: explicit sizes (overrides ``quick``).
        progress: tqdm bars (default: only on a terminal).

    Returns:
        ``{"result": ComparisonResult, "files": [...], "seconds": ..., "history": [...],
        "summary": str}``, the summary being the text to show (table, findings, where the report is).

    Raises:
        ValueError: ``device`` is not a device name or not available.
        OSError: ``out`` cannot be written (a file, no permission).
    """
    from . import attach_stream
    from .data import ShapesScenes
    from .pipeline import logger, run_summary, train_or_reuse_stream
    from .report import check_output_dir, compare, write_report
    from .runtime import resolve_device
    from .zoo import ShapesResNet, shapes_resnet, train_gap_classifier

    cfg = config or demo_config(quick)
    started = time.perf_counter()
    out = check_output_dir(out)  # a file or an unwritable folder fails here, before any work
    device = resolve_device(device)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)

    if retrain:
        logger.info(
            "[1/4] retraining the GAP classifier from scratch (%d images, %d epochs)",
            cfg.retrain_images,
            cfg.retrain_epochs,
        )
        backbone = ShapesResNet()
        gap_history = train_gap_classifier(
            backbone,
            ShapesScenes("train", n=cfg.retrain_images, seed=cfg.seed),
            ShapesScenes("test", n=cfg.test_images, seed=cfg.seed),
            epochs=cfg.retrain_epochs,
            seed=cfg.seed,
            device=device,
            progress=progress is not False,
        )
        logger.info("      GAP classifier test accuracy: %.1f%%", 100 * gap_history.final_test_accuracy)
    else:
        logger.info("[1/4] loading the shipped GAP classifier (xai_pool.zoo.shapes_resnet)")
        backbone = shapes_resnet(pretrained=True)
    model = attach_stream(backbone.to(device))

    stream_dir = out / "stream"
    logger.info(
        "[2/4] training the CA-Stream, backbone frozen (%d images, %d epochs)", cfg.train_images, cfg.stream_epochs
    )
    history, _ = train_or_reuse_stream(
        model,
        stream_dir,
        lambda: ShapesScenes("train", n=cfg.train_images, seed=cfg.seed).tensors()[:2],
        lambda: ShapesScenes("test", n=cfg.test_images, seed=cfg.seed).tensors()[:2],
        epochs=cfg.stream_epochs,
        lr=cfg.stream_lr,
        batch_size=cfg.batch_size,
        device=device,
        seed=cfg.seed,
        fresh=retrain,
        progress=progress,
    )
    model.eval()

    logger.info("[3/4] explaining and scoring %d test images: %s x GAP/CA", cfg.test_images, ", ".join(cfg.methods))
    test = ShapesScenes("test", n=cfg.test_images, seed=cfg.seed)
    result = compare(
        model,
        test,
        methods=cfg.methods,
        batch_size=cfg.batch_size,
        step=cfg.step,
        progress=progress is not False,
        keep_examples=6,
    )

    logger.info("[4/4] writing the report to %s", out)
    seconds = time.perf_counter() - started
    run_info = {
        "config": asdict(cfg),
        "device": str(device),
        "retrain": retrain,
        "seconds": round(seconds, 1),
        "stream_history": history,
    }
    files = write_report(result, out, title="xai_pool demo: GAP vs CA on ShapesScenes", run_info=run_info)
    summary = run_summary(result, out, seconds)
    return {"result": result, "files": files, "seconds": seconds, "history": history, "summary": summary}
