"""Shared run steps: a finished stream is reused, an unfinished or foreign one is not."""

from __future__ import annotations

import logging

import torch

from xai_pool import attach_stream
from xai_pool.pipeline import train_or_reuse_stream

from .conftest import TINY_SPEC, TinyCNN


def _data(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 16, 16, generator=generator), torch.randint(0, 5, (n,), generator=generator)


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return attach_stream(TinyCNN(), spec=TINY_SPEC)


def _train(model, stream_dir, calls, fresh=False):
    def train():
        calls.append("train")
        return _data()

    return train_or_reuse_stream(
        model, stream_dir, train, None, epochs=1, lr=0.05, batch_size=8, device=torch.device("cpu"), seed=0,
        fresh=fresh, progress=False,
    )  # fmt: skip


def test_trains_then_reuses_without_generating_data(tmp_path, caplog):
    calls: list[str] = []
    model = _model()
    history, reused = _train(model, tmp_path / "stream", calls)
    assert not reused and len(history) == 1 and calls == ["train"]
    assert (tmp_path / "stream" / "DONE").exists() and (tmp_path / "stream" / "last.pt").exists()
    trained = {k: v.clone() for k, v in model.stream.state_dict().items()}

    again = _model()  # same backbone, fresh stream
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="xai_pool"):
        history, reused = _train(again, tmp_path / "stream", calls)
    assert reused and history == [] and calls == ["train"]  # no data generated the second time
    assert [r.name for r in caplog.records if "reusing the trained stream" in r.getMessage()] == ["xai_pool.pipeline"]
    for key, value in again.stream.state_dict().items():
        torch.testing.assert_close(value, trained[key], rtol=0, atol=0)


def test_fresh_and_unfinished_runs_train_again(tmp_path):
    calls: list[str] = []
    _train(_model(), tmp_path / "stream", calls)
    _train(_model(), tmp_path / "stream", calls, fresh=True)
    assert calls == ["train", "train"]
    (tmp_path / "stream" / "DONE").unlink()  # as if killed before the end
    _train(_model(), tmp_path / "stream", calls)
    assert calls == ["train", "train", "train"]


def test_another_backbone_is_not_reused(tmp_path, caplog):
    calls: list[str] = []
    _train(_model(seed=0), tmp_path / "stream", calls)
    with caplog.at_level(logging.INFO, logger="xai_pool"):
        _, reused = _train(_model(seed=1), tmp_path / "stream", calls)
    assert not reused and calls == ["train", "train"]
    assert any("not reusing" in record.getMessage() for record in caplog.records)
