"""Forward-time overhead of the CA-Stream: median ratio CA / GAP on the same ResNet-50 object.

Runs are interleaved (GAP, CA, GAP, CA, ...) so machine noise hits both alike; the printed
number is the median of the per-pair ratios. Target: <= 1.05 (the stream adds ~0.3% FLOPs).

    python bench/overhead.py [--batch 8] [--size 224] [--reps 15] [--arch resnet50] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torchvision
from _timing import timed

from xai_pool import attach_stream
from xai_pool.runtime import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (resnet18, 64x64, 3 reps)")
    args = parser.parse_args()
    if args.quick:
        args.arch, args.size, args.reps, args.batch = "resnet18", 64, 3, 4
    device = resolve_device(args.device, name="--device")
    model = attach_stream(torchvision.models.get_model(args.arch)).to(device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)

    def run(pooling: str) -> None:
        model.pooling = pooling
        model(x)

    ratios, gap_times, ca_times = [], [], []
    with torch.inference_mode():
        run("gap"), run("ca")  # warm-up
        for _ in range(args.reps):
            g = timed(lambda: run("gap"), device)
            c = timed(lambda: run("ca"), device)
            gap_times.append(g)
            ca_times.append(c)
            ratios.append(c / g)
    print(
        f"{args.arch} batch {args.batch} {args.size}x{args.size} on {device} (torch threads {torch.get_num_threads()})"
    )
    gap_ms, ca_ms = statistics.median(gap_times) * 1e3, statistics.median(ca_times) * 1e3
    print(f"median GAP forward {gap_ms:.1f} ms, CA forward {ca_ms:.1f} ms")
    print(f"median ratio CA/GAP: {statistics.median(ratios):.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
