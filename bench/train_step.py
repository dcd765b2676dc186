"""Cost of one stream training step: median ratio (train step) / (no-grad forward of the plain model).

The step is :func:`xai_pool.train.train_step`, exactly what ``train_stream`` runs: the frozen
ResNet-50 forward (no autograd graph), the stream's forward and backward, and the SGD
update of the stream. The reference is ``torch.no_grad()`` forward of a plain ResNet-50
with the same weights on the same batch. Repetitions are interleaved (alternating which
goes first) so machine noise hits both alike; the printed number is the median of the
per-repetition ratios. Target: <= 1.25 (the backbone only runs forward).

    python bench/train_step.py [--batch 16] [--size 224] [--reps 7] [--device cpu] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import statistics

import torch
import torchvision
from _timing import timed

from xai_pool import attach_stream
from xai_pool.runtime import resolve_device
from xai_pool.train import Objective, init_stream, train_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 4, 3 repetitions")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.reps = 4, 3
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, name="--device")

    torch.manual_seed(0)
    plain = torchvision.models.get_model(args.arch, weights=None).eval().to(device)
    model = attach_stream(copy.deepcopy(plain)).to(device)
    init_stream(model, "xavier", 0)
    model.train()  # the stream trains; the backbone stays in eval mode
    stream_params = [p for p in model.stream.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(stream_params, lr=0.1, momentum=0.9, weight_decay=1e-4)
    objective = Objective()
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    labels = torch.randint(0, model.num_classes, (args.batch,), device=device)

    def forward() -> None:
        with torch.no_grad():
            plain(images)

    def step() -> None:
        train_step(model, optimizer, images, labels, objective)

    forward(), step()  # warm-up (allocations, kernel selection)
    ratios, forward_times, step_times = [], [], []
    for rep in range(args.reps):
        if rep % 2:
            s = timed(step, device)
            f = timed(forward, device)
        else:
            f = timed(forward, device)
            s = timed(step, device)
        forward_times.append(f)
        step_times.append(s)
        ratios.append(s / f)
    ratio = statistics.median(ratios)
    threads = torch.get_num_threads()
    print(f"{args.arch} batch {args.batch} {args.size}x{args.size} on {device} (torch threads {threads})")
    print(
        f"median no-grad forward {statistics.median(forward_times) * 1e3:.1f} ms, "
        f"stream train step {statistics.median(step_times) * 1e3:.1f} ms"
    )
    print(f"median ratio step/forward: {ratio:.3f}  (target <= 1.25: {'met' if ratio <= 1.25 else 'NOT met'})")


if __name__ == "__main__":
    main()
