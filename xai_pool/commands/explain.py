"""``xai-pool explain``: saliency overlays, raw maps and predictions for a few images.

For every image, method and pooling it writes ``<name>_<method>_<pooling>.png`` (the map
over the image, RGB) and ``<name>_<method>_<pooling>.npy`` (the float32 map in [0, 1] at
the network's input resolution), plus ``<name>_input.png`` (the image as the network saw
it, after resize and crop) and ``predictions.csv`` (class and probability with both
poolings). ``<name>`` is the image's file name without its last extension
(``frame.0001.png`` -> ``frame.0001``); images with the same name (from different folders)
get ``_2``, ``_3``... in the order given (predictions.csv lists the name of each image).
``run.json`` records the model's profile and the preprocessing used: the model's own
statistics and sizes (timm ``pretrained_cfg``, torchvision weights metadata, or what the model
declares) unless --mean/--std/--image-size override them.
Raw attention has no GAP version (GAP has no attention map): that combination is skipped
with a note.

The output folder is written whole or not at all: everything goes into a temporary sibling
folder, renamed to --out at the end. An existing non-empty --out is refused unless
--overwrite is given; it is then replaced only once the new folder is complete.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from ._logging import configure_logging
from ._model import add_model_arguments, check_model_arguments, load_model, metadata_json, run_metadata

_DEFAULT_METHODS = "gradcam,scorecam,raw_attention"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``explain`` subcommand."""
    parser = subparsers.add_parser(
        "explain",
        help="saliency maps (overlay PNG + .npy) and predictions for images, with GAP and CA pooling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--stream", help="stream checkpoint from `xai-pool train` / save_stream (needed for meaningful CA maps)"
    )
    parser.add_argument("--images", nargs="+", required=True, metavar="PATH", help="image files")
    parser.add_argument(
        "--methods",
        default=_DEFAULT_METHODS,
        help=f"comma-separated method names (default {_DEFAULT_METHODS}); e.g. gradcam, gradcam++, scorecam, "
        "raw_attention, xgradcam, eigencam, layercam, hirescam, ablationcam, fullgrad",
    )
    parser.add_argument("--pooling", default="gap,ca", help="comma-separated poolings: gap, ca (default both)")
    parser.add_argument("--out", required=True, help="output folder (created; see --overwrite)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing non-empty --out (only once the new results are complete)",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument(
        "--batch-size", type=int, default=16, help="masked images per forward pass (Score-CAM, Ablation-CAM)"
    )
    parser.add_argument("--target-layer", help="dotted module path of the CAM layer (default: the last stage)")
    parser.add_argument(
        "--class", dest="target_class", type=int, help="explain this class (default: each pooling's prediction)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.set_defaults(func=run)


def output_names(paths: list[str]) -> list[str]:
    """One unique output name per image: its file name without the last extension.

    ``frame.0001.png`` -> ``frame.0001``. A name already used by an earlier image (compared
    without case, for case-insensitive file systems) gets the first free ``_2``, ``_3``...
    that is not the name of any image given, so the result depends only on the order of
    ``paths``.
    """
    stems = [Path(path).stem or "image" for path in paths]
    reserved = {stem.casefold() for stem in stems}
    used: set[str] = set()
    names = []
    for stem in stems:
        name = stem
        if name.casefold() in used:
            n = 2
            while f"{stem}_{n}".casefold() in used | reserved:
                n += 1
            name = f"{stem}_{n}"
        used.add(name.casefold())
        names.append(name)
    return names


def _slug(name: str) -> str:
    return name.replace("++", "pp").replace("+", "p")


def _save_png(array: Any, path: Path) -> None:
    from PIL import Image

    from ..atomic import atomic_write

    image = Image.fromarray(array)  # (H, W, 3) uint8 is RGB
    atomic_write(path, lambda handle: image.save(handle, format="PNG"))


def _save_npy(array: Any, path: Path) -> None:
    import numpy as np

    from ..atomic import atomic_write

    atomic_write(path, lambda handle: np.save(handle, array))


def _check_out(args: argparse.Namespace) -> Path:
    """--out: writable, and either new, empty, or replaceable (--overwrite) without losing inputs."""
    from ..validation import check_output_dir

    out = check_output_dir(args.out, name="--out").resolve()  # absolute: "." has no name to stage beside
    if out.is_dir() and any(out.iterdir()):
        if not args.overwrite:
            raise ValueError(
                f"--out {str(out)!r} already exists and is not empty; pass --overwrite to replace it (the old "
                "folder is kept until the new results are complete), or choose another folder"
            )
        inside = out
        if inside == Path.cwd().resolve() or inside in Path.cwd().resolve().parents:
            raise ValueError(f"--overwrite cannot replace --out {str(out)!r}: it holds the current folder")
        inputs = [*args.images, *(p for p in (args.weights, args.stream) if p)]
        for path in inputs:
            if inside in Path(path).resolve().parents:
                raise ValueError(
                    f"--overwrite would delete {str(path)!r}, an input inside --out {str(out)!r}; move it out of the "
                    "folder, or choose another --out"
                )
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``xai-pool explain``; returns the exit code."""
    from ..validation import check_int, positive_int, split_names

    configure_logging()
    # Every flag first: a mistake costs a second, not a model load.
    methods = split_names(args.methods, "--methods")
    poolings = split_names(args.pooling, "--pooling")
    bad = [p for p in poolings if p not in ("gap", "ca")]
    if bad:
        raise ValueError(f"--pooling {bad[0]!r} is not a pooling; use gap, ca or gap,ca")
    positive_int(args.batch_size, "--batch-size")
    check_int(args.image_size, "--image-size", minimum=8, allow_none=True, hint="the network input size in pixels")
    check_int(args.target_class, "--class", minimum=0, allow_none=True, hint="class indices start at 0")
    check_model_arguments(args)
    out = _check_out(args)

    from ..atomic import atomic_directory, remove_stale_temp_files
    from ..imageio import load_image
    from ..runtime import resolve_device
    from ..saliency.methods import RawAttention, method_name, resolve_method

    method_classes = {method_name(m): resolve_method(m) for m in methods}  # unknown names fail here
    device = resolve_device(args.device, name="--device")
    pictures = [load_image(path) for path in args.images]  # unreadable images fail before any work

    import numpy as np
    import torch
    from tqdm import tqdm

    from ..adapters import with_preprocessing
    from ..atomic import atomic_write_text
    from ..checkpoint import load_stream
    from ..csvfile import write_csv
    from ..explainer import explain
    from ..model import attach_stream
    from ..viz.overlay import overlay

    # Preprocessing: the model's own (its profile), with overrides. A model that pools by
    # attention (a class-token ViT) has no GAP to replace: it is explained as it is.
    loaded = load_model(args, device, allow_unwrappable=True)
    if loaded.profile is None:
        if "ca" in poolings or args.stream:
            reason = loaded.unwrappable.split(": ", 1)[-1].split(". ")[0]
            raise ValueError(
                f"--pooling ca and --stream need a CA-Stream, but none can be attached to {args.arch} ({reason}); "
                "use --pooling gap to explain the model as it is (raw_attention is then its own attention pooling)"
            )
        model = loaded.classifier.eval()
        num_classes = None
    else:
        model = attach_stream(loaded.classifier, profile=with_preprocessing(loaded.profile, loaded.preprocessing))
        num_classes = model.num_classes
    if args.target_class is not None and num_classes is not None and not 0 <= args.target_class < num_classes:
        raise ValueError(f"--class {args.target_class} is out of range: the model has {num_classes} classes")
    if args.stream:
        load_stream(model, args.stream)
    elif "ca" in poolings:
        print(
            "xai-pool explain: warning: no --stream given, the CA-Stream is untrained (random): CA maps and "
            "predictions are meaningless",
            file=sys.stderr,
        )
    own = loaded.profile is None  # raw attention of a plain model is its own attention pooling, not skipped
    skipped = [
        name for name, cls in method_classes.items() if issubclass(cls, RawAttention) and "gap" in poolings and not own
    ]
    if skipped:
        print(
            f"xai-pool explain: note: {', '.join(skipped)} skipped for pooling gap (GAP has no attention map)",
            file=sys.stderr,
        )

    transform = loaded.preprocessing.eval_transform()
    names = loaded.class_names
    mean_t = torch.tensor(loaded.preprocessing.mean).view(-1, 1, 1)
    std_t = torch.tensor(loaded.preprocessing.std).view(-1, 1, 1)
    jobs = [(n, p) for n in method_classes for p in poolings if (n, p) not in {(s, "gap") for s in skipped}]
    remove_stale_temp_files(out.parent, target=out.name)  # left by a killed earlier run
    rows = []
    written: list[Path] = []
    with (
        atomic_directory(out) as staging,
        tqdm(total=len(pictures) * len(jobs), disable=args.no_progress, desc="explain", unit="map") as bar,
    ):
        for path, stem, picture in zip(args.images, output_names(args.images), pictures, strict=True):
            tensor = transform(picture)
            x = tensor[None].to(device)
            rgb = (tensor * std_t + mean_t).clamp(0, 1).permute(1, 2, 0).numpy()
            _save_png((rgb * 255).round().astype(np.uint8), staging / f"{stem}_input.png")
            written.append(out / f"{stem}_input.png")
            row: dict[str, Any] = {"image": path, "name": stem}
            with torch.inference_mode():
                for pooling in ("gap",) if own else ("gap", "ca"):
                    with model.pooling_as(pooling) if not own else contextlib.nullcontext():
                        probs = model(x).softmax(dim=1)[0]
                    cls = int(probs.argmax())
                    row[f"{pooling}_class"] = cls
                    row[f"{pooling}_prob"] = f"{float(probs[cls]):.6f}"
                    if names is not None:
                        row[f"{pooling}_label"] = names[cls] if cls < len(names) else ""
            rows.append(row)
            for name, pooling in jobs:
                bar.set_postfix_str(f"{stem} {name} {pooling}")
                saliency = explain(
                    model,
                    x,
                    method_classes[name],
                    pooling=pooling,
                    targets=args.target_class,
                    target_layers=args.target_layer,
                    batch_size=args.batch_size,
                )[0]
                # Names are appended, not swapped in with Path.with_suffix: "frame.0001" keeps its dot.
                base = f"{stem}_{_slug(name)}_{pooling}"
                _save_npy(saliency, staging / f"{base}.npy")
                _save_png(overlay(rgb, saliency), staging / f"{base}.png")  # the library's one overlay
                written += [out / f"{base}.npy", out / f"{base}.png"]
                bar.update(1)
        write_csv(staging / "predictions.csv", rows)
        atomic_write_text(staging / "run.json", metadata_json(run_metadata(args, loaded, "explain")))
        written += [out / "predictions.csv", out / "run.json"]
        present = sum(1 for entry in staging.iterdir() if entry.is_file())
        if present != len(written):  # a name written twice would lose a file: never report it as done
            raise RuntimeError(f"{len(written)} files were written but {present} exist; two outputs share a name")
    maps = len(rows) * len(jobs)
    print(
        f"wrote {maps} maps (.npy), {maps} overlays (.png), {len(rows)} input image(s), predictions.csv and run.json "
        f"({present} files) to {out}"
    )
    return 0
