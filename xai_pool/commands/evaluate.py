"""``xai-pool evaluate``: the GAP-vs-CA report on a user's own ImageFolder data and model.

Runs as one process, or as N under ``torchrun --nproc_per_node=N -m xai_pool evaluate ...``
(gloo on CPU, nccl on GPU; each process takes every N-th batch and the files equal a
one-process run). Every finished batch is saved in a hidden sibling of ``--out``
(``.NAME.partial``), so a killed run continues where it stopped when run again with the same
arguments; the report folder itself is written whole or not at all.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._logging import configure_logging
from ._model import add_model_arguments, check_model_arguments, load_model, run_metadata

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
    from ..metrics.perturbation import SUBSTRATES
    from ..metrics.stats import P_ADJUSTMENTS

    parser = subparsers.add_parser(
        "evaluate",
        help="compare saliency metrics of GAP and CA on your ImageFolder data",
        description=(
            "Explain the images of DIR (ImageFolder layout; DIR/val is used when it exists) with each "
            "method for GAP and CA, score every map (AD, AG, AI, insertion, deletion by default) and write "
            "report.html, report.md, metrics.csv, metrics.json, per_image.csv, figures and run.json to --out. "
            "Runs under torchrun (torchrun --nproc_per_node=N -m xai_pool evaluate ...); a killed run resumes "
            "when started again with the same arguments."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", required=True, type=Path, metavar="DIR")
    add_model_arguments(parser)
    parser.add_argument(
        "--stream", required=True, type=Path, metavar="CKPT", help="stream checkpoint (best.pt or last.pt)"
    )
    parser.add_argument(
        "--methods", default="raw_attention,gradcam,gradcam++,scorecam", help="comma-separated method names"
    )
    parser.add_argument("--pooling", default="gap,ca", help="comma-separated poolings")
    parser.add_argument(
        "--metrics",
        default=None,
        help=(
            "comma-separated metrics (default ad,ag,ai,insertion,deletion, plus pointing_game,"
            "energy_pointing_game with --masks; also sparsity, complexity, road, road_morf, road_lerf)"
        ),
    )
    parser.add_argument(
        "--masks",
        type=Path,
        default=None,
        metavar="DIR",
        help="object masks for the pointing games: DIR/<class>/<image name>.png (non-zero = object), "
        "mirroring the data folder",
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="evaluate N images spread evenly over the (class-sorted) folder, so every class is represented",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch (per process)")
    parser.add_argument("--eval-batch-size", type=int, default=128, help="perturbed images per forward pass")
    parser.add_argument("--step", type=int, default=None, help="insertion/deletion pixels per step (default one row)")
    parser.add_argument(
        "--insertion-substrate",
        choices=sorted(SUBSTRATES),
        default="blur",
        help="start image of the insertion curves ('box-blur': the CA-Stream authors' 5x5 box blur)",
    )
    parser.add_argument(
        "--deletion-substrate",
        choices=sorted(SUBSTRATES),
        default="zeros",
        help="what deleted pixels become ('zeros': the mean colour, in the normalised input space)",
    )
    parser.add_argument(
        "--masking-space",
        choices=("pixel", "input"),
        default="pixel",
        help="AD/AG/AI explanation image: normalize(denormalize(x) * S) ('pixel') or x * S ('input')",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="pointing-game radius in pixels, at the evaluated image size (with --masks)",
    )
    parser.add_argument(
        "--p-adjust",
        choices=sorted(P_ADJUSTMENTS),
        default="holm",
        help="multiple-comparison adjustment of the CA-vs-GAP tests (holm: family-wise; bh: false discovery rate)",
    )
    parser.add_argument("--keep-examples", type=int, default=6, help="images shown in the figures")
    parser.add_argument("--targets", choices=("label", "prediction"), default="label")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda:LOCAL_RANK if available)")
    parser.add_argument("--fresh", action="store_true", help="discard the finished batches of an interrupted run")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(func=run)


def _names(text: str, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ValueError(f"--{what} {text!r} names nothing; give comma-separated names")
    return names


def _check_args(args: argparse.Namespace) -> tuple[list[str], list[str], list[str]]:
    """Every check that needs no data or model, before any work; returns methods, poolings, metrics."""
    from ..metrics.registry import METRICS
    from ..report import check_output_dir
    from ..saliency import resolve_method

    methods = _names(args.methods, "methods")
    for method in methods:
        resolve_method(method)  # unknown names fail here, listing the valid ones
    poolings = _names(args.pooling, "pooling")
    for pooling in poolings:
        if pooling not in ("gap", "ca"):
            raise ValueError(f"--pooling must name gap and/or ca, got {pooling!r}")
    if args.metrics is None:
        metrics = ["ad", "ag", "ai", "insertion", "deletion"]
        if args.masks is not None:
            metrics += [m for m, info in METRICS.items() if info.group == "localization"]
    else:
        metrics = _names(args.metrics, "metrics")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"--metrics: unknown {unknown}; choose from {', '.join(METRICS)}")
    needs_masks = [m for m in metrics if "masks" in METRICS[m].needs]
    if needs_masks and args.masks is None:
        raise ValueError(f"--metrics {', '.join(needs_masks)} need object masks: give them with --masks DIR")
    if args.masks is not None and not args.masks.is_dir():
        raise FileNotFoundError(f"--masks {str(args.masks)!r} does not exist or is not a folder")
    for name in ("limit", "step", "batch_size", "eval_batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    check_model_arguments(args)
    if args.keep_examples < 0 or args.workers < 0:
        raise ValueError("--keep-examples and --workers must be >= 0")
    if not args.tolerance >= 0:
        raise ValueError(f"--tolerance must be >= 0 pixels, got {args.tolerance}")
    if not args.data.is_dir():
        raise FileNotFoundError(f"--data {str(args.data)!r} does not exist or is not a folder")
    args.out = check_output_dir(args.out, name="--out")  # resolved: its hidden siblings are well defined
    return methods, poolings, metrics


class MaskedFolder:
    """ImageFolder items with their object mask: ``(image, label, mask)``, or None when unreadable.

    The mask of ``DATA/<class>/<name>.<ext>`` is ``MASKS/<class>/<name>.png`` (non-zero pixels
    are the object). It goes through the images' own transform, so that resizing and cropping
    are the same, and is thresholded at half intensity after undoing the normalisation.
    """

    def __init__(
        self,
        images: Any,
        data_root: Path,
        masks_root: Path,
        transform: Callable,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        self.images = images
        self.transform = transform
        self.mean, self.std = float(mean[0]), float(std[0])
        self.paths = [masks_root / Path(path).relative_to(data_root).with_suffix(".png") for path, _ in images.samples]
        missing = [str(p) for p in self.paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"--masks: {len(missing)} of {len(self.paths)} masks are missing, e.g. {missing[0]!r}; "
                f"give one PNG per image, mirroring the data folder"
            )
        self.samples = images.samples

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int, Any] | None:  # (image, label, mask) tensors
        item = self.images[index]
        if item is None:
            return None
        from ..imageio import load_image

        mask = self.transform(load_image(self.paths[index]).convert("L").convert("RGB"))
        return item[0], item[1], mask[0] * self.std + self.mean > 0.5


def _data_key(dataset: object, indices: list[int] | None, preprocessing: object) -> dict:
    """What identifies the evaluated images, for resuming: their files (path, size, mtime) and transform."""
    digest = hashlib.sha256()
    samples = dataset.samples
    for i in indices if indices is not None else range(len(samples)):
        path = samples[i][0]
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        if isinstance(dataset, MaskedFolder):
            mask = os.stat(dataset.paths[i])
            digest.update(f"{dataset.paths[i]}\0{mask.st_size}\0{mask.st_mtime_ns}\n".encode())
    return {"files": digest.hexdigest(), "preprocessing": preprocessing.to_dict()}


def run(args: argparse.Namespace) -> int:
    """Run the evaluation (one process, or one of torchrun's) and write the report on rank 0."""
    configure_logging()
    methods, poolings, metrics = _check_args(args)

    import torch
    from torch.utils.data import DataLoader

    from .. import attach_stream, load_stream
    from ..adapters import with_preprocessing
    from ..imageio import SafeImageFolder, skip_none_collate
    from ..metrics import named_substrate
    from ..report import compare
    from ..runtime import resolve_device
    from ..train.distributed import cleanup, env_world, setup

    _, _, local_rank = env_world()
    device = resolve_device(args.device, local_rank, name="--device")
    info = setup(device)
    try:
        # Preprocessing: the model's own (its profile), with the command line's overrides.
        loaded = load_model(args, device)
        preprocessing = loaded.preprocessing
        mean, std = preprocessing.mean, preprocessing.std
        root = args.data / "val" if (args.data / "val").is_dir() else args.data
        transform = preprocessing.eval_transform()
        dataset = SafeImageFolder(root, transform=transform)
        model = attach_stream(loaded.classifier, profile=with_preprocessing(loaded.profile, preprocessing))
        if len(dataset.classes) != model.num_classes:
            raise ValueError(
                f"{root} has {len(dataset.classes)} class folders but the classifier has "
                f"{model.num_classes} outputs; point --data at data with the classifier's classes"
            )
        load_stream(model, args.stream)
        model.eval()
        class_names = list(dataset.classes)
        if args.masks is not None:
            dataset = MaskedFolder(dataset, root, args.masks, transform, mean, std)
        indices = spread_indices(len(dataset), args.limit) if args.limit is not None else None
        resume_key = _data_key(dataset, indices, preprocessing)
        if indices is not None:
            dataset = torch.utils.data.Subset(dataset, indices)
        loader = DataLoader(
            dataset, batch_size=args.batch_size, shuffle=False, num_workers=args.workers, collate_fn=skip_none_collate
        )
        partial = args.out.parent / f".{args.out.name}.partial"
        if args.fresh and info.is_main:
            import shutil

            shutil.rmtree(partial, ignore_errors=True)
        result = compare(
            model,
            loader,
            methods=methods,
            poolings=poolings,
            metrics=metrics,
            mean=mean,
            std=std,
            step=args.step,
            eval_batch_size=args.eval_batch_size,
            targets=args.targets,
            keep_examples=args.keep_examples,
            progress=not args.no_progress,
            class_names=class_names,
            insertion_substrate=named_substrate(args.insertion_substrate, mean, std),
            deletion_substrate=named_substrate(args.deletion_substrate, mean, std),
            masking_space=args.masking_space,
            tolerance=args.tolerance,
            p_adjustment=args.p_adjust,
            resume=partial,
            resume_key=resume_key,
        )
        if info.is_main:
            run_info = {
                **run_metadata(args, loaded, "evaluate"),
                "data": str(args.data),
                "stream": str(args.stream),
                "device": str(device),
                "world_size": info.world_size,
                "torch_threads": torch.get_num_threads(),
            }
            title = f"xai_pool: GAP vs CA, {args.arch} on {args.data.name}"
            result.write(args.out, title=title, run_info=run_info)
            import shutil

            shutil.rmtree(partial, ignore_errors=True)  # the report is complete: nothing to resume
            reused = result.runtime.get("batches_reused", 0)
            if reused:
                print(f"resumed an interrupted run: {reused} finished batches reused from {partial}")
            print(result.findings())
            print()
            print(result.to_markdown())
            print(
                f"{result.n_images} images in {result.seconds:.0f} s on {info.world_size} process(es); "
                f"report in {args.out / 'report.html'}"
            )
    finally:
        cleanup(info)
    return 0
