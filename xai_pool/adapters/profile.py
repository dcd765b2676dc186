"""The model profile: everything xai_pool needs to know about a classifier, resolved once.

:func:`resolve_profile` answers, for any ``nn.Module`` classifier: where the stream's blocks
read (the stage taps and their layouts), which global average pooling the stream replaces and
how it is reached (a module, or the input of the classifier for pooling written as a
function), the default CAM target layer, the input channels, the input size the model
needs, the number of classes, and the preprocessing its weights expect.

Sources, in order:

1. what the user passes (``spec=``, ``preprocessing=``) and what the model declares
   (``xai_pool_spec``, ``xai_pool_preprocessing`` attributes: ShapesResNet does);
2. timm: ``pretrained_cfg`` / ``timm.data.resolve_model_data_config`` (preprocessing, fixed
   input size, input channels) and ``feature_info`` / ``num_prefix_tokens`` (layout hints);
3. torchvision: the weights metadata of a named architecture (``arch=``, set by
   :func:`xai_pool.classifiers.build_classifier`), the fixed input size of its ViTs;
4. measurement: probe forward passes at two input sizes (:mod:`~xai_pool.adapters.probe`)
   find the layouts and, unless a spec says otherwise, the pooling and the stages
   (:mod:`~xai_pool.adapters.discovery`).

Everything found is checked on the probe: the pooled vector must equal the average of the
pooled map, every tap must run once and have a measured layout. What cannot be checked is
refused with the reason and the spec to pass.
"""

from __future__ import annotations

import weakref
from dataclasses import replace
from typing import Any

from torch import Tensor, nn

from ..runtime import eval_mode
from .attention import AttentionPooling, find_attention_pooling
from .discovery import LayoutOracle
from .metadata import (
    channel_candidates,
    fixed_input_size,
    layout_hints,
    model_family,
    resolve_preprocessing,
)
from .model_profile import ModelProfile, PoolSite, ProfileError, Tap
from .placement import check_order, find_placement, target_layout_of
from .preprocessing import Preprocessing
from .probe import did_not_run, probe_input, probe_plans, probe_runs, select_output
from .spec import StreamSpec

__all__ = [
    "ModelProfile",
    "Tap",
    "PoolSite",
    "resolve_profile",
    "resolve_preprocessing",
    "resolve_attention_pooling",
    "ProfileError",
    "with_preprocessing",
]

