"""Quickstart: wrap a GAP classifier with a CA-Stream, train the stream, explain, save a figure.

Loads the embedded ShapesScenes classifier (its weights ship with xai_pool), attaches a
CA-Stream (the classifier stays frozen), trains the stream for 2 epochs on 1,000 generated
images, prints the test accuracy of GAP and CA pooling, explains 4 test images with raw
attention, Grad-CAM, Grad-CAM++ and Score-CAM for both poolings, and writes
``side_by_side.png`` (the paper's Figure 2 layout) and the stream checkpoint ``stream.pt``.

    python examples/quickstart.py [--out DIR] [--quick]

Measured on an idle 2-core CPU: 22 s (``--quick``: 12 s); about 5 times longer when another
CPU-heavy job shares the cores. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

import xai_pool
from xai_pool.data import ShapesScenes
from xai_pool.train import evaluate_stream

METHODS = ("gradcam", "gradcam++", "scorecam")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("xai_pool_examples/quickstart"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="smallest settings: a smoke test, not a result")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {str(args.out)!r} is a file; give a folder")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the quickstart; returns the exit code."""
    args = parse_args(argv)
    train_images, epochs, n_test, n_explain = (300, 1, 100, 2) if args.quick else (1000, 2, 200, 4)
    torch.manual_seed(0)
    started = time.perf_counter()

    # 1. Wrap: attach_stream freezes the classifier in place and adds a trainable .stream.
    model = xai_pool.attach_stream(xai_pool.zoo.shapes_resnet(pretrained=True))

    # 2. Train the stream only (a tiny budget; train_stream's defaults are the paper's ImageNet recipe).
    x, y, _ = ShapesScenes("train", n=train_images, seed=0).tensors()
    test = ShapesScenes("test", n=n_test, seed=0)
    tx, ty, _ = test.tensors()
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    xai_pool.train_stream(model, loader, epochs=epochs, lr=0.05, schedule="cosine", seed=0, progress=False)
    acc = evaluate_stream(model, DataLoader(TensorDataset(tx, ty), batch_size=256))
    print(f"test accuracy ({acc['count']} images): GAP {acc['acc_gap']:.1%}, CA {acc['acc_ca']:.1%}")

    # 3. Explain: raw attention (CA only) and each CAM method for both poolings (predicted class).
    images, labels = tx[:n_explain], ty[:n_explain]
    raw = xai_pool.explain(model, images, "raw_attention")
    maps = {m: {p: xai_pool.explain(model, images, m, pooling=p) for p in ("gap", "ca")} for m in METHODS}
    predictions = {}
    for pooling in ("gap", "ca"):
        with torch.no_grad(), model.pooling_as(pooling):
            predictions[pooling] = model(images).argmax(1)

    # 4. Save the figure and the stream (reload it with xai_pool.load_stream(model, path)).
    names = test.class_names
    fig = xai_pool.viz.side_by_side(
        images,
        raw_attention=raw,
        methods=maps,
        predictions=predictions,
        class_names=names,
        titles=[f"true: {names[int(c)]}" for c in labels],
        mean=test.mean,
        std=test.std,
    )
    figure = xai_pool.viz.save_figure(fig, args.out / "side_by_side.png")
    checkpoint = xai_pool.save_stream(model, args.out / "stream.pt")
    print(f"wrote {figure} and {checkpoint} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
