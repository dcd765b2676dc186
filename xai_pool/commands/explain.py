"""``xai-pool explain``: saliency overlays, raw maps and predictions for a few images.

For every image, method and pooling it writes ``<image>_<method>_<pooling>.png`` (the map
over the image, RGB) and ``<image>_<method>_<pooling>.npy`` (the float32 map in [0, 1] at
the network's input resolution), plus ``<image>_input.png`` (the image as the network saw
it, after resize and crop), ``predictions.csv`` (class and probability with both
poolings) and ``run.json`` (the model's profile and the preprocessing used: the model's own
statistics and sizes unless --mean/--std/--image-size override them). Raw attention has no GAP version (GAP has no attention map): that combination is
skipped with a note.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path
from typing import Any

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
    parser.add_argument("--out", required=True, help="output folder (created if needed)")
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


def _split(value: str, what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise ValueError(f"--{what} is empty; give a comma-separated list")
    return list(dict.fromkeys(items))


def _device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"--device {name!r} is not a device name (use cpu, cuda, cuda:N or auto)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r} requested but CUDA is not available; use --device cpu")
    return device


def _stems(paths: list[str]) -> list[str]:
    """File-name stems, made unique (two ``cat.png`` in different folders)."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        stem = Path(path).stem or "image"
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return stems


def _slug(name: str) -> str:
    return name.replace("++", "pp").replace("+", "p")


def overlay(image: Any, saliency: Any) -> Any:
    """RGB uint8 overlay of a [0, 1] map on an RGB float image in [0, 1] (H, W, 3)."""
    import numpy as np
    from pytorch_grad_cam.utils.image import show_cam_on_image

    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    return show_cam_on_image(image, np.asarray(saliency, dtype=np.float32), use_rgb=True)


def _save_png(array: Any, path: Path) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)  # (H, W, 3) uint8 is RGB


def run(args: argparse.Namespace) -> int:
    """Run ``xai-pool explain``; returns the exit code."""
    methods = _split(args.methods, "methods")
    poolings = _split(args.pooling, "pooling")
    bad = [p for p in poolings if p not in ("gap", "ca")]
    if bad:
        raise ValueError(f"--pooling {bad[0]!r} is not a pooling; use gap, ca or gap,ca")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    check_model_arguments(args)

    from ..imageio import load_image
    from ..saliency.methods import RawAttention, method_name, resolve_method

    method_classes = {method_name(m): resolve_method(m) for m in methods}  # unknown names fail here
    pictures = [load_image(path) for path in args.images]  # unreadable images fail before any work

    import numpy as np
    import torch
    from tqdm import tqdm

    from ..adapters import with_preprocessing
    from ..atomic import atomic_write_text
    from ..checkpoint import load_stream
    from ..explainer import explain
    from ..model import attach_stream

    device = _device(args.device)
    loaded = load_model(args, device)
    model = attach_stream(loaded.classifier, profile=with_preprocessing(loaded.profile, loaded.preprocessing))
    if args.target_class is not None and not 0 <= args.target_class < model.num_classes:
        raise ValueError(f"--class {args.target_class} is out of range: the model has {model.num_classes} classes")
    if args.stream:
        load_stream(model, args.stream)
    elif "ca" in poolings:
        print(
            "xai-pool explain: warning: no --stream given, the CA-Stream is untrained (random): CA maps and "
            "predictions are meaningless",
            file=sys.stderr,
        )
    skipped = [name for name, cls in method_classes.items() if issubclass(cls, RawAttention) and "gap" in poolings]
    if skipped:
        print(
            f"xai-pool explain: note: {', '.join(skipped)} skipped for pooling gap (GAP has no attention map)",
            file=sys.stderr,
        )

    transform = loaded.preprocessing.eval_transform()
    mean, std = loaded.preprocessing.mean, loaded.preprocessing.std
    names = loaded.class_names
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mean_t = torch.tensor(mean).view(-1, 1, 1)
    std_t = torch.tensor(std).view(-1, 1, 1)
    jobs = [(n, p) for n in method_classes for p in poolings if (n, p) not in {(s, "gap") for s in skipped}]
    rows = []
    with tqdm(total=len(pictures) * len(jobs), disable=args.no_progress, desc="explain", unit="map") as bar:
        for path, stem, picture in zip(args.images, _stems(args.images), pictures):
            tensor = transform(picture)
            x = tensor[None].to(device)
            rgb = (tensor * std_t + mean_t).clamp(0, 1).permute(1, 2, 0).numpy()
            _save_png((rgb * 255).round().astype(np.uint8), out / f"{stem}_input.png")
            row: dict[str, Any] = {"image": path}
            with torch.inference_mode():
                for pooling in ("gap", "ca"):
                    with model.pooling_as(pooling):
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
                base = out / f"{stem}_{_slug(name)}_{pooling}"
                np.save(base.with_suffix(".npy"), saliency)
                _save_png(overlay(rgb, saliency), base.with_suffix(".png"))
                bar.update(1)
    _write_csv(rows, out / "predictions.csv")
    atomic_write_text(out / "run.json", metadata_json(run_metadata(args, loaded, "explain")))
    print(f"wrote {len(rows) * len(jobs)} overlays and maps for {len(rows)} image(s) and predictions.csv to {out}")
    return 0


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
