"""``xai-pool train``: train a CA-Stream on an ImageFolder dataset with a frozen classifier.

Everything that can be checked is checked before the first step (data layout, class count,
weights against the architecture), so a mistake costs seconds, not a night. Under
``torchrun --nproc_per_node=N -m xai_pool train ...`` the same command trains on N processes.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._logging import configure_logging
from ._model import add_model_arguments, check_model_arguments, load_model, run_metadata

if TYPE_CHECKING:
    from ..imageio import SafeImageFolder

__all__ = ["register", "run"]

_AMP = {"auto": None, "on": True, "off": False, "bf16": "bf16", "fp16": "fp16"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="train a CA-Stream on a frozen classifier (ImageFolder data)",
        description=(
            "Train the CA-Stream of a frozen classifier on DIR/train and validate on DIR/val "
            "(ImageFolder layout: one sub-folder per class, sorted names = class indices 0..N-1). "
            "Writes best.pt and last.pt (stream checkpoints), train_state.pt (for --resume) and "
            "history.jsonl into --out. Multi-GPU: torchrun --nproc_per_node=N -m xai_pool train ..."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("data and model")
    data.add_argument("--data", required=True, type=Path, metavar="DIR", help="folder with train/ and val/ sub-folders")
    add_model_arguments(data, image_size_help="training crop and evaluation centre crop (default: the model's)")
    data.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="output folder for checkpoints and the log"
    )
    data.add_argument(
        "--workers", type=int, default=min(4, os.cpu_count() or 1), help="data-loading processes per training process"
    )

    optim = parser.add_argument_group("optimisation (paper defaults)")
    optim.add_argument("--epochs", type=int, default=90)
    optim.add_argument(
        "--batch-size", type=int, default=256, help="global batch size (split evenly over torchrun processes)"
    )
    optim.add_argument("--lr", type=float, default=0.1, help="learning rate for the global batch")
    optim.add_argument("--momentum", type=float, default=0.9)
    optim.add_argument("--weight-decay", type=float, default=1e-4)
    optim.add_argument(
        "--schedule", choices=("step", "cosine"), default="step", help="step: /10 every --lr-step-epochs"
    )
    optim.add_argument("--lr-step-epochs", type=int, default=30)
    optim.add_argument("--warmup-epochs", type=float, default=0.0)
    optim.add_argument("--label-smoothing", type=float, default=0.0)
    optim.add_argument("--label-free", action="store_true", help="no labels: distil the frozen GAP prediction (KL)")
    optim.add_argument(
        "--init",
        choices=("xavier", "identity"),
        default="xavier",
        help="stream initialisation: the authors' xavier, or the last Linear as the identity",
    )
    optim.add_argument("--seed", type=int, default=0)

    stream = parser.add_argument_group("stream")
    stream.add_argument("--start-stage", type=int, default=0, help="first stage with a block (0 = after the stem)")
    stream.add_argument("--heads", type=int, default=1)
    stream.add_argument("--project-kv", action="store_true", help="'projca': key/value projections")
    stream.add_argument("--class-specific", action="store_true", help="one initial query per class")

    runtime = parser.add_argument_group("run")
    runtime.add_argument("--resume", action="store_true", help="continue from --out/train_state.pt (new run if absent)")
    runtime.add_argument("--overwrite", action="store_true", help="start a new run in an --out that holds one")
    runtime.add_argument(
        "--checkpoint-every", type=int, default=None, metavar="STEPS", help="also checkpoint every N steps"
    )
    runtime.add_argument(
        "--max-steps", type=int, default=None, help="stop after N optimizer steps in total (resumable)"
    )
    runtime.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    runtime.add_argument("--amp", choices=tuple(_AMP), default="auto", help="mixed precision (auto: on for CUDA)")
    runtime.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    runtime.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(func=run)


def _check_args(args: argparse.Namespace, world_size: int) -> None:
    """Every flag, before any file is read: messages name the flag, its value and the fix."""
    from ..runtime import resolve_device
    from ..validation import (
        check_exclusive,
        check_float,
        check_output_dir,
        non_negative_int,
        positive_float,
        positive_int,
    )

    check_exclusive(
        ("--resume", args.resume),
        ("--overwrite", args.overwrite),
        "--resume continues the run in --out, --overwrite replaces it with a new one",
    )
    for name in ("epochs", "batch_size", "lr_step_epochs", "heads"):
        positive_int(getattr(args, name), f"--{name.replace('_', '-')}")
    for name in ("checkpoint_every", "max_steps"):
        positive_int(getattr(args, name), f"--{name.replace('_', '-')}", allow_none=True)
    for name in ("workers", "seed", "start_stage"):
        non_negative_int(getattr(args, name), f"--{name.replace('_', '-')}")
    positive_float(args.lr, "--lr", hint="the paper uses 0.1 for a global batch of 256")
    check_float(args.momentum, "--momentum", minimum=0.0, maximum=1.0, max_inclusive=False)
    check_float(args.weight_decay, "--weight-decay", minimum=0.0)
    check_float(args.warmup_epochs, "--warmup-epochs", minimum=0.0, maximum=args.epochs, hint="at most --epochs")
    check_float(args.label_smoothing, "--label-smoothing", minimum=0.0, maximum=1.0, max_inclusive=False)
    check_output_dir(args.out, name="--out")
    if args.batch_size % world_size:
        raise ValueError(
            f"--batch-size {args.batch_size} is the global batch and must be divisible by the "
            f"{world_size} torchrun processes"
        )
    check_model_arguments(args)
    resolve_device(args.device, name="--device")  # an unknown name, or CUDA without CUDA, fails before reading


def _open_split(data: Path, split: str, transform: Any) -> SafeImageFolder:
    from ..imageio import SafeImageFolder

    folder = data / split
    if not folder.is_dir():
        raise ValueError(
            f"{str(data)!r} has no {split}/ sub-folder; the data must be in ImageFolder layout: "
            f"{data}/train/<class>/<image> and {data}/val/<class>/<image>"
        )
    return SafeImageFolder(folder, transform=transform)


class _ImagesOnly:
    """A dataset view that drops the labels (label-free training with unrelated folders)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        return None if item is None else item[0]


