"""Raw attention from a model's own attention pooling, and Grad-CAM on transformers out of the box.

Every map is checked against a recomputation from the attention module's own weights (q/k
projections, norms, scale): the class token's row of the last self-attention (ViT, DeiT,
torchvision's ViT), CaiT's class attention, timm's AttentionPoolLatent, AttentionPool2d and
SimPool2d. Small random-init models at 32 px keep each case to a fraction of a second.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from timm.layers.attention_pool2d import AttentionPool2d
from timm.layers.other_pool import SimPool2d
from torch import nn

import xai_pool
from xai_pool import attach_stream, explain
from xai_pool.adapters import ProfileError, resolve_attention_pooling
from xai_pool.saliency import OwnAttention, attention_rollout
from xai_pool.saliency._maps import scale_to_input

SIZE = 32


def _images(n: int = 2, size: int = SIZE) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def _vit(name: str = "vit_tiny_patch16_224", **kwargs) -> nn.Module:
    torch.manual_seed(0)
    options = {"img_size": SIZE, "patch_size": 8, "depth": 2, "num_classes": 3}
    options.update(kwargs)
    return timm.create_model(name, **options).eval()


def _input_of(module: nn.Module, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = {}

    def keep(_module: nn.Module, args: tuple) -> None:  # returns None: the call's arguments stay as they are
        seen.setdefault("x", args[0])

    handle = module.register_forward_pre_hook(keep)
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen["x"]


def _to_map(patch_weights: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """(B, heads, patches) -> heads averaged, on the grid, scaled like pytorch-grad-cam's maps."""
    maps = patch_weights.mean(dim=1).reshape(patch_weights.shape[0], *grid)
    return scale_to_input(maps, (SIZE, SIZE)).numpy()


