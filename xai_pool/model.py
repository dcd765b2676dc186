"""CAModel: a frozen classifier whose global average pooling can be swapped for a CA-Stream.

How it works (no module of the user's model is replaced): the model's
:class:`~xai_pool.adapters.ModelProfile` says which stage outputs the stream reads and where the
global average pooling (GAP) happens. During each forward pass in ``"ca"`` mode, temporary
hooks read the tapped stage outputs (NCHW, NHWC or token sequences, converted to (B, C, h, w)),
run the stream on them and the pooled map, and put the stream's vector where GAP's result
would be: as the output of the pooling module, or as the input of the classifier's first
layer when the model pools with a function (``x.mean((2, 3))``). The classifier then runs
unchanged. The hooks are removed in a ``finally`` before ``forward`` returns, so no hook ever
stays on the model between calls (pytorch-grad-cam and other hook-based tools see a clean
model). In ``"gap"`` mode the model's own forward runs untouched, so its logits equal the
original model's exactly.

What :func:`attach_stream` does to the model object you pass: it sets ``requires_grad=False``
on all its parameters and puts it in eval mode (its weights are never changed). Pass
``copy=True`` to leave your object untouched and wrap a deep copy instead.
"""

from __future__ import annotations

import contextlib
import copy as copy_module
from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .adapters import ModelProfile, Preprocessing, StreamSpec, Tap, resolve_module, resolve_profile
from .adapters.probe import select_output
from .runtime import model_device
from .stream import CAStream, StreamConfig
from .validation import check_images

__all__ = ["CAModel", "attach_stream", "Pooling"]

Pooling = Literal["gap", "ca"]
_POOLINGS = ("gap", "ca")


