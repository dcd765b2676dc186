"""Benchmark: the evaluation engine behind ``xai_pool.report.compare``, measured side by side in one run.

1. **Forward passes** per image, counted by a forward hook on the backbone (every image that
   goes through it), for ``report.compare`` (new) and for the old loop (a copy of the previous
   ``compare`` loop kept in this file: per pooling a clean forward for the predictions, then per
   (method, pooling) pair ``explain`` + ``metrics.evaluate``, which runs its own clean forward
   and builds its own substrates). The explainers' own forwards are counted separately by
   running ``explain`` alone on the same images; the rest is divided by the minimum the
   protocol needs: one clean forward per pooling and image, plus per pair and image one
   AD/AG/AI explanation image and n insertion + n deletion points (target 1.00).
2. **Wall time** of ``report.compare`` against the old loop on the same inputs, interleaved
   (old, new, new, old...), median over repetitions, and their ratio.
3. **Processes against threads**: the same ``compare`` in 2 processes x 1 thread (gloo,
   torchrun-style sharding) against 1 process x 2 threads; the ratio of wall times (target
   >= 1.6 on 2 cores) and whether the per-image numbers are identical.
4. The **cost of the paper's Table-1 protocol** (ResNet-50 at 224, Grad-CAM, Grad-CAM++,
   Score-CAM and raw attention, GAP and CA, AD/AG/AI/I/D, step 224) in forward passes per
   image, and its projection to the 50,000 ImageNet validation images at ``--gpu-throughput``
   forwards per second (an assumption: nothing is measured on a GPU here).

Model: torchvision ResNet-18 (random weights, nothing downloaded) with a CA-Stream; images are
random. Timings are only meaningful on an otherwise idle machine.

    python bench/evaluation.py            # 16 images at 112 px, step 4 rows, 3 methods
    python bench/evaluation.py --quick    # smoke run: 4 images at 64 px, one repetition
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np
import torch
import torchvision
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import timed

import xai_pool
from xai_pool.report import compare


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 images at 64 px, 1 repetition")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--step", type=int, default=None, help="pixels per step (default: 4 rows)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per loader batch")
    parser.add_argument("--eval-batch-size", type=int, default=128)
    parser.add_argument("--methods", default="raw_attention,gradcam,gradcam++")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="threads of the one-process runs")
    parser.add_argument("--no-processes", action="store_true", help="skip the 2-process comparison")
    parser.add_argument("--gpu-throughput", type=float, default=2000.0, help="assumed ResNet-50 forwards/s")
    args = parser.parse_args()
    if args.quick:
        args.images, args.size, args.reps, args.batch_size = 4, 64, 1, 2
    args.step = args.step or 4 * args.size
    args.methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    return args


def build(args: argparse.Namespace) -> tuple[Any, TensorDataset]:
    torch.manual_seed(0)
    model = xai_pool.attach_stream(torchvision.models.resnet18(num_classes=10).eval())
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.stream.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.eval()
    g = torch.Generator().manual_seed(2)
    images = torch.randn(args.images, 3, args.size, args.size, generator=g)
    labels = torch.randint(0, 10, (args.images,), generator=g)
    return model, TensorDataset(images, labels)


def pairs_of(methods: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(m, p) for m in methods for p in ("gap", "ca") if not (m == "raw_attention" and p == "gap")]


def new_path(model, data, args) -> dict:
    result = compare(
        model,
        data,
        methods=args.methods,
        batch_size=args.batch_size,
        step=args.step,
        eval_batch_size=args.eval_batch_size,
        keep_examples=0,
        progress=False,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )
    return result.per_image


def old_path(model, data, args) -> dict:
    """The previous ``report.compare`` loop (before the shared driver), kept here for comparison."""
    from xai_pool.metrics import evaluate

    per_image: dict = {}
    for images, labels in DataLoader(data, batch_size=args.batch_size, shuffle=False):
        with torch.no_grad():
            for pooling in ("gap", "ca"):
                with model.pooling_as(pooling):
                    model(images).float().softmax(dim=1)  # predictions and probabilities
        for method, pooling in pairs_of(args.methods):
            maps = xai_pool.explain(model, images, method, pooling=pooling, targets=labels.tolist())
            with model.pooling_as(pooling):
                scores = evaluate(
                    model,
                    images,
                    maps,
                    labels,
                    mean=(0.485, 0.456, 0.406),
                    std=(0.229, 0.224, 0.225),
                    step=args.step,
                    batch_size=args.eval_batch_size,
                    return_curves=True,
                )
            per_image.setdefault((method, pooling), []).append(scores)
    return per_image


class ForwardCounter:
    """Images that went through the backbone (a forward hook), whatever called it."""

    def __init__(self, model) -> None:
        self.images = 0
        self.handle = model.backbone.register_forward_hook(self._hook)

    def _hook(self, module, args, output) -> None:
        self.images += args[0].shape[0]

    def count(self, fn) -> int:
        self.images = 0
        fn()
        return self.images


def forwards(model, data, args) -> None:
    counter = ForwardCounter(model)
    n = args.images
    new = counter.count(lambda: new_path(model, data, args)) / n
    old = counter.count(lambda: old_path(model, data, args)) / n
    images, labels = data.tensors
    explainers = 0.0
    for method, pooling in pairs_of(args.methods):
        for start in range(0, n, args.batch_size):
            batch, classes = images[start : start + args.batch_size], labels[start : start + args.batch_size]
            counter.images = 0
            xai_pool.explain(model, batch, method, pooling=pooling, targets=classes.tolist())
            explainers += counter.images
    explainers /= n
    counter.handle.remove()
    steps = math.ceil(args.size * args.size / args.step)
    pairs = len(pairs_of(args.methods))
    minimum = 2 + pairs * (1 + 2 * steps)
    print(f"\n1. Forward passes per image ({pairs} method x pooling pairs, {steps} steps, hook on the backbone)")
    print(f"   protocol minimum (2 clean + {pairs} x (1 + 2 x {steps}))   {minimum:10.2f}")
    print(f"   explainers' own forwards (explain alone)           {explainers:10.2f}")
    new_ratio, old_ratio = (new - explainers) / minimum, (old - explainers) / minimum
    print(f"   report.compare, metrics part (measured - explainers) {new - explainers:8.2f}  ratio {new_ratio:.3f}")
    print(f"   old loop, metrics part                             {old - explainers:10.2f}  ratio {old_ratio:.3f}")
    print(f"   report.compare, everything                         {new:10.2f}")
    print(f"   old loop, everything                               {old:10.2f}")


def wall_time(model, data, args) -> None:
    device = torch.device("cpu")
    new_path(model, first(data, 2), args)  # warm-up: allocator, kernels, lazy imports
    new_times, old_times = [], []
    for rep in range(args.reps):
        order = [("new", new_path), ("old", old_path)] if rep % 2 == 0 else [("old", old_path), ("new", new_path)]
        for name, fn in order:
            seconds = timed(lambda fn=fn: fn(model, data, args), device)
            (new_times if name == "new" else old_times).append(seconds)
    new_s, old_s = statistics.median(new_times), statistics.median(old_times)
    print(f"\n2. Wall time, {args.images} images, {torch.get_num_threads()} threads, median of {args.reps}")
    print(f"   report.compare {new_s:8.2f} s   old loop {old_s:8.2f} s   old / new = {old_s / new_s:.3f}")


def first(data: TensorDataset, n: int) -> TensorDataset:
    """The first ``n`` items of ``data`` (for warm-up runs)."""
    return TensorDataset(*(t[:n] for t in data.tensors))


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, folder: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model, data = build(args)
        new_path(model, first(data, 2), args)  # warm-up, as in the one-process run
        torch.distributed.barrier()
        started = time.perf_counter()
        per_image = new_path(model, data, args)
        seconds = time.perf_counter() - started
        if rank == 0:
            arrays = {f"{m}|{p}|{k}": v for (m, p), d in per_image.items() for k, v in d.items()}
            np.savez(os.path.join(folder, "sharded.npz"), seconds=seconds, **arrays)
    finally:
        torch.distributed.destroy_process_group()


def processes_vs_threads(args) -> None:
    import socket

    torch.set_num_threads(2)
    model, data = build(args)
    new_path(model, first(data, 2), args)
    started = time.perf_counter()
    threaded = new_path(model, data, args)
    threads_s = time.perf_counter() - started
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as folder:
        torch.multiprocessing.spawn(_worker, args=(2, port, args, folder), nprocs=2, join=True)
        sharded = np.load(os.path.join(folder, "sharded.npz"))
        processes_s = float(sharded["seconds"])
        diffs = [
            float(np.nanmax(np.abs(sharded[f"{m}|{p}|{k}"] - v)))
            if v.dtype.kind == "f"
            else float(np.any(sharded[f"{m}|{p}|{k}"] != v))
            for (m, p), d in threaded.items()
            for k, v in d.items()
        ]
    print("\n3. Processes against threads, the same compare() (time of the call, after start-up)")
    print(f"   1 process x 2 threads {threads_s:8.2f} s   2 processes x 1 thread {processes_s:8.2f} s")
    print(
        f"   ratio {threads_s / processes_s:.2f} (target >= 1.6 on 2 cores); per-image numbers identical: "
        f"{max(diffs) == 0} (max abs difference {max(diffs):.3g})"
    )


def table1_cost(args) -> None:
    steps = math.ceil(224 * 224 / 224)
    pairs = 1 + 3 * 2  # raw attention (CA only) + 3 CAMs x 2 poolings
    metrics = 2 + pairs * (1 + 2 * steps)
    explain_ = {
        "raw attention (CA)": 1,
        "Grad-CAM (2 poolings)": 2,
        "Grad-CAM++ (2 poolings)": 2,
        "Score-CAM (2 poolings), at most": 2 * (1 + 2048),
    }
    total = metrics + sum(explain_.values())
    print("\n4. The paper's Table-1 protocol on ResNet-50 at 224 (step 224, 224 steps), forwards per image")
    print(f"   metrics: 2 clean + {pairs} pairs x (1 + 2 x {steps}) = {metrics}")
    for name, count in explain_.items():
        print(f"   {name:34s} {count}")
    print(f"   total, at most {total} (+4 backward passes for Grad-CAM/Grad-CAM++)")
    for label, per_image in (("everything", total), ("without Score-CAM", total - 2 * 2049), ("metrics only", metrics)):
        hours = 50_000 * per_image / args.gpu_throughput / 3600
        print(
            f"   50,000 images, {label:18s}: {50_000 * per_image:.3g} forwards = {hours:6.1f} h on one GPU at "
            f"{args.gpu_throughput:.0f} forwards/s (assumed), {hours / 8:5.1f} h on 8"
        )


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    model, data = build(args)
    print(
        f"ResNet-18 + CA-Stream, {args.images} images at {args.size} px, step {args.step}, "
        f"methods {', '.join(args.methods)}, loader batch {args.batch_size}, eval batch {args.eval_batch_size}, "
        f"torch {torch.__version__}"
    )
    forwards(model, data, args)
    wall_time(model, data, args)
    if not args.no_processes:
        processes_vs_threads(args)
    table1_cost(args)


if __name__ == "__main__":
    main()
