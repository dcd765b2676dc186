"""GAP vs CA metric report on the embedded benchmark, with xai_pool.report.compare.

Uses the embedded ShapesScenes classifier with a CA-Stream: the checkpoint given by --stream,
else a stream trained here for 2 epochs on 1,000 images. Explains --n test images with raw
attention, Grad-CAM, Grad-CAM++ and Score-CAM for GAP and CA, scores every map (AD, AG, AI,
insertion, deletion, pointing game, energy pointing game), prints the table (means, 95%
bootstrap intervals, paired Wilcoxon p-values with Holm's adjustment) and writes report.html,
report.md, metrics.csv, metrics.json, per_image.csv, run.json and the figures (PNG) to --out.

    python examples/gap_vs_ca_report.py [--out DIR] [--n 100] [--step 256] [--stream CKPT] [--quick]

Measured on an idle 2-core CPU: 115 s with the defaults (100 images; the time grows linearly
with --n), 35 s with ``--quick`` (10 images). Nothing is downloaded. For your own data and
model: ``xai-pool evaluate``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

import xai_pool
from xai_pool.data import ShapesScenes
from xai_pool.report import compare


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("xai_pool_examples/gap_vs_ca_report"), help="output folder")
    parser.add_argument("--n", type=int, default=100, help="number of test images (more: narrower intervals)")
    parser.add_argument("--step", type=int, default=256, help="insertion/deletion pixels per step (64 = one row)")
    parser.add_argument("--stream", type=Path, help="stream checkpoint (.pt) for shapes_resnet; default: train one")
    parser.add_argument("--quick", action="store_true", help="10 images, coarse steps, 1 epoch: a smoke test")
    args = parser.parse_args(argv)
    if args.n < 2 or not 1 <= args.step <= 64 * 64:
        parser.error("--n must be >= 2 and --step in [1, 4096] (pixels of a 64x64 image)")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {str(args.out)!r} is a file; give a folder")
    if args.stream is not None and not args.stream.is_file():
        parser.error(f"--stream {str(args.stream)!r} is not a file")
    if args.quick:
        args.n, args.step = 10, 512
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and write the report; returns the exit code."""
    args = parse_args(argv)
    torch.manual_seed(0)
    model = xai_pool.attach_stream(xai_pool.zoo.shapes_resnet(pretrained=True))
    if args.stream is not None:
        xai_pool.load_stream(model, args.stream)
    else:
        x, y, _ = ShapesScenes("train", n=300 if args.quick else 1000, seed=0).tensors()
        loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
        xai_pool.train_stream(model, loader, epochs=1 if args.quick else 2, lr=0.05, schedule="cosine", progress=False)

    # The dataset yields (image, label, mask): the pointing games are added automatically.
    result = compare(
        model,
        ShapesScenes("test", n=args.n, seed=0),
        step=args.step,
        batch_size=50,
        method_kwargs={"scorecam": {"batch_size": 64}},
        progress=False,
    )
    result.write(args.out, title=f"GAP vs CA on ShapesScenes ({result.n_images} images)")
    print(result.to_markdown())
    print(result.findings())
    print(f"{result.n_images} images in {result.seconds:.0f} s; report in {args.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
