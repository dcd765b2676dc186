"""What every command does with ``--arch/--weights/--mean/--std/--image-size``: one home.

The classifier is built by name (:func:`xai_pool.classifiers.build_classifier`), profiled once
(:func:`xai_pool.adapters.resolve_profile`), and its preprocessing comes from that profile,
with the user's overrides on top. No command decides anything from a model's name.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["add_model_arguments", "LoadedModel", "load_model", "run_metadata", "parse_floats"]


def parse_floats(text: str) -> tuple[float, ...]:
    """``"0.5,0.5,0.5"`` -> ``(0.5, 0.5, 0.5)`` for ``--mean``/``--std`` (argparse ``type=``)."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers like 0.5,0.5,0.5, got {text!r}") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def add_model_arguments(parser: argparse.ArgumentParser | Any, *, image_size_help: str | None = None) -> None:
    """Add ``--arch``, ``--weights``, ``--mean``, ``--std`` and ``--image-size`` to a parser or group."""
    parser.add_argument(
        "--arch", required=True, help="torchvision or timm classifier name (e.g. resnet50), or shapes_resnet"
    )
    parser.add_argument(
        "--weights",
        type=Path,
        metavar="PATH",
        help="local state-dict file of the classifier (nothing is downloaded; optional for the zoo models "
        "shapes_resnet and efficientnet_lite0, whose weights ship with xai_pool)",
    )
    parser.add_argument(
        "--image-size",
        type=int,
        default=None,
        metavar="PX",
        help=image_size_help or "network input size (default: the model's own, from its profile)",
    )
    parser.add_argument(
        "--resize",
        type=int,
        default=None,
        metavar="PX",
        help="shorter side before the centre crop (default: the model's; e.g. 256 for torchvision's V1 weights, "
        "whose metadata xai_pool cannot tell from a local file)",
    )
    parser.add_argument(
        "--mean", type=parse_floats, default=None, metavar="M,M,M", help="normalisation mean (default: the model's)"
    )
    parser.add_argument(
        "--std", type=parse_floats, default=None, metavar="S,S,S", help="normalisation std (default: the model's)"
    )


@dataclass
class LoadedModel:
    """A classifier built from the command line, its profile and the preprocessing in use.

    ``profile`` is None when xai_pool cannot attach a stream to the model (``unwrappable``
    says why); only commands that explain the model as it is accept that.
    """

    classifier: Any
    profile: Any
    preprocessing: Any
    class_names: list[str] | None
    unwrappable: str | None = None


def check_model_arguments(args: argparse.Namespace) -> None:
    """Refuse bad ``--arch/--weights/--mean/--std/--image-size`` before anything is built."""
    from ..classifiers import needs_weights

    if args.weights is None and needs_weights(args.arch):
        raise ValueError(
            f"--weights is required for --arch {args.arch} (nothing is downloaded): pass a local state-dict file"
        )
    if args.image_size is not None and args.image_size < 8:
        raise ValueError(f"--image-size must be at least 8 pixels, got {args.image_size}")
    if getattr(args, "resize", None) is not None and args.resize < 8:
        raise ValueError(f"--resize must be at least 8 pixels, got {args.resize}")
    for flag in ("mean", "std"):
        values = getattr(args, flag)
        if values is not None and flag == "std" and any(v <= 0 for v in values):
            raise ValueError(f"--std values must be positive, got {','.join(map(str, values))}")


def load_model(args: argparse.Namespace, device: Any = None, *, allow_unwrappable: bool = False) -> LoadedModel:
    """Build ``--arch`` with ``--weights``, profile it and resolve the preprocessing (with overrides).

    Args:
        args: the parsed command line.
        device: where to put the classifier.
        allow_unwrappable: return a model xai_pool cannot attach a stream to (a class-token ViT:
            it is explained as it is) instead of raising.

    Raises:
        ValueError: missing weights, a model xai_pool cannot wrap (with the reason), or
            ``--mean``/``--std`` with a channel count other than the model's.
    """
    from ..adapters import ProfileError, resolve_preprocessing, resolve_profile
    from ..classifiers import build_classifier, class_names

    check_model_arguments(args)
    classifier = build_classifier(args.arch, args.weights)
    if device is not None:
        classifier = classifier.to(device)
    try:
        profile, unwrappable = resolve_profile(classifier, arch=args.arch), None
    except ProfileError as exc:
        if not allow_unwrappable:
            raise
        profile, unwrappable = None, str(exc)
    base = profile.preprocessing if profile is not None else resolve_preprocessing(classifier, args.arch)
    channels = profile.in_channels if profile is not None else base.channels
    for flag in ("mean", "std"):
        values = getattr(args, flag)
        if values is not None and len(values) != channels:
            raise ValueError(
                f"--{flag} has {len(values)} values but {args.arch} takes {channels} input channels; "
                f"give one value per channel"
            )
    if profile is None:
        preprocessing = base.with_overrides(
            mean=args.mean,
            std=args.std,
            size=args.image_size,
            resize=getattr(args, "resize", None),
            source="command line",
        )
        return LoadedModel(classifier, None, preprocessing, class_names(classifier), unwrappable)
    preprocessing = profile.preprocessing.with_overrides(
        mean=args.mean, std=args.std, size=args.image_size, resize=getattr(args, "resize", None), source="command line"
    )
    if profile.input_size is not None and preprocessing.input_size != profile.input_size:
        raise ValueError(
            f"{args.arch} only accepts {profile.input_size[0]}x{profile.input_size[1]} inputs; "
            f"--image-size {args.image_size} cannot be used with it"
        )
    return LoadedModel(classifier, profile, preprocessing, class_names(classifier))


def run_metadata(args: argparse.Namespace, loaded: LoadedModel, command: str) -> dict[str, Any]:
    """What a run folder records about how its images were prepared and which model read them."""
    from .._version import __version__

    return {
        "command": command,
        "xai_pool_version": __version__,
        "arch": args.arch,
        "weights": str(args.weights) if args.weights is not None else None,
        "preprocessing": loaded.preprocessing.to_dict(),
        "profile": loaded.profile.to_dict() if loaded.profile is not None else None,
        **({"no_stream": loaded.unwrappable} if loaded.unwrappable else {}),
    }


def metadata_json(metadata: dict[str, Any]) -> str:
    """Strict JSON text (no NaN) for ``run.json``."""
    return json.dumps(metadata, indent=2, allow_nan=False, sort_keys=True) + "\n"
