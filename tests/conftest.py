"""Shared fixtures: tiny models and images so the suite stays fast on 2 CPU cores."""

from __future__ import annotations

import csv
import logging
import os
import socket

import pytest
import torch
import torchvision
from torch import nn

from xai_pool.adapters import StreamSpec


class TinyCNN(nn.Module):
    """A 3-stage CNN with GAP + Linear head, described by an explicit StreamSpec."""

    def __init__(self, num_classes: int = 5, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        self.stage1 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.stage1(self.stem(x)))
        return self.head(torch.flatten(self.pool(x), 1))


class TinyFlattenCNN(TinyCNN):
    """Like TinyCNN but pools to 2x2 and flattens (VGG-style): no global average pooling to replace."""

    def __init__(self, num_classes: int = 5, width: int = 8) -> None:
        super().__init__(num_classes, width)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(16 * width, num_classes)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # The suite runs tiny models: with several OpenMP threads on shared cores, threads spin
    # and a 0.1 s call can take seconds. One thread is as fast for these sizes and stable.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


_XAI_POOL_LOGGER = logging.getLogger("xai_pool")
_LOGGING_AT_START = (list(_XAI_POOL_LOGGER.handlers), _XAI_POOL_LOGGER.level)


@pytest.fixture(autouse=True)
def _xai_pool_logging_as_at_start():
    # A command run in-process (cli.main, also from module-scoped fixtures) gives the "xai_pool"
    # logger a stderr handler and a level; without this, whatever a later test logs would
    # depend on the tests run before it.
    yield
    _XAI_POOL_LOGGER.handlers[:] = _LOGGING_AT_START[0]
    _XAI_POOL_LOGGER.setLevel(_LOGGING_AT_START[1])


@pytest.fixture
def no_pyplot_figures_left():
    """Fail a test that leaves a figure open in pyplot (a memory leak in loops, a stray plot in notebooks)."""
    yield
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


TINY_SPEC = StreamSpec(taps=("stem", "stage1"), pool="pool", target_layer="stage2", family="tiny")


@pytest.fixture
def tiny_cnn() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN()


@pytest.fixture
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, 32, 32)


def free_port() -> int:
    """A TCP port free on localhost right now, for torch.distributed rendezvous in tests."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_state(model: nn.Module) -> dict:
    """Everything a saliency call could change on ``model``, as comparable values.

    Pooling mode, every module's train/eval flag, the module tree, every parameter's
    ``requires_grad`` and ``.grad`` (the very tensor, and its values), every parameter and
    buffer value, and the number of hooks. Compare two snapshots with :func:`assert_same_state`.
    """
    from xai_pool.saliency import count_hooks  # pytorch-grad-cam: imported only by the tests that need it

    return {
        "pooling": getattr(model, "pooling", None),
        "training": [m.training for m in model.modules()],
        "tree": [(name, id(m)) for name, m in model.named_modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grad_ids": [None if p.grad is None else id(p.grad) for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()],
        "tensors": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "hooks": count_hooks(model),
    }


def assert_same_state(before: dict, after: dict) -> None:
    """Assert two :func:`model_state` snapshots are equal, tensors bit for bit."""
    for key in ("pooling", "training", "tree", "requires_grad", "grad_ids", "hooks"):
        assert after[key] == before[key], f"{key} changed"
    for b, a in zip(before["grads"], after["grads"], strict=True):
        assert (a is None and b is None) or torch.equal(a, b), ".grad values changed"
    assert before["tensors"].keys() == after["tensors"].keys()
    changed = [k for k, v in before["tensors"].items() if not torch.equal(v, after["tensors"][k])]
    assert not changed, f"parameters or buffers changed: {changed}"


def csv_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a CSV file with a header, as dicts (the file is closed)."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
