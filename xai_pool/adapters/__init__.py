"""The seam between xai_pool and the user's model: one :class:`ModelProfile` per classifier.

:func:`resolve_profile` finds, for any classifier that ends in a global average pooling,
where a CA-Stream reads (the stage taps and their layouts: NCHW, NHWC or tokens), which
pooling it replaces and how (a module, or the classifier's input for pooling written as a
function), the default CAM target layer, the input channels and size, the number of classes
and the preprocessing its weights expect. A model can declare its placement
(``xai_pool_spec = StreamSpec(...)``) and preprocessing (``xai_pool_preprocessing``);
otherwise they come from timm / torchvision metadata and probe forward passes.
"""

from __future__ import annotations

from .attention import AttentionPooling, capture_attention
from .layout import LAYOUTS, Layout, TapLayout
from .preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from .profile import (
    ModelProfile,
    PoolSite,
    ProfileError,
    Tap,
    resolve_attention_pooling,
    resolve_preprocessing,
    resolve_profile,
    with_preprocessing,
)
from .spec import StreamSpec, resolve_module

__all__ = [
    "ModelProfile",
    "PoolSite",
    "ProfileError",
    "Tap",
    "resolve_profile",
    "resolve_preprocessing",
    "resolve_attention_pooling",
    "AttentionPooling",
    "capture_attention",
    "with_preprocessing",
    "Preprocessing",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "StreamSpec",
    "resolve_module",
    "infer_spec",
    "Layout",
    "LAYOUTS",
    "TapLayout",
]


def infer_spec(model):  # noqa: ANN001, ANN201 - kept for backward compatibility
    """The stream placement of ``model`` as a :class:`StreamSpec` (``resolve_profile(model).spec``)."""
    return resolve_profile(model).spec
