"""The model zoo of the contract tests: every torchvision classifier, the smallest timm model of
every family, and hand-written models covering each way of writing a global average pooling.

Also used by ``scripts/update_supported_models.py``, which writes the measured support table
into docs/core.md (``support_row`` is the one format both use).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------- torchvision
#: torchvision classifiers without a global average pooling, and the reason the refusal must give.
TORCHVISION_REFUSED = {
    "alexnet": "pools to 6x6, not global",
    **dict.fromkeys(
        ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"), "pools to 7x7, not global"
    ),
    **dict.fromkeys(("vit_b_16", "vit_b_32", "vit_h_14", "vit_l_16", "vit_l_32"), "class token, no average pooling"),
}

#: Wrapped in the default (fast) run; every other torchvision model runs in the slow tier.
TORCHVISION_FAST = ("resnet18", "mobilenet_v2", "squeezenet1_1", "shufflenet_v2_x0_5", "mnasnet0_5")


def torchvision_names() -> list[str]:
    """Every torchvision classification model."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def torchvision_model(name: str) -> nn.Module:
    """A random-init torchvision classifier with 10 classes, in eval mode."""
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None, num_classes=10).eval()


# ---------------------------------------------------------------------------------------- timm
#: The smallest model (fewest parameters) of every timm family (module), measured with
#: scripts/update_supported_models.py --list-timm on timm 1.0.31.
TIMM_SMALLEST = {
    "beit": "beit_base_patch16_224",
    "byoanet": "halonet_h1",
    "byobnet": "test_byobnet",
    "cait": "cait_xxs24_224",
    "coat": "coat_tiny",
    "convit": "convit_tiny",
    "convmixer": "convmixer_768_32",
    "convnext": "test_convnext",
    "cpubone": "cpubone_nano",
    "crossvit": "crossvit_tiny_240",
    "csatv2": "csatv2",
    "cspnet": "cs3darknet_focus_s",
    "cspnext": "cspnext_tiny",
    "davit": "davit_tiny",
    "deepseek_vit": "deepseek_vit_412m",
    "deit": "deit_tiny_patch16_224",
    "densenet": "densenet121",
    "dla": "dla46x_c",
    "dpn": "dpn48b",
    "edgenext": "edgenext_xx_small",
    "efficientformer": "efficientformer_l1",
    "efficientformer_v2": "efficientformerv2_s0",
    "efficientnet": "test_efficientnet",
    "efficientvim": "efficientvim_m1",
    "efficientvit_mit": "efficientvit_b0",
    "efficientvit_msra": "efficientvit_m0",
    "eva": "vit_tiny_patch16_dinov3_qkvb",
    "fasternet": "fasternet_t0",
    "fastvit": "fastvit_t8",
    "focalnet": "focalnet_tiny_srf",
    "gcvit": "gcvit_xxtiny",
    "gemma4_vit": "gemma4_vit_167m",
    "ghostnet": "ghostnet_050",
    "hardcorenas": "hardcorenas_b",
    "hgnet": "hgnetv2_b0",
    "hiera": "hiera_tiny_224",
    "hieradet_sam2": "sam2_hiera_tiny",
    "hrnet": "hrnet_w18_small",
    "iformer": "iformer_t",
    "inception_next": "inception_next_atto",
    "inception_resnet_v2": "inception_resnet_v2",
    "inception_v3": "inception_v3",
    "inception_v4": "inception_v4",
    "lcnetv2": "lcnetv2_small",
    "levit": "levit_128s",
    "lowformer": "lowformer_b0",
    "mambaout": "test_mambaout",
    "maxxvit": "test_coatnet",
    "metaformer": "poolformerv2_s12",
    "mlp_mixer": "gmlp_ti16_224",
    "mobilenetv3": "mobilenetv3_small_050",
    "mobilenetv5": "mobilenetv5_base",
    "mobilevit": "mobilevit_xxs",
    "mvitv2": "mvitv2_tiny",
    "naflexvit": "naflexvit_base_patch16_parfac_gap",
    "nasnet": "nasnetalarge",
    "nest": "nest_tiny",
    "nextvit": "nextvit_small",
    "nfnet": "test_nfnet",
    "pit": "pit_ti_224",
    "pnasnet": "pnasnet5large",
    "pvt_v2": "pvt_v2_b0",
    "qwen3_vit": "qwen3_vit_88m",
    "rdnet": "rdnet_tiny",
    "regnet": "regnetx_002",
    "repghost": "repghostnet_050",
    "repvit": "repvit_m1",
    "res2net": "res2next50",
    "resnest": "resnest14d",
    "resnet": "test_resnet",
    "resnetv2": "resnetv2_18",
    "rexnet": "rexnet_100",
    "selecsls": "selecsls42",
    "senet": "legacy_seresnet18",
    "sequencer": "sequencer2d_s",
    "shvit": "shvit_s1",
    "sknet": "skresnet18",
    "starnet": "starnet_s050",
    "swiftformer": "swiftformer_xs",
    "swin_transformer": "swin_tiny_patch4_window7_224",
    "swin_transformer_v2": "swinv2_tiny_window8_256",
    "swin_transformer_v2_cr": "swinv2_cr_tiny_224",
    "tiny_vit": "tiny_vit_5m_224",
    "tnt": "tnt_s_legacy_patch16_224",
    "tresnet": "tresnet_m",
    "twins": "twins_svt_small",
    "vgg": "vgg11",
    "visformer": "visformer_tiny",
    "vision_transformer": "test_vit",
    "vision_transformer_hybrid": "vit_tiny_r_s16_p8_224",
    "vision_transformer_relpos": "test_vit_relpos",
    "vision_transformer_sam": "samvit_base_patch16_224",
    "vitamin": "vitamin_small_224",
    "volo": "volo_d1_224",
    "vovnet": "ese_vovnet19b_slim_dw",
    "xception": "legacy_xception",
    "xception_aligned": "xception41p",
    "xcit": "xcit_nano_12_p8_224",
}

