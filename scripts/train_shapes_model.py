#!/usr/bin/env python
"""Reproduce the shipped ShapesResNet weights (``xai_pool/zoo/weights/shapes_resnet.pt``).

Usage (from the repository root, about 5 minutes on 2 CPU cores)::

    python scripts/train_shapes_model.py                 # overwrite the shipped weights
    python scripts/train_shapes_model.py --out /tmp/w.pt # write elsewhere

What it does: seeds torch, renders ShapesScenes("train", n=6000) and ShapesScenes("test",
n=2000) (seed 0), builds ShapesResNet, trains it with
:func:`xai_pool.zoo.train_gap_classifier` (its defaults are the shipped recipe), prints
the test accuracy, converts the weights to float16 (to keep the package small), re-checks
the accuracy of the converted weights, and writes them atomically
(:func:`xai_pool.checkpoint.atomic_torch_save`), only if that accuracy reaches ``--min-accuracy``.

Same seed, same thread count and same torch build give the same weights; other thread
counts or CPUs can change the last bits of the float sums and hence the weights slightly.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from xai_pool.checkpoint import atomic_torch_save
from xai_pool.data import ShapesScenes
from xai_pool.zoo import WEIGHTS_PATH, ShapesResNet, evaluate_accuracy, train_gap_classifier


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults reproduce the shipped weights."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=WEIGHTS_PATH, help="weights file to write (default: the shipped one)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds the initialisation, shuffling and augmentation")
    parser.add_argument("--data-seed", type=int, default=0, help="ShapesScenes seed")
    parser.add_argument("--train-size", type=int, default=6000)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the reference run used 2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min-accuracy", type=float, default=0.90, help="refuse to write weights below this")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Train, check and write the weights; returns the process exit code."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # one line per epoch (xai_pool.zoo)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.perf_counter()

    train = ShapesScenes("train", n=args.train_size, seed=args.data_seed)
    test = ShapesScenes("test", n=args.test_size, seed=args.data_seed)
    train_tensors, test_tensors = train.tensors(), test.tensors()
    print(f"rendered {len(train)} train and {len(test)} test scenes in {time.perf_counter() - start:.1f} s")

    model = ShapesResNet(num_classes=len(train.class_names))
    history = train_gap_classifier(
        model,
        train_tensors,
        test_tensors,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    print(f"test accuracy (float32): {history.final_test_accuracy:.4f}")

    # float16 halves the file; check the accuracy of exactly what ships.
    state = {
        k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu() for k, v in model.state_dict().items()
    }
    shipped = ShapesResNet(num_classes=len(train.class_names))
    shipped.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    _, accuracy = evaluate_accuracy(shipped, test_tensors)
    elapsed = time.perf_counter() - start
    print(f"test accuracy (float16 weights, {len(test)} images): {accuracy:.4f}")
    print(f"total time: {elapsed:.0f} s ({args.threads} threads)")
    if accuracy < args.min_accuracy:
        print(f"accuracy below --min-accuracy {args.min_accuracy}; weights NOT written", file=sys.stderr)
        return 1
    atomic_torch_save(state, args.out)  # 0o666 minus the umask: world-readable package data
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
