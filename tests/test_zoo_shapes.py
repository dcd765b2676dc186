"""The embedded ShapesResNet: shipped weights, measured accuracy, CA-Stream attachment, trainer."""

from __future__ import annotations

import pytest
import torch

import xai_pool
from xai_pool import attach_stream
from xai_pool.data import ShapesScenes
from xai_pool.zoo import WEIGHTS_PATH, ShapesResNet, evaluate_accuracy, shapes_net, shapes_resnet, train_gap_classifier


@pytest.fixture(scope="module")
def shipped() -> ShapesResNet:
    return shapes_resnet()


@pytest.fixture(scope="module")
def test_tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return ShapesScenes("test", n=500).tensors()


def test_shipped_weights_are_small_and_load_strictly(shipped: ShapesResNet) -> None:
    assert WEIGHTS_PATH.stat().st_size < 2_000_000
    state = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    assert set(state) == set(ShapesResNet().state_dict())
    as_float = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    ShapesResNet().load_state_dict(as_float, strict=True)
    assert not shipped.training
    assert all(p.dtype == torch.float32 for p in shipped.parameters())


# The weights and the scenes are deterministic, and the smallest top-1 margin over these
# scenes is 0.075 logits, far above float rounding: the counts are exact known answers.
def test_shipped_weights_classify_494_of_the_first_500_test_scenes(shipped: ShapesResNet, test_tensors) -> None:
    images, labels, _ = test_tensors
    _, accuracy = evaluate_accuracy(shipped, (images, labels))
    assert round(accuracy * 500) == 494, f"measured test accuracy {accuracy:.4f} on 500 images"


@pytest.mark.slow
def test_shipped_weights_reach_the_documented_99_3_percent_on_2000_test_scenes(shipped: ShapesResNet) -> None:
    images, labels, _ = ShapesScenes("test", n=2000).tensors()  # README: "99.3% on 2000 test scenes"
    _, accuracy = evaluate_accuracy(shipped, (images, labels))
    assert round(accuracy * 2000) == 1986, f"measured test accuracy {accuracy:.4f} on 2000 images"


def test_attach_stream_uses_the_declared_spec_and_gap_mode_is_exact(shipped: ShapesResNet, test_tensors) -> None:
    images = test_tensors[0][:8]
    with torch.no_grad():
        expected = shipped(images)
    model = attach_stream(shipped, copy=True)
    assert model.spec == ShapesResNet.xai_pool_spec and model.spec.family == "xai_pool-shapes"
    assert model.target_layer is model.backbone.layer4
    with torch.no_grad(), model.pooling_as("gap"):
        assert torch.equal(model(images), expected)
    with torch.no_grad():
        logits = model(images)  # CA mode
    assert logits.shape == (8, 10)
    assert [tuple(a.shape[-2:]) for a in model.last_attention] == [(32, 32), (16, 16), (16, 16), (8, 8), (8, 8)]


def test_missing_weights_give_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(shapes_net, "WEIGHTS_PATH", tmp_path / "absent.pt")
    with pytest.raises(FileNotFoundError, match="train_shapes_model.py"):
        shapes_resnet()
    assert isinstance(shapes_resnet(pretrained=False), ShapesResNet)


def test_num_classes() -> None:
    assert shapes_resnet(pretrained=False, num_classes=3).fc.out_features == 3
    with pytest.raises(ValueError, match="shipped weights have 10 classes"):
        shapes_resnet(num_classes=3)


def test_lazy_package_access() -> None:
    assert xai_pool.zoo.shapes_resnet is shapes_resnet
    assert xai_pool.data.ShapesScenes is ShapesScenes


def _tiny_run(seed: int) -> tuple[ShapesResNet, object]:
    torch.manual_seed(seed)
    model = ShapesResNet(widths=(8, 8, 8, 8, 8))
    images, labels, _ = ShapesScenes("train", n=64, size=32).tensors()
    history = train_gap_classifier(
        model, (images, labels), (images[:16], labels[:16]), epochs=2, batch_size=16, seed=seed, progress=False
    )
    return model, history


def test_trainer_is_deterministic_with_a_seed() -> None:
    first, history = _tiny_run(0)
    second, _ = _tiny_run(0)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert len(history.epochs) == 2 and history.final_test_accuracy is not None
    assert history.epochs[-1].lr < history.epochs[0].lr  # one-cycle annealing
    assert not first.training
    third, _ = _tiny_run(1)
    assert not torch.equal(first.fc.weight, third.fc.weight)


def test_trainer_accepts_a_dataset_and_learns_something() -> None:
    torch.manual_seed(0)
    model = ShapesResNet(widths=(8, 8, 8, 8, 8))
    data = ShapesScenes("train", n=32, size=32)
    history = train_gap_classifier(model, data, epochs=3, batch_size=8, lr=1e-2, progress=False)
    assert history.epochs[-1].train_loss < history.epochs[0].train_loss
    assert history.final_test_accuracy is None


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"epochs": 0}, ValueError, "epochs must be a positive int"),
        ({"batch_size": 1000}, ValueError, "use a smaller batch_size"),
        ({"lr": -1.0}, ValueError, "lr must be a positive"),
        ({"label_smoothing": 1.0}, ValueError, "label_smoothing"),
    ],
)
def test_trainer_rejects_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    data = (torch.zeros(8, 3, 32, 32), torch.zeros(8, dtype=torch.long))
    with pytest.raises(error, match=match):
        train_gap_classifier(ShapesResNet(widths=(4, 4, 4, 4, 4)), data, progress=False, **kwargs)


def test_trainer_rejects_bad_data() -> None:
    with pytest.raises(TypeError, match="train_data must be a Dataset"):
        train_gap_classifier(ShapesResNet(), 42, progress=False)
    with pytest.raises(ValueError, match="labels must be N integer"):
        train_gap_classifier(ShapesResNet(), (torch.zeros(4, 3, 32, 32), torch.zeros(3)), progress=False)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        ShapesResNet(num_classes=0)