class CAModel(nn.Module):
    """A frozen classifier (``.backbone``) with a trainable CA-Stream (``.stream``).

    Use :func:`attach_stream` to build one. ``forward(x)`` returns logits with the current
    ``.pooling`` (``"ca"`` or ``"gap"``). Only ``.stream`` has trainable parameters; the
    backbone and its classifier stay in eval mode even after ``.train()``. ``.profile`` is the
    backbone's :class:`~xai_pool.adapters.ModelProfile` (placement, layouts, preprocessing).

    Gradients: in eval mode with autograd enabled the input is given ``requires_grad`` (on a
    detached alias, your tensor is untouched) so that gradients reach the frozen backbone's
    activations and gradient CAM methods work in both modes. In train mode they do not: the
    frozen backbone then builds no autograd graph and a training step costs one forward
    pass of the backbone plus the small stream.
    """

    def __init__(
        self, backbone: nn.Module, stream: CAStream, profile: ModelProfile, *, pooling: Pooling = "ca"
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.stream = stream
        self.profile = profile
        self._pooling: Pooling = "ca"
        self.pooling = pooling
        start = stream.config.start_stage
        # Blocks start at ``start_stage`` among [taps..., pooled map]; the pooled map is always read.
        self._taps = profile.taps[start:]
        if len(self._taps) + 1 != stream.num_blocks:
            raise ValueError(
                f"the stream has {stream.num_blocks} blocks but the profile gives {len(self._taps) + 1} "
                f"feature maps from start_stage={start}"
            )
        # Filled by each CA forward pass: one (B, heads, h, w) map per block (detached).
        self.last_attention: list[Tensor] | None = None
        self.eval()  # a new CAModel is for inference until a trainer calls .train()

    # ------------------------------------------------------------------ profile views
    @property
    def spec(self) -> StreamSpec:
        """The placement as a :class:`~xai_pool.StreamSpec` (taps, pooling, target layer)."""
        return self.profile.spec

    @property
    def in_channels(self) -> int:
        """Input channels the backbone expects."""
        return self.profile.in_channels

    @property
    def num_classes(self) -> int:
        """Number of logits."""
        return self.profile.num_classes

    @property
    def preprocessing(self) -> Preprocessing:
        """The mean, std and sizes the backbone's images are prepared with."""
        return self.profile.preprocessing

    # ------------------------------------------------------------------ pooling mode
    @property
    def pooling(self) -> Pooling:
        """``"ca"`` (the stream) or ``"gap"`` (the original global average pooling)."""
        return self._pooling

    @pooling.setter
    def pooling(self, value: str) -> None:
        if value not in _POOLINGS:
            raise ValueError(f"pooling must be 'gap' or 'ca', got {value!r}")
        self._pooling = value  # type: ignore[assignment]

    @contextlib.contextmanager
    def pooling_as(self, value: Pooling) -> Iterator[CAModel]:
        """Temporarily switch pooling: ``with model.pooling_as("gap"): logits = model(x)``."""
        previous = self._pooling
        self.pooling = value
        try:
            yield self
        finally:
            self._pooling = previous

    def train(self, mode: bool = True) -> CAModel:
        """Set the stream's mode; the frozen backbone always stays in eval mode."""
        self.training = mode
        self.stream.train(mode)
        self.backbone.eval()
        return self

    @property
    def target_layer(self) -> nn.Module:
        """The default CAM target layer (the module producing the pooled map), as a module of ``.backbone``."""
        path = self.profile.target_layer
        if path is None:
            raise ValueError("this model's profile has no target layer; pass target_layers explicitly")
        return resolve_module(self.backbone, path)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, class_index: Tensor | None = None) -> Tensor:
        """Logits (B, num_classes) with the current pooling.

        Args:
            x: images (B, C, H, W), floating point, normalised as the backbone expects
                (``model.preprocessing``).
            class_index: for a class-specific stream only, the class whose query starts the
                stream (labels in training); by default the GAP prediction.
        """
        return self._forward(x, class_index)[0]

    def forward_with_attention(self, x: Tensor, class_index: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """Logits and the attention of every block, ``(B, heads, h_i, w_i)``, in one CA pass."""
        with self.pooling_as("ca"):
            return self._forward(x, class_index, keep_graph=True)

    def attention(self, x: Tensor, class_index: Tensor | None = None) -> list[Tensor]:
        """The softmax attention of every block, ``(B, heads, h_i, w_i)`` over its spatial grid, each summing to 1."""
        return self.forward_with_attention(x, class_index)[1]

    def _backbone_logits(self, x: Tensor) -> Tensor:
        return select_output(self.backbone(x), self.profile.logits)

    def _forward(self, x: Tensor, class_index: Tensor | None, keep_graph: bool = False) -> tuple[Tensor, list[Tensor]]:
        x = self._check_input(x)
        if torch.is_grad_enabled() and not self.training and not x.requires_grad:
            # Frozen parameters would otherwise leave the activations without grad and break
            # gradient CAMs ("element 0 of tensors does not require grad").
            x = x.detach().requires_grad_(True)
        if self._pooling == "gap":
            return self._backbone_logits(x), []
        if self.stream.config.class_specific and class_index is None:
            if self.training:
                raise ValueError("a class-specific stream needs class_index=labels during training")
            with torch.no_grad():
                class_index = self._backbone_logits(x).argmax(dim=1)
        return self._forward_ca(x, class_index, keep_graph)

    def _forward_ca(self, x: Tensor, class_index: Tensor | None, keep_graph: bool) -> tuple[Tensor, list[Tensor]]:
        image_size = (int(x.shape[-2]), int(x.shape[-1]))
        captured: dict[int, Tensor] = {}
        attentions: list[Tensor] = []
        pool = self.profile.pool

        def make_tap_hook(index: int, tap: Tap) -> Any:
            def hook(_module: nn.Module, _inputs: tuple, output: Any) -> None:
                if index in captured:
                    raise RuntimeError(
                        f"tap module {tap.path!r} ran more than once in one forward pass (a shared module); "
                        "pass a StreamSpec whose taps are called once each"
                    )
                feature = tap.select(output)
                captured[index] = feature.clone() if tap.clone else feature

            return hook

        def run_stream(pooled_map: Tensor) -> Tensor:
            missing = [t.path for i, t in enumerate(self._taps) if i not in captured]
            if missing:
                raise RuntimeError(f"tap modules {missing} did not run before the pooling {pool.path!r}")
            features = [t.layout.to_nchw(captured[i], image_size) for i, t in enumerate(self._taps)]
            features.append(pool.layout.to_nchw(pooled_map, image_size))
            pooled, maps = self.stream(features, class_index)
            attentions.extend(maps)
            return pooled

        def pool_hook(_module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
            return run_stream(inputs[0]).reshape(output.shape).to(output.dtype)

        def pooled_map_hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            captured[-1] = output  # read at the head: in-place changes (densenet's relu) are included

        def head_hook(_module: nn.Module, args: tuple) -> tuple:
            if -1 not in captured:
                raise RuntimeError(f"the pooled map {pool.pooled_path!r} was not computed before {pool.path!r}")
            vector = args[0]
            return (run_stream(captured.pop(-1)).reshape(vector.shape).to(vector.dtype), *args[1:])

        handles = []
        try:
            for index, tap in enumerate(self._taps):
                module = resolve_module(self.backbone, tap.path)
                handles.append(module.register_forward_hook(make_tap_hook(index, tap)))
            if pool.kind == "module":
                handles.append(resolve_module(self.backbone, pool.path).register_forward_hook(pool_hook))
            else:
                pooled_module = resolve_module(self.backbone, pool.pooled_path)
                handles.append(pooled_module.register_forward_hook(pooled_map_hook))
                handles.append(resolve_module(self.backbone, pool.path).register_forward_pre_hook(head_hook))
            logits = self._backbone_logits(x)
        finally:
            for handle in handles:
                handle.remove()
        self.last_attention = [a.detach() for a in attentions]
        return logits, (attentions if keep_graph else self.last_attention)

    def _check_input(self, x: Tensor) -> Tensor:
        """The boundary check of every forward pass: shape, channels, dtype (cast), the fixed input size.

        Values are not scanned for NaN here (that would wait for the device at every training
        step); the entry points (explain, metrics, commands) do it.
        """
        dtype = next((p.dtype for p in self.backbone.parameters() if p.is_floating_point()), None)
        x = check_images(x, channels=self.in_channels, dtype=dtype, finite=False)
        fixed = self.profile.input_size
        if fixed is not None and tuple(x.shape[-2:]) != fixed:
            raise ValueError(
                f"this backbone only accepts {fixed[0]}x{fixed[1]} images, got {x.shape[-2]}x{x.shape[-1]}; "
                "resize them (model.preprocessing.eval_transform() does)"
            )
        return x


def attach_stream(
    model: nn.Module,
    *,
    spec: StreamSpec | None = None,
    start_stage: int = 0,
    heads: int = 1,
    project_kv: bool = False,
    class_specific: bool = False,
    pooling: Pooling = "ca",
    copy: bool = False,
    logits: int | str | None = None,
    preprocessing: Preprocessing | None = None,
    arch: str | None = None,
    in_channels: int | None = None,
    probe_size: int | tuple[int, int] | None = None,
    profile: ModelProfile | None = None,
) -> CAModel:
    """Wrap a classifier with a CA-Stream that can replace its global average pooling.

    Args:
        model: any classifier that ends in a global average pooling and a classifier head:
            every torchvision classification model that has one, timm models, or your own
            (the pooling may be a module or a function in ``forward``; features may be NCHW,
            NHWC or token sequences). See :func:`~xai_pool.adapters.resolve_profile`.
        spec: where to attach, when the default placement does not suit (see
            :class:`~xai_pool.StreamSpec`).
        start_stage: index of the first stage with a block (0 = the stem; for ResNet 1..4 =
            layer1..layer4, so 4 keeps a single block at the last stage; paper Table 5).
        heads: attention heads per block (1 in the paper).
        project_kv: linear key/value projections ('projca', paper Table 4).
        class_specific: one initial query per class (paper Table 6).
        pooling: the initial pooling mode.
        copy: wrap a deep copy and leave ``model`` untouched (default: ``model`` is frozen
            and put in eval mode in place; its weights are never changed).
        logits: for a model that returns a tuple/list (index) or dict/object (key/attribute):
            which output holds the logits. ``CAModel`` then returns only the logits.
        preprocessing: the model's preprocessing, if its metadata does not say (or is wrong).
        arch: torchvision architecture name, to read its weights' preprocessing metadata.
        in_channels: input channels, if not 3 and not in the model's metadata.
        probe_size: side (or (H, W)) of the dummy images used to measure the model.
        profile: an already resolved :class:`~xai_pool.adapters.ModelProfile` (skips probing).

    Returns:
        A :class:`CAModel` whose ``.stream`` holds every trainable parameter.

    Raises:
        ValueError: the model has no global average pooling to replace (the message says
            why and what spec to pass), or ``start_stage``/``heads`` do not fit the model.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"attach_stream expects a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, CAModel):
        raise ValueError("this model already has a stream; use it directly or attach to model.backbone")
    if copy:
        model = copy_module.deepcopy(model)
    if profile is None:
        profile = resolve_profile(
            model,
            spec=spec,
            logits=logits,
            preprocessing=preprocessing,
            arch=arch,
            in_channels=in_channels,
            probe_size=probe_size,
        )
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    widths = profile.widths
    if isinstance(start_stage, bool) or not isinstance(start_stage, int) or not 0 <= start_stage < len(widths):
        raise ValueError(
            f"start_stage must be in [0, {len(widths) - 1}] for this model ({len(widths)} stages), got {start_stage!r}"
        )
    config = StreamConfig(
        widths=tuple(widths[start_stage:]),
        out_dim=profile.pool.layout.channels,
        heads=heads,
        project_kv=project_kv,
        class_specific=class_specific,
        num_classes=profile.num_classes if class_specific else None,
        start_stage=start_stage,
    )
    device = model_device(model, torch.device("cpu"))
    stream = CAStream(config).to(device)
    return CAModel(model, stream, profile, pooling=pooling)