#: Families whose smallest model has no global average pooling, and the reason the refusal gives.
#: (Their attention pooling is the subject of raw attention from a model's own attention.)
TIMM_REFUSED = {
    "cait": "class token, no average pooling",
    "convit": "class token, no average pooling",
    "deit": "class token, no average pooling",
    "tnt": "class token, no average pooling",
    "vision_transformer": "class token, no average pooling",
    "vision_transformer_hybrid": "class token, no average pooling",
    "xcit": "class token, no average pooling",
    "coat": "is not globally average-pooled",
    "crossvit": "runs 2 times per forward pass",
    "pit": "is not globally average-pooled",
    "volo": "no layer follows its last feature map",
    "efficientvim": "runs 4 times per forward pass",
    "vgg": "not a global pooling",
}

#: Refused families that pool by attention: raw attention and Grad-CAM come from their own pooling.
TIMM_OWN_ATTENTION = (
    "cait",
    "convit",
    "crossvit",
    "deit",
    "pit",
    "tnt",
    "vision_transformer",
    "vision_transformer_hybrid",
    "volo",
    "xcit",
)
#: Torchvision's class-token ViTs likewise.
TORCHVISION_OWN_ATTENTION = ("vit_b_16", "vit_b_32", "vit_l_32")

#: Families not run: their smallest model is too large for a CPU test (parameters, input size).
TIMM_SKIPPED = {
    "deepseek_vit": "412M parameters at 546 px",
    "gemma4_vit": "167M parameters at 768 px",
    "qwen3_vit": "88M parameters at 768 px",
    "naflexvit": "86M parameters, variable-length patch sequences",
}

#: The largest zoo models: their contract cases took more than 15 s each on 2 loaded CPU cores
#: (26 min for the whole zoo, 18 of them for these). They run with ``pytest -m zoo_full``, not
#: in the default run (setup.cfg deselects the marker); the docs script profiles them too.
ZOO_FULL = {
    "torchvision": {
        "regnet_y_128gf",
        "convnext_large",
        "vit_h_14",
        "wide_resnet101_2",
        "maxvit_t",
        "swin_v2_b",
        "efficientnet_v2_l",
        "regnet_y_32gf",
        "resnext101_32x8d",
        "resnext101_64x4d",
        "vit_l_16",
        "regnet_x_32gf",
        "convnext_base",
        "swin_b",
        "vit_b_16",
        "vit_l_32",
    },
    "timm": {
        "mobilenetv5",
        "vision_transformer_sam",
        "beit",
        "byoanet",
        "sequencer",
        "nasnet",
        "swin_transformer_v2",
        "pnasnet",
        "nest",
        "mvitv2",
        "vitamin",
        "swin_transformer",
        "swin_transformer_v2_cr",
        "twins",
        "inception_v4",
    },
}

#: Wrapped in the default (fast) run: NCHW module pooling, NHWC maps, and the smallest CNNs.
TIMM_FAST = ("resnet", "efficientnet", "convnext", "mambaout", "byobnet", "nfnet")


def timm_model(family: str) -> nn.Module:
    """The smallest timm model of ``family``, random-init, 10 classes, eval mode."""
    import timm

    torch.manual_seed(0)
    return timm.create_model(TIMM_SMALLEST[family], pretrained=False, num_classes=10).eval()


# ---------------------------------------------------------------------------------------- hand-written
class _Body(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        self.stage1 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage2(self.stage1(self.stem(x)))


class ModulePool(nn.Module):
    """``self.pool = nn.AdaptiveAvgPool2d(1); self.fc``: the plainest GAP classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _Body()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.body(x)), 1))


class FunctionalPool(ModulePool):
    """``F.adaptive_avg_pool2d`` in forward: no pooling module to hook."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.body(x), 1).flatten(1))


class MeanPool(ModulePool):
    """``x.mean((2, 3))`` in forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean((2, 3)))


def sequential_model() -> nn.Module:
    """The whole classifier as one ``nn.Sequential``."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 5),
    )


