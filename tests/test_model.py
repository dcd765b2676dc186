"""CAModel and attach_stream: parameter counts, GAP/CA switching, freezing, gradients, errors."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

import xai_pool
from xai_pool import attach_stream

from .conftest import TINY_SPEC, TinyCNN, TinyFlattenCNN


def _trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def test_resnet50_stream_has_the_authors_parameter_count() -> None:
    model = attach_stream(torchvision.models.resnet50())
    assert _trainable(model) == 6_969_152  # paper: 6.96M
    assert _trainable(model) == sum(p.numel() for p in model.stream.parameters())


@pytest.mark.parametrize(
    "start_stage, expected",
    [(1, 6_952_704), (2, 6_821_376), (3, 6_296_576), (4, 4_198_400)],  # Table 5: 6.95M 6.82M 6.29M 4.20M
)
def test_resnet50_placement_parameter_counts(start_stage: int, expected: int) -> None:
    assert _trainable(attach_stream(torchvision.models.resnet50(), start_stage=start_stage)) == expected


def test_resnet18_and_projca_parameter_counts() -> None:
    assert _trainable(attach_stream(torchvision.models.resnet18())) == 439_808
    # Table 4: projca 18.13M
    assert _trainable(attach_stream(torchvision.models.resnet50(), project_kv=True)) == 18_126_272


def test_uniform_last_attention_and_identity_linear_give_gap_logits(resnet18: nn.Module, images: torch.Tensor) -> None:
    model = attach_stream(resnet18)
    with torch.no_grad():
        penultimate = model.stream.blocks[-2].proj
        penultimate.weight.zero_()
        penultimate.bias.zero_()  # query into the last block is 0 -> uniform attention
        last = model.stream.blocks[-1].proj
        last.weight.copy_(torch.eye(last.in_features))
        last.bias.zero_()
        ca_logits, attentions = model.forward_with_attention(images)
        with model.pooling_as("gap"):
            gap_logits = model(images)
    h, w = attentions[-1].shape[-2:]
    torch.testing.assert_close(attentions[-1], torch.full_like(attentions[-1], 1 / (h * w)))
    torch.testing.assert_close(ca_logits, gap_logits, rtol=1e-5, atol=1e-5)


def test_last_block_pools_the_gap_input(resnet18: nn.Module, images: torch.Tensor) -> None:
    model = attach_stream(resnet18)
    captured = {}
    handle = model.stream.blocks[-1].register_forward_hook(lambda m, i, o: captured.update(pooled=o[2], feats=i[1]))
    with torch.no_grad():
        model(images)
        layer4 = resnet18.layer4(
            resnet18.layer3(
                resnet18.layer2(resnet18.layer1(resnet18.maxpool(resnet18.relu(resnet18.bn1(resnet18.conv1(images))))))
            )
        )
    handle.remove()
    torch.testing.assert_close(captured["feats"], layer4)


def _gap_equal(model: nn.Module, x: torch.Tensor) -> None:
    model.eval()
    with torch.no_grad():
        reference = model(x)
        ca = attach_stream(model)
        with ca.pooling_as("gap"):
            assert torch.equal(ca(x), reference)
        assert ca(x).shape == reference.shape


@pytest.mark.parametrize(
    "factory",
    [
        lambda: torchvision.models.resnet18(num_classes=7),
        lambda: torchvision.models.resnext50_32x4d(num_classes=7),
        lambda: torchvision.models.convnext_tiny(num_classes=7),
        lambda: torchvision.models.efficientnet_b0(num_classes=7),
        lambda: torchvision.models.efficientnet_v2_s(num_classes=7),
        lambda: timm.create_model("resnet18", num_classes=7),
        lambda: timm.create_model("convnext_atto", num_classes=7),
        lambda: timm.create_model("tf_efficientnet_lite0", num_classes=7),
    ],
    ids=[
        "tv-resnet18",
        "tv-resnext50",
        "tv-convnext",
        "tv-effnet-b0",
        "tv-effnet-v2",
        "timm-resnet18",
        "timm-convnext",
        "timm-effnet-lite0",
    ],
)
def test_gap_mode_reproduces_the_original_logits(factory) -> None:
    torch.manual_seed(0)
    _gap_equal(factory(), torch.randn(2, 3, 64, 64))


def test_known_placements() -> None:
    assert attach_stream(torchvision.models.efficientnet_b0()).stream.num_blocks == 9  # stem + 7 stages + head conv
    convnext = attach_stream(torchvision.models.convnext_tiny())
    assert convnext.stream.config.widths == (96, 96, 192, 384, 768)  # stem + 4 stages, none lost
    assert attach_stream(timm.create_model("resnet50")).stream.config.widths == (64, 256, 512, 1024, 2048)


def test_convnext_pooled_vector_goes_through_the_layernorm_head() -> None:
    torch.manual_seed(0)
    backbone = torchvision.models.convnext_tiny(num_classes=4)
    model = attach_stream(backbone)
    seen = {}
    handle = backbone.classifier[0].register_forward_hook(lambda m, i, o: seen.update(shape=i[0].shape))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    handle.remove()
    assert seen["shape"] == (1, 768, 1, 1)


def test_only_the_stream_trains_and_backbone_stays_in_eval(resnet18: nn.Module) -> None:
    model = attach_stream(resnet18)
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.stream.parameters())
    model.train()
    assert model.training and model.stream.training
    assert not any(m.training for m in model.backbone.modules())


def test_attention_maps_are_softmax_over_space(resnet18: nn.Module, images: torch.Tensor) -> None:
    model = attach_stream(resnet18, heads=2)
    with torch.no_grad():
        maps = model.attention(images)
    assert [tuple(a.shape) for a in maps] == [(2, 2, 8, 8), (2, 2, 8, 8), (2, 2, 4, 4), (2, 2, 2, 2), (2, 2, 1, 1)]
    for a in maps:
        torch.testing.assert_close(a.sum(dim=(-1, -2)), torch.ones(a.shape[:2]))


def test_no_hooks_remain_after_forward_even_on_error(resnet18: nn.Module, images: torch.Tensor) -> None:
    model = attach_stream(resnet18)
    before = _hook_count(model)
    model(images)
    assert _hook_count(model) == before == 0
    model.stream.blocks[-1].proj = nn.Linear(3, 3)  # breaks the forward pass
    with pytest.raises(RuntimeError):
        model(images)
    assert _hook_count(model) == 0


@pytest.mark.parametrize("pooling", ["gap", "ca"])
def test_gradients_reach_frozen_activations(resnet18: nn.Module, images: torch.Tensor, pooling: str) -> None:
    model = attach_stream(resnet18, pooling=pooling)
    store = {}
    handle = resnet18.layer4.register_forward_hook(lambda m, i, o: store.update(act=o))
    logits = model(images)
    handle.remove()
    grad = torch.autograd.grad(logits[:, 0].sum(), store["act"])[0]
    assert grad.abs().sum() > 0


def test_ca_gradient_flows_through_the_attention(tiny_cnn: TinyCNN) -> None:
    model = attach_stream(tiny_cnn, spec=TINY_SPEC)
    x = torch.randn(1, 3, 16, 16)
    store = {}
    handle = tiny_cnn.stage2.register_forward_hook(lambda m, i, o: store.update(act=o))
    logits = model(x)
    handle.remove()
    grad = torch.autograd.grad(logits[0, 1], store["act"])[0]
    # Manual: logits = W (sum_p a_p F_p) with a = softmax(F^T q / sqrt(d)), q the last block's query.
    act = store["act"].detach().requires_grad_(True)
    queries = {}
    h2 = model.stream.blocks[-1].register_forward_hook(lambda m, i, o: queries.update(q=i[0].detach()))
    with torch.no_grad():
        model(x)
    h2.remove()
    tokens = act.flatten(2)[0].T
    a = torch.softmax(tokens @ queries["q"][0] / act.shape[1] ** 0.5, dim=0)
    block = model.stream.blocks[-1]
    manual = tiny_cnn.head(block.proj(a @ tokens))[1]
    expected = torch.autograd.grad(manual, act)[0]
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-6)
    # With GAP the gradient is spatially constant (W_c / p); with CA it is not.
    assert grad[0, 0].std() > 0


@pytest.mark.parametrize("pooling", ["gap", "ca"])
def test_pytorch_grad_cam_runs_on_a_camodel(resnet18: nn.Module, pooling: str) -> None:
    model = attach_stream(resnet18, pooling=pooling)
    x = torch.randn(2, 3, 64, 64)
    with GradCAM(model=model, target_layers=[model.backbone.layer4[-1]]) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(1), ClassifierOutputTarget(2)])
    assert maps.shape == (2, 64, 64) and maps.max() > 0
    assert model.pooling == pooling


def test_gap_gradcam_matches_the_original_model(resnet18: nn.Module) -> None:
    x = torch.randn(2, 3, 64, 64)
    resnet18.eval()
    for p in resnet18.parameters():
        p.requires_grad_(True)
    with GradCAM(model=resnet18, target_layers=[resnet18.layer4[-1]]) as cam:
        expected = cam(input_tensor=x, targets=None)
    model = attach_stream(resnet18, pooling="gap")
    with GradCAM(model=model, target_layers=[model.backbone.layer4[-1]]) as cam:
        got = cam(input_tensor=x, targets=None)
    assert abs(got - expected).max() < 1e-5


def test_class_specific_uses_labels_in_training_and_gap_prediction_in_eval(
    resnet18: nn.Module, images: torch.Tensor
) -> None:
    model = attach_stream(resnet18, class_specific=True)
    assert model.stream.query.shape == (10, 64)
    with torch.no_grad():
        predicted = resnet18(images).argmax(1)
        by_default = model(images)
        explicit = model(images, class_index=predicted)
    torch.testing.assert_close(by_default, explicit)
    model.train()
    with pytest.raises(ValueError, match="class_index"):
        model(images)


def test_pooling_switch_and_context_manager(resnet18: nn.Module) -> None:
    model = attach_stream(resnet18)
    assert model.pooling == "ca"
    with model.pooling_as("gap"):
        assert model.pooling == "gap"
    assert model.pooling == "ca"
    with pytest.raises(ValueError, match="'gap' or 'ca'"):
        model.pooling = "max"


def test_copy_leaves_the_original_untouched(resnet18: nn.Module) -> None:
    resnet18.train()
    attach_stream(resnet18, copy=True)
    assert resnet18.training and all(p.requires_grad for p in resnet18.parameters())


def test_attach_does_not_change_weights(resnet18: nn.Module) -> None:
    before = {k: v.clone() for k, v in resnet18.state_dict().items()}
    model = attach_stream(resnet18)
    model.train()
    model(torch.randn(2, 3, 32, 32))
    for k, v in resnet18.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.randn(3, 32, 32), ValueError, "4-D.*unsqueeze"),
        (torch.randn(1, 1, 32, 32), ValueError, "1 channels.*the model takes 3.*expand"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), TypeError, "floating point.*uint8.*float\\(\\) / 255"),
        ([1, 2], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_is_named(resnet18: nn.Module, x, error, match) -> None:
    model = attach_stream(resnet18)
    with pytest.raises(error, match=match):
        model(x)


def test_model_without_global_pooling_is_refused_with_the_reason_and_the_spec_to_pass(tiny_cnn: TinyCNN) -> None:
    with pytest.raises(ValueError, match="pools to 2x2, not global.*StreamSpec"):
        attach_stream(TinyFlattenCNN())
    with pytest.raises(ValueError, match="no submodule 'nope'"):
        attach_stream(tiny_cnn, spec=xai_pool.StreamSpec(taps=("nope",), pool="pool"))
    with pytest.raises(ValueError, match="start_stage"):
        attach_stream(tiny_cnn, spec=TINY_SPEC, start_stage=5)
    with pytest.raises(ValueError, match="not a global pooling"):
        attach_stream(tiny_cnn, spec=xai_pool.StreamSpec(taps=("stem",), pool="stage1"))
