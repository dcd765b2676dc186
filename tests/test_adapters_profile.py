"""Model profiles: layouts measured (never guessed), placements, refusals, preprocessing from peers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import timm
import torch
import torchvision
from PIL import Image
from torch import nn

import xai_pool
from xai_pool import StreamSpec, attach_stream
from xai_pool.adapters import Preprocessing, ProfileError, TapLayout, resolve_preprocessing, resolve_profile
from xai_pool.adapters.probe import layout_from_one_shape, layout_from_shapes

from . import zoo
from .conftest import TinyCNN


# ---------------------------------------------------------------------------------------- layouts
@pytest.mark.parametrize(
    "shape_a, shape_b, kind, channels, prefix, reduction",
    [
        ((2, 64, 16, 16), (2, 64, 24, 24), "nchw", 64, 0, None),
        ((2, 16, 16, 64), (2, 24, 24, 64), "nhwc", 64, 0, None),
        ((2, 1 + 16, 32), (2, 1 + 36, 32), "tokens", 32, 1, 16),  # 64 px and 96 px, 16 px patches, 1 class token
        ((2, 16, 32), (2, 36, 32), "tokens", 32, 0, 16),
    ],
)
def test_layout_is_read_from_the_dimensions_that_scale_with_the_input(
    shape_a, shape_b, kind, channels, prefix, reduction
) -> None:
    layout = layout_from_shapes(shape_a, (64, 64), shape_b, (96, 96))
    assert (layout.kind, layout.channels, layout.prefix_tokens, layout.reduction) == (kind, channels, prefix, reduction)


def test_a_map_that_does_not_scale_with_the_input_has_no_layout() -> None:
    # VGG's AdaptiveAvgPool2d((7, 7)): 7x7 whatever the input size: not a spatial grid of the image.
    assert layout_from_shapes((2, 512, 7, 7), (64, 64), (2, 512, 7, 7), (96, 96)) is None


def test_one_size_layouts_need_an_unambiguous_shape() -> None:
    # (B, 7, 7, 7) reads as NCHW and as NHWC at 224 px: refused unless metadata decides.
    assert layout_from_one_shape((2, 7, 7, 7), (224, 224)) is None
    assert layout_from_one_shape((2, 7, 7, 7), (224, 224), kind="nhwc").kind == "nhwc"
    assert layout_from_one_shape((2, 768, 14, 14), (224, 224)).kind == "nchw"
    assert layout_from_one_shape((2, 14, 14, 768), (224, 224)).kind == "nhwc"
    tokens = layout_from_one_shape((2, 197, 768), (224, 224))
    assert (tokens.kind, tokens.prefix_tokens, tokens.reduction) == ("tokens", 1, 16)


def test_token_layout_converts_only_the_patch_tokens_in_raster_order() -> None:
    layout = TapLayout("tokens", channels=3, prefix_tokens=2, reduction=8)
    patches = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)  # 2x3 grid of a 16x24 input
    tokens = torch.cat([torch.full((2, 2, 3), -1.0), patches], dim=1)
    grid = layout.to_nchw(tokens, (16, 24))
    assert grid.shape == (2, 3, 2, 3)
    torch.testing.assert_close(grid[:, :, 1, 2], patches[:, 5])  # row 1, column 2 = token 1 * 3 + 2
    assert (grid >= 0).all()  # prefix tokens dropped


# ---------------------------------------------------------------------------------------- placements
def test_resnet_placement_is_the_papers_whatever_the_library() -> None:
    for model in (torchvision.models.resnet50(), timm.create_model("resnet50")):
        profile = resolve_profile(model)
        assert [t.path for t in profile.taps] == ["maxpool", "layer1", "layer2", "layer3"]
        assert profile.widths == (64, 256, 512, 1024, 2048) and profile.target_layer == "layer4"


def test_functional_pooling_is_replaced_at_the_classifier_input() -> None:
    profile = resolve_profile(torchvision.models.densenet121(num_classes=3))
    assert (profile.pool.kind, profile.pool.path, profile.pool.pooled_path) == (
        "head_input",
        "classifier",
        "features.norm5",
    )
    # DenseNet applies F.relu(inplace=True) to `features` (= norm5's output) before pooling:
    # the stream reads the relu'd map.
    model = attach_stream(torchvision.models.densenet121(num_classes=3))
    seen = {}
    handle = model.stream.blocks[-1].register_forward_hook(lambda m, i, o: seen.update(features=i[1]))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model(x)
    handle.remove()
    assert (seen["features"] >= 0).all()


def test_nhwc_stages_are_read_as_nhwc_and_attention_lies_on_their_grid() -> None:
    model = attach_stream(zoo.NHWCNet())
    # The patch conv hands over NCHW; the channels-last stage after the permute, NHWC.
    assert [(t.path, t.layout.kind) for t in model.profile.taps] == [("patch", "nchw"), ("stage1", "nhwc")]
    assert model.profile.pool.layout.kind == "nhwc"
    attention = model.attention(torch.randn(2, 3, 64, 64))
    assert [tuple(a.shape) for a in attention] == [(2, 1, 16, 16), (2, 1, 16, 16), (2, 1, 8, 8)]


class _TransposingStem(nn.Module):
    """A stem that hands over (B, C, w, h): the right shape on square inputs, the wrong positions."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).transpose(2, 3)


