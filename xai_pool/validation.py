"""Checks at the boundary: one home for the validation of images, targets, numbers and folders.

Every public entry point (``explain``, ``metrics.evaluate``, ``train_stream``, the CLI
commands) checks its inputs here before any work starts, so that a mistake costs a second
and reads as a sentence naming the argument, the value and the fix, never as a traceback
from deep inside torch. Library messages name arguments as the Python API spells them
(``images``, ``lr``); the CLI passes its flag names (``--lr``) as ``name``.

Rules for images (:func:`check_images`, see ``docs/saliency.md``):

- a ``torch.Tensor`` (numpy arrays are refused with the ``torch.from_numpy`` hint);
- 4-D ``(B, C, H, W)``, ``B >= 1``, ``H, W >= min_size``;
- floating point: integer and bool images are refused (the model expects normalised
  floats); float16 / bfloat16 / float64 images are **cast** to ``dtype`` (the model's
  parameter dtype) when it is given, since the conversion only rounds;
- every value finite (NaN and inf are counted and located in the message);
- ``C`` equal to the model's input channels, when known (with hints for grayscale, RGBA
  and channels-last layouts).
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Callable, Iterable, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "check_images",
    "check_finite",
    "check_targets",
    "check_int",
    "positive_int",
    "non_negative_int",
    "check_float",
    "positive_float",
    "check_choice",
    "split_names",
    "check_exclusive",
    "check_output_dir",
]


# ----------------------------------------------------------------------------- tensors
def _positions(mask: Tensor, limit: int = 3) -> str:
    index = torch.nonzero(mask)[:limit].tolist()
    return ", ".join(str(tuple(i)) for i in index) + (", ..." if int(mask.sum()) > limit else "")


def check_finite(tensor: Tensor, name: str, *, fix: str = "") -> None:
    """Raise ValueError if ``tensor`` holds NaN or inf, saying how many and where.

    Args:
        tensor: any floating tensor (other dtypes are always finite).
        name: the argument's name, used in the message.
        fix: appended to the message (what to do).

    Raises:
        ValueError: naming the number of NaN and infinite values and the first positions.
    """
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return
    finite = torch.isfinite(tensor)
    if bool(finite.all()):
        return
    nan = int(torch.isnan(tensor).sum())
    inf = int((~finite).sum()) - nan
    raise ValueError(
        f"{name} holds {nan} NaN and {inf} infinite values (first at index {_positions(~finite)} of shape "
        f"{tuple(tensor.shape)})" + (f"; {fix}" if fix else "")
    )


def _channel_hint(got: int, expected: int, shape: tuple[int, ...], name: str) -> str:
    if shape[-1] == expected and got != expected:
        return f"it looks channels-last (B, H, W, C): use {name}.permute(0, 3, 1, 2)"
    if got == 1 and expected == 3:
        return f"grayscale images: repeat the channel with {name}.expand(-1, 3, -1, -1), or convert them to RGB"
    if got == 4 and expected == 3:
        return f"RGBA images: drop the alpha channel with {name}[:, :3], or convert them to RGB"
    if expected == 1 and got == 3:
        return f"RGB images for a 1-channel model: convert to grayscale, e.g. {name}.mean(1, keepdim=True)"
    return f"give images with {expected} channels, as the model's first layer takes"


def check_images(
    images: Any,
    *,
    channels: int | None = None,
    min_size: int = 1,
    dtype: torch.dtype | None = None,
    finite: bool = True,
    name: str = "images",
) -> Tensor:
    """Check a batch of images for a model and return it (cast to ``dtype`` if given).

    Args:
        images: the batch, (B, C, H, W), normalised as the model expects.
        channels: the model's input channels (None: not checked).
        min_size: smallest height and width accepted, in pixels.
        dtype: the model's floating dtype: floating images of another precision are cast
            to it (None: left as they are).
        finite: scan for NaN/inf. The scan reads every value and waits for the device: pass
            False on hot paths (a model's forward during training) and check at the entry
            point instead.
        name: the argument's name in messages.

    Returns:
        ``images``, or its cast to ``dtype``.

    Raises:
        TypeError: not a tensor (numpy, PIL, list), or not floating point.
        ValueError: not 4-D, an empty batch, smaller than ``min_size``, the wrong number of
            channels, or NaN/inf values (counted and located).
    """
    if not isinstance(images, Tensor):
        kind = type(images).__name__
        if isinstance(images, np.ndarray):
            hint = f"convert with torch.from_numpy({name}) (and .permute(0, 3, 1, 2) if it is (B, H, W, C))"
        elif type(images).__module__.startswith("PIL"):
            hint = "apply the model's transform (e.g. torchvision ToTensor + Normalize) and add a batch dimension"
        elif isinstance(images, (list, tuple)):
            hint = f"stack the image tensors with torch.stack({name})"
        else:
            hint = "pass a float tensor (B, C, H, W)"
        raise TypeError(f"{name} must be a torch.Tensor (B, C, H, W), got {kind}; {hint}")
    shape = tuple(images.shape)
    if images.ndim != 4:
        if images.ndim == 3:
            hint = f"; add a batch dimension with {name}.unsqueeze(0)"
        elif images.ndim == 2:
            hint = f"; a single one-channel image needs {name}[None, None]"
        else:
            hint = ""
        raise ValueError(f"{name} must be a 4-D batch (B, C, H, W), got shape {shape}{hint}")
    if images.dtype == torch.bool or not (images.is_floating_point()):
        raise TypeError(
            f"{name} must be floating point and normalised as the model expects, got {images.dtype}; convert with "
            f"{name}.float() / 255 and normalise (mean/std) first"
        )
    if shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (B = 0, shape {shape}); pass at least one image")
    if shape[2] < min_size or shape[3] < min_size:
        raise ValueError(
            f"{name} are {shape[2]}x{shape[3]} pixels (shape {shape}); at least {min_size}x{min_size} is needed: "
            "resize them (or check the crop size)"
        )
    if channels is not None and shape[1] != channels:
        raise ValueError(
            f"{name} have {shape[1]} channels (shape {shape}) but the model takes {channels}; "
            f"{_channel_hint(shape[1], channels, shape, name)}"
        )
    if finite:
        check_finite(
            images, name, fix="fix the preprocessing (e.g. a zero std), or replace them with torch.nan_to_num(...)"
        )
    if dtype is not None and images.dtype != dtype:
        cast = images.to(dtype)
        if finite:
            check_finite(
                cast, f"{name} cast from {images.dtype} to the model's {dtype}", fix="the values exceed that range"
            )
        return cast
    return images


# ----------------------------------------------------------------------------- targets
def _is_index(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_class(index: Any, num_classes: int | None, name: str) -> int:
    index = int(index)
    if index < 0:
        raise ValueError(
            f"{name}: target class {index} is out of range: class indices start at 0 (negative indices do not "
            "count from the end); pass num_classes - 1 for the last class"
        )
    if num_classes is not None and index >= num_classes:
        raise ValueError(
            f"{name}: target class {index} is out of range: the model has {num_classes} classes (0..{num_classes - 1})"
        )
    return index


def check_targets(
    targets: Any, batch_size: int, *, num_classes: int | None = None, name: str = "targets"
) -> list[int | Callable] | None:
    """Check what to explain and return one class index or target callable per image.

    Accepted: None (each image's predicted class), a class index (int, 0-d tensor or
    array), a sequence / 1-D integer tensor / array of B class indices, a callable
    (pytorch-grad-cam target) alone or in a sequence of B mixed with ints.

    Args:
        targets: see above.
        batch_size: the number of images B.
        num_classes: the model's number of classes, when known.
        name: the argument's name in messages.

    Returns:
        None, or a list of B class indices (ints) and callables.

    Raises:
        TypeError: an element is neither a class index nor a callable.
        ValueError: not B targets, a negative index, an index >= ``num_classes``, or a
            tensor/array of floats or of the wrong shape.
    """
    if targets is None:
        return None
    if isinstance(targets, (Tensor, np.ndarray)):
        floating = (
            targets.dtype.is_floating_point or targets.dtype == torch.bool
            if isinstance(targets, Tensor)
            else not np.issubdtype(targets.dtype, np.integer)
        )
        if floating or targets.ndim > 1:
            raise ValueError(
                f"{name}: a target tensor/array must hold integer class indices with shape () or (B,), got "
                f"dtype {targets.dtype} shape {tuple(targets.shape)}; convert with .long()"
            )
        targets = targets.item() if targets.ndim == 0 else [int(t) for t in targets.tolist()]
    if _is_index(targets):
        return [_check_class(targets, num_classes, name)] * batch_size
    if callable(targets):
        return [targets] * batch_size
    if isinstance(targets, (str, bytes)) or not isinstance(targets, Sequence):
        raise TypeError(
            f"{name} must be None, a class index, a pytorch-grad-cam target or a sequence of them, "
            f"got {type(targets).__name__} {targets!r}"
        )
    if len(targets) != batch_size:
        raise ValueError(
            f"got {len(targets)} targets for a batch of {batch_size} images: pass one target per image, "
            "a single class index for all of them, or None for the predicted classes"
        )
    resolved: list[int | Callable] = []
    for i, item in enumerate(targets):
        if _is_index(item):
            resolved.append(_check_class(item, num_classes, f"{name}[{i}]"))
        elif callable(item):
            resolved.append(item)
        else:
            raise TypeError(f"{name}[{i}] must be a class index or a pytorch-grad-cam target callable, got {item!r}")
    return resolved


# ----------------------------------------------------------------------------- numbers and flags
def check_int(
    value: Any,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    allow_none: bool = False,
    hint: str = "",
) -> int | None:
    """Check an integer argument (bools refused) within ``[minimum, maximum]``.

    Raises:
        TypeError: not an integer.
        ValueError: out of range (the message gives the range and ``hint``).
    """
    if value is None and allow_none:
        return None
    if not _is_index(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if maximum is None:
            wanted = "a positive integer (>= 1)" if minimum == 1 else f"an integer >= {minimum}"
        elif minimum is None:
            wanted = f"an integer <= {maximum}"
        else:
            wanted = f"an integer in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {wanted}, got {value}" + (f"; {hint}" if hint else ""))
    return value


def positive_int(value: Any, name: str, *, allow_none: bool = False, hint: str = "") -> int | None:
    """:func:`check_int` with ``minimum=1``."""
    return check_int(value, name, minimum=1, allow_none=allow_none, hint=hint)


def non_negative_int(value: Any, name: str, *, allow_none: bool = False, hint: str = "") -> int | None:
    """:func:`check_int` with ``minimum=0``."""
    return check_int(value, name, minimum=0, allow_none=allow_none, hint=hint)


def check_float(
    value: Any,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
    allow_none: bool = False,
    hint: str = "",
) -> float | None:
    """Check a finite real argument within the given bounds.

    Raises:
        TypeError: not a real number.
        ValueError: NaN, infinite, or out of range.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    low_ok = minimum is None or (value >= minimum if min_inclusive else value > minimum)
    high_ok = maximum is None or (value <= maximum if max_inclusive else value < maximum)
    if not math.isfinite(value) or not (low_ok and high_ok):
        low = "" if minimum is None else f"{'[' if min_inclusive else '('}{minimum:g}"
        high = "" if maximum is None else f"{maximum:g}{']' if max_inclusive else ')'}"
        if minimum is not None and maximum is not None:
            wanted = f"a finite number in {low}, {high}"
        elif minimum is not None:
            wanted = f"a finite number {'>=' if min_inclusive else '>'} {minimum:g}"
        elif maximum is not None:
            wanted = f"a finite number {'<=' if max_inclusive else '<'} {maximum:g}"
        else:
            wanted = "a finite number"
        raise ValueError(f"{name} must be {wanted}, got {value!r}" + (f"; {hint}" if hint else ""))
    return value


def positive_float(value: Any, name: str, *, hint: str = "") -> float:
    """A finite number > 0 (learning rates, scales)."""
    return check_float(value, name, minimum=0.0, min_inclusive=False, hint=hint)  # type: ignore[return-value]


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """Raise ValueError unless ``value`` is one of ``choices`` (listed in the message)."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def split_names(value: str, name: str, *, choices: Iterable[str] | None = None) -> list[str]:
    """A comma-separated list of names, stripped and de-duplicated; empty lists are refused.

    Raises:
        ValueError: no name in ``value`` (e.g. ``","``), or a name not in ``choices``.
    """
    items = list(dict.fromkeys(v.strip() for v in str(value).split(",") if v.strip()))
    if not items:
        raise ValueError(f"{name} is empty ({value!r}); give a comma-separated list of names")
    if choices is not None:
        choices = tuple(choices)
        bad = [item for item in items if item not in choices]
        if bad:
            raise ValueError(f"{name}: {bad[0]!r} is not one of {', '.join(choices)} (got {value!r})")
    return items


def check_exclusive(first: tuple[str, Any], second: tuple[str, Any], why: str = "") -> None:
    """Refuse two options that contradict each other when both are set (truthy).

    Args:
        first: ``(name, value)`` of one option.
        second: ``(name, value)`` of the other.
        why: what each does, appended to the message.

    Raises:
        ValueError: naming both options.
    """
    if first[1] and second[1]:
        raise ValueError(
            f"{first[0]} and {second[0]} cannot be used together" + (f": {why}" if why else "") + "; pass only one"
        )


# ----------------------------------------------------------------------------- folders
def _os_error(cls: type[OSError], message: str) -> OSError:
    # One argument: str(exc) is the whole sentence (with errno/filename set, OSError would
    # print "[Errno N] ..." instead); the CLI shows such messages as they are.
    return cls(message)


def check_output_dir(path: str | os.PathLike, *, name: str = "out_dir") -> Path:
    """Check before any work that ``path`` is, or can become, a folder this process can write.

    Nothing is created: a missing folder is checked through its nearest existing parent. The
    check creates and removes one empty temporary file, so read-only file systems, ACLs and
    quotas are seen as the real writers will see them.

    Args:
        path: the output folder.
        name: the argument's name in messages (the CLI passes ``--out``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        NotADirectoryError: ``path`` or one of its parents is a file.
        PermissionError: the folder (or the parent it would be created in) is not writable.
        OSError: another reason the folder cannot be written (read-only file system, ...).
    """
    from .atomic import temp_name

    path = Path(path)
    existing = path
    while not (existing.exists() or existing.is_symlink()) and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        what = "it is" if existing == path else f"its parent {str(existing)!r} is"
        raise _os_error(
            NotADirectoryError,
            f"cannot write {name} {str(path)!r}: {what} a file, not a folder; give a folder path "
            "(it is created if needed)",
        )
    if not existing.exists():  # a dangling symbolic link
        raise _os_error(
            NotADirectoryError,
            f"cannot write {name} {str(path)!r}: {str(existing)!r} is a broken link; fix or remove it",
        )
    probe = existing / temp_name("xai-pool-write-check")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        where = "" if existing == path else f" (it would be created in {str(existing)!r})"
        cls = PermissionError if exc.errno in (errno.EACCES, errno.EPERM) else OSError
        raise _os_error(
            cls,
            f"cannot write {name} {str(path)!r}{where}: {exc.strerror or exc}; choose a folder you can write to, "
            "or fix its permissions",
        ) from None
    os.close(fd)
    os.unlink(probe)
    return path
