"""Training checkpoints: a killed and resumed run equals an uninterrupted one; bad files are refused."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import xai_pool
from xai_pool import attach_stream, load_stream, train_stream
from xai_pool.train import load_train_state

from .conftest import TINY_SPEC, TinyCNN
from .test_train_core import colour_problem


class NoisyColours(Dataset):
    """The colour problem with a random augmentation (fresh noise on every access)."""

    def __init__(self, n: int, seed: int) -> None:
        self.images, self.labels = colour_problem(n, seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index] + 0.3 * torch.randn_like(self.images[index]), self.labels[index]


class Crash(RuntimeError):
    pass


def model(seed: int = 0) -> xai_pool.CAModel:
    torch.manual_seed(seed)
    return attach_stream(TinyCNN(num_classes=4), spec=TINY_SPEC)


def run(out, *, workers: int = 0, crash_at: int | None = None, **options):
    """Train 3 epochs of 6 steps (global batch 8), checkpointing every 4 steps."""
    ca = model()

    def on_step(info):
        if crash_at is not None and info["global_step"] == crash_at:
            raise Crash(f"killed at step {crash_at}")

    train = DataLoader(NoisyColours(48, 0), batch_size=8, shuffle=True, num_workers=workers)
    val = DataLoader(NoisyColours(16, 1), batch_size=8)
    settings = {"epochs": 3, "lr": 0.5, "out_dir": out, "checkpoint_every_steps": 4, "on_step": on_step}
    settings.update(options)
    history = train_stream(ca, train, val_loader=val, **settings)
    return ca, history


def assert_same_stream(a: xai_pool.CAModel, b: xai_pool.CAModel) -> None:
    for (key, va), vb in zip(a.stream.state_dict().items(), b.stream.state_dict().values(), strict=True):
        assert torch.equal(va, vb), key


def assert_same_history(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        assert {k: v for k, v in ra.items() if k != "time"} == {k: v for k, v in rb.items() if k != "time"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    return (*run(out), out)


@pytest.mark.parametrize("crash_at", [9, 13])  # mid-epoch; right after an epoch's last step
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path, uninterrupted, crash_at) -> None:
    with pytest.raises(Crash):
        run(tmp_path, crash_at=crash_at)
    state = load_train_state(tmp_path / "train_state.pt")
    assert state["global_step"] == crash_at - 1  # the last checkpoint, 1 step before the crash
    resumed, history = run(tmp_path, resume=True)
    reference, reference_history, _ = uninterrupted
    assert_same_stream(resumed, reference)
    assert_same_history(history, reference_history)
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert len(lines) == 3


def test_max_steps_splits_a_run(tmp_path, uninterrupted) -> None:
    _, partial = run(tmp_path, max_steps=8)
    assert len(partial) == 1  # epoch 1 finished, epoch 2 stopped at its step 2
    assert load_train_state(tmp_path / "train_state.pt")["step_in_epoch"] == 2
    resumed, history = run(tmp_path, resume=True)
    assert_same_stream(resumed, uninterrupted[0])
    assert_same_history(history, uninterrupted[1])


def test_worker_processes_do_not_change_the_result(tmp_path, uninterrupted) -> None:
    # Each sample's augmentation is seeded from (seed, epoch, position), not from a worker.
    with_workers, _ = run(tmp_path, workers=2)
    assert_same_stream(with_workers, uninterrupted[0])


def test_best_and_last_are_loadable_stream_checkpoints(uninterrupted) -> None:
    reference, history, out = uninterrupted
    last = load_stream(model(), out / "last.pt")
    assert_same_stream(last, reference)
    best_epoch = max(history, key=lambda r: r["val_acc_ca"])["epoch"]
    assert torch.load(out / "best.pt", weights_only=True)["train_info"]["epoch"] == best_epoch
    load_stream(model(), out / "best.pt")


@pytest.fixture
def finished_run(tmp_path):
    run(tmp_path, epochs=1)
    return tmp_path


def test_truncated_state_is_refused_and_left_alone(finished_run) -> None:
    path = finished_run / "train_state.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        run(finished_run, resume=True)
    assert path.read_bytes() == data[: len(data) // 2]


def test_foreign_state_is_refused_and_left_alone(finished_run) -> None:
    path = finished_run / "train_state.pt"
    torch.save({"model": torch.zeros(3)}, path)
    data = path.read_bytes()
    with pytest.raises(ValueError, match="not an xai_pool training state"):
        run(finished_run, resume=True)
    assert path.read_bytes() == data
    shutil.copy(finished_run / "last.pt", path)
    with pytest.raises(ValueError, match="stream checkpoint"):
        run(finished_run, resume=True)


def test_pickled_objects_are_not_loaded(finished_run) -> None:
    path = finished_run / "train_state.pt"
    torch.save({"format": "xai_pool.train_state", "payload": Crash("code")}, path)
    with pytest.raises(ValueError, match="cannot be read safely"):
        run(finished_run, resume=True)


def test_a_crash_while_saving_keeps_the_previous_checkpoint(finished_run, monkeypatch) -> None:
    path = finished_run / "train_state.pt"
    before = path.read_bytes()
    real_save = torch.save

    def failing_save(obj, handle, *args, **kwargs):
        handle.write(b"partial")  # a few bytes, then the disk fills up
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        run(finished_run, resume=True, epochs=2)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before
    assert load_train_state(path)["epoch"] == 1
    assert not [p for p in finished_run.iterdir() if p.name.endswith(".tmp")]


def test_resume_refuses_other_settings_and_another_backbone(finished_run) -> None:
    with pytest.raises(ValueError, match="lr: checkpoint 0.5 vs now 0.1"):
        run(finished_run, resume=True, lr=0.1)
    torch.manual_seed(1)
    other = attach_stream(TinyCNN(num_classes=4), spec=TINY_SPEC)
    with pytest.raises(ValueError, match="different weights"):
        train_stream(
            other,
            DataLoader(NoisyColours(48, 0), batch_size=8, shuffle=True),
            epochs=3,
            lr=0.5,
            out_dir=finished_run,
            resume=True,
            val_loader=DataLoader(NoisyColours(16, 1), batch_size=8),
            checkpoint_every_steps=4,
        )


def test_an_existing_run_is_not_overwritten_by_accident(finished_run) -> None:
    before = (finished_run / "train_state.pt").read_bytes()
    with pytest.raises(ValueError, match="already holds a training run"):
        run(finished_run, epochs=1)
    assert (finished_run / "train_state.pt").read_bytes() == before
    run(finished_run, epochs=1, overwrite=True)


def test_resume_without_a_state_starts_a_new_run(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="xai_pool.train"):
        _, history = run(tmp_path, epochs=1, resume=True)
    assert len(history) == 1 and "starting a new run" in caplog.text


def test_a_plain_list_of_batches_trains_and_resumes(tmp_path) -> None:
    images, labels = colour_problem(32, 0)
    batches = [(images[i : i + 8], labels[i : i + 8]) for i in range(0, 32, 8)]
    reference = model()
    train_stream(reference, batches, epochs=2, lr=0.5)

    def crash_at_step_3(info):
        if info["global_step"] == 3:
            raise Crash("killed")

    with pytest.raises(Crash):
        train_stream(
            model(), batches, epochs=2, lr=0.5, out_dir=tmp_path, checkpoint_every_steps=2, on_step=crash_at_step_3
        )
    resumed = model()
    train_stream(resumed, batches, epochs=2, lr=0.5, out_dir=tmp_path, resume=True)
    assert_same_stream(resumed, reference)