def test_transposed_grid_fails_loudly() -> None:
    model = zoo.ModulePool()
    model.body.stem = _TransposingStem()  # every later map is transposed too: the classifier cannot tell
    with pytest.raises(ProfileError, match="do not follow the image"):
        attach_stream(model)
    with pytest.raises(ProfileError, match="do not follow the image"):
        attach_stream(model, spec=StreamSpec(taps=("body.stem",), pool="pool"))


def test_the_order_check_tells_raster_from_transposed_and_shuffled_grids() -> None:
    from xai_pool.adapters.order import bumped, follows_image

    layout = TapLayout("nchw", 4)
    clean = torch.randn(2, 4, 12, 12)
    raster = [bumped(clean, q) for q in range(4)]  # a feature that is the image itself: changes where bumped
    transposed = [f.transpose(2, 3) for f in raster]
    order = torch.randperm(144, generator=torch.Generator().manual_seed(0))
    shuffled = [f.flatten(2)[:, :, order].reshape(f.shape) for f in raster]
    assert follows_image(clean, raster, layout, (48, 48))
    assert not follows_image(clean.transpose(2, 3), transposed, layout, (48, 48))
    assert not follows_image(clean.flatten(2)[:, :, order].reshape(clean.shape), shuffled, layout, (48, 48))


@pytest.mark.slow
def test_hieras_unrolled_tokens_are_dropped_with_a_note() -> None:
    profile = resolve_profile(timm.create_model("hiera_tiny_224", num_classes=3))
    assert [t.path for t in profile.taps] == ["patch_embed"]
    assert sum("do not follow the image" in note for note in profile.notes) == 3  # blocks 0, 2 and 9


def test_a_tap_declared_in_the_wrong_layout_fails_loudly() -> None:
    with pytest.raises(ProfileError, match="spec says nchw but its output .* measures as nhwc"):
        attach_stream(
            zoo.NHWCNet(), spec=StreamSpec(taps=("stage1",), head="fc", pooled="norm", layouts={"stage1": "nchw"})
        )


def test_a_profile_that_misreads_a_layout_cannot_run() -> None:
    model = attach_stream(zoo.NHWCNet())
    tap = model.profile.taps[1]
    broken = xai_pool.adapters.Tap(tap.path, TapLayout("nchw", tap.layout.channels))
    model.profile = dataclasses.replace(model.profile, taps=(model.profile.taps[0], broken))
    model._taps = model.profile.taps
    with pytest.raises(ValueError, match="layout differs from its profile"):
        model(torch.randn(1, 3, 96, 96))  # (1, 24, 24, 16) read as NCHW has 24 "channels", not 16


def test_models_returning_tuples_or_dicts_say_which_output_is_the_logits() -> None:
    with pytest.raises(ProfileError, match="returns a tuple of 2.*logits=0"):
        attach_stream(zoo.TupleOutput())
    with pytest.raises(ProfileError, match=r"returns a dict with keys \['logits', 'features'\].*logits='logits'"):
        attach_stream(zoo.DictOutput())
    model = attach_stream(zoo.DictOutput(), logits="logits")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), model.pooling_as("gap"):
        assert torch.equal(model(x), model.backbone(x)["logits"])
    with pytest.raises(ProfileError, match="logits='scores' does not select"):
        attach_stream(zoo.DictOutput(), logits="scores")


def test_a_model_that_needs_one_input_size_gets_a_clear_error_naming_probe_size() -> None:
    with pytest.raises(
        ProfileError, match=r"did not run on a dummy batch.*doesn't match model \(48, 48\).*probe_size="
    ):
        attach_stream(zoo.FixedSizeNet())
    assert attach_stream(zoo.FixedSizeNet(), probe_size=48).profile.probe_size == (48, 48)


