"""The one home of the device and train/eval helpers (xai_pool.runtime), and that its old homes use it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xai_pool import runtime
from xai_pool.runtime import eval_mode, model_device, preserved_training, resolve_device, save_training_flags


# ----------------------------------------------------------------------------- devices
def test_auto_and_none_are_the_cpu_without_cuda(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_cuda_goes_to_the_local_rank_gpu(monkeypatch) -> None:
    # torch.device("cuda", i) needs no GPU to exist; only the availability checks are faked.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto", local_rank=3) == torch.device("cuda", 1)  # 3 % 2 GPUs
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:0", local_rank=1) == torch.device("cuda", 0)  # an explicit index is kept


def test_bad_device_names_are_refused_with_the_argument_name(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^--device 'gpu0' is not a device name; use 'auto'"):
        resolve_device("gpu0", name="--device")
    with pytest.raises(ValueError, match=r"^device is 'cuda:1' but CUDA is not available on this machine; use 'cpu'"):
        resolve_device("cuda:1")


def test_every_device_resolution_is_the_runtime_one() -> None:
    from xai_pool.train import distributed

    assert distributed.resolve_device is runtime.resolve_device  # the name tests and users import


def test_model_device() -> None:
    assert model_device(nn.Linear(2, 2), torch.device("meta")) == torch.device("cpu")
    buffers_only = nn.BatchNorm2d(2, affine=False)
    assert model_device(buffers_only.to("meta"), torch.device("cpu")) == torch.device("meta")
    assert model_device(nn.ReLU(), torch.device("meta")) == torch.device("meta")  # stateless: the fallback


# ----------------------------------------------------------------------------- train/eval flags
class _KeepsChildInEval(nn.Module):
    """Like CAModel: train() leaves ``frozen`` in eval; ``train_calls`` counts the calls."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
        self.head = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
        self.train_calls = 0

    def train(self, mode: bool = True) -> _KeepsChildInEval:
        self.train_calls += 1
        self.training = mode
        self.head.train(mode)
        self.frozen.eval()
        return self


def _flags(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def _mixed() -> _KeepsChildInEval:
    model = _KeepsChildInEval().train()
    model.head[1].eval()  # a per-module state no train(mode) call produces
    model.train_calls = 0
    return model


def test_eval_mode_sets_every_flag_directly_and_restores_each_one() -> None:
    model = _mixed()
    before = _flags(model)
    assert before == [True, False, False, False, True, True, False]
    with eval_mode(model):
        assert not any(_flags(model))
    assert _flags(model) == before
    assert model.train_calls == 0  # never through the overridden train()


def test_flags_come_back_after_an_exception() -> None:
    model = _mixed()
    before = _flags(model)
    with pytest.raises(RuntimeError, match="inside"), eval_mode(model):
        raise RuntimeError("inside")
    assert _flags(model) == before
    with pytest.raises(RuntimeError, match="inside"), preserved_training(model):
        model.train(False)
        raise RuntimeError("inside")
    assert _flags(model) == before


def test_preserved_training_takes_a_module_list() -> None:
    model = _mixed()
    modules = list(model.head.modules())
    with preserved_training(modules):
        model.eval()
        model.frozen.train()  # not in the list: left as the block set it
    assert [m.training for m in modules] == [True, True, False]
    assert model.frozen.training


def test_saved_flags_are_restored_once() -> None:
    model = _mixed()
    before = _flags(model)
    restore = save_training_flags(model)
    model.eval()
    restore()
    assert _flags(model) == before
    model.eval()
    restore()  # a second call must not undo what happened since
    assert not any(_flags(model))


def test_score_cam_restores_the_modes_base_cam_overwrote() -> None:
    from xai_pool.saliency.score_cam import ScoreCAM

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    model.train()
    model[4].eval()
    before = _flags(model)
    with ScoreCAM(model, [model[0]]) as cam:
        assert not any(_flags(model))  # BaseCAM.__init__ called model.eval()
        cam(torch.randn(1, 3, 8, 8), targets=None)
    assert _flags(model) == before
    model.eval()
    cam.__exit__(None, None, None)  # leaving twice does not bring back the old modes
    assert not any(_flags(model))