def run(args: argparse.Namespace) -> int:
    """Check everything, build the model and loaders, train, and print where the results are."""
    from torch.utils.data import DataLoader

    from ..adapters import with_preprocessing
    from ..imageio import skip_none_collate
    from ..model import attach_stream
    from ..runtime import resolve_device
    from ..train import NonFiniteLossError, RunExistsError, train_stream
    from ..train.distributed import env_world

    configure_logging(args.quiet)
    rank, world_size, _ = env_world()
    _check_args(args, world_size)
    if not args.data.is_dir():
        raise FileNotFoundError(f"data folder {str(args.data)!r} does not exist")
    loaded = load_model(args)  # preprocessing: the model's own (its profile), with the command line's overrides
    train_set = _open_split(args.data, "train", loaded.preprocessing.train_transform())
    val_set = _open_split(args.data, "val", loaded.preprocessing.eval_transform())
    if train_set.classes != val_set.classes:
        raise ValueError(
            f"train/ and val/ have different class folders ({len(train_set.classes)} vs {len(val_set.classes)}, "
            f"e.g. {sorted(set(train_set.classes) ^ set(val_set.classes))[:3]}); they must match"
        )

    model = attach_stream(
        loaded.classifier,
        profile=with_preprocessing(loaded.profile, loaded.preprocessing),
        start_stage=args.start_stage,
        heads=args.heads,
        project_kv=args.project_kv,
        class_specific=args.class_specific,
    )
    n_classes = len(train_set.classes)
    if n_classes != model.num_classes:
        if not args.label_free:
            raise ValueError(
                f"the data has {n_classes} class folders but the classifier has {model.num_classes} outputs; "
                "the sorted folder names must map to the classifier's classes 0..N-1 (or train with --label-free)"
            )
        if args.class_specific:
            raise ValueError("--class-specific needs one query per classifier class; not with unrelated folders")
        # Label-free: the folders only group images; their labels mean nothing to this classifier.
        train_set, val_set = _ImagesOnly(train_set), _ImagesOnly(val_set)

    per_process = args.batch_size // world_size
    pin = resolve_device(args.device).type == "cuda"
    common = {
        "num_workers": args.workers,
        "collate_fn": skip_none_collate,
        "pin_memory": pin,
        "persistent_workers": args.workers > 0,
    }
    train_loader = DataLoader(train_set, batch_size=per_process, shuffle=True, **common)
    val_loader = DataLoader(val_set, batch_size=per_process, shuffle=False, **common)

    try:
        history = train_stream(
            model,
            train_loader,
            val_loader=val_loader,
            epochs=args.epochs,
            lr=args.lr,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            schedule=args.schedule,
            lr_step_epochs=args.lr_step_epochs,
            warmup_epochs=args.warmup_epochs,
            label_smoothing=args.label_smoothing,
            label_free=args.label_free,
            init=args.init,
            out_dir=args.out,
            checkpoint_every_steps=args.checkpoint_every,
            resume=args.resume,
            overwrite=args.overwrite,
            max_steps=args.max_steps,
            device=None if args.device == "auto" else args.device,
            amp=_AMP[args.amp],
            seed=args.seed,
            progress=False if args.quiet else None,
            metadata=run_metadata(args, loaded, "train"),
        )
    except NonFiniteLossError as exc:
        if exc.cause != "diverged":
            raise
        raise NonFiniteLossError(f"{exc} (flags: --lr, --warmup-epochs, --amp off)") from None
    except RunExistsError as exc:
        raise RunExistsError(f"{exc} (flags: --resume, --overwrite, --out)") from None
    if rank == 0:
        _print_summary(history, args.out)
    return 0


def _print_summary(history: list[dict[str, Any]], out: Path) -> None:
    if not history:
        print(f"no epoch finished yet; resume with --resume (state in {out / 'train_state.pt'})")
        return
    skipped = sum(record["skipped"] for record in history)
    last = history[-1]
    scored = [r for r in history if r["val_acc_ca"] is not None]
    best = max(scored, key=lambda r: r["val_acc_ca"]) if scored else last
    # Name only the files that exist (a run without a best epoch has no best.pt).
    checkpoints = [str(out / name) for name in ("best.pt", "last.pt") if (out / name).is_file()]
    print(
        f"trained {last['epoch']} epochs; best epoch {best['epoch']}: val acc CA {best['val_acc_ca']} "
        f"(GAP {best['val_acc_gap']}); stream checkpoints {' and '.join(checkpoints) or 'none'}; "
        f"log {out / 'history.jsonl'}" + (f"; {skipped} unreadable images skipped" if skipped else "")
    )
