"""``xai-pool evaluate``: the GAP-vs-CA report on a user's own ImageFolder data and model."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register", "run", "spread_indices"]


def spread_indices(total: int, limit: int) -> list[int]:
    """``limit`` indices spread evenly over ``range(total)`` (all of them when ``limit >= total``).

    ImageFolder sorts images by class, so the first N images would cover only the first
    classes; evenly spaced indices sample every class in proportion.
    """
    if limit >= total:
        return list(range(total))
    return [(i * total) // limit for i in range(limit)]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` subcommand."""
    parser = subparsers.add_parser(
        "evaluate",
        help="compare saliency metrics of GAP and CA on your ImageFolder data",
        description=(
            "Explain the images of DIR (ImageFolder layout; DIR/val is used when it exists) with each "
            "method for GAP and CA, score every map (AD, AG, AI, insertion, deletion) and write "
            "report.html, report.md, metrics.csv, metrics.json, per_image.csv and figures to --out."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", required=True, type=Path, metavar="DIR")
    parser.add_argument("--arch", required=True, help="torchvision or timm classifier name, or shapes_resnet")
    parser.add_argument("--weights", type=Path, metavar="PATH", help="local state-dict file of the classifier")
    parser.add_argument(
        "--stream", required=True, type=Path, metavar="CKPT", help="stream checkpoint (best.pt or last.pt)"
    )
    parser.add_argument(
        "--methods", default="raw_attention,gradcam,gradcam++,scorecam", help="comma-separated method names"
    )
    parser.add_argument("--pooling", default="gap,ca", help="comma-separated poolings")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="evaluate N images spread evenly over the (class-sorted) folder, so every class is represented",
    )
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--step", type=int, default=None, help="insertion/deletion pixels per step (default one row)")
    parser.add_argument("--targets", choices=("label", "prediction"), default="label")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and write the report."""
    import torch
    from torch.utils.data import DataLoader

    from .. import attach_stream, load_stream
    from ..atomic import atomic_write_text
    from ..classifiers import IMAGENET_MEAN, IMAGENET_STD, build_classifier
    from ..imageio import SafeImageFolder, imagenet_transform, skip_none_collate
    from ..report import compare
    from ..saliency import resolve_method
    from ..viz import save_figure

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for method in methods:
        resolve_method(method)  # unknown names fail here, listing the valid ones
    poolings = [p.strip() for p in args.pooling.split(",") if p.strip()]
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    root = args.data / "val" if (args.data / "val").is_dir() else args.data
    mean, std = (None, None) if args.arch == "shapes_resnet" else (IMAGENET_MEAN, IMAGENET_STD)
    if args.arch == "shapes_resnet":
        from ..data import SHAPES_MEAN, SHAPES_STD

        mean, std = SHAPES_MEAN, SHAPES_STD
    dataset = SafeImageFolder(root, transform=imagenet_transform(False, args.image_size, mean, std))
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = attach_stream(build_classifier(args.arch, args.weights).to(device))
    if len(dataset.classes) != model.num_classes:
        raise ValueError(
            f"{root} has {len(dataset.classes)} class folders but the classifier has "
            f"{model.num_classes} outputs; point --data at data with the classifier's classes"
        )
    load_stream(model, args.stream)
    if args.limit is not None:
        dataset = torch.utils.data.Subset(dataset, spread_indices(len(dataset), args.limit))
    loader = DataLoader(
        dataset, batch_size=args.batch_size, shuffle=False, num_workers=args.workers, collate_fn=skip_none_collate
    )
    result = compare(
        model,
        loader,
        methods=methods,
        poolings=poolings,
        mean=mean,
        std=std,
        step=args.step,
        targets=args.targets,
        progress=not args.no_progress,
        class_names=list(getattr(dataset, "classes", None) or dataset.dataset.classes),
    )
    out = args.out
    result.to_csv(out / "metrics.csv")
    result.to_json(out / "metrics.json")
    result.to_per_image_csv(out / "per_image.csv")
    atomic_write_text(out / "report.md", result.findings() + "\n\n" + result.to_markdown())
    for name, fig in result.figures().items():
        save_figure(fig, out / f"{name}.png")
    result.to_html(out / "report.html", title=f"xai_pool: GAP vs CA, {args.arch} on {args.data.name}")
    print(result.to_markdown())
    print(result.findings())
    return 0
