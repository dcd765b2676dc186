"""Building classifiers by name from local weights files."""

from __future__ import annotations

import pytest
import torch
import torchvision

from xai_pool.classifiers import build_classifier


def test_torchvision_weights_round_trip_and_num_classes(tmp_path) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3).eval()
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    loaded = build_classifier("resnet18", path)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_timm_name(tmp_path) -> None:
    model = build_classifier("resnet10t", num_classes=4)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 4)


def test_mismatched_weights_and_unknown_names(tmp_path) -> None:
    path = tmp_path / "w.pt"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), path)
    with pytest.raises(ValueError, match="do not match architecture 'resnet34'"):
        build_classifier("resnet34", path)
    with pytest.raises(ValueError, match="unknown architecture 'nonet'"):
        build_classifier("nonet")
    with pytest.raises(FileNotFoundError):
        build_classifier("resnet18", tmp_path / "missing.pt")