class MLPHead(ModulePool):
    """Mean pooling into a two-layer MLP head."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).mean((2, 3)))


class TupleOutput(ModulePool):
    """Returns ``(logits, pooled features)``: needs ``logits=0``."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = torch.flatten(self.pool(self.body(x)), 1)
        return self.fc(pooled), pooled


class DictOutput(ModulePool):
    """Returns ``{"logits": ..., "features": ...}``: needs ``logits="logits"``."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.body(x)
        return {"logits": self.fc(torch.flatten(self.pool(features), 1)), "features": features}


class _ChannelsLastBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.mix = nn.Conv2d(width, width, 3, padding=1, groups=width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, h, w, C)
        x = x + self.mix(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(self.norm(x))


class NHWCNet(nn.Module):
    """A channels-last network (like Swin or MambaOut): NHWC stages, mean over (1, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 16, 4, stride=4)
        self.stage1 = _ChannelsLastBlock(16)
        self.down = nn.Conv2d(16, 32, 2, stride=2)
        self.stage2 = _ChannelsLastBlock(32)
        self.norm = nn.LayerNorm(32)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage1(self.patch(x).permute(0, 2, 3, 1))
        x = self.stage2(self.down(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
        return self.fc(self.norm(x).mean((1, 2)))


class _TokenBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, 2, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TokenNet(nn.Module):
    """A small ViT with a class token that averages its patch tokens (``global_pool='avg'`` style)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, width, 8, stride=8)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.blocks = nn.Sequential(_TokenBlock(width), _TokenBlock(width))
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        tokens = self.norm(self.blocks(tokens))
        return self.fc(tokens[:, 1:].mean(dim=1))


class FixedSizeNet(ModulePool):
    """Accepts 48x48 inputs only (like a model with a fixed positional embedding)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (48, 48):
            raise AssertionError(f"Input size {tuple(x.shape[-2:])} doesn't match model (48, 48)")
        return super().forward(x)


class GrayscaleNet(ModulePool):
    """One input channel (medical or MNIST-style images)."""

    def __init__(self) -> None:
        super().__init__()
        self.body.stem[0] = nn.Conv2d(1, 8, 3, padding=1)


#: name -> (factory, attach_stream keyword arguments the user must give)
CUSTOM: dict[str, tuple[Callable[[], nn.Module], dict]] = {
    "module pooling (nn.AdaptiveAvgPool2d)": (ModulePool, {}),
    "F.adaptive_avg_pool2d in forward": (FunctionalPool, {}),
    "x.mean((2, 3)) in forward": (MeanPool, {}),
    "nn.Sequential classifier": (sequential_model, {}),
    "MLP head": (MLPHead, {}),
    "tuple output": (TupleOutput, {"logits": 0}),
    "dict output": (DictOutput, {"logits": "logits"}),
    "NHWC stages (channels last)": (NHWCNet, {}),
    "tokens with a class token, mean of patches": (TokenNet, {}),
    "fixed 48x48 input": (FixedSizeNet, {"probe_size": 48}),
    "one input channel": (GrayscaleNet, {}),
}


def custom_model(name: str) -> tuple[nn.Module, dict]:
    """A fresh hand-written model and the keyword arguments it needs."""
    factory, kwargs = CUSTOM[name]
    torch.manual_seed(0)
    return factory().eval(), dict(kwargs)


# ---------------------------------------------------------------------------------------- docs table
def refusal_reason(message: str) -> str:
    """The reason part of attach_stream's refusal message."""
    import re

    match = re.search(r"global average pooling of \w+: (.*?)\. If it has one", message)
    return match.group(1) if match else message


def attention_row(group: str, name: str, pooling: object) -> str:
    """One Markdown row of the own-attention table: the module whose attention pools, and how it is read."""
    rows = "class-token row" if pooling.rows == "first" else "all queries averaged"  # type: ignore[attr-defined]
    return (
        f"| {group} | `{name}` | `{pooling.path}` | {rows}, {pooling.key_prefix} prefix key(s) | "  # type: ignore[attr-defined]
        f"`{pooling.target_layer}` |"  # type: ignore[attr-defined]
    )


def support_row(group: str, name: str, profile: object = None, error: str | None = None) -> str:
    """One Markdown row of the supported-models table: what was measured for ``name``."""
    if error is not None:
        return f"| {group} | `{name}` | refused | {error} |"
    taps = profile.taps  # type: ignore[attr-defined]
    pool = profile.pool  # type: ignore[attr-defined]
    kinds = sorted({t.layout.kind for t in taps} | {pool.layout.kind})
    how = f"module `{pool.path}`" if pool.kind == "module" else f"input of `{pool.path}`"
    return f"| {group} | `{name}` | {len(taps) + 1} blocks, {'/'.join(kinds).upper()} | pooling: {how} |"
