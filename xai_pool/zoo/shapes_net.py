"""ShapesResNet: the small GAP classifier embedded for :class:`xai_pool.data.ShapesScenes`.

A ResNet-style network sized for 64x64 inputs and a CPU budget: a stride-2 stem and four
stages of one basic residual block each (total stride 8, so a 64x64 image gives an 8x8 final
map: saliency maps keep spatial detail), then ``avgpool`` (global average pooling),
``flatten`` and ``fc``. About 68M multiply-accumulates per 64x64 image and 0.66M parameters.

The class declares where a CA-Stream attaches (:attr:`ShapesResNet.xai_pool_spec`), so
``xai_pool.attach_stream(model)`` needs no spec.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ..adapters import Preprocessing, StreamSpec
from ..data.shapes import SHAPE_CLASSES, SHAPES_MEAN, SHAPES_STD

__all__ = ["ShapesResNet", "BasicBlock", "shapes_resnet", "WEIGHTS_PATH"]

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "shapes_resnet.pt"


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut.

    Each activation is its own module (never shared), so hooks on ``act1``/``act2`` see one
    call per forward pass.

    Args:
        in_channels: input width.
        out_channels: output width.
        stride: stride of the first conv (2 halves the resolution).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        """Residual block forward pass."""
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.downsample(x))


class ShapesResNet(nn.Module):
    """A small ResNet with global average pooling, for 64x64 ShapesScenes images.

    Layout (for a 64x64 input): ``stem`` conv 3x3 stride 2 (32 ch, 32x32) -> ``layer1``
    (64 ch, stride 2, 16x16) -> ``layer2`` (64 ch, 16x16) -> ``layer3`` (128 ch, stride 2,
    8x8) -> ``layer4`` (128 ch, 8x8) -> ``avgpool`` -> flatten -> ``fc``.

    Args:
        num_classes: number of output logits.
        widths: channels of the stem and of the four stages.

    Example:
        >>> model = ShapesResNet()
        >>> model(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 10])
    """

    #: Where a CA-Stream attaches: after the stem and after layers 1-3, and at the GAP.
    xai_pool_spec = StreamSpec(
        taps=("stem", "layer1", "layer2", "layer3"), pool="avgpool", target_layer="layer4", family="xai_pool-shapes"
    )
    #: How its images are prepared: ShapesScenes statistics at 64x64 (the scenes are rendered at that size).
    xai_pool_preprocessing = Preprocessing(
        mean=SHAPES_MEAN, std=SHAPES_STD, input_size=(64, 64), resize_size=64, source="ShapesScenes statistics"
    )
    #: Class names, in logit order.
    xai_pool_class_names = SHAPE_CLASSES

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int, int, int] = (32, 64, 64, 128, 128)) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if len(widths) != 5 or not all(isinstance(w, int) and w > 0 for w in widths):
            raise ValueError(f"widths must be 5 positive ints (stem, layer1..layer4), got {widths!r}")
        self.num_classes = num_classes
        self.widths = tuple(widths)
        w0, w1, w2, w3, w4 = widths
        # Downsample at once: full-resolution convs would dominate the compute budget.
        self.stem = nn.Sequential(
            nn.Conv2d(3, w0, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w0), nn.ReLU(inplace=True)
        )
        self.layer1 = BasicBlock(w0, w1, stride=2)
        self.layer2 = BasicBlock(w1, w2, stride=1)
        self.layer3 = BasicBlock(w2, w3, stride=2)
        self.layer4 = BasicBlock(w3, w4, stride=1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(w4, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # No zero-init of the last BN in each block (the usual ResNet trick): with projection
        # shortcuts it makes the initial network a 3x3 conv plus 1x1 convs, which sees only
        # colour, not shape, and training then sat at chance for several epochs.

    def forward_features(self, x: Tensor) -> Tensor:
        """The last feature map (B, widths[4], H/8, W/8), the input of ``avgpool``."""
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_head(self, features: Tensor) -> Tensor:
        """Global average pooling and the linear classifier: (B, C, h, w) -> logits (B, classes)."""
        return self.fc(torch.flatten(self.avgpool(features), 1))

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, num_classes) for images (B, 3, H, W) normalised like ShapesScenes."""
        return self.forward_head(self.forward_features(x))


def shapes_resnet(
    pretrained: bool = True, *, num_classes: int = 10, map_location: str | torch.device = "cpu"
) -> ShapesResNet:
    """The embedded ShapesScenes classifier, with its shipped weights by default.

    The weights were produced by ``scripts/train_shapes_model.py`` (seeded) and are stored in
    half precision to keep the package small; they are loaded strictly into float32.

    Args:
        pretrained: load the shipped weights (``False`` gives a randomly initialised model).
        num_classes: number of logits; the shipped weights have 10 (one per ShapesScenes class).
        map_location: device to load the weights on and to put the model on.

    Returns:
        A :class:`ShapesResNet` in eval mode.

    Raises:
        FileNotFoundError: the weights file is missing from the installation.
        ValueError: ``pretrained=True`` with a ``num_classes`` other than 10.
    """
    if pretrained and num_classes != 10:
        raise ValueError(
            f"the shipped weights have 10 classes, got num_classes={num_classes}; "
            "use shapes_resnet(pretrained=False, num_classes=...) and train it"
        )
    model = ShapesResNet(num_classes=num_classes)
    if pretrained:
        if not WEIGHTS_PATH.is_file():
            raise FileNotFoundError(
                f"the shipped ShapesResNet weights are missing ({WEIGHTS_PATH}); reinstall xai_pool, "
                "or run `python scripts/train_shapes_model.py` from the repository to recreate them, "
                "or call shapes_resnet(pretrained=False)"
            )
        state = torch.load(WEIGHTS_PATH, map_location=map_location, weights_only=True)
        # Stored as float16; load_state_dict copies into the float32 parameters.
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()
