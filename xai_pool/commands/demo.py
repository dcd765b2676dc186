"""``xai-pool demo``: the whole method on the embedded benchmark, offline (the main job)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="train a CA-Stream on the embedded ShapesScenes benchmark and compare GAP vs CA",
        description=(
            "Load the shipped ShapesScenes GAP classifier, train its CA-Stream (backbone frozen), "
            "explain the test images with raw attention, Grad-CAM, Grad-CAM++ and Score-CAM for GAP "
            "and CA, score every map, and write report.html, report.md, metrics.csv, metrics.json, "
            "per_image.csv and PNG figures. Re-running reuses a finished stream; an interrupted "
            "stream training resumes."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("xai_pool_demo"), metavar="DIR", help="output folder")
    parser.add_argument("--quick", action="store_true", help="small smoke run (40 test images, about a minute)")
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="retrain the GAP classifier from scratch (about 5-10 min on 2 cores) instead of loading it",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--test-images", type=int, default=None, help="override the number of test images")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo."""
    from dataclasses import replace

    from ..demo import demo_config, run_demo
    from ..report import check_output_dir
    from ..runtime import resolve_device
    from ._logging import configure_logging

    configure_logging()
    config = demo_config(args.quick)
    if args.test_images is not None:
        if args.test_images < 1:
            raise ValueError(f"--test-images must be >= 1, got {args.test_images}")
        config = replace(config, test_images=args.test_images)
    # Checked here too, so that the messages name the flags.
    check_output_dir(args.out, name="--out")
    resolve_device(args.device, name="--device")
    run = run_demo(
        args.out, retrain=args.retrain, device=args.device, config=config, progress=False if args.no_progress else None
    )
    print(run["summary"])
    return 0