# ------------------------------------------------------------------------------------ public
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def resolve_profile(
    model: nn.Module,
    *,
    spec: StreamSpec | None = None,
    logits: int | str | None = None,
    preprocessing: Preprocessing | None = None,
    arch: str | None = None,
    in_channels: int | None = None,
    probe_size: int | tuple[int, int] | None = None,
) -> ModelProfile:
    """Profile a classifier: stream placement, pooling, layouts, channels, input size, preprocessing.

    The model runs a few probe forward passes under ``no_grad`` in eval mode (its train/eval
    flags are restored, no hook is left). Results are cached per model object and arguments.

    Args:
        model: any classifier ending in a global average pooling and a head.
        spec: where to attach (default: the model's ``xai_pool_spec``, else discovered).
        logits: for models that return a tuple, list, dict or object: the index, key or
            attribute holding the logits.
        preprocessing: overrides the model's own preprocessing.
        arch: the torchvision/timm architecture name, for preprocessing metadata.
        in_channels: input channels (default: the model's metadata, else 3).
        probe_size: side (or (H, W)) of the dummy images (default 64, then the model's input size).

    Returns:
        A :class:`ModelProfile`.

    Raises:
        ProfileError (a ValueError): the model has no global average pooling to replace (the
            reason is given: class token, 7x7 pooling, max pooling...), a spec path does not exist
            or runs more than once, a layout cannot be measured, or the model does not run.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module classifier, got {type(model).__name__}")
    if spec is None and isinstance(getattr(model, "xai_pool_spec", None), StreamSpec):
        spec = model.xai_pool_spec
    key = (spec, logits, preprocessing, arch, in_channels, probe_size, _structure(model))
    cached = _CACHE.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    profile = _resolve(model, spec, logits, preprocessing, arch, in_channels, probe_size)
    _CACHE[model] = (key, profile)
    return profile


_ATTENTION_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def resolve_attention_pooling(
    model: nn.Module,
    *,
    in_channels: int | None = None,
    probe_size: int | tuple[int, int] | None = None,
) -> AttentionPooling:
    """Find the attention a classifier pools with (class token, class attention, latent or 2-D attention pool).

    Measured on probe passes like :func:`resolve_profile` (same probe sizes and channels), and
    cached per model object.

    Raises:
        ProfileError: the model computes no attention over its patch grid before the classifier;
            the message says what to use instead (a CA-Stream with ``attach_stream``).
    """
    key = (in_channels, probe_size, _structure(model))
    cached = _ATTENTION_CACHE.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    preprocessing = resolve_preprocessing(model, None)
    plans = probe_plans(probe_size, fixed_input_size(model, preprocessing), preprocessing.input_size)
    errors: list[str] = []
    reason = "it did not run"
    with eval_mode(model):  # the probes must not update batch-norm statistics
        for rec_a, rec_b, channels in probe_runs(
            model, channel_candidates(model, preprocessing, in_channels), plans, errors
        ):
            try:
                found = find_attention_pooling(
                    model,
                    rec_a,
                    LayoutOracle(rec_a, rec_b, layout_hints(model)),
                    probe_input(model, channels, rec_a.image_size),
                )
            except ValueError as exc:
                reason = str(exc)
                continue
            _ATTENTION_CACHE[model] = (key, found)
            return found
    if errors and reason == "it did not run":
        raise did_not_run(model, errors)
    raise ProfileError(
        f"{type(model).__name__} has no attention pooling to read raw attention from ({reason}); for a CA-Stream's "
        "attention, wrap it with xai_pool.attach_stream(model) and train the stream"
    )


def _structure(model: nn.Module) -> tuple:
    return tuple((name, type(m).__name__) for name, m in model.named_modules())


def _resolve(
    model: nn.Module,
    spec: StreamSpec | None,
    logits: int | str | None,
    preprocessing: Preprocessing | None,
    arch: str | None,
    in_channels: int | None,
    probe_size: int | tuple[int, int] | None,
) -> ModelProfile:
    preprocessing = preprocessing or resolve_preprocessing(model, arch)
    fixed = fixed_input_size(model, preprocessing)
    if fixed is not None and preprocessing.input_size != fixed:
        preprocessing = preprocessing.with_overrides(size=fixed, source="the model's fixed input size")
    plans = probe_plans(probe_size, fixed, preprocessing.input_size)
    errors: list[str] = []
    failure: ProfileError | None = None
    with eval_mode(model):  # the probes must not update batch-norm statistics
        for rec_a, rec_b, channels in probe_runs(
            model, channel_candidates(model, preprocessing, in_channels), plans, errors
        ):
            selected = _logits_of(model, rec_a.output, logits)
            oracle = LayoutOracle(rec_a, rec_b, layout_hints(model))
            try:
                taps, pool, target, source, fallbacks = find_placement(model, spec, rec_a, oracle, logits)
                taps, dropped = check_order(model, rec_a, channels, taps, pool, fallbacks, strict=spec is not None)
            except ProfileError as exc:
                if spec is not None:
                    raise  # the user's placement is wrong at any size
                failure = exc  # a larger input may give the last map more than one position
                continue
            break
        else:
            raise failure if failure is not None else did_not_run(model, errors)
    notes = [f"tap {path!r} dropped: its positions do not follow the image (e.g. unrolled tokens)" for path in dropped]
    if rec_b is None:
        notes.append(f"measured at one input size ({rec_a.image_size[0]}x{rec_a.image_size[1]}) only")
    if preprocessing.source.startswith("ImageNet default"):
        notes.append("preprocessing is the ImageNet default: the model declares none (override it if needed)")
    if spec is not None and spec is getattr(model, "xai_pool_spec", None):
        source = "declared"
    return ModelProfile(
        taps=taps,
        pool=pool,
        target_layer=target,
        target_layout=target_layout_of(rec_a, oracle, target),
        in_channels=channels,
        num_classes=int(selected.shape[1]),
        preprocessing=preprocessing,
        input_size=fixed,
        probe_size=rec_a.image_size,
        logits=logits,
        family=spec.family if spec is not None and spec.family != "custom" else model_family(model),
        source=source,
        notes=tuple(notes),
    )


def _logits_of(model: nn.Module, output: Any, logits: int | str | None) -> Tensor:
    try:
        selected = select_output(output, logits)
    except (KeyError, IndexError, AttributeError, TypeError) as exc:
        raise ProfileError(f"logits={logits!r} does not select an output of {type(model).__name__}: {exc}") from None
    if not isinstance(selected, Tensor):
        raise ProfileError(
            f"{type(model).__name__} returns {_describe_output(output)}, not a logits tensor; say which output holds "
            "the logits: attach_stream(model, logits=0) for a tuple/list, logits='logits' for a dict or attribute"
        )
    if selected.ndim != 2:
        raise ProfileError(f"the logits must be (batch, classes), got shape {tuple(selected.shape)}")
    return selected


def _describe_output(output: Any) -> str:
    if isinstance(output, (tuple, list)):
        inner = ", ".join(type(o).__name__ for o in output[:4])
        return f"a {type(output).__name__} of {len(output)} ({inner})"
    if isinstance(output, dict):
        return f"a dict with keys {list(output)[:6]}"
    return type(output).__name__


def with_preprocessing(profile: ModelProfile, preprocessing: Preprocessing) -> ModelProfile:
    """A copy of ``profile`` with other preprocessing (the CLI's --mean/--std/--image-size)."""
    return replace(profile, preprocessing=preprocessing)
