"""Benchmark: the cost of every saliency method, and xai_pool's Score-CAM against pytorch-grad-cam's.

Part 1 prints, per method and pooling, the time per image relative to one forward pass of
the CA model (``torch.no_grad``) on a torchvision ResNet-18 with a CA-Stream. Each method
call is timed right after a forward pass, in rotating order, and the table shows the median
of these paired ratios, so that load changes on a shared machine cancel out. Raw attention
should cost about one forward pass (target <= 1.1).

Part 2 runs xai_pool's ScoreCAM and pytorch-grad-cam's ScoreCAM alternately on the same
ResNet-18, target ``layer4``, same batch size, and prints median time and peak memory
(CPU: the rise of the process's peak RSS over its RSS before the call, after resetting the
kernel's high-water mark; CUDA: ``torch.cuda.max_memory_allocated``). Targets: time <= 1.0x,
memory clearly lower.

    python bench/saliency.py            # 224x224, several minutes on 2 CPU cores
    python bench/saliency.py --quick    # 64x64 smoke run (about a minute)
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import io
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import pytorch_grad_cam
from _timing import timed

from xai_pool import attach_stream, explain
from xai_pool.runtime import resolve_device
from xai_pool.saliency import METHODS, RawAttention, ScoreCAM

_PERTURBATION = ("scorecam", "ablationcam")  # one forward pass per channel


def _quiet(fn: Callable[[], object]) -> Callable[[], object]:
    """Silence the tqdm bars that pytorch-grad-cam's perturbation methods always print."""

    def run() -> object:
        with contextlib.redirect_stderr(io.StringIO()):
            return fn()

    return run


def bench_methods(args: argparse.Namespace, device: torch.device) -> None:
    torch.manual_seed(0)
    model = attach_stream(torchvision.models.resnet18(num_classes=1000)).to(device)
    x = torch.randn(args.images, 3, args.size, args.size, device=device)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def raw_direct() -> None:
        with RawAttention(model) as cam:
            cam(x)

    names = [n for n in METHODS if n != "gradcamplusplus" and (args.methods is None or n in args.methods)]
    jobs: list[tuple[str, str, Callable[[], object], int]] = []
    for name in names:
        repeats = args.perturbation_repeats if name in _PERTURBATION else args.repeats
        if name == "raw_attention":  # the headline ratio (target <= 1.1): more pairs, a tighter median
            repeats = max(repeats, args.raw_repeats)
        for pooling in ("ca", "gap"):
            if name == "raw_attention" and pooling == "gap":
                continue
            call = _quiet(lambda n=name, p=pooling: explain(model, x, n, pooling=p, batch_size=args.score_batch))
            jobs.append((name, pooling, call, repeats))
        if name == "raw_attention":
            jobs.append(("RawAttention (direct)", "ca", raw_direct, repeats))

    forward()  # warm-up
    ratios: dict[tuple[str, str], list[float]] = {}
    seconds: dict[tuple[str, str], list[float]] = {}
    forward_seconds: list[float] = []
    for repeat in range(max(args.repeats, args.perturbation_repeats, args.raw_repeats)):
        order = jobs[repeat % len(jobs) :] + jobs[: repeat % len(jobs)]  # rotate: no fixed position
        for name, pooling, call, repeats in order:
            if repeat >= repeats:
                continue
            if repeat == 0 and name not in _PERTURBATION:
                call()  # warm-up (first-call allocations, lazy imports)
            base = timed(forward, device)
            took = timed(call, device)
            forward_seconds.append(base)
            ratios.setdefault((name, pooling), []).append(took / base)
            seconds.setdefault((name, pooling), []).append(took)
            print(
                f"  {name:>22} {pooling}: {took / args.images * 1e3:9.1f} ms/image ({took / base:7.2f}x forward)",
                file=sys.stderr,
            )

    fwd = statistics.median(forward_seconds) / args.images * 1e3
    print(
        f"\nPart 1: ResNet-18 + CA-Stream, {args.images} images of {args.size}x{args.size}, {device}, "
        f"{torch.get_num_threads()} thread(s); one CA forward pass = {fwd:.1f} ms/image (median)"
    )
    print(f"{'method':>22} | {'pooling':>7} | {'ms/image':>9} | {'x CA forward':>12} | runs")
    print("-" * 66)
    for name, pooling, _, _ in jobs:
        key = (name, pooling)
        ms = statistics.median(seconds[key]) / args.images * 1e3
        print(f"{name:>22} | {pooling:>7} | {ms:9.1f} | {statistics.median(ratios[key]):12.2f} | {len(ratios[key])}")


def _rss_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM (peak RSS) to the current RSS
        return True
    except OSError:
        return False


def _release_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap pages back, so RSS is a fair baseline


