"""Cost of rendering ShapesScenes: milliseconds per scene (median over repetitions).

Every scene is rendered from its index on access (no cache), so this is what a DataLoader
pays per image. About 1 ms per 64x64 scene on one idle core; the demo renders 4,200 scenes.

    python bench/data.py [--n 200] [--size 64] [--reps 5] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time

from xai_pool.data import ShapesScenes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="scenes per repetition")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 scenes, 2 repetitions")
    args = parser.parse_args()
    if args.quick:
        args.n, args.reps = 20, 2
    data = ShapesScenes("train", n=args.n, size=args.size)
    per_scene = []
    for _ in range(args.reps):
        start = time.perf_counter()
        data.tensors()
        per_scene.append((time.perf_counter() - start) / args.n)
    print(
        f"ShapesScenes {args.size}x{args.size}: {1000 * statistics.median(per_scene):.2f} ms per scene "
        f"(median of {args.reps} x {args.n} scenes; min {1000 * min(per_scene):.2f} ms)"
    )


if __name__ == "__main__":
    main()
