"""Benchmark: insertion + deletion cost relative to the model's plain forward passes.

Times ``xai_pool.metrics.evaluate(metrics=("insertion", "deletion"))`` for a torchvision
ResNet-18 (random weights) on N images (default 8 at 224x224, step 224, so 2 x 225 curve
points per image) against the same number of plain forward passes, 2 (H W / step + 1) per
image, at the same batch size. The two are measured interleaved, alternating which goes
first, and the median of the per-repetition ratios is printed (target <= 1.15: the forward
passes are the floor). Peak memory is printed for both: CUDA allocator peak on GPU, the
process's peak resident set (VmHWM, reset before each phase) on CPU.

    python bench/metrics.py            # the full benchmark
    python bench/metrics.py --quick    # smoke run: 2 images at 64x64, 2 repetitions
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
import torchvision

from xai_pool.metrics import evaluate
from xai_pool.runtime import resolve_device


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 images at 64x64 (step 64), 2 repetitions")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--step", type=int, default=None, help="pixels per step (default: one row)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    args = parser.parse_args()
    if args.quick:
        args.images, args.size, args.reps = 2, 64, 2
    args.step = args.step or args.size
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of a phase: CUDA allocator peak, or the process's VmHWM on Linux."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.can_reset_rss = self._try_reset_rss()

    @staticmethod
    def _try_reset_rss() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM (Linux >= 4.0)
            return True
        except OSError:
            return False

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.can_reset_rss:
            self._try_reset_rss()

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        import resource

        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    @property
    def label(self) -> str:
        if self.device.type == "cuda":
            return "torch.cuda.max_memory_allocated"
        return "peak RSS of the process (VmHWM)" + ("" if self.can_reset_rss else ", lifetime: could not reset")


def timed(fn: Callable[[], object], device: torch.device, memory: PeakMemory) -> tuple[float, float, float]:
    """Wall-clock seconds, process CPU seconds and peak memory (MiB) of one call."""
    memory.start()
    sync(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - start, time.process_time() - start_cpu, memory.peak_mb()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, name="--device")
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval().to(device)
    images = torch.randn(args.images, 3, args.size, args.size, device=device)
    maps = torch.rand(args.images, 7, 7, device=device)  # a CAM-like low-resolution map
    points = math.ceil(args.size * args.size / args.step) + 1
    plain_forwards = args.images * 2 * points
    plain_input = torch.randn(args.batch_size, 3, args.size, args.size, device=device)

    def metric_run() -> dict:
        return evaluate(
            model,
            images,
            maps,
            metrics=("insertion", "deletion"),
            step=args.step,
            batch_size=args.batch_size,
        )

    def plain_run() -> None:
        with torch.inference_mode():
            for start in range(0, plain_forwards, args.batch_size):
                model(plain_input[: min(args.batch_size, plain_forwards - start)])

    memory = PeakMemory(device)
    with torch.inference_mode():  # warm-up: allocator, kernels, lazy imports
        model(plain_input[:2])
    evaluate(
        model,
        images[:1],
        maps[:1],
        metrics=("insertion", "deletion"),
        step=args.size * args.size // 2,
    )

    print(
        f"ResNet-18 (random weights) on {device}, {torch.get_num_threads()} CPU threads; "
        f"{args.images} images {args.size}x{args.size}, step {args.step}: {points} points per "
        f"curve, batch size {args.batch_size}"
    )
    print(
        f"forward passes: plain {plain_forwards} (2 x {points} per image); evaluate runs "
        f"{args.images * (2 * points - 1)} "
        f"(the clean image is shared by both curves)"
    )
    ratios, cpu_ratios, metric_mem, plain_mem = [], [], [], []
    for rep in range(args.reps):
        order = ("metric", "plain") if rep % 2 == 0 else ("plain", "metric")
        wall, cpu = {}, {}
        for name in order:
            wall[name], cpu[name], peak = timed(metric_run if name == "metric" else plain_run, device, memory)
            (metric_mem if name == "metric" else plain_mem).append(peak)
        ratios.append(wall["metric"] / wall["plain"])
        cpu_ratios.append(cpu["metric"] / cpu["plain"])
        print(
            f"  rep {rep + 1}: insertion+deletion {wall['metric']:.2f} s, "
            f"plain forwards {wall['plain']:.2f} s, "
            f"ratio {ratios[-1]:.3f} (process CPU time ratio {cpu_ratios[-1]:.3f})"
        )
    print(f"median ratio (insertion+deletion / plain forwards): {statistics.median(ratios):.3f}  (target <= 1.15)")
    # on a shared CPU the wall-clock ratio swings with other processes; CPU time is steadier
    print(f"median process CPU time ratio: {statistics.median(cpu_ratios):.3f}")
    print(
        f"peak memory, {memory.label}: insertion+deletion {max(metric_mem):.0f} MiB, "
        f"plain forwards {max(plain_mem):.0f} MiB"
    )


if __name__ == "__main__":
    main()
