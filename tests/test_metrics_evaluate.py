"""evaluate(): input validation, modes, skipped maps, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from xai_pool.metrics import ALL_METRICS, evaluate


class Tiny(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3))))


@pytest.fixture
def model() -> Tiny:
    torch.manual_seed(0)
    return Tiny()


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(2, 3, 6, 6)


def maps(b: int = 2, h: int = 3, w: int = 3) -> torch.Tensor:
    return torch.rand(b, h, w)


def test_bad_shapes(model, x):
    with pytest.raises(ValueError, match="saliency has 3 maps but images has 2"):
        evaluate(model, x, maps(3))
    with pytest.raises(ValueError, match=r"saliency must have shape \(B, h, w\)"):
        evaluate(model, x, torch.rand(2, 9))
    with pytest.raises(ValueError, match=r"saliency\[:, 0\]"):
        evaluate(model, x, torch.rand(2, 1, 3, 3))
    with pytest.raises(ValueError, match=r"images must have shape \(B, C, H, W\)"):
        evaluate(model, x[0], maps(3))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        evaluate(model, x, maps(), labels=[0, 1, 2])
    with pytest.raises(ValueError, match=r"masks must have shape \(B, H, W\) = \(2, 6, 6\)"):
        evaluate(
            model,
            x,
            maps(),
            metrics=("pointing_game",),
            masks=torch.ones(2, 3, 3, dtype=torch.bool),
        )


def test_labels_out_of_range(model, x):
    with pytest.raises(ValueError, match="labels must be < 3, the number of model outputs; got 3"):
        evaluate(model, x, maps(), labels=[0, 3])
    with pytest.raises(ValueError, match="labels must be class indices >= 0"):
        evaluate(model, x, maps(), labels=[-1, 0])


def test_wrong_dtypes(model, x):
    with pytest.raises(TypeError, match="images must be a floating-point tensor"):
        evaluate(model, (x * 50).to(torch.uint8), maps())
    with pytest.raises(TypeError, match="labels must be integer class indices"):
        evaluate(model, x, maps(), labels=torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="saliency must hold real numbers"):
        evaluate(model, x, torch.ones(2, 3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="saliency must be a torch.Tensor or numpy array"):
        evaluate(model, x, "cams")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        evaluate(lambda t: t, x, maps())
    with pytest.raises(ValueError, match="masks must be bool or contain only 0 and 1"):
        evaluate(model, x, maps(), metrics=("pointing_game",), masks=torch.full((2, 6, 6), 0.5))


def test_nan_maps(model, x):
    bad = maps()
    bad[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"saliency maps \[1\] contain NaN or inf"):
        evaluate(model, x, bad)
    out = evaluate(
        model,
        x,
        bad,
        on_invalid="skip",
        metrics=ALL_METRICS[:5] + ("sparsity",),
        return_curves=True,
    )
    assert out["valid"].tolist() == [True, False]
    assert out["target"][1] == -1
    for name in ("ad", "ag", "ai", "insertion", "deletion", "sparsity"):
        assert np.isfinite(out[name][0]) and np.isnan(out[name][1])
    assert np.isnan(out["insertion_curve"][1]).all() and np.isfinite(out["insertion_curve"][0]).all()


def test_bad_options(model, x):
    with pytest.raises(ValueError, match="unknown metrics \\['auc'\\]"):
        evaluate(model, x, maps(), metrics=("ad", "auc"))
    with pytest.raises(ValueError, match="step must be a positive int"):
        evaluate(model, x, maps(), step=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        evaluate(model, x, maps(), batch_size=0)
    with pytest.raises(ValueError, match="masking_space must be 'pixel' or 'input'"):
        evaluate(model, x, maps(), masking_space="rgb")
    with pytest.raises(ValueError, match="need masks"):
        evaluate(model, x, maps(), metrics=("pointing_game",))
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        evaluate(
            model,
            x,
            maps(),
            metrics=("pointing_game",),
            masks=torch.ones(2, 6, 6, dtype=torch.bool),
            tolerance=-1,
        )
    with pytest.raises(ValueError, match="mean has 2 values but images have 3 channels"):
        evaluate(model, x, maps(), mean=(0.5, 0.5))
    with pytest.raises(ValueError, match="road_percentiles must be numbers strictly between 0 and 100"):
        evaluate(model, x, maps(), metrics=("road",), road_percentiles=(0, 50))


def test_bad_substrates(model, x):
    with pytest.raises(ValueError, match=r"deletion_substrate of shape \(5,\) does not broadcast"):
        evaluate(model, x, maps(), metrics=("deletion",), deletion_substrate=torch.zeros(5))
    with pytest.raises(TypeError, match="insertion_substrate callable must return a torch.Tensor"):
        evaluate(model, x, maps(), metrics=("insertion",), insertion_substrate=lambda t: t.numpy())
    with pytest.raises(TypeError, match="insertion_substrate must be None, a number"):
        evaluate(model, x, maps(), metrics=("insertion",), insertion_substrate="blur")


def test_model_must_return_logits(x):
    class Tuple(nn.Module):
        def forward(self, t: torch.Tensor):
            return t.mean(dim=(2, 3)), None

    with pytest.raises(TypeError, match="model must return a logits tensor of shape \\(N, num_classes\\)"):
        evaluate(Tuple(), x, maps())


def test_training_flags_are_restored(model, x):
    model.train()
    model.bn.eval()  # mixed modes must come back exactly
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append((module.training, module.drop.training)))
    evaluate(model, x, maps(), metrics=("ad", "deletion"))
    assert set(seen) == {(False, False)}
    assert model.training and model.drop.training and model.conv.training and not model.bn.training


def test_training_flags_are_restored_after_an_error(model, x):
    model.train()

    def boom(module, args):
        raise RuntimeError("boom")

    handle = model.fc.register_forward_pre_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        evaluate(model, x, maps())
    handle.remove()
    assert all(m.training for m in model.modules())


def test_every_metric_is_finite_and_inputs_untouched(model, x):
    masks = torch.zeros(2, 6, 6, dtype=torch.bool)
    masks[:, 2:4, 2:4] = True
    s = maps()
    x_before, s_before = x.clone(), s.clone()
    out = evaluate(model, x, s, metrics=ALL_METRICS, masks=masks, road_percentiles=(25, 75), batch_size=5)
    for name in ALL_METRICS:
        assert out[name].shape == (2,) and np.isfinite(out[name]).all(), name
    assert torch.equal(x, x_before) and torch.equal(s, s_before)
    assert not torch.is_inference(x)


def test_numpy_inputs_and_string_metric(model, x):
    out = evaluate(model, x.numpy(), maps().numpy(), np.array([0, 1]), metrics="ad")
    assert list(out) == ["ad", "target", "valid"]
    assert out["target"].tolist() == [0, 1]


def test_empty_batch(model):
    out = evaluate(model, torch.zeros(0, 3, 4, 4), torch.zeros(0, 2, 2))
    assert all(v.shape[0] == 0 for v in out.values())