def test_a_fixed_input_size_comes_from_timm_pretrained_cfg_and_is_enforced() -> None:
    model = attach_stream(timm.create_model("test_vit", global_pool="avg", num_classes=3))
    size = model.profile.input_size
    assert size == tuple(model.backbone.pretrained_cfg["input_size"][1:])
    with pytest.raises(ValueError, match=f"only accepts {size[0]}x{size[1]} images, got 64x64"):
        model(torch.randn(1, 3, 64, 64))


def test_input_channels_come_from_the_model_not_from_a_guess() -> None:
    assert resolve_profile(zoo.GrayscaleNet()).in_channels == 1
    # tresnet's space-to-depth stem: its first conv sees 48 channels, the model takes 3.
    assert resolve_profile(timm.create_model("tresnet_m", num_classes=3)).in_channels == 3


def test_spec_errors_name_the_module_and_the_fix(tiny_cnn: TinyCNN) -> None:
    with pytest.raises(ValueError, match="no submodule 'nope'"):
        attach_stream(tiny_cnn, spec=StreamSpec(taps=("nope",), pool="pool"))
    with pytest.raises(ProfileError, match="not a global pooling"):
        attach_stream(tiny_cnn, spec=StreamSpec(taps=("stem",), pool="stage1"))
    with pytest.raises(ProfileError, match="forward order"):
        attach_stream(tiny_cnn, spec=StreamSpec(taps=("stage1", "stem"), pool="pool"))
    with pytest.raises(ValueError, match="exactly one of pool= .* or head="):
        StreamSpec(taps=("stem",))


def test_a_declared_spec_wins_and_is_marked_declared() -> None:
    model = attach_stream(xai_pool.zoo.ShapesResNet())
    assert model.profile.source == "declared" and model.profile.family == "xai_pool-shapes"
    assert [t.path for t in model.profile.taps] == ["stem", "layer1", "layer2", "layer3"]


def test_profiling_leaves_the_model_as_it_was() -> None:
    model = torchvision.models.resnet18(num_classes=3).train()
    model.layer1.eval()
    flags = [m.training for m in model.modules()]
    resolve_profile(model)
    assert [m.training for m in model.modules()] == flags
    assert xai_pool.saliency.count_hooks(model) == 0


def test_the_global_rng_is_not_touched_by_profiling() -> None:
    model = torchvision.models.resnet18(num_classes=3)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    resolve_profile(model)
    torch.testing.assert_close(torch.rand(3), expected)


# ---------------------------------------------------------------------------------------- preprocessing
def _photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))


@pytest.mark.parametrize("name", ["tf_efficientnet_lite0", "resnet50", "convnext_atto", "test_vit"])
def test_preprocessing_equals_timms_own_transform(name: str) -> None:
    from timm.data import create_transform, resolve_model_data_config

    model = timm.create_model(name, pretrained=False)
    ours = resolve_preprocessing(model)
    peer = create_transform(**resolve_model_data_config(model), is_training=False)
    image = _photo()
    assert torch.equal(ours.eval_transform()(image), peer(image))
    if name == "tf_efficientnet_lite0":
        assert ours.mean == ours.std == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("arch", ["resnet50", "inception_v3", "efficientnet_b3", "swin_t"])
def test_preprocessing_equals_torchvision_weights_transforms(arch: str) -> None:
    weights = torchvision.models.get_model_weights(arch).DEFAULT
    model = xai_pool.classifiers.build_classifier(arch)
    ours = resolve_profile(model, arch=arch).preprocessing
    image = _photo()
    torch.testing.assert_close(ours.eval_transform()(image), weights.transforms()(image), rtol=0, atol=1e-6)


def test_overrides_keep_the_crop_fraction_and_say_where_values_come_from() -> None:
    base = Preprocessing(input_size=(224, 224), resize_size=256, source="x")
    changed = base.with_overrides(size=112, mean=(0.5, 0.5, 0.5))
    assert (changed.input_size, changed.resize_size, changed.mean) == ((112, 112), 128, (0.5, 0.5, 0.5))
    assert changed.source == "x; user override"
    with pytest.raises(ValueError, match="std must be positive"):
        Preprocessing(std=(0.2, 0.0, 0.2))


def test_the_zoo_models_declare_their_preprocessing() -> None:
    shapes = resolve_profile(xai_pool.zoo.shapes_resnet(pretrained=False)).preprocessing
    assert (shapes.mean, shapes.input_size) == (xai_pool.data.SHAPES_MEAN, (64, 64))
    from xai_pool.zoo import LITE0_MEAN, efficientnet_lite0

    lite0 = resolve_profile(efficientnet_lite0(pretrained=False)).preprocessing
    assert lite0.mean == LITE0_MEAN and lite0.interpolation == "bicubic"