def _measure(fn: Callable[[], object], device: torch.device) -> tuple[float, float | None]:
    """(seconds, peak extra memory in MiB) of one call."""
    _release_memory()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        took = timed(fn, device)
        return took, (torch.cuda.max_memory_allocated(device) - before) / 2**20
    resettable = _reset_peak()
    before = _rss_kb("VmRSS")
    took = timed(fn, device)
    peak = _rss_kb("VmHWM")
    if not resettable or before is None or peak is None:
        return took, None
    return took, (peak - before) / 1024


def bench_score_cam(args: argparse.Namespace, device: torch.device) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=1000).eval().to(device)
    x = torch.randn(1, 3, args.size, args.size, device=device)
    layers = [model.layer4]

    def ours(batch: int) -> Callable[[], object]:
        def run() -> object:
            with ScoreCAM(model=model, target_layers=layers, batch_size=batch) as cam:
                maps = cam(x, targets=None)
            stats["constant"] = cam.constant_channels
            stats["passes"] = cam.forward_passes
            return maps

        return run

    def theirs() -> object:
        with pytorch_grad_cam.ScoreCAM(model=model, target_layers=layers) as cam:
            cam.batch_size = args.score_batch
            return cam(x, targets=None)

    stats: dict[str, int] = {}
    candidates = {
        f"pytorch-grad-cam ScoreCAM (batch {args.score_batch})": _quiet(theirs),
        f"xai_pool ScoreCAM (batch {args.score_batch})": ours(args.score_batch),
    }
    if args.extra_batch:
        candidates[f"xai_pool ScoreCAM (batch {args.extra_batch})"] = ours(args.extra_batch)
    times: dict[str, list[float]] = {k: [] for k in candidates}
    peaks: dict[str, list[float]] = {k: [] for k in candidates}
    for repeat in range(args.score_repeats):
        names = list(candidates) if repeat % 2 == 0 else list(reversed(candidates))  # interleaved, alternating
        for name in names:
            took, peak = _measure(candidates[name], device)
            times[name].append(took)
            if peak is not None:
                peaks[name].append(peak)
            shown = "n/a" if peak is None else f"{peak:.0f}"
            print(f"  {name}: {took:.2f} s, peak +{shown} MiB", file=sys.stderr)

    reference = next(iter(candidates))
    ref_time = statistics.median(times[reference])
    ref_peak = statistics.median(peaks[reference]) if peaks[reference] else None
    print(
        f"\nPart 2: Score-CAM on ResNet-18 layer4 (512 channels), one {args.size}x{args.size} image, {device}, "
        f"{torch.get_num_threads()} thread(s), {args.score_repeats} interleaved runs (medians)"
    )
    print(
        f"xai_pool: {stats.get('passes', 0)} masked images scored, "
        f"{stats.get('constant', 0)} constant channels shared one pass"
    )
    print(f"{'implementation':>40} | {'time s':>7} | {'x ref':>6} | {'peak MiB':>8} | {'x ref':>6}")
    print("-" * 80)
    for name in candidates:
        t = statistics.median(times[name])
        p = statistics.median(peaks[name]) if peaks[name] else None
        p_text = f"{p:8.0f}" if p is not None else f"{'n/a':>8}"
        p_ratio = f"{p / ref_peak:6.2f}" if p is not None and ref_peak else f"{'n/a':>6}"
        print(f"{name:>40} | {t:7.2f} | {t / ref_time:6.2f} | {p_text} | {p_ratio}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats: a smoke run")
    parser.add_argument("--size", type=int, help="image side (default 224, quick 64)")
    parser.add_argument("--images", type=int, help="images per call in part 1 (default 2)")
    parser.add_argument("--repeats", type=int, help="timed runs per method in part 1 (default 5, quick 2)")
    parser.add_argument("--perturbation-repeats", type=int, help="runs for scorecam/ablationcam in part 1 (default 1)")
    parser.add_argument("--raw-repeats", type=int, help="runs for raw attention in part 1 (default 15, quick 5)")
    parser.add_argument("--score-repeats", type=int, help="runs of each Score-CAM in part 2 (default 3, quick 2)")
    parser.add_argument(
        "--score-batch", type=int, default=16, help="Score-CAM batch size (pytorch-grad-cam default: 16)"
    )
    parser.add_argument("--extra-batch", type=int, help="also time xai_pool's ScoreCAM at this batch size in part 2")
    parser.add_argument("--methods", help="comma-separated subset of methods for part 1")
    parser.add_argument("--skip-methods", action="store_true", help="run part 2 only")
    parser.add_argument("--skip-score-cam", action="store_true", help="run part 1 only")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's default)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    args = parser.parse_args(argv)
    args.size = args.size or (64 if args.quick else 224)
    args.images = args.images or 2
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.perturbation_repeats = args.perturbation_repeats or 1
    args.raw_repeats = args.raw_repeats or (5 if args.quick else 15)
    args.score_repeats = args.score_repeats or (2 if args.quick else 3)
    args.methods = None if args.methods is None else [m.strip() for m in args.methods.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, name="--device")
    if not args.skip_methods:
        bench_methods(args, device)
    if not args.skip_score_cam:
        bench_score_cam(args, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
