"""Transfer experiment (like the paper's CUB experiment, its Table 3), offline on a CPU.

1. Fine-tune the ImageNet-pretrained EfficientNet-Lite0 (:func:`xai_pool.zoo.efficientnet_lite0`)
   on ShapesScenes with its own GAP head (every parameter trained; AdamW, one-cycle).
2. Freeze it and train its CA-Stream (SGD, cosine), exactly as for any other backbone.
3. Compare GAP vs CA with the full report (every method x pooling x metric, CIs, p-values).

ShapesScenes is rendered at ``image_size`` (default 128: a 4x4 final feature map, since
Lite0 downsamples by 32; larger sizes give finer maps and cost quadratically more on a CPU)
and re-normalised to Lite0's input range [-1, 1]. Every stage writes its result atomically
and is reused when the run is repeated: ``finetuned.pt`` (the fine-tuned weights, loaded
weights-only; reused only when ``finetuned.json`` shows the same recipe), ``stream/``
(resumable), then the report.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["TransferConfig", "lite0_shapes_tensors", "load_finetuned_lite0", "run_transfer", "transfer_config"]


@dataclass(frozen=True)
class TransferConfig:
    """Sizes and recipe of one transfer run (defaults: the documented CPU run)."""

    image_size: int = 128
    train_images: int = 2000
    test_images: int = 100
    finetune_epochs: int = 2
    finetune_lr: float = 1e-3
    stream_epochs: int = 3
    stream_lr: float = 0.05
    batch_size: int = 32
    step: int | None = None  # insertion/deletion pixels per step; None: 1/16 of the image (17 points)
    methods: tuple[str, ...] = ("raw_attention", "gradcam", "gradcam++")
    seed: int = 0


def transfer_config(quick: bool = False) -> TransferConfig:
    """The documented run, or a small smoke run (``quick``: a few hundred images, 1 epoch each)."""
    if quick:
        return TransferConfig(image_size=96, train_images=320, test_images=24, finetune_epochs=1, stream_epochs=1)
    return TransferConfig()


def lite0_shapes_tensors(split: str, n: int, size: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """ShapesScenes ``(images, labels, masks)`` in EfficientNet-Lite0's input space ([-1, 1])."""
    from .data import ShapesScenes
    from .zoo import LITE0_MEAN, LITE0_STD

    images, labels, masks = ShapesScenes(split, n=n, size=size, seed=seed).tensors()
    rgb = ShapesScenes.denormalize(images)
    mean = torch.tensor(LITE0_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(LITE0_STD).view(1, 3, 1, 1)
    return ((rgb - mean) / std).contiguous(), labels, masks


def load_finetuned_lite0(path: str | Path, num_classes: int = 10) -> nn.Module:
    """The fine-tuned Lite0 saved by :func:`run_transfer` (weights-only load, eval mode)."""
    from .checkpoint import safe_torch_load
    from .classifiers import load_state_dict_strict
    from .zoo import efficientnet_lite0

    model = efficientnet_lite0(pretrained=False, num_classes=num_classes)
    state = safe_torch_load(path)
    load_state_dict_strict(model, state, source=str(path), arch="tf_efficientnet_lite0")
    return model.eval()


def _finetune(
    cfg: TransferConfig,
    out: Path,
    train: Callable[[], tuple[Tensor, Tensor]],
    test: tuple[Tensor, Tensor],
    device: torch.device,
    progress: bool | None,
) -> tuple[nn.Module, dict[str, Any] | None]:
    """Fine-tune Lite0 with GAP, or reuse ``out/finetuned.pt``; returns (model, history dict)."""
    from .atomic import atomic_write_text
    from .checkpoint import atomic_torch_save
    from .pipeline import logger
    from .zoo import efficientnet_lite0, train_gap_classifier

    path = out / "finetuned.pt"
    recipe = {k: getattr(cfg, k) for k in ("image_size", "train_images", "finetune_epochs", "finetune_lr", "seed")}
    recipe_path = out / "finetuned.json"
    if path.exists() and recipe_path.exists() and json.loads(recipe_path.read_text()) == recipe:
        try:
            model = load_finetuned_lite0(path)
            logger.info("[1/4] reusing the fine-tuned EfficientNet-Lite0 in %s (delete it to fine-tune again)", path)
            return model, None
        except (ValueError, RuntimeError) as error:
            logger.info("[1/4] not reusing %s: %s", path, error)
    logger.info(
        "[1/4] fine-tuning ImageNet EfficientNet-Lite0 on ShapesScenes with GAP (%d images at %dpx, %d epochs)",
        cfg.train_images,
        cfg.image_size,
        cfg.finetune_epochs,
    )
    torch.manual_seed(cfg.seed)  # the new 10-class head
    model = efficientnet_lite0(num_classes=10)
    history = train_gap_classifier(
        model, train(), test, epochs=cfg.finetune_epochs, batch_size=cfg.batch_size, lr=cfg.finetune_lr,
        weight_decay=0.01, seed=cfg.seed, device=device, progress=progress is not False,
    )  # fmt: skip
    model.cpu()
    atomic_torch_save(model.state_dict(), path)
    atomic_write_text(recipe_path, json.dumps(recipe) + "\n")  # after the weights: marks them complete
    logger.info("      GAP test accuracy after fine-tuning: %.1f%%", 100 * history.final_test_accuracy)
    return model.eval(), history.to_dict()


def run_transfer(
    out: str | Path = "xai_pool_transfer",
    *,
    config: TransferConfig | None = None,
    quick: bool = False,
    device: str | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run the transfer experiment and write its report to ``out``.

    Args:
        out: output folder; finished stages found there are reused.
        config: explicit sizes (overrides ``quick``).
        quick: the smoke-run sizes of :func:`transfer_config`.
        device: ``"auto"`` (the default: CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        progress: tqdm bars (None: only on a terminal).

    Returns:
        ``{"result": ComparisonResult, "model": CAModel, "files": [...], "seconds": ...,
        "stage_seconds": {...}, "summary": str}``, the summary being the text to show (table,
        findings, times, where the report is). The steps are logged through the
        ``xai_pool.pipeline`` logger; nothing is printed.

    Raises:
        ValueError: ``device`` is not a device name or not available.
        OSError: ``out`` cannot be written (a file, no permission).
    """
    from . import attach_stream
    from .data import SHAPE_CLASSES
    from .pipeline import logger, run_summary, train_or_reuse_stream
    from .report import check_output_dir, compare, write_report
    from .runtime import resolve_device
    from .zoo import LITE0_MEAN, LITE0_STD

    cfg = config or transfer_config(quick)
    started = time.perf_counter()
    out = check_output_dir(out)  # a file or an unwritable folder fails here, before any work
    device = resolve_device(device)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    # Each split is rendered once: the test split serves fine-tuning, stream validation and the
    # report; the training split (only rendered when a stage trains) is dropped before the report.
    images, labels, masks = lite0_shapes_tensors("test", cfg.test_images, cfg.image_size, cfg.seed)
    train = functools.cache(lambda: lite0_shapes_tensors("train", cfg.train_images, cfg.image_size, cfg.seed)[:2])

    backbone, finetune_history = _finetune(cfg, out, train, (images, labels), device, progress)
    seconds["finetune"] = time.perf_counter() - started

    model = attach_stream(backbone.to(device))
    logger.info(
        "[2/4] training the CA-Stream, backbone frozen (%d images, %d epochs)", cfg.train_images, cfg.stream_epochs
    )
    mark = time.perf_counter()
    stream_history, _ = train_or_reuse_stream(
        model, out / "stream",
        train, lambda: (images, labels),
        epochs=cfg.stream_epochs, lr=cfg.stream_lr, batch_size=cfg.batch_size, device=device, seed=cfg.seed,
        progress=progress,
    )  # fmt: skip
    train.cache_clear()
    model.eval()
    seconds["stream"] = time.perf_counter() - mark

    logger.info("[3/4] explaining and scoring %d test images: %s x GAP/CA", cfg.test_images, ", ".join(cfg.methods))
    mark = time.perf_counter()
    step = cfg.step or max(1, cfg.image_size * cfg.image_size // 16)
    result = compare(
        model, torch.utils.data.TensorDataset(images, labels, masks), methods=cfg.methods,
        mean=LITE0_MEAN, std=LITE0_STD, class_names=SHAPE_CLASSES, batch_size=cfg.batch_size, step=step,
        progress=progress is not False, keep_examples=6,
    )  # fmt: skip
    seconds["report"] = time.perf_counter() - mark

    logger.info("[4/4] writing the report to %s", out)
    seconds["total"] = time.perf_counter() - started
    run_info = {
        "config": asdict(cfg), "device": str(device), "torch_threads": torch.get_num_threads(),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "finetune_history": finetune_history, "stream_history": stream_history,
    }  # fmt: skip
    title = "xai_pool transfer: ImageNet EfficientNet-Lite0 fine-tuned on ShapesScenes, GAP vs CA"
    files = write_report(result, out, title=title, run_info=run_info)
    return {
        "result": result,
        "model": model,
        "files": files,
        "seconds": seconds["total"],
        "stage_seconds": seconds,
        "summary": run_summary(result, out, seconds["total"], seconds),
    }
