"""CAModel: a frozen CNN classifier whose GAP can be swapped for a CA-Stream.

How it works (no module of the user's model is replaced): during each forward pass in
``"ca"`` mode, temporary forward hooks read the tapped stage outputs and the input of the
pooling module, run the stream on them, and substitute the stream's pooled vector for the
GAP output; the classifier after the pooling then runs unchanged. The hooks are removed in
a ``finally`` before ``forward`` returns, so no hook ever stays on the model between calls
(pytorch-grad-cam and other hook-based tools see a clean model). In ``"gap"`` mode the
model's own forward runs untouched, so its logits equal the original model's exactly.

What :func:`attach_stream` does to the model object you pass: it sets ``requires_grad=False``
on all its parameters and puts it in eval mode (its weights are never changed). Pass
``copy=True`` to leave your object untouched and wrap a deep copy instead.
"""

from __future__ import annotations

import contextlib
import copy as copy_module
from typing import Iterator, Literal

import torch
from torch import Tensor, nn

from .adapters import StreamSpec, infer_spec, resolve_module
from .stream import CAStream, StreamConfig

__all__ = ["CAModel", "attach_stream", "Pooling"]

Pooling = Literal["gap", "ca"]
_POOLINGS = ("gap", "ca")


class CAModel(nn.Module):
    """A frozen classifier (``.backbone``) with a trainable CA-Stream (``.stream``).

    Use :func:`attach_stream` to build one. ``forward(x)`` returns logits with the current
    ``.pooling`` (``"ca"`` or ``"gap"``). Only ``.stream`` has trainable parameters; the
    backbone and its classifier stay in eval mode even after ``.train()``.

    Gradients: in eval mode with autograd enabled the input is given ``requires_grad`` (on a
    detached alias, your tensor is untouched) so that gradients reach the frozen backbone's
    activations and gradient CAM methods work in both modes. In train mode they do not: the
    frozen backbone then builds no autograd graph and a training step costs one forward
    pass of the backbone plus the small stream.
    """

    def __init__(
        self,
        backbone: nn.Module,
        stream: CAStream,
        spec: StreamSpec,
        *,
        in_channels: int,
        num_classes: int,
        pooling: Pooling = "ca",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.stream = stream
        self.spec = spec
        self.in_channels = in_channels
        self.num_classes = num_classes
        self._pooling: Pooling = "ca"
        self.pooling = pooling
        start = stream.config.start_stage
        self._tap_paths: tuple[str, ...] = spec.taps[start:]
        # Filled by each CA forward pass: one (B, heads, h, w) map per block (detached).
        self.last_attention: list[Tensor] | None = None
        self.eval()  # a new CAModel is for inference until a trainer calls .train()

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
    def pooling_as(self, value: Pooling) -> Iterator["CAModel"]:
        """Temporarily switch pooling: ``with model.pooling_as("gap"): logits = model(x)``."""
        previous = self._pooling
        self.pooling = value
        try:
            yield self
        finally:
            self._pooling = previous

    def train(self, mode: bool = True) -> "CAModel":
        """Set the stream's mode; the frozen backbone always stays in eval mode."""
        self.training = mode
        self.stream.train(mode)
        self.backbone.eval()
        return self

    @property
    def target_layer(self) -> nn.Module:
        """The default CAM target layer (the last stage), as a module of ``.backbone``."""
        path = self.spec.target_layer
        if path is None:
            raise ValueError("this model's spec has no target_layer; pass target_layers explicitly")
        return resolve_module(self.backbone, path)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, class_index: Tensor | None = None) -> Tensor:
        """Logits (B, num_classes) with the current pooling.

        Args:
            x: images (B, C, H, W), floating point, normalised as the backbone expects.
            class_index: for a class-specific stream only, the class whose query starts the
                stream (labels in training); by default the GAP prediction.
        """
        return self._forward(x, class_index)[0]

    def forward_with_attention(self, x: Tensor, class_index: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """Logits and the attention of every block, ``(B, heads, h_i, w_i)``, in one CA pass."""
        with self.pooling_as("ca"):
            return self._forward(x, class_index, keep_graph=True)

    def attention(self, x: Tensor, class_index: Tensor | None = None) -> list[Tensor]:
        """The softmax attention of every block, ``(B, heads, h_i, w_i)``, each summing to 1."""
        return self.forward_with_attention(x, class_index)[1]

    def _forward(self, x: Tensor, class_index: Tensor | None, keep_graph: bool = False) -> tuple[Tensor, list[Tensor]]:
        self._check_input(x)
        if torch.is_grad_enabled() and not self.training and not x.requires_grad:
            # Frozen parameters would otherwise leave the activations without grad and break
            # gradient CAMs ("element 0 of tensors does not require grad").
            x = x.detach().requires_grad_(True)
        if self._pooling == "gap":
            return self.backbone(x), []
        if self.stream.config.class_specific and class_index is None:
            if self.training:
                raise ValueError("a class-specific stream needs class_index=labels during training")
            with torch.no_grad():
                class_index = self.backbone(x).argmax(dim=1)
        return self._forward_ca(x, class_index, keep_graph)

    def _forward_ca(self, x: Tensor, class_index: Tensor | None, keep_graph: bool) -> tuple[Tensor, list[Tensor]]:
        captured: dict[int, Tensor] = {}
        attentions: list[Tensor] = []

        def make_tap_hook(index: int, path: str):
            def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
                if index in captured:
                    raise RuntimeError(
                        f"tap module {path!r} ran more than once in one forward pass (a shared module); "
                        "pass a StreamSpec whose taps are called once each"
                    )
                captured[index] = output

            return hook

        def pool_hook(_module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
            missing = [p for i, p in enumerate(self._tap_paths) if i not in captured]
            if missing:
                raise RuntimeError(f"tap modules {missing} did not run before the pooling module {self.spec.pool!r}")
            features = [captured[i] for i in range(len(self._tap_paths))] + [inputs[0]]
            pooled, maps = self.stream(features, class_index)
            attentions.extend(maps)
            return pooled.reshape(output.shape).to(output.dtype)

        handles = []
        try:
            for index, path in enumerate(self._tap_paths):
                module = resolve_module(self.backbone, path)
                handles.append(module.register_forward_hook(make_tap_hook(index, path)))
            pool = resolve_module(self.backbone, self.spec.pool)
            handles.append(pool.register_forward_hook(pool_hook))
            logits = self.backbone(x)
        finally:
            for handle in handles:
                handle.remove()
        self.last_attention = [a.detach() for a in attentions]
        return logits, (attentions if keep_graph else self.last_attention)

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor of images (B, C, H, W), got {type(x).__name__}")
        if x.ndim != 4:
            hint = " (add a batch dimension with x.unsqueeze(0))" if x.ndim == 3 else ""
            raise ValueError(f"expected a 4-D image batch (B, C, H, W), got shape {tuple(x.shape)}{hint}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected {self.in_channels} channels, got {x.shape[1]} (shape {tuple(x.shape)}); "
                "convert images to RGB (B, 3, H, W)"
                if self.in_channels == 3
                else ""
            )
        if not x.is_floating_point():
            raise TypeError(
                f"expected a floating-point image tensor, got {x.dtype}; convert with "
                "x.float() / 255 and normalise as the backbone expects"
            )


def _first_conv_channels(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return 3


@torch.no_grad()
def _probe(model: nn.Module, spec: StreamSpec, in_channels: int, size: int) -> tuple[list[int], int, int]:
    """Run one tiny forward pass to learn the stage widths, the pooled width and the class count."""
    widths: dict[int, int] = {}
    pooled: dict[str, int] = {}
    handles = []

    def tap(index: int):
        def hook(_m: nn.Module, _i: tuple, output: Tensor) -> None:
            if not isinstance(output, Tensor) or output.ndim != 4:
                raise ValueError(
                    f"tap {spec.taps[index]!r} must output a (B, C, h, w) tensor, got "
                    f"{type(output).__name__} {getattr(output, 'shape', '')}"
                )
            widths.setdefault(index, output.shape[1])

        return hook

    def pool_hook(_m: nn.Module, inputs: tuple, output: Tensor) -> None:
        if inputs[0].ndim != 4:
            raise ValueError(f"pool module {spec.pool!r} must receive a (B, C, h, w) map, got {tuple(inputs[0].shape)}")
        if output.numel() != inputs[0].shape[0] * inputs[0].shape[1]:
            raise ValueError(
                f"pool module {spec.pool!r} is not a global pooling: input {tuple(inputs[0].shape)} -> "
                f"output {tuple(output.shape)}; point StreamSpec.pool at the global average pooling"
            )
        pooled["width"] = inputs[0].shape[1]

    try:
        for i, path in enumerate(spec.taps):
            handles.append(resolve_module(model, path).register_forward_hook(tap(i)))
        handles.append(resolve_module(model, spec.pool).register_forward_hook(pool_hook))
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        logits = model(torch.zeros(1, in_channels, size, size, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    if "width" not in pooled:
        raise ValueError(f"the pool module {spec.pool!r} was not called by the model's forward pass")
    missing = [spec.taps[i] for i in range(len(spec.taps)) if i not in widths]
    if missing:
        raise ValueError(f"tap modules {missing} were not called by the model's forward pass")
    if not isinstance(logits, Tensor) or logits.ndim != 2:
        raise ValueError(f"the model must return logits (B, num_classes), got {type(logits).__name__}")
    return [widths[i] for i in range(len(spec.taps))] + [pooled["width"]], pooled["width"], logits.shape[1]


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
    probe_size: int = 64,
) -> CAModel:
    """Wrap a CNN classifier with a CA-Stream that can replace its global average pooling.

    Args:
        model: a classifier ending with GAP + classifier (torchvision ResNet/ResNeXt/
            Wide-ResNet, ConvNeXt, EfficientNet v1/v2, timm resnet*/convnext*/efficientnet*,
            or any model described by ``spec``).
        spec: where to attach; inferred for known families.
        start_stage: index of the first stage with a block (0 = the stem; for ResNet 1..4 =
            layer1..layer4, so 4 keeps a single block at the last stage; paper Table 5).
        heads: attention heads per block (1 in the paper).
        project_kv: linear key/value projections ('projca', paper Table 4).
        class_specific: one initial query per class (paper Table 6).
        pooling: the initial pooling mode.
        copy: wrap a deep copy and leave ``model`` untouched (default: ``model`` is frozen
            and put in eval mode in place; its weights are never changed).
        probe_size: side of the dummy image used once to measure the stage widths.

    Returns:
        A :class:`CAModel` whose ``.stream`` holds every trainable parameter.

    Raises:
        ValueError: the model family is unknown (the message says what spec to pass), or
            ``start_stage``/``heads`` do not fit the model.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"attach_stream expects a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, CAModel):
        raise ValueError("this model already has a stream; use it directly or attach to model.backbone")
    if copy:
        model = copy_module.deepcopy(model)
    spec = spec if spec is not None else infer_spec(model)
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    in_channels = _first_conv_channels(model)
    widths, out_dim, num_classes = _probe(model, spec, in_channels, probe_size)
    if not 0 <= start_stage < len(widths):
        raise ValueError(
            f"start_stage must be in [0, {len(widths) - 1}] for this model ({len(widths)} stages), got {start_stage}"
        )
    config = StreamConfig(
        widths=tuple(widths[start_stage:]),
        out_dim=out_dim,
        heads=heads,
        project_kv=project_kv,
        class_specific=class_specific,
        num_classes=num_classes if class_specific else None,
        start_stage=start_stage,
    )
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    stream = CAStream(config).to(device)
    return CAModel(model, stream, spec, in_channels=in_channels, num_classes=num_classes, pooling=pooling)