def _self_attention(attn: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """timm Attention weights by hand: softmax(q_norm(q) k_norm(k)^T * scale)."""
    b, n, c = tokens.shape
    qkv = attn.qkv(tokens).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    return ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


@pytest.mark.parametrize("name, prefix", [("vit_tiny_patch16_224", 1), ("deit_tiny_distilled_patch16_224", 2)])
def test_class_token_attention_equals_the_last_blocks_own_weights(name: str, prefix: int) -> None:
    model = _vit(name=name)
    x = _images()
    attn = model.blocks[-1].attn
    with torch.no_grad():
        weights = _self_attention(attn, _input_of(attn, model, x))
    expected = _to_map(weights[:, :, 0, prefix:], (4, 4))
    np.testing.assert_allclose(explain(model, x, "raw_attention"), expected, atol=1e-5)
    pooling = resolve_attention_pooling(model)
    assert (pooling.path, pooling.rows, pooling.key_prefix) == ("blocks.1.attn", "first", prefix)


def test_rollout_equals_its_definition() -> None:
    model = _vit()
    x = _images()
    weights = []
    with torch.no_grad():
        for block in model.blocks:
            weights.append(_self_attention(block.attn, _input_of(block.attn, model, x)))
    rollout = None
    for w in weights:  # Abnar & Zuidema: heads averaged, (A + I) / 2, rows renormalised, composed
        a = 0.5 * w.mean(dim=1) + 0.5 * torch.eye(w.shape[-1])
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    torch.testing.assert_close(attention_rollout(weights), rollout)
    expected = scale_to_input(rollout[:, 0, 1:].reshape(2, 4, 4), (SIZE, SIZE)).numpy()
    np.testing.assert_allclose(explain(model, x, "raw_attention", rollout=True), expected, atol=1e-5)


def test_cait_class_attention_equals_its_own_weights() -> None:
    model = _vit(name="cait_xxs24_224", depth_token_only=1)
    x = _images()
    attn = model.blocks_token_only[-1].attn
    with torch.no_grad():
        u = _input_of(attn, model, x)  # norm1(cat(cls, patches))
        b, n, c = u.shape
        q = attn.q(u[:, 0]).reshape(b, 1, attn.num_heads, c // attn.num_heads).transpose(1, 2)
        k = attn.k(u).reshape(b, n, attn.num_heads, c // attn.num_heads).transpose(1, 2)
        weights = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    np.testing.assert_allclose(explain(model, x, "raw_attention"), _to_map(weights[:, :, 0, 1:], (4, 4)), atol=1e-5)
    with pytest.raises(ValueError, match="rollout needs a class token read after self-attention"):
        OwnAttention(model, rollout=True)


def test_attention_pool_latent_equals_its_own_weights() -> None:
    model = _vit(global_pool="map")
    x = _images()
    pool = model.attn_pool
    with torch.no_grad():
        tokens = _input_of(pool, model, x)  # patch tokens only (timm drops the class token first)
        b, n, c = tokens.shape
        q = pool.q(pool.latent.expand(b, -1, -1)).reshape(b, pool.latent_len, pool.num_heads, -1).transpose(1, 2)
        k = pool.kv(tokens).reshape(b, n, 2, pool.num_heads, -1).permute(2, 0, 3, 1, 4)[0]
        q, k = pool.q_norm(q), pool.k_norm(k)
        weights = ((q * pool.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    expected = _to_map(weights.mean(dim=2), (4, 4))
    np.testing.assert_allclose(explain(model, x, "raw_attention"), expected, atol=1e-5)


class _ConvBody(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU())
        self.stage = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())


class _AttentionPool2dNet(_ConvBody):
    """A CLIP-style ResNet head: attention pooling with the mean token as the query."""

    def __init__(self) -> None:
        super().__init__()
        self.head = AttentionPool2d(32, feat_size=8, out_features=3, num_heads=2, head_dim=16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage(self.stem(x)))


class _SimPoolNet(_ConvBody):
    def __init__(self) -> None:
        super().__init__()
        self.pool = SimPool2d(32, num_heads=2)
        self.fc = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.stage(self.stem(x))))


def test_attention_pool2d_equals_its_own_weights() -> None:
    torch.manual_seed(0)
    model = _AttentionPool2dNet().eval()
    x = _images()
    pool = model.head
    with torch.no_grad():
        feature = _input_of(pool, model, x)  # (B, 32, 8, 8)
        b, c, h, w = feature.shape
        tokens = feature.flatten(2).transpose(1, 2)
        tokens = torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1) + pool.pos_embed.unsqueeze(0)
        qkv = pool.qkv(tokens).reshape(b, h * w + 1, 3, pool.num_heads, pool.head_dim).permute(2, 0, 3, 1, 4)
        weights = ((qkv[0] * pool.scale) @ qkv[1].transpose(-2, -1)).softmax(dim=-1)
    expected = _to_map(weights[:, :, 0, 1:], (8, 8))  # the mean token's row, over the 64 positions
    np.testing.assert_allclose(explain(model, x, "raw_attention"), expected, atol=1e-5)


def test_simpool_equals_its_own_weights() -> None:
    torch.manual_seed(0)
    model = _SimPoolNet().eval()
    x = _images()
    pool = model.pool
    with torch.no_grad():
        feature = _input_of(pool, model, x)
        b, c, h, w = feature.shape
        tokens = feature.flatten(2).transpose(1, 2)
        q = pool.q(tokens.mean(1, keepdim=True)).reshape(b, 1, pool.num_heads, -1).transpose(1, 2)
        k = pool.k(pool.norm(tokens)).reshape(b, h * w, pool.num_heads, -1).transpose(1, 2)
        weights = ((pool.q_norm(q) * pool.scale) @ pool.k_norm(k).transpose(-2, -1)).softmax(dim=-1)
    np.testing.assert_allclose(explain(model, x, "raw_attention"), _to_map(weights[:, :, 0], (8, 8)), atol=1e-5)


def test_torchvision_vit_multihead_attention_equals_its_own_weights() -> None:
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    model = VisionTransformer(SIZE, 8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=3).eval()
    x = _images()
    mha = model.encoder.layers[-1].self_attention
    with torch.no_grad():
        tokens = _input_of(mha, model, x)
        _, weights = mha(tokens, tokens, tokens, need_weights=True, average_attn_weights=False)
    np.testing.assert_allclose(explain(model, x, "raw_attention"), _to_map(weights[:, :, 0, 1:], (4, 4)), atol=1e-5)
    assert torch.backends.mha.get_fastpath_enabled()  # the fast path is back on after the call


def test_reading_the_attention_does_not_change_the_model_or_its_output() -> None:
    model = _vit()
    x = _images()
    with torch.no_grad():
        before = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    cam = OwnAttention(model)
    cam(x)
    torch.testing.assert_close(cam.outputs, before, rtol=0, atol=0)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert xai_pool.saliency.count_hooks(model) == 0
    assert model.blocks[-1].attn.fused_attn == timm.create_model("vit_tiny_patch16_224").blocks[-1].attn.fused_attn


def test_a_model_without_attention_pooling_gets_a_clear_error() -> None:
    with pytest.raises(ProfileError, match="no attention pooling to read raw attention from.*attach_stream"):
        explain(torchvision.models.resnet18(num_classes=3), _images(1, 64), "raw_attention")


# ------------------------------------------------------------------------------- Grad-CAM out of the box
def _drop_class_token(tokens: torch.Tensor) -> torch.Tensor:
    return tokens[:, 1:].reshape(tokens.shape[0], 4, 4, tokens.shape[2]).permute(0, 3, 1, 2)


def test_gradcam_on_a_vit_uses_the_last_norm1_and_drops_the_class_token() -> None:
    model = _vit()
    x = _images()
    with GradCAM(model, [model.blocks[-1].norm1], reshape_transform=_drop_class_token) as cam:
        peer = cam(x.clone(), [ClassifierOutputTarget(1)] * 2)
    np.testing.assert_allclose(explain(model, x, "gradcam", targets=1), peer, atol=1e-5)


def test_gradcam_on_swin_permutes_its_nhwc_map() -> None:
    torch.manual_seed(0)
    model = timm.create_model(
        "swin_tiny_patch4_window7_224", img_size=56, embed_dim=24, depths=(1, 1), num_heads=(1, 2), num_classes=3
    ).eval()
    x = _images(2, 56)
    layer = model.get_submodule(xai_pool.adapters.resolve_profile(model).target_layer)
    with GradCAM(model, [layer], reshape_transform=lambda t: t.permute(0, 3, 1, 2)) as cam:
        peer = cam(x.clone(), [ClassifierOutputTarget(2)] * 2)
    np.testing.assert_allclose(explain(model, x, "gradcam", targets=2), peer, atol=1e-5)


@pytest.mark.slow
def test_a_vit_a_swin_a_beit_and_a_cait_get_raw_attention_and_gradcam_with_one_call() -> None:
    x = _images(1, 224)
    models = {
        "vit": timm.create_model("vit_tiny_patch16_224", num_classes=3),
        "cait": timm.create_model("cait_xxs24_224", num_classes=3),
        "swin": timm.create_model("swin_tiny_patch4_window7_224", num_classes=3),
        "beit": timm.create_model("beit_base_patch16_224", num_classes=3),
    }
    for name, model in models.items():
        model.eval()
        grad = explain(model, x, "gradcam")
        assert grad.shape == (1, 224, 224) and grad.std() > 0, name
        if name in ("vit", "cait"):  # they pool by attention: raw attention is their own
            maps = explain(model, x, "raw_attention")
        else:  # they average: raw attention is a CA-Stream's
            maps = explain(attach_stream(model), x, "raw_attention")
        assert maps.shape == (1, 224, 224) and maps.std() > 0, name


def test_gradcam_on_a_token_cam_model_in_both_poolings_runs_with_no_arguments() -> None:
    model = attach_stream(_vit(global_pool="avg"))
    x = _images()
    gap = explain(model, x, "gradcam", pooling="gap", targets=0)
    layer = model.backbone.get_submodule(model.profile.target_layer)
    peer_model = _vit(global_pool="avg")
    with GradCAM(
        peer_model, [peer_model.get_submodule(model.profile.target_layer)], reshape_transform=_drop_class_token
    ) as cam:
        peer = cam(x.clone(), [ClassifierOutputTarget(0)] * 2)
    assert layer is not None
    np.testing.assert_allclose(gap, peer, atol=1e-5)
    assert explain(model, x, "gradcam", pooling="ca").shape == (2, SIZE, SIZE)


def test_scaled_dot_product_weights_match_torch() -> None:
    """The recomputation used for fused attention equals what F.scaled_dot_product_attention applies."""
    from xai_pool.adapters.attention import _sdpa_weights

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=g) for _ in range(3))
    mask = torch.rand(5, 5, generator=g) > 0.3
    mask[:, 0] = True
    for kwargs in ({}, {"attn_mask": mask}, {"is_causal": True}, {"scale": 0.3}):
        torch.testing.assert_close(_sdpa_weights(q, k, **kwargs) @ v, F.scaled_dot_product_attention(q, k, v, **kwargs))
